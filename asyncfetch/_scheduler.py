"""Admission decisions: which waiting request may start now. Pure; no I/O.

The scheduler holds the requests that have been read but not started, one
FIFO queue per host (scheme, host, port). A host is *ready* when it has a
waiting request, is below its ``per_host`` cap and is not held until a later
time (a rate limit, a ``Retry-After`` pause, an open breaker, a crawl delay:
whoever decides those calls ``hold``). Ready hosts sit in a
ring and are served round-robin, so a request held back by its own host never
takes a global slot, and a busy host cannot starve the others.

The time comes from a clock given to the constructor (``time.monotonic`` by
default, a fake one in tests), read only while some host is held, which
keeps the class testable without sleeping and the common path free of
clock reads.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

__all__ = ["Scheduler"]

J = TypeVar("J")


class _Host(Generic[J]):
    __slots__ = ("active", "in_ring", "key", "ready_at", "tat", "timed", "waiting")

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.waiting: deque[J] = deque()
        self.active = 0
        self.ready_at = 0.0
        self.in_ring = False
        self.timed = False  # has an entry in the timer heap
        self.tat = 0.0  # rate limit: the theoretical arrival time (GCRA)


class Scheduler(Generic[J]):
    """Global and per-host admission with round-robin fairness across hosts.

    Args:
        concurrency: jobs started and not yet released, all hosts together.
        per_host: the same for one host; ``None`` for no cap beyond ``concurrency``.
        clock: returns the current time in seconds; read only when some host
            is held (see ``hold``) or ``rate`` is set.
        rate: starts per second to one host, a token bucket holding
            ``max(1, rate)`` tokens, full at first; ``None``: unlimited.
    """

    def __init__(
        self,
        concurrency: int,
        per_host: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        rate: float | None = None,
    ) -> None:
        self.concurrency = concurrency
        self.per_host = per_host
        self.rate = rate
        # The token bucket as GCRA (the generic cell rate algorithm, as in
        # aiometer): one start per ``interval``, with a burst of
        # max(1, rate) starts when the bucket is full.
        self._interval = 1.0 / rate if rate else 0.0
        self._tolerance = (max(1.0, rate) - 1.0) * self._interval if rate else 0.0
        # per_host=None caps nothing beyond concurrency, which is that cap.
        self._cap = per_host if per_host is not None else concurrency
        self.clock = clock
        self.active = 0
        self.waiting = 0
        self._hosts: dict[Hashable, _Host[J]] = {}
        self._ring: deque[_Host[J]] = deque()
        self._timers: list[tuple[float, int, _Host[J]]] = []
        self._seq = 0
        self._gaps: dict[Hashable, float] = {}  # host -> least gap between starts

    def __repr__(self) -> str:
        return (
            f"<Scheduler active={self.active}/{self.concurrency} waiting={self.waiting}"
            f" hosts={len(self._hosts)} ready={len(self._ring)}>"
        )

    def _capped(self, host: _Host[J]) -> bool:
        return host.active >= self._cap

    def _held(self, host: _Host[J]) -> bool:
        """Still held: ``ready_at`` is 0.0 for a host that was never held, or
        whose hold has passed, so the clock is read only for held hosts."""
        if not host.ready_at:
            return False
        if host.ready_at > self.clock():
            return True
        host.ready_at = 0.0
        return False

    def _offer(self, host: _Host[J]) -> None:
        """Put a host with waiting jobs where it belongs: the ring or the timers."""
        if host.in_ring or not host.waiting or self._capped(host):
            return
        if self._held(host):
            if not host.timed:
                self._timer(host)
            return
        host.in_ring = True
        self._ring.append(host)

    def _timer(self, host: _Host[J], at: float | None = None) -> None:
        host.timed = True
        self._seq += 1
        when = host.ready_at if at is None else at
        heapq.heappush(self._timers, (when, self._seq, host))

    def _wake(self) -> None:
        timers = self._timers
        now = self.clock()
        while timers and timers[0][0] <= now:
            _, _, host = heapq.heappop(timers)
            host.timed = False
            if host.waiting:
                self._offer(host)
            elif self._held(host):  # held again meanwhile
                self._timer(host)
            else:
                self._forget_if_idle(host)

    def _forget_if_idle(self, host: _Host[J]) -> None:
        if not host.waiting and not host.active and not self._held(host):
            if host.tat and host.tat > self.clock():  # its bucket is not full yet
                if not host.timed:
                    self._timer(host, at=host.tat)  # forget it once it is
                return
            self._hosts.pop(host.key, None)

    def push(self, key: Hashable, job: J, *, front: bool = False) -> None:
        """Queue ``job`` for host ``key`` (at the head of its queue with ``front``)."""
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = _Host(key)
        if front:
            host.waiting.appendleft(job)
        else:
            host.waiting.append(job)
        self.waiting += 1
        if not host.in_ring:
            if host.active < self._cap and not host.ready_at:  # the common case
                host.in_ring = True
                self._ring.append(host)
            else:
                self._offer(host)

    def pop(self) -> J | None:
        """Start the next job: a free global slot and a ready host; else ``None``."""
        if self.active >= self.concurrency:
            return None
        if self._timers:
            self._wake()
        ring = self._ring
        cap = self._cap
        while ring:
            host = ring[0]
            waiting = host.waiting
            if (
                not waiting
                or host.active >= cap
                or (host.ready_at and self._held(host))
            ):
                ring.popleft()
                host.in_ring = False
                self._offer(host)  # held since it was queued: to the timers
                continue
            if self.rate is not None:
                now = self.clock()
                wait = host.tat - self._tolerance - now
                if wait > 0:  # no token yet: held until there is one
                    host.ready_at = now + wait
                    ring.popleft()
                    host.in_ring = False
                    self._timer(host)
                    continue
                host.tat = max(host.tat, now) + self._interval
            if self._gaps:
                gap = self._gaps.get(host.key)
                if gap:  # a crawl delay: the next start waits a gap after this one
                    self._hold_after_start(host, gap)
            job = waiting.popleft()
            host.active += 1
            self.active += 1
            self.waiting -= 1
            if waiting and host.active < cap:
                ring.rotate(-1)
            else:
                ring.popleft()
                host.in_ring = False
            return job
        return None

    def release(self, key: Hashable) -> None:
        """A job of host ``key`` that :meth:`pop` started has ended."""
        host = self._hosts[key]
        host.active -= 1
        self.active -= 1
        if host.waiting:
            if host.in_ring:
                return
            if not host.ready_at:  # below its cap now: ready
                host.in_ring = True
                self._ring.append(host)
            else:
                self._offer(host)
        elif not host.active and not host.ready_at and not host.tat:
            del self._hosts[key]
        else:
            self._forget_if_idle(host)

    def set_gap(self, key: Hashable, seconds: float) -> None:
        """Start jobs of host ``key`` at least ``seconds`` apart (a crawl
        delay); ``0`` removes the gap. Redirect hops (``reserve``) count."""
        if seconds > 0:
            self._gaps[key] = seconds
        else:
            self._gaps.pop(key, None)

    def _hold_after_start(self, host: _Host[J], gap: float) -> None:
        until = self.clock() + gap
        if until > host.ready_at:
            host.ready_at = until

    def hold(self, key: Hashable, until: float) -> None:
        """Start no job of host ``key`` before ``until`` (jobs under way go on)."""
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = _Host(key)
        if until > host.ready_at:
            host.ready_at = until
        if not self._held(host):
            return
        if host.in_ring:
            self._ring.remove(host)
            host.in_ring = False
        if host.waiting:
            self._offer(host)
        elif not host.timed:
            # Remember the hold until it passes, then forget the idle host.
            self._timer(host)

    def reserve(self, key: Hashable) -> float:
        """Seconds until host ``key`` may start one more request (a redirect
        hop, which holds its slot already), taking its token now.

        The wait covers the host's hold (a pause) and its rate limit.
        """
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = _Host(key)
        gap = self._gaps.get(key, 0.0) if self._gaps else 0.0
        if not host.ready_at and self.rate is None and not gap:
            return 0.0
        now = self.clock()
        start = max(now, host.ready_at)
        if self.rate is not None:
            start = max(start, host.tat - self._tolerance)
            host.tat = max(host.tat, start) + self._interval
        if gap:
            host.ready_at = start + gap
        if not host.waiting and not host.active and not host.timed:
            self._timer(host, at=max(host.tat, host.ready_at))  # forget it later
        return start - now

    def held_until(self, key: Hashable) -> float:
        """The time before which host ``key`` starts nothing (0.0 if not held)."""
        host = self._hosts.get(key)
        return host.ready_at if host is not None and self._held(host) else 0.0

    def next_wakeup(self) -> float | None:
        """The earliest time a held host becomes ready, if any host is held."""
        return self._timers[0][0] if self._timers else None

    def remove(self, predicate: Callable[[J], bool]) -> list[J]:
        """Drop every waiting job for which ``predicate`` is true; return them."""
        removed: list[J] = []
        for host in list(self._hosts.values()):
            if not host.waiting:
                continue
            keep: deque[J] = deque()
            for job in host.waiting:
                (removed if predicate(job) else keep).append(job)
            host.waiting = keep
            if not keep:
                if host.in_ring:
                    self._ring.remove(host)
                    host.in_ring = False
                self._forget_if_idle(host)
        self.waiting -= len(removed)
        return removed

    def waiting_jobs(self) -> Iterator[J]:
        """Every waiting job, host by host (for inspection and tests)."""
        for host in self._hosts.values():
            yield from host.waiting

    def host_active(self, key: Hashable) -> int:
        """Jobs of host ``key`` started and not yet released."""
        host = self._hosts.get(key)
        return host.active if host is not None else 0
