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

__all__ = ["DNS_TTL", "ConnectTimeout", "Dialer"]

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

    async def _resolve(self, host: str, port: int) -> list[str]:
        """The addresses of ``host``, cached for DNS_TTL seconds."""
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        except OSError:
            pass
        else:
            return [host]
        now = self._loop.time()
        cached = self._dns.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        infos = await self._loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG
        )
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if len(self._dns) > 10_000:
            self._dns.clear()
        self._dns[(host, port)] = (now + DNS_TTL, addresses)
        return addresses

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
        limit = timeout.connect
        connect_bound = True
        loop = self._loop
        give_up = None if limit is None else loop.time() + limit
        if deadline is not None and (give_up is None or deadline < give_up):
            give_up, connect_bound = deadline, False
        try:
            if give_up is None:
                return await self._open(key)
            task = asyncio.current_task()
            if task is None or not _UNCANCEL:  # pragma: no cover
                return await asyncio.wait_for(self._open(key), give_up - loop.time())
            return await self._open_watched(key, task, give_up)
        except asyncio.TimeoutError as exc:
            if connect_bound:
                raise ConnectTimeout(
                    f"Connection timeout to host {key[1]}:{key[2]}"
                ) from exc
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
        self._opening[task] = give_up
        if self._watchdog is None or give_up < self._watchdog_at:
            self._arm_watchdog(give_up)
        try:
            return await self._open(key)
        except asyncio.CancelledError:
            if task in self._expired and task.uncancel() <= cancelling:  # type: ignore[attr-defined]
                raise asyncio.TimeoutError from None
            raise
        finally:
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
        context = None
        if scheme == "https":
            if self._ssl is None:  # loads the CA store: once, and only for https
                self._ssl = _ssl_context(self._verify)
            context = self._ssl
        name = host.rstrip(".") if context is not None else None
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
