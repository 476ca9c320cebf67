"""Opening connections for the fast path: names, sockets, TLS, connect timeouts.

The fast path (``_h1``) pools and uses connections; this module opens them:
it resolves a host name (cached for ``DNS_TTL`` seconds, as aiohttp does),
tries each address in turn, wraps https in the TLS context aiohttp's
connector would use for ``verify``, and gives up at the connect timeout or
at the attempt's deadline, whichever comes first: ``ConnectTimeout`` for the
first, a plain ``asyncio.TimeoutError`` for the second. It does not import
aiohttp; ``_h1`` turns ``ConnectTimeout`` into aiohttp's own error.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar

from ._config import Timeout

__all__ = ["DNS_TTL", "ConnectTimeout", "Dialer", "Dialing"]

DNS_TTL: Final = 10.0  # seconds a name resolution is reused, as in aiohttp
_UNCANCEL: Final = hasattr(asyncio.Task, "uncancel")  # Python 3.11+

_P = TypeVar("_P", bound=asyncio.BaseProtocol)


class ConnectTimeout(asyncio.TimeoutError):
    """``timeout.connect`` passed before the connection was open."""


def _ssl_context(verify: bool | ssl.SSLContext) -> ssl.SSLContext:
    """The context aiohttp's connector would use for ``verify``."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify:
        context = ssl.create_default_context()
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.options |= ssl.OP_NO_COMPRESSION
        context.set_default_verify_paths()
    context.set_alpn_protocols(("http/1.1",))
    return context


def _connect_timeout_message(key: tuple[str, str, int]) -> str:
    return f"Connection timeout to host {key[1]}:{key[2]}"


class Dialing(Generic[_P]):
    """A connection being opened by :meth:`Dialer.dial`."""

    __slots__ = ("connect_bound", "key", "task")

    def __init__(
        self,
        key: tuple[str, str, int],
        task: asyncio.Task[tuple[asyncio.BaseTransport, _P]],
        connect_bound: bool,
    ) -> None:
        self.key = key
        self.task = task
        self.connect_bound = connect_bound  # its give-up time is the connect timeout


