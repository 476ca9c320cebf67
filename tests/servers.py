"""Real loopback servers for the test suite.

Every server runs on one asyncio event loop owned by a background thread
(:class:`ServerThread`), so the servers can be shared by all tests for the whole
session while each test runs its own client event loop in the main thread.

* :class:`AppServer` is a well-behaved aiohttp application with many routes.
* :class:`RawServer` speaks raw bytes and misbehaves on purpose.

All public methods of the servers are synchronous and thread-safe: call them
directly from a test, whichever loop the test runs on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
import socket
import ssl
import struct
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from aiohttp import web

__all__ = [
    "CHARSET_TEXT",
    "AppServer",
    "RawServer",
    "ServerThread",
    "SiteServer",
    "eventually",
]

T = TypeVar("T")

#: Seconds a test-thread call waits for the server loop.
CALL_TIMEOUT = 10.0
#: Text served by ``/charset/{name}`` and friends.
CHARSET_TEXT = "héllo wörld"
#: Size of the oversized header value sent by ``/headers-big`` and ``big-header``.
BIG_HEADER_SIZE = 100 * 1024
#: Default decompressed size of the RawServer ``gzip-bomb`` body.
GZIP_BOMB_SIZE = 100 * 1024 * 1024

HTML_PAGE = (
    "<!doctype html>\n<html><head><meta charset='utf-8'><title>asyncfetch test"
    "</title></head>\n<body><h1>Hello</h1><p><a href='/ok'>ok</a></p></body></html>\n"
)


async def eventually(
    predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01
) -> None:
    """Poll ``predicate`` from async code until it is true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition still false after {timeout}s")
        await asyncio.sleep(interval)


