"""The per-host circuit breaker: decisions only, time passed in.

After ``threshold`` attempts in a row to one host end before a status line
and headers arrive (``ConnectError``, ``FetchTimeout``, ``TLSError``,
``ProtocolError``), the host's breaker opens: its requests fail at once with
``HostDown``. After ``cooldown`` seconds one probe is let through; a
response closes the breaker, a failure keeps it open for another
``cooldown``. Any response, whatever its status and however its body ends,
resets the count. Hosts with nothing to remember are forgotten.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable

from ._errors import (
    ConnectError,
    FetchError,
    FetchTimeout,
    HostDown,
    ProtocolError,
    TLSError,
)

__all__ = ["COOLDOWN", "Breaker", "Gate"]

COOLDOWN = 30.0
COUNTED = (ConnectError, FetchTimeout, TLSError, ProtocolError)


class Gate(enum.Enum):
    """What the breaker says about starting a request now."""

    GO = "go"  # closed: start it
    PROBE = "probe"  # open, cooled down: start it as the one probe
    DOWN = "down"  # open: fail it with HostDown


class _State:
    __slots__ = ("failures", "last_error", "open_until", "probing")

    def __init__(self) -> None:
        self.failures = 0
        self.open_until: float | None = None  # None: closed
        self.probing = False
        self.last_error: FetchError | None = None


class Breaker:
    """Breakers for every host of one Fetcher.

    Args:
        threshold: failures in a row that open a host's breaker; ``None``: never.
        cooldown: seconds an open breaker waits before letting a probe through.
    """

    def __init__(self, threshold: int | None, cooldown: float = COOLDOWN) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        # Hosts with failures on record; empty (falsy) while all is well, so
        # the engine's hot path tests ``breaker.hosts`` and skips the rest.
        self.hosts: dict[Hashable, _State] = {}

    def gate(self, key: Hashable, now: float) -> Gate:
        """May a request to ``key`` start now? A ``PROBE`` answer is the probe."""
        state = self.hosts.get(key)
        if state is None or state.open_until is None:
            return Gate.GO
        if state.probing or now < state.open_until:
            return Gate.DOWN
        state.probing = True
        return Gate.PROBE

    def record(
        self,
        key: Hashable,
        error: FetchError | None,
        responded: bool,
        now: float,
        *,
        probe: bool = False,
    ) -> bool:
        """Count how an attempt to ``key`` ended; True when it opened the breaker.

        Args:
            key: the host.
            error: the attempt's error, if any.
            responded: a status line and headers arrived.
            now: the current time.
            probe: this attempt was the probe that ``gate`` let through.
        """
        if self.threshold is None:
            return False
        state = self.hosts.get(key)
        if responded:
            if state is not None:
                del self.hosts[key]  # closed, count reset: nothing to remember
            return False
        counted = isinstance(error, COUNTED) and not isinstance(error, HostDown)
        if state is not None and state.open_until is not None:
            if probe:
                state.probing = False
                if counted:  # the probe failed: another cooldown
                    state.last_error = error
                    state.open_until = now + self.cooldown
            return False  # a straggler started before the breaker opened
        if not counted:
            return False
        if state is None:
            state = self.hosts[key] = _State()
        state.last_error = error
        state.failures += 1
        if state.failures >= self.threshold:
            state.open_until = now + self.cooldown
            return True
        return False

    def abandon(self, key: Hashable) -> None:
        """The probe of ``key`` was cancelled before it ended: allow another."""
        state = self.hosts.get(key)
        if state is not None:
            state.probing = False

    def down_message(self, key: Hashable, host: str) -> str:
        """The message of a HostDown for ``key``: the host and its last error."""
        state = self.hosts.get(key)
        last = f"; last error: {state.last_error}" if state and state.last_error else ""
        failures = self.threshold or 0
        return f"{host}: host down after {failures} failures in a row{last}"

    def is_open(self, key: Hashable) -> bool:
        """Whether the breaker of ``key`` is open (probing or not)."""
        state = self.hosts.get(key)
        return state is not None and state.open_until is not None

    def __len__(self) -> int:
        return len(self.hosts)
