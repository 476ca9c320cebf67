"""The HTTP/1.1 fast path: aiohttp's protocol and C parser, without ClientSession.

``aiohttp.ClientSession.request`` spends most of a small request's CPU time
building objects that a bulk fetcher does not need (``ClientRequest``,
``ClientResponse``, traces, the connector's bookkeeping). This module sends
the request bytes itself, on connections it pools itself (``_dial`` opens
them), and reads the response with aiohttp's own ``ResponseHandler``
protocol and its C response parser. What comes out is the same: the same
parser limits, decompression, ``StreamReader`` body and exceptions
(``ServerDisconnectedError``, ``ClientPayloadError``, ``SocketTimeoutError``,
``ConnectionTimeoutError``, ``HttpProcessingError``), so
``_transport_errors`` maps both paths alike.

It handles the common case: our own session, no proxy, an http(s) URL
without user info, a body that is absent, ``bytes``, ``str`` or JSON, and
headers that serialise safely. Anything else goes through ``ClientSession``
(:meth:`FastPath.encode` returns ``None``). The path is off when
``ASYNCFETCH_NO_FAST_PATH`` is set to a non-empty value, or when the
installed aiohttp lacks what it uses; the test suite runs on both paths.
"""

from __future__ import annotations

import asyncio
import json as json_module
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from aiohttp import client_exceptions as _cx
from aiohttp.client_proto import ResponseHandler
from aiohttp.streams import StreamReader
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ._config import Options, Timeout
from ._dial import ConnectTimeout, Dialer, Dialing
from ._input import host_key

__all__ = ["Conn", "FastPath", "fast_path_enabled"]

ENV_SWITCH: Final = "ASYNCFETCH_NO_FAST_PATH"
KEEPALIVE: Final = 15.0  # idle connections close after 1-2 of these (aiohttp: 15 s)
READ_SIZE: Final = 256 * 1024  # at most this much per read, as asyncio's own
IDLE_KEEP: Final = 8  # idle connections per origin kept once no work is left
ORIGINS_KEPT: Final = 1024  # origins whose GET bytes are kept; then it starts over
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
_NO_BODY_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# Hop-by-hop and framing headers we set ourselves; a caller who sets one
# gets ClientSession's handling of it instead.
_OURS: Final = frozenset(
    {"connection", "content-length", "transfer-encoding", "expect", "upgrade"}
)


def _accept_encoding() -> str:
    # What aiohttp advertises: the codings its parser can decode here.
    try:
        from aiohttp.compression_utils import HAS_BROTLI, HAS_ZSTD
    except ImportError:  # pragma: no cover - older aiohttp
        HAS_BROTLI = HAS_ZSTD = False
    codings = ["gzip", "deflate"]
    if HAS_BROTLI:  # pragma: no cover - brotli is not installed in the tests
        codings.append("br")
    if HAS_ZSTD:  # pragma: no cover - neither is zstandard
        codings.append("zstd")
    return ", ".join(codings)


# What this module uses of aiohttp's protocol (present since aiohttp 3.9).
_AVAILABLE: Final = all(
    hasattr(ResponseHandler, name)
    for name in ("set_response_params", "start_timeout", "should_close", "closed")
)


def fast_path_enabled() -> bool:
    """Whether new Fetchers may use the fast path (aiohttp fits, no opt-out)."""
    return _AVAILABLE and not os.environ.get(ENV_SWITCH)


def _serialise(headers: Mapping[str, str]) -> bytes:
    """Header lines; names and values were checked when the options and the
    Request were made (``check_headers``)."""
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode()