class Dialer(Generic[_P]):
    """Opens connections whose protocol ``factory`` makes, for one FastPath."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        verify: bool | ssl.SSLContext,
        factory: Callable[[], _P],
    ) -> None:
        self._loop = loop
        self._verify = verify
        self._factory = factory
        self._ssl: ssl.SSLContext | None = None  # made for the first https host
        self._dns: dict[tuple[str, int], tuple[float, list[str]]] = {}
        # Tasks opening a connection, and when they give up (loop time).
        self._opening: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()  # cancelled for that
        self._watchdog: asyncio.TimerHandle | None = None
        self._watchdog_at = 0.0

    def _known(self, host: str, port: int) -> list[str] | None:
        """The addresses of ``host`` if known without a lookup: an IP address
        is its own, a name resolved less than DNS_TTL seconds ago its cached
        ones."""
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        except OSError:
            pass
        else:
            return [host]
        cached = self._dns.get((host, port))
        if cached is not None and cached[0] > self._loop.time():
            return cached[1]
        return None

    async def _resolve(self, host: str, port: int) -> list[str]:
        """The addresses of ``host``, cached for DNS_TTL seconds."""
        known = self._known(host, port)
        if known is not None:
            return known
        infos = await self._loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG
        )
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if len(self._dns) > 10_000:
            self._dns.clear()
        self._dns[(host, port)] = (self._loop.time() + DNS_TTL, addresses)
        return addresses

    def _give_up(
        self, timeout: Timeout, deadline: float | None
    ) -> tuple[float | None, bool]:
        """When opening a connection gives up (loop time, or None for never),
        and whether that is the connect timeout (else the attempt's deadline)."""
        limit = timeout.connect
        give_up = None if limit is None else self._loop.time() + limit
        if deadline is not None and (give_up is None or deadline < give_up):
            return deadline, False
        return give_up, True

    def _tls(self, scheme: str, host: str) -> tuple[ssl.SSLContext | None, str | None]:
        """The TLS context and server name for ``scheme://host`` (None for http)."""
        if scheme != "https":
            return None, None
        if self._ssl is None:  # loads the CA store: once, and only for https
            self._ssl = _ssl_context(self._verify)
        return self._ssl, host.rstrip(".")

    def dial(
        self, key: tuple[str, str, int], timeout: Timeout, deadline: float | None
    ) -> Dialing[_P] | None:
        """Start opening a connection to ``key`` without a coroutine of ours,
        if its address is known without a lookup and is the only one.

        The task runs the loop's ``create_connection`` alone: on uvloop that
        is C from start to end, where :meth:`connect`'s chain of coroutines
        costs about 15 µs more per connection, most of what opening hundreds
        of connections at once spends beyond the loop's own work. The
        caller collects the outcome from the task's done callback with
        :meth:`dialed`. None when the name needs a lookup or has several
        addresses to try in turn: :meth:`connect` does those.
        """
        scheme, host, port = key
        addresses = self._known(host, port)
        if addresses is None or len(addresses) != 1:
            return None
        context, name = self._tls(scheme, host)
        loop = self._loop
        task = loop.create_task(
            loop.create_connection(
                self._factory, addresses[0], port, ssl=context, server_hostname=name
            )
        )
        give_up, connect_bound = self._give_up(timeout, deadline)
        if give_up is not None:
            self._watch(task, give_up)
        return Dialing(key, task, connect_bound)

    def dialed(self, dialing: Dialing[_P]) -> _P:
        """The connection a finished :meth:`dial` opened.

        Raises:
            ConnectTimeout: ``timeout.connect`` passed.
            asyncio.TimeoutError: the deadline passed first.
            asyncio.CancelledError: cancelled by someone else.
            OSError, ssl.SSLError: as ``loop.create_connection``.
        """
        task = dialing.task
        expired = task in self._expired
        self._unwatch(task)
        if task.cancelled():
            if not expired:
                raise asyncio.CancelledError
            if dialing.connect_bound:
                raise ConnectTimeout(_connect_timeout_message(dialing.key))
            raise asyncio.TimeoutError
        return task.result()[1]

    async def connect(
        self, key: tuple[str, str, int], timeout: Timeout, deadline: float | None
    ) -> _P:
        """A new connection to ``key`` (scheme, host, port).

        ``deadline`` (loop time) is the attempt's; the connection gives up at
        it or at ``timeout.connect``, whichever comes first.

        Raises:
            ConnectTimeout: ``timeout.connect`` passed.
            asyncio.TimeoutError: the deadline passed first.
            OSError, ssl.SSLError: as ``loop.create_connection``;
                ``_transport_errors`` translates them.
        """
        give_up, connect_bound = self._give_up(timeout, deadline)
        try:
            if give_up is None:
                return await self._open(key)
            task = asyncio.current_task()
            if task is None or not _UNCANCEL:  # pragma: no cover
                return await asyncio.wait_for(
                    self._open(key), give_up - self._loop.time()
                )
            return await self._open_watched(key, task, give_up)
        except asyncio.TimeoutError as exc:
            if connect_bound:
                raise ConnectTimeout(_connect_timeout_message(key)) from exc
            raise

    async def _open_watched(
        self, key: tuple[str, str, int], task: asyncio.Task[Any], give_up: float
    ) -> _P:
        """:meth:`_open`, cancelled by the watchdog at ``give_up`` (loop time).

        What ``asyncio.timeout`` does, without its timer, handle and context
        per connection (about 8 µs on uvloop, against 1 µs here): one timer
        serves every connection being opened, armed for the earliest give-up
        time. A cancellation from elsewhere stays a cancellation.
        """
        cancelling = task.cancelling()  # type: ignore[attr-defined]
        self._watch(task, give_up)
        try:
            return await self._open(key)
        except asyncio.CancelledError:
            if task in self._expired and task.uncancel() <= cancelling:  # type: ignore[attr-defined]
                raise asyncio.TimeoutError from None
            raise
        finally:
            self._unwatch(task)

    def _watch(self, task: asyncio.Task[Any], give_up: float) -> None:
        """Have the watchdog cancel ``task`` at ``give_up`` (loop time)."""
        self._opening[task] = give_up
        if self._watchdog is None or give_up < self._watchdog_at:
            self._arm_watchdog(give_up)

    def _unwatch(self, task: asyncio.Task[Any]) -> None:
        self._opening.pop(task, None)
        self._expired.discard(task)

    def _arm_watchdog(self, at: float) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._watchdog_at = at
        self._watchdog = self._loop.call_at(at, self._on_watchdog)

    def _on_watchdog(self) -> None:
        """Cancel the connection attempts whose time is up; re-arm for the rest."""
        self._watchdog = None
        now = self._loop.time()
        earliest = None
        for task, give_up in list(self._opening.items()):
            if give_up <= now:
                del self._opening[task]
                self._expired.add(task)
                task.cancel()
            elif earliest is None or give_up < earliest:
                earliest = give_up
        if earliest is not None:
            self._arm_watchdog(earliest)

    async def _open(self, key: tuple[str, str, int]) -> _P:
        scheme, host, port = key
        loop = self._loop
        context, name = self._tls(scheme, host)
        error: OSError | None = None
        for address in await self._resolve(host, port):
            try:
                _, proto = await loop.create_connection(
                    self._factory,
                    address,
                    port,
                    ssl=context,
                    server_hostname=name,
                )
            except ssl.SSLError:
                raise
            except OSError as exc:
                error = exc
                continue
            return proto
        assert error is not None
        raise error

    def close(self) -> None:
        """Stop the watchdog (the Fetcher is closing; its tasks are cancelled)."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