class ServerThread:
    """A daemon thread running the one event loop that hosts every test server."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The server loop (starting the thread first if needed)."""
        self.start()
        assert self._loop is not None
        return self._loop

    def start(self) -> None:
        """Start the thread and its loop; a no-op when already running."""
        if self._thread is not None:
            return
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._main, args=(self._loop, ready), name="test-servers"
        )
        self._thread.daemon = True
        self._thread.start()
        if not ready.wait(CALL_TIMEOUT):
            raise RuntimeError("server thread did not start")

    @staticmethod
    def _main(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            try:
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        """Run ``coro`` on the server loop and block until it returns."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def stop(self) -> None:
        """Stop the loop (cancelling leftovers), close it and join the thread."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CALL_TIMEOUT)
        if self._thread.is_alive():  # pragma: no cover - a bug in a server
            raise RuntimeError("server thread did not stop")
        self._thread = None
        self._loop = None


class _BaseServer:
    """Shared plumbing: host/port, URL building and the lifecycle on the thread."""

    scheme = "http"

    def __init__(self, thread: ServerThread, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._thread = thread
        self._lock = threading.Lock()
        self._conns_open = 0
        self._conns_accepted = 0

    @property
    def origin(self) -> str:
        """``scheme://host:port`` without a trailing slash."""
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self) -> None:
        """Start listening on a random port (blocks until ready)."""
        self._thread.run(self._start())

    def stop(self) -> None:
        """Stop the server, closing every connection and in-flight handler."""
        self._thread.run(self._stop())

    async def _start(self) -> None:
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError

    def _conn_made(self) -> None:
        with self._lock:
            self._conns_open += 1
            self._conns_accepted += 1

    def _conn_lost(self) -> None:
        with self._lock:
            self._conns_open -= 1

    def connections_open(self) -> int:
        """TCP connections to this server that are open right now."""
        with self._lock:
            return self._conns_open

    def connections_accepted(self) -> int:
        """TCP connections accepted since the last :meth:`reset`."""
        with self._lock:
            return self._conns_accepted


def _int(request: web.Request, name: str, default: int = 0) -> int:
    """An int from the path (match_info) or the query string."""
    value = request.match_info.get(name, request.query.get(name))
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise web.HTTPBadRequest(text=f"bad int {name}={value!r}") from None


class AppServer(_BaseServer):
    """An aiohttp application serving the routes the tests need.

    See the ``_h_*`` handlers for the routes. ``connections_open()`` counts
    HTTP connections (for TLS: after the handshake) and drops as soon as the
    server sees the connection close.
    """

    def __init__(
        self,
        thread: ServerThread,
        host: str = "127.0.0.1",
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(thread, host)
        self.ssl_context = ssl_context
        self.scheme = "https" if ssl_context is not None else "http"
        self._runner: web.AppRunner | None = None
        self._conn_handlers: set[object] = set()
        self._total_hits = 0
        self._hits: Counter[str] = Counter()
        self._in_flight: Counter[str] = Counter()
        self._in_flight_total = 0
        self._max_in_flight: Counter[str] = Counter()
        self._max_in_flight_total = 0
        self._start_times: defaultdict[str, list[float]] = defaultdict(list)

    def url(self, path: str) -> str:
        """Absolute URL for ``path`` (kept verbatim, query included; "/" added)."""
        if not path.startswith("/"):
            path = "/" + path
        return self.origin + path

    # -- counters (test-thread API) ----------------------------------------

    def reset(self) -> None:
        """Zero the hit/concurrency counters (current in-flight counts stay)."""
        with self._lock:
            self._total_hits = 0
            self._conns_accepted = 0
            self._hits.clear()
            self._start_times.clear()
            self._max_in_flight = Counter(+self._in_flight)
            self._max_in_flight_total = self._in_flight_total

    def total_hits(self) -> int:
        """Requests to any route (including 404s) since the last reset."""
        with self._lock:
            return self._total_hits

    def hits(self, group: str) -> int:
        """Requests to ``/track/{group}`` since the last reset."""
        with self._lock:
            return self._hits[group]

    def max_in_flight(self, group: str) -> int:
        """Most ``/track/{group}`` requests seen in progress at once."""
        with self._lock:
            return self._max_in_flight[group]

    def max_in_flight_total(self) -> int:
        """Most ``/track/*`` requests (any group) seen in progress at once."""
        with self._lock:
            return self._max_in_flight_total

    def in_flight(self, group: str | None = None) -> int:
        """``/track`` requests in progress now, for ``group`` or in total."""
        with self._lock:
            return self._in_flight_total if group is None else self._in_flight[group]

    def start_times(self, group: str) -> list[float]:
        """``time.monotonic()`` at the start of each ``/track/{group}`` request."""
        with self._lock:
            return list(self._start_times[group])

    # -- lifecycle (server loop) -------------------------------------------

    async def _start(self) -> None:
        @web.middleware
        async def count_hits(
            request: web.Request,
            handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        ) -> web.StreamResponse:
            with self._lock:
                self._total_hits += 1
            return await handler(request)

        app = web.Application(middlewares=[count_hits], client_max_size=64 * 1024**2)
        ok_methods = ("GET", "POST", "PUT", "DELETE", "OPTIONS")  # GET adds HEAD
        app.router.add_routes([web.route(m, "/ok", self._h_ok) for m in ok_methods])
        app.router.add_routes(
            [
                web.get("/bytes/{n}", self._h_bytes),
                web.get("/status/{code}", self._h_status),
                web.get("/delay/{ms}", self._h_delay),
                web.get("/redirect/{n}", self._h_redirect),
                web.route("*", "/redirect-to", self._h_redirect_to),
                web.get("/redirect-loop", self._h_redirect_loop),
                web.get("/close", self._h_close),
                web.route("*", "/echo", self._h_echo),
                web.get("/gzip/{n}", self._h_gzip),
                web.get("/deflate/{n}", self._h_deflate),
                web.get("/charset/{name}", self._h_charset),
                web.get("/charset-none", self._h_charset_none),
                web.get("/charset-bad", self._h_charset_bad),
                web.get("/invalid-utf8", self._h_invalid_utf8),
                web.get("/json", self._h_json),
                web.get("/html", self._h_html),
                web.get("/retry-after/{seconds}", self._h_retry_after),
                web.get("/track/{group}", self._h_track),
                web.route("*", "/flaky/{key}", self._h_flaky),
                web.get("/any/{tail:.*}", self._h_ok),
                web.get("/slow-body/{n}", self._h_slow_body),
                web.get("/headers-big", self._h_headers_big),
                web.get("/hang", self._h_hang),
                web.get("/set-cookie", self._h_set_cookie),
            ]
        )
        runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=0.2, access_log=None
        )
        await runner.setup()
        self._hook_connections(runner)
        site = web.TCPSite(runner, self.host, 0, ssl_context=self.ssl_context)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]

    def _hook_connections(self, runner: web.AppRunner) -> None:
        """Wrap the low-level server's connection callbacks to count connections."""
        server = runner.server
        assert server is not None
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: Any, transport: asyncio.Transport) -> None:
            with self._lock:
                self._conn_handlers.add(handler)
            self._conn_made()
            made(handler, transport)

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            with self._lock:
                known = handler in self._conn_handlers
                self._conn_handlers.discard(handler)
            if known:
                self._conn_lost()
            lost(handler, exc)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        # Let the transports' close callbacks run before the loop goes away.
        for _ in range(3):
            await asyncio.sleep(0)

    # -- handlers ----------------------------------------------------------

    async def _h_ok(self, request: web.Request) -> web.StreamResponse:
        """``/ok`` (GET/HEAD/POST/PUT/DELETE/OPTIONS): 200 "ok"."""
        return web.Response(text="ok")

    async def _h_bytes(self, request: web.Request) -> web.StreamResponse:
        """``/bytes/{n}[?chunked=1]``: exactly n bytes of b"x"."""
        n = _int(request, "n")
        if request.query.get("chunked") != "1":
            return web.Response(body=b"x" * n, content_type="application/octet-stream")
        resp = web.StreamResponse()
        resp.content_type = "application/octet-stream"
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        piece = b"x" * 65536
        for start in range(0, n, len(piece)):
            await resp.write(piece[: n - start])
        await resp.write_eof()
        return resp

    async def _h_status(self, request: web.Request) -> web.StreamResponse:
        """``/status/{code}``: that status, body "status {code}" (none for 204/304)."""
        code = _int(request, "code")
        if code in (204, 304) or code < 200:
            return web.Response(status=code)
        return web.Response(status=code, text=f"status {code}")

    async def _h_delay(self, request: web.Request) -> web.StreamResponse:
        """``/delay/{ms}``: sleep, then 200 "ok"."""
        await asyncio.sleep(_int(request, "ms") / 1000)
        return web.Response(text="ok")

    async def _h_redirect(self, request: web.Request) -> web.StreamResponse:
        """``/redirect/{n}``: 302 to ``/redirect/{n-1}``; ``/redirect/0``: "done"."""
        n = _int(request, "n")
        if n <= 0:
            return web.Response(text="done")
        return web.Response(status=302, headers={"Location": f"/redirect/{n - 1}"})

    async def _h_redirect_to(self, request: web.Request) -> web.StreamResponse:
        """``/redirect-to?url=X&status=302[&delay=MS]``: ``Location: X``
        verbatim (after ``delay`` ms)."""
        if "url" not in request.query:
            raise web.HTTPBadRequest(text="url required")
        await asyncio.sleep(_int(request, "delay", 0) / 1000)
        status = _int(request, "status", 302)
        return web.Response(status=status, headers={"Location": request.query["url"]})

    async def _h_redirect_loop(self, request: web.Request) -> web.StreamResponse:
        """``/redirect-loop``: 302 to itself."""
        return web.Response(status=302, headers={"Location": "/redirect-loop"})

    async def _h_echo(self, request: web.Request) -> web.StreamResponse:
        """``/echo`` (any method): JSON method, path_qs, raw_path, headers, body.

        Header names keep the case the client sent; the last value wins.
        """
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path_qs": request.path_qs,
                "raw_path": request.raw_path,
                "headers": dict(request.headers.items()),
                "body": body.decode("latin-1"),
            }
        )

    async def _h_gzip(self, request: web.Request) -> web.StreamResponse:
        """``/gzip/{n}``: n bytes of b"a", gzip-encoded."""
        body = gzip.compress(b"a" * _int(request, "n"))
        return web.Response(
            body=body, content_type="text/plain", headers={"Content-Encoding": "gzip"}
        )

    async def _h_deflate(self, request: web.Request) -> web.StreamResponse:
        """``/deflate/{n}``: n bytes of b"a", zlib ("deflate") encoded."""
        body = zlib.compress(b"a" * _int(request, "n"))
        return web.Response(
            body=body,
            content_type="text/plain",
            headers={"Content-Encoding": "deflate"},
        )

    async def _h_charset(self, request: web.Request) -> web.StreamResponse:
        """``/charset/{name}``: CHARSET_TEXT in that charset, declared."""
        name = request.match_info["name"]
        try:
            body = CHARSET_TEXT.encode(name)
        except LookupError:
            raise web.HTTPBadRequest(text=f"unknown codec {name!r}") from None
        return web.Response(
            body=body, headers={"Content-Type": f"text/plain; charset={name}"}
        )

    async def _h_charset_none(self, request: web.Request) -> web.StreamResponse:
        """``/charset-none``: UTF-8 text, ``Content-Type: text/plain`` only."""
        return web.Response(
            body=CHARSET_TEXT.encode(), headers={"Content-Type": "text/plain"}
        )

    async def _h_charset_bad(self, request: web.Request) -> web.StreamResponse:
        """``/charset-bad``: UTF-8 text declared as ``charset=no-such-codec``."""
        return web.Response(
            body=CHARSET_TEXT.encode(),
            headers={"Content-Type": "text/plain; charset=no-such-codec"},
        )

    async def _h_invalid_utf8(self, request: web.Request) -> web.StreamResponse:
        """``/invalid-utf8``: declared UTF-8, body b"ok\\xff\\xfe"."""
        return web.Response(
            body=b"ok\xff\xfe", headers={"Content-Type": "text/plain; charset=utf-8"}
        )

    async def _h_json(self, request: web.Request) -> web.StreamResponse:
        """``/json``: ``{"hello": "world", "n": 1}``."""
        return web.json_response({"hello": "world", "n": 1})

    async def _h_html(self, request: web.Request) -> web.StreamResponse:
        """``/html``: a small HTML page."""
        return web.Response(text=HTML_PAGE, content_type="text/html")

    async def _h_retry_after(self, request: web.Request) -> web.StreamResponse:
        """``/retry-after/{seconds}``: 429 with ``Retry-After`` verbatim."""
        return web.Response(
            status=429,
            text="slow down",
            headers={"Retry-After": request.match_info["seconds"]},
        )

    async def _h_flaky(self, request: web.Request) -> web.StreamResponse:
        """``/flaky/{key}?fail=N&status=503&retry_after=S``: the first N
        requests for ``key`` get ``status`` (with ``Retry-After: S`` if given),
        later ones 200 with the request body echoed. Every request is counted
        and timed under the group ``flaky-{key}``."""
        key = f"flaky-{request.match_info['key']}"
        body = await request.read()
        with self._lock:
            self._hits[key] += 1
            self._start_times[key].append(time.monotonic())
            n = self._hits[key]
        if n <= _int(request, "fail"):
            headers = {}
            if "retry_after" in request.query:
                headers["Retry-After"] = request.query["retry_after"]
            return web.Response(
                status=_int(request, "status", 503), text="try later", headers=headers
            )
        return web.Response(body=body or b"ok")

    async def _h_track(self, request: web.Request) -> web.StreamResponse:
        """``/track/{group}?delay_ms=N``: record concurrency, sleep, 200 "ok"."""
        group = request.match_info["group"]
        delay = _int(request, "delay_ms") / 1000
        with self._lock:
            self._hits[group] += 1
            self._start_times[group].append(time.monotonic())
            self._in_flight[group] += 1
            self._in_flight_total += 1
            self._max_in_flight[group] = max(
                self._max_in_flight[group], self._in_flight[group]
            )
            self._max_in_flight_total = max(
                self._max_in_flight_total, self._in_flight_total
            )
        try:
            await asyncio.sleep(delay)
        finally:
            with self._lock:
                self._in_flight[group] -= 1
                self._in_flight_total -= 1
        return web.Response(text="ok")

    async def _h_slow_body(self, request: web.Request) -> web.StreamResponse:
        """``/slow-body/{n}?delay_ms=D``: headers now, then 10 pieces, each after D ms."""
        n = _int(request, "n")
        delay = _int(request, "delay_ms", 10) / 1000
        resp = web.StreamResponse()
        resp.content_type = "application/octet-stream"
        resp.content_length = n
        await resp.prepare(request)
        sizes = [n // 10 + (1 if i < n % 10 else 0) for i in range(10)]
        for size in sizes:
            await asyncio.sleep(delay)
            if size:
                await resp.write(b"x" * size)
        await resp.write_eof()
        return resp

    async def _h_headers_big(self, request: web.Request) -> web.StreamResponse:
        """``/headers-big``: one 100 KiB header value."""
        return web.Response(text="ok", headers={"X-Big": "b" * BIG_HEADER_SIZE})

    async def _h_close(self, request: web.Request) -> web.StreamResponse:
        """``/close``: "ok" with ``Connection: close``, then the server closes."""
        response = web.Response(text="ok")
        response.force_close()
        return response

    async def _h_hang(self, request: web.Request) -> web.StreamResponse:
        """``/hang``: never answers (cancelled on disconnect or server stop)."""
        await asyncio.sleep(3600)
        return web.Response(text="too late")  # pragma: no cover

    async def _h_set_cookie(self, request: web.Request) -> web.StreamResponse:
        """``/set-cookie``: ``Set-Cookie: a=1``."""
        return web.Response(text="ok", headers={"Set-Cookie": "a=1"})


_Mode = Callable[
    ["RawServer", asyncio.StreamReader, asyncio.StreamWriter, dict[str, str]],
    Awaitable[bool],
]
_MODES: dict[str, _Mode] = {}


class SiteServer(_BaseServer):
    """A small web site for crawls: pages with links, and a robots.txt.

    ``pages`` maps a path (with its query, if any) to the page's HTML body,
    or to ``"redirect:<location>"`` for a 302; any other path is a 404. ``robots`` is ``(status, text)`` for
    ``/robots.txt``, or ``None`` for a 404. Every request is recorded:
    ``hits(path)`` and ``starts(path)`` (monotonic times), in arrival order.
    """

    def __init__(self, thread: ServerThread, host: str = "127.0.0.1") -> None:
        super().__init__(thread, host)
        self.pages: dict[str, str] = {}
        self.robots: tuple[int, str] | None = None
        self.log: list[tuple[str, float, str]] = []  # (path_qs, time, user agent)
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` on this site."""
        return f"{self.origin}{path}"

    def hits(self, path: str) -> int:
        """How many requests asked for ``path`` (with its query)."""
        with self._lock:
            return sum(1 for p, _, _ in self.log if p == path)

    def starts(self, prefix: str = "/") -> list[float]:
        """Arrival times of the requests whose path starts with ``prefix``."""
        with self._lock:
            return [t for p, t, _ in self.log if p.startswith(prefix)]

    def paths(self) -> list[str]:
        """Every path asked for, in arrival order."""
        with self._lock:
            return [p for p, _, _ in self.log]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path_qs
        with self._lock:
            self.log.append(
                (path, time.monotonic(), request.headers.get("User-Agent", ""))
            )
        if request.path == "/robots.txt":
            if self.robots is None:
                raise web.HTTPNotFound()
            status, text = self.robots
            return web.Response(status=status, text=text)
        body = self.pages.get(path)
        if body is None:
            raise web.HTTPNotFound()
        if body.startswith("redirect:"):
            raise web.HTTPFound(body.removeprefix("redirect:"))
        return web.Response(text=body, content_type="text/html")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, 0)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]

    _stop = AppServer._stop


def _mode(name: str) -> Callable[[_Mode], _Mode]:
    """Register a RawServer mode; the handler returns True to keep the connection."""

    def register(func: _Mode) -> _Mode:
        _MODES[name] = func
        return func

    return register


def _head(status: str, *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1")


def _rst(writer: asyncio.StreamWriter) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _until_client_closes(reader: asyncio.StreamReader) -> None:
    """Discard input until EOF (the client closed) or the task is cancelled."""
    while await reader.read(65536):
        pass


async def _flush(writer: asyncio.StreamWriter) -> None:
    """Wait until asyncio's write buffer is empty (it is all in the kernel)."""
    writer.transport.set_write_buffer_limits(0)
    await writer.drain()


class RawServer(_BaseServer):
    """A raw-socket HTTP/1.1 "server" that misbehaves in the way the path says.

    The first path segment selects the mode (see ``url``); ``ok``, ``drip`` and
    ``gzip-bomb`` send a valid response and keep the connection alive, every
    other mode ends the connection. Unknown modes get a 404 (kept alive).
    """

    MODES = (
        "reset",
        "close",
        "garbage",
        "truncated",
        "reset-mid-body",
        "silence",
        "silent-body",
        "drip",
        "bad-chunked",
        "big-header",
        "ok",
        "gzip-bomb",
        "informational",
        "ok-then-close",
        "status-only",
        "flaky-reset",
    )

    def __init__(self, thread: ServerThread, host: str = "127.0.0.1") -> None:
        super().__init__(thread, host)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._hits: Counter[str] = Counter()
        self._bombs: dict[int, bytes] = {}
        #: Unexpected exceptions raised by connection handlers (should stay empty).
        self.errors: list[BaseException] = []

    def url(self, mode: str, **params: object) -> str:
        """``http://host:port/{mode}?params`` (params urlencoded)."""
        query = f"?{urlencode(params)}" if params else ""
        return f"{self.origin}/{mode}{query}"

    def reset(self) -> None:
        """Zero the request and connection counters."""
        with self._lock:
            self._hits.clear()
            self._conns_accepted = 0

    def hits(self, mode: str) -> int:
        """Requests received for ``mode`` since the last reset."""
        with self._lock:
            return self._hits[mode]

    def total_hits(self) -> int:
        """Requests received for any mode since the last reset."""
        with self._lock:
            return sum(self._hits.values())

    # -- lifecycle (server loop) -------------------------------------------

    async def _start(self) -> None:
        self._server = await asyncio.start_server(
            self._on_connect, self.host, 0, limit=64 * 1024
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for _ in range(3):
            await asyncio.sleep(0)

    def _on_connect(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._conn_made()
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._conn_lost()
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.errors.append(exc)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                if len(parts) != 3:
                    return
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if length:
                    await reader.readexactly(length)
                target = urlsplit(parts[1])
                mode = unquote(target.path.lstrip("/").split("/")[0])
                params = dict(parse_qsl(target.query))
                with self._lock:
                    self._hits[mode] += 1
                handler = _MODES.get(mode, RawServer._not_found)
                if not await handler(self, reader, writer, params):
                    return
        except (OSError, asyncio.IncompleteReadError):
            pass  # the client went away; that is its right
        finally:
            writer.close()

    # -- modes: each returns True to keep the connection alive --------------

    async def _not_found(
        self, r: asyncio.StreamReader, w: asyncio.StreamWriter, p: dict[str, str]
    ) -> bool:
        w.write(_head("404 Not Found", "Content-Length: 9") + b"not found")
        await w.drain()
        return True

    @_mode("ok")
    async def _ok(
        self, r: asyncio.StreamReader, w: asyncio.StreamWriter, p: dict[str, str]
    ) -> bool:
        w.write(
            _head("200 OK", "Content-Length: 2", "Content-Type: text/plain") + b"ok"
        )
        await w.drain()
        return True

    @_mode("flaky-reset")
    async def _flaky_reset(
        self, r: asyncio.StreamReader, w: asyncio.StreamWriter, p: dict[str, str]
    ) -> bool:
        """Reset the first ``fail`` requests for ``key``, then answer 200 "ok"."""
        group = f"flaky-reset-{p.get('key', '')}"
        with self._lock:
            self._hits[group] += 1
            n = self._hits[group]
        if n <= int(p.get("fail", "0")):
            _rst(w)
            return False
        return await self._ok(r, w, p)

    @_mode("reset")
    async def _reset(
        self, r: asyncio.StreamReader, w: asyncio.StreamWriter, p: dict[str, str]
    ) -> bool:
        _rst(w)
        return False

    @_mode("close")
    async def _close(
        self, r: asyncio.StreamReader, w: asyncio.StreamWriter, p: dict[str, str]
    ) -> bool:
        return False

    @_mode("garbage")
    async def _garbage(
        self, r: asyncio.StreamReader, w: asyncio.StreamWriter, p: dict[str, str]
    ) -> bool:
        w.write(b"this is not http\r\n\r\n")
        await w.drain()
        return False

    @_mode("truncated")
    async def _truncated(
        self, r: asyncio.StreamReader, w: asyncio.StreamWriter, p: dict[str, str]
    ) -> bool:
        w.write(_head("200 OK", "Content-Length: 1000") + b"t" * 100)
        await w.drain()
        return False

    @_mode("reset-mid-body")
    async def _reset_mid_body(
        self, r: asyncio.StreamReader, w: asyncio.StreamWriter, p: dict[str, str]
    ) -> bool:
        w.write(_head("200 OK", "Content-Length: 100000") + b"r" * 1000)
        await _flush(w)
        await asyncio.sleep(0.05)  # let the client read the head before the RST
        _rst(w)
        return False

    @_mode("silence")
    async def _silence(
        self, r: asyncio.StreamReader, w: asyncio.StreamWriter, p: dict[str, str]
    ) -> bool:
        await _until_client_closes(r)
        return False

    @_mode("silent-body")
    async def _silent_body(
        self, r: asyncio.StreamReader, w: asyncio.StreamWriter, p: dict[str, str]
    ) -> bool:
        w.write(_head("200 OK", "Content-Length: 10"))
        await w.drain()
        await _until_client_closes(r)
        return False

    @_mode("drip")
    async def _drip(
        self, r: asyncio.StreamReader, w: asyncio.StreamWriter, p: dict[str, str]
    ) -> bool:
        interval = int(p.get("interval_ms", "100")) / 1000
        w.write(_head("200 OK", "Content-Length: 100"))
        for _ in range(100):
            await w.drain()
            await asyncio.sleep(interval)
            w.write(b"d")
        await w.drain()
        return True

    @_mode("bad-chunked")
    async def _bad_chunked(
        self, r: asyncio.StreamReader, w: asyncio.StreamWriter, p: dict[str, str]
    ) -> bool:
        w.write(_head("200 OK", "Transfer-Encoding: chunked") + b"zz\r\n")
        await w.drain()
        return False

    @_mode("big-header")
    async def _big_header(
        self, r: asyncio.StreamReader, w: asyncio.StreamWriter, p: dict[str, str]
    ) -> bool:
        big = "X-Big: " + "b" * BIG_HEADER_SIZE
        w.write(_head("200 OK", big, "Content-Length: 2") + b"ok")
        await w.drain()
        return False

    @_mode("gzip-bomb")
    async def _gzip_bomb(
        self, r: asyncio.StreamReader, w: asyncio.StreamWriter, p: dict[str, str]
    ) -> bool:
        size = int(p.get("size", GZIP_BOMB_SIZE))
        if (body := self._bombs.get(size)) is None:
            body = self._bombs[size] = await asyncio.to_thread(_gzip_zeros, size)
        w.write(
            _head(
                "200 OK",
                "Content-Type: application/octet-stream",
                "Content-Encoding: gzip",
                f"Content-Length: {len(body)}",
            )
        )
        w.write(body)
        await w.drain()
        return True

    @_mode("status-only")
    async def _status_only(
        self, r: asyncio.StreamReader, w: asyncio.StreamWriter, p: dict[str, str]
    ) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\n")
        await w.drain()
        return False

    @_mode("informational")
    async def _informational(
        self, r: asyncio.StreamReader, w: asyncio.StreamWriter, p: dict[str, str]
    ) -> bool:
        """A 100 Continue and a 103 Early Hints before the 200 "ok"."""
        w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        w.write(_head("103 Early Hints", "Link: </style.css>; rel=preload"))
        return await self._ok(r, w, p)

    @_mode("ok-then-close")
    async def _ok_then_close(
        self, r: asyncio.StreamReader, w: asyncio.StreamWriter, p: dict[str, str]
    ) -> bool:
        """A keep-alive-looking 200 "ok", then the server closes the connection."""
        await self._ok(r, w, p)
        return False


def _gzip_zeros(size: int) -> bytes:
    """gzip of ``size`` zero bytes, built fast from one repeated 1 MiB deflate block.

    After ``Z_FULL_FLUSH`` the compressor starts afresh, so compressing another
    1 MiB of zeros yields the very same bytes: compress once, repeat.
    """
    block = 1024 * 1024
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate, own gzip framing
    piece = comp.compress(bytes(block)) + comp.flush(zlib.Z_FULL_FLUSH)
    whole, rest = divmod(size, block)
    tail = comp.compress(bytes(rest)) + comp.flush(zlib.Z_FINISH)
    crc = 0
    zeros = bytes(block)
    for _ in range(whole):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(bytes(rest), crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
    return header + piece * whole + tail + trailer


assert set(_MODES) == set(RawServer.MODES), set(_MODES) ^ set(RawServer.MODES)