class Conn(ResponseHandler, asyncio.BufferedProtocol):
    """aiohttp's protocol, plus the deadline of the attempt it serves.

    One lazy timer per connection checks the deadline: a request moves the
    deadline, and the timer, when it fires early, re-arms for what is left.
    So a keep-alive connection costs about one timer per ``total`` seconds,
    not one per request.

    It reads through ``BufferedProtocol`` into a buffer shared by every
    connection of the FastPath (a read and its ``buffer_updated`` happen in
    one callback), then hands aiohttp's parser a copy of what arrived. With
    ``data_received`` the loop allocates a 256 KiB buffer per read, which
    glibc serves with mmap, mremap and munmap: three system calls and a page
    fault per response.

    A request sent by the lane (``_lane``) is waited for by nobody: the
    connection calls ``lane`` once its response has arrived (``head``) or
    the connection has failed, from the callback that learned it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, buffer: memoryview) -> None:
        super().__init__(loop)
        self._read_buffer = buffer
        self.deadline: float | None = None
        self.used = True  # since the last sweep of idle connections
        self.params: tuple[bool, float | None] | None = None  # of the parser
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._deadline_at = 0.0
        # Told once when the response to the request in flight has arrived
        # or the connection failed, instead of a task awaiting read().
        self.lane: Callable[[Conn], None] | None = None
        self.lane_job: Any = None  # what the lane sent this request for

    def data_received(self, data: bytes) -> None:
        """Parse ``data``; tell the lane if a response or an error is in."""
        super().data_received(data)
        if self.lane is not None and (self._buffer or self._exception is not None):
            self._tell_lane()

    def set_exception(self, *args: Any) -> None:
        """Fail the reader of this connection (and tell the lane)."""
        super().set_exception(*args)
        if self.lane is not None:
            self._tell_lane()

    def _tell_lane(self) -> None:
        lane, self.lane = self.lane, None
        if lane is not None:
            lane(self)

    def head(self) -> tuple[Any, StreamReader] | None:
        """The response that has arrived and is not taken yet, if the
        connection has not failed: (aiohttp's message, its body)."""
        if self._exception is not None or not self._buffer:
            return None
        return self._buffer[0][0]

    def take_head(self) -> None:
        """Take the response :meth:`head` returned (the lane read it)."""
        self._buffer.popleft()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport.

        aiohttp's own ``connection_made`` also sets ``TCP_NODELAY``, a
        second time: asyncio and uvloop set it on every TCP connection they
        open, and the extra call costs a socket object and a system call
        per connection.
        """
        self.transport = transport  # type: ignore[assignment]

    def resume_reading(self, resume_parser: bool = True) -> None:
        """Resume reading if anything paused it; else there is nothing to do.

        aiohttp's StreamReader calls this on every read and at every body's
        end; unpaused, the full call re-feeds the parser an empty chunk and
        asks the transport to resume, both no-ops (parsing only pauses
        through ``pause_reading``, which sets ``_reading_paused``).
        """
        if self._reading_paused or self._buffer_paused:
            super().resume_reading(resume_parser)

    def get_buffer(self, sizehint: int) -> memoryview:
        """Where the transport reads to (``BufferedProtocol``)."""
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        """Parse the ``nbytes`` just read (``BufferedProtocol``)."""
        self.data_received(bytes(self._read_buffer[:nbytes]))

    def arm(self, deadline: float) -> None:
        """Fail what the attempt waits for once ``deadline`` (loop time) passes."""
        self.deadline = deadline
        timer = self._deadline_timer
        if timer is None or self._deadline_at > deadline:
            if timer is not None:
                timer.cancel()
            self._deadline_at = deadline
            self._deadline_timer = self._loop.call_at(deadline, self._on_deadline)

    def _on_deadline(self) -> None:
        self._deadline_timer = None
        deadline = self.deadline
        if deadline is None or self.transport is None:
            return  # idle or closed: nothing waits
        if self._loop.time() < deadline:
            self.arm(deadline)
            return
        # As aiohttp's own timer would: a TimeoutError, not a cancellation.
        exc = asyncio.TimeoutError()
        self.set_exception(exc)
        payload = self._payload
        if payload is not None:
            payload.set_exception(exc)

    def drop(self) -> None:
        """Close the connection for good."""
        self.deadline = None
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        self.close()


class Response:
    """The part of ``aiohttp.ClientResponse`` that ``Transport`` uses."""

    __slots__ = ("_conn", "_key", "_pool", "content", "headers", "reason", "status")

    def __init__(
        self,
        pool: FastPath,
        key: tuple[str, str, int],
        conn: Conn,
        status: int,
        reason: str,
        headers: CIMultiDictProxy[str],
        content: StreamReader,
    ) -> None:
        self._pool = pool
        self._key = key
        self._conn: Conn | None = conn
        self.status = status
        self.reason = reason
        self.headers = headers
        self.content = content

    @property
    def content_length(self) -> int | None:
        """The Content-Length header as an int, if there is a valid one."""
        value = self.headers.get("Content-Length")
        if value is None or not value.isdigit():
            return None
        return int(value)

    def body_now(self) -> bytes | None:
        """The whole body if it has already arrived, else ``None``."""
        content = self.content
        if content.is_eof() and content.exception() is None:
            return content.read_nowait()
        return None

    async def read(self) -> bytes:
        """The whole body."""
        return await self.content.read()

    def release(self) -> None:
        """Give the connection back if the body was read in full, else close it."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if not conn.should_close and self.content.is_eof():
            conn.deadline = None
            self._pool.put(self._key, conn)
        else:
            conn.drop()

    def close(self) -> None:
        """Drop the connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.drop()


def _aiohttp_connect_timeout(exc: ConnectTimeout) -> Exception:
    """aiohttp's error for a connect timeout, as ClientSession raises it."""
    return _cx.ConnectionTimeoutError(*exc.args)


class FastPath:
    """Connections and requests of the fast path for one Transport."""

    def __init__(self, options: Options, session_headers: Mapping[str, str]) -> None:
        loop = self._loop = asyncio.get_running_loop()
        buffer = memoryview(bytearray(READ_SIZE))  # every connection reads here
        self._dialer = Dialer(loop, options.verify, lambda: Conn(loop, buffer))
        self._idle: dict[tuple[str, str, int], list[Conn]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False
        auto: CIMultiDict[str] = CIMultiDict(
            {"Accept": "*/*", "Accept-Encoding": _accept_encoding()}
        )
        auto.update(session_headers)
        self._auto = CIMultiDictProxy(auto)
        self._block_cache: dict[int, tuple[Mapping[str, str] | None, bytes | None]] = {}
        block = _serialise(auto) if not any(k.lower() in _OURS for k in auto) else None
        self._usable = block is not None
        self._block = block or b""
        self._block_end = self._block + b"\r\n"
        self._auto_host = "Host" in auto
        # A plain GET's bytes after its request line, per origin: the Host
        # line and the default headers (yarl computes the host line anew for
        # every URL object, about 1 microsecond).
        self._get_tails: dict[tuple[str, str], bytes] = {}

    @property
    def usable(self) -> bool:
        """False when the Fetcher's own headers need ClientSession's handling."""
        return self._usable

    def _headers_block(self, headers: Mapping[str, str] | None) -> bytes | None:
        """Our header lines merged with a request's (which win), or None."""
        if headers is None:
            return self._block
        cached = self._block_cache.get(id(headers))
        if cached is not None and cached[0] is headers:
            return cached[1]
        if any(k.lower() in _OURS for k in headers):
            block = None
        else:
            merged = CIMultiDict(self._auto)
            merged.update(headers)
            block = _serialise(merged)
        if len(self._block_cache) < 64:  # the Fetcher's defaults, mostly
            self._block_cache[id(headers)] = (headers, block)
        return block

    def _host_line(self, url: URL) -> str:
        if self._auto_host:
            return ""  # the Fetcher's headers name the host
        return f"Host: {url.host_port_subcomponent}\r\n"

    def _has(self, name: str, headers: Mapping[str, str] | None) -> bool:
        return name in self._auto or (headers is not None and name in headers)

    def encode(
        self,
        method: str,
        url: URL,
        headers: Mapping[str, str] | None,
        data: Any,
        json: Any,
    ) -> bytes | None:
        """The request's bytes, or ``None`` if ClientSession must send it."""
        if url.raw_user is not None:
            return None
        if headers is None and data is None and json is None and method == "GET":
            # nearly every request of a bulk fetch
            origin = (url.scheme, url.raw_authority)  # no user info: see above
            tail = self._get_tails.get(origin)
            if tail is None:
                if len(self._get_tails) >= ORIGINS_KEPT:
                    self._get_tails.clear()
                tail = self._host_line(url).encode() + self._block_end
                self._get_tails[origin] = tail
            return f"GET {url.raw_path_qs} HTTP/1.1\r\n".encode() + tail
        block = self._headers_block(headers)
        if block is None:
            return None
        # aiohttp's rules: a body has its length and its payload's type; no
        # body is "Content-Length: 0" except for GET, HEAD, OPTIONS and TRACE;
        # POST, PUT and PATCH default to application/octet-stream.
        body = b""
        length: int | None = 0
        content_type = "application/octet-stream" if method in _BODY_METHODS else None
        if json is not None:
            body = json_module.dumps(json).encode("utf-8")
            content_type = "application/json"
        elif data is None:
            if method in _NO_BODY_METHODS:
                length = None
        elif isinstance(data, bytes):
            body = data
            content_type = "application/octet-stream"
        elif isinstance(data, str):
            body = data.encode("utf-8")
            content_type = "text/plain; charset=utf-8"
        else:
            return None  # forms, files, streams: ClientSession's payloads
        extra = ""
        if not self._has("Host", headers):
            extra = self._host_line(url)
        if length is not None:
            extra += f"Content-Length: {len(body)}\r\n"
        if content_type is not None and not self._has("Content-Type", headers):
            extra += f"Content-Type: {content_type}\r\n"
        head = f"{method} {url.raw_path_qs} HTTP/1.1\r\n{extra}".encode()
        return b"".join((head, block, b"\r\n", body))

    async def send(
        self,
        method: str,
        url: URL,
        payload: bytes,
        timeout: Timeout,
        deadline: float | None,
    ) -> Response:
        """Send ``payload`` (from :meth:`encode`) and return the response head.

        Raises:
            OSError, ssl.SSLError, asyncio.TimeoutError, aiohttp.ClientError,
            aiohttp.http_exceptions.HttpProcessingError: as ClientSession would;
            ``_transport_errors`` translates them.
        """
        if deadline is not None:  # a redirect: what is left of the attempt's budget
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError
            deadline = self._loop.time() + left
        elif timeout.total is not None:
            deadline = self._loop.time() + timeout.total
        key = host_key(url)
        conn = self.take(key)
        if conn is None:
            conn = await self.open(key, timeout, deadline)
        try:
            self.write(conn, method, payload, timeout, deadline)
        except BaseException:
            conn.drop()
            raise
        return await self.receive(conn, key)

    async def open(
        self, key: tuple[str, str, int], timeout: Timeout, deadline: float | None
    ) -> Conn:
        """A new connection to ``key``, given up at ``timeout.connect`` or at
        ``deadline`` (loop time), whichever comes first.

        Raises:
            aiohttp.ConnectionTimeoutError: ``timeout.connect`` passed.
            asyncio.TimeoutError, OSError, ssl.SSLError: as ClientSession's.
        """
        try:
            return await self._dialer.connect(key, timeout, deadline)
        except ConnectTimeout as exc:
            raise _aiohttp_connect_timeout(exc) from exc.__cause__

    def dial(
        self, key: tuple[str, str, int], timeout: Timeout, deadline: float | None
    ) -> Dialing[Conn] | None:
        """Start opening a connection to ``key`` in a task of the loop's own
        (see ``Dialer.dial``), or None if :meth:`open` must do it."""
        return self._dialer.dial(key, timeout, deadline)

    def dialed(self, dialing: Dialing[Conn]) -> Conn:
        """The connection a finished :meth:`dial` opened.

        Raises:
            aiohttp.ConnectionTimeoutError: ``timeout.connect`` passed.
            asyncio.TimeoutError, OSError, ssl.SSLError: as :meth:`open`.
            asyncio.CancelledError: the task was cancelled by someone else.
        """
        try:
            return self._dialer.dialed(dialing)
        except ConnectTimeout as exc:
            raise _aiohttp_connect_timeout(exc) from None

    def write(
        self,
        conn: Conn,
        method: str,
        payload: bytes,
        timeout: Timeout,
        deadline: float | None,
    ) -> None:
        """Send a request on ``conn``; its response is given up at ``deadline``
        (loop time)."""
        params = (method == "HEAD", timeout.read)
        if conn.params != params:
            # A new parser; on a kept-alive connection the last one, which
            # ends each response ready for the next, is reused.
            conn.set_response_params(
                skip_payload=params[0], read_until_eof=True, read_timeout=params[1]
            )
            conn.params = params
        transport = conn.transport
        assert transport is not None
        transport.write(payload)
        if timeout.read is not None:
            conn.start_timeout()
        if deadline is not None:
            conn.arm(deadline)

    async def receive(self, conn: Conn, key: tuple[str, str, int]) -> Response:
        """The head of the response to the request just written on ``conn``
        (1xx interim responses skipped); ``conn`` is dropped on any error."""
        try:
            while True:
                message, content = await conn.read()
                code = message.code
                if code < 100 or code > 199 or code == 101:
                    break
            return Response(
                self, key, conn, code, message.reason, message.headers, content
            )
        except BaseException:
            conn.drop()
            raise

    def take(self, key: tuple[str, str, int]) -> Conn | None:
        """An idle connection to ``key``, if one is open."""
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.is_connected() and not conn.should_close:
                return conn
            conn.drop()
        return None

    def put(self, key: tuple[str, str, int], conn: Conn) -> None:
        """Keep ``conn`` (its response read in full) for the next request."""
        if self._closed:
            conn.drop()
            return
        idle = self._idle.get(key)
        if idle is None:
            idle = self._idle[key] = []
        conn.used = True
        idle.append(conn)
        if self._sweeper is None:
            self._sweeper = self._loop.call_later(KEEPALIVE, self._sweep)

    def shed(self, url: URL) -> None:
        """Close idle connections to ``url``'s origin beyond ``IDLE_KEEP``."""
        idle = self._idle.get(host_key(url))
        while idle is not None and len(idle) > IDLE_KEEP:
            idle.pop(0).drop()

    def _sweep(self) -> None:
        """Close the connections nobody used since the last sweep.

        A sweep every KEEPALIVE seconds: an idle connection is closed after
        between one and two KEEPALIVEs, with no clock read per request.
        """
        self._sweeper = None
        for key in list(self._idle):
            kept = []
            for conn in self._idle[key]:
                if conn.used and conn.is_connected():
                    conn.used = False
                    kept.append(conn)
                else:
                    conn.drop()
            if kept:
                self._idle[key] = kept
            else:
                del self._idle[key]
        if self._idle:
            self._sweeper = self._loop.call_later(KEEPALIVE, self._sweep)

    async def close(self) -> None:
        """Close every idle connection and wait (briefly) until they are closed."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._dialer.close()
        waiters = []
        for idle in self._idle.values():
            for conn in idle:
                closed = conn.closed
                if closed is not None:
                    waiters.append(closed)
                conn.drop()
        self._idle.clear()
        if waiters:
            done, _ = await asyncio.wait(waiters, timeout=2.0)
            for future in done:
                future.exception()  # retrieved: an unclean close is not an error
