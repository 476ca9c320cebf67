"""One attempt on aiohttp: with ``_h1`` (the fast path under it), the only
module that talks to aiohttp, and the only one that catches its errors
(``_dial``, which opens the fast path's connections, uses none of it).

An attempt is one request and the redirects it leads to, under one
[`Timeout`][asyncfetch.Timeout]. It never raises for a network problem: every
aiohttp, ``OSError``, ``ssl`` and timeout exception is translated here, most
specific first, into the [`FetchError`][asyncfetch.FetchError] stored on the
result, with the original exception as ``__cause__``.

Redirects are followed here rather than by aiohttp so that the history, the
``max_redirects`` semantics, the scheme check on every target and the
stripping of credentials across origins are ours.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ._config import USER_AGENT, Options, Timeout
from ._errors import (
    BodyTooLarge,
    FetchError,
    InvalidURL,
    SaveError,
    TooManyRedirects,
)
from ._h1 import Conn, FastPath, Response, fast_path_enabled
from ._input import HTTP_SCHEMES, host_key
from ._models import EMPTY_HEADERS, Request, Result, response_result
from ._save import BodyFile
from ._transport_errors import CATCH, error_class, translate

__all__ = ["Transport", "check_session", "error_class"]

_Response = aiohttp.ClientResponse | Response

REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
CREDENTIALS: Final = ("Authorization", "Cookie", "Proxy-Authorization")
REDIRECT_BODY_CAP: Final = 64 * 1024


def check_session(session: object) -> None:
    """Refuse a ``session`` option that is not an open aiohttp.ClientSession.

    Raises:
        ValueError: it is not a ClientSession, or it is closed.
    """
    if not isinstance(session, aiohttp.ClientSession):
        raise ValueError(f"session must be an aiohttp.ClientSession, not {session!r}")
    if session.closed:
        raise ValueError("session is closed; pass an open aiohttp.ClientSession")


def _client_timeout(timeout: Timeout, total: float | None) -> aiohttp.ClientTimeout:
    # ``connect`` maps to sock_connect (TCP connect and TLS handshake), never
    # to aiohttp's ``connect``, which also counts the wait for a pool slot
    # (aiohttp #10313). Our connector has no pool limit: the scheduler is.
    return aiohttp.ClientTimeout(
        total=total, connect=None, sock_connect=timeout.connect, sock_read=timeout.read
    )


def _origin(url: URL) -> tuple[str, str | None, int | None]:
    return (url.scheme, url.raw_host, url.port)


def _save_error(request: Request, url: URL, exc: OSError) -> SaveError:
    error = SaveError(f"{url}: cannot save the body: {exc}", request=request)
    error.__cause__ = exc
    return error


class _Failed(Exception):
    """Internal: ends an attempt with a FetchError built by this module."""

    def __init__(self, error: FetchError) -> None:
        self.error = error


class Transport:
    """Sends attempts through one aiohttp session (ours, or the caller's)."""

    def __init__(self, options: Options) -> None:
        self._options = options
        self._session: aiohttp.ClientSession | None = options.session
        self._owns_session = options.session is None
        self._timeouts: dict[Timeout, aiohttp.ClientTimeout] = {}
        self._last_timeout: Timeout | None = None
        self._last_client_timeout = aiohttp.ClientTimeout()
        self.bytes_received = 0
        headers: CIMultiDict[str] = CIMultiDict(options.headers)
        session_headers = options.session.headers if options.session is not None else {}
        if "User-Agent" not in headers and "User-Agent" not in session_headers:
            headers["User-Agent"] = USER_AGENT
        self._headers = CIMultiDictProxy(headers)
        # Our own session carries the default headers, so that a request
        # without headers of its own passes none (aiohttp merges them
        # cheaply); credentials stay per request, where a redirect to another
        # origin can drop them.
        credentials = CIMultiDict(
            (k, v) for k, v in headers.items() if k in CREDENTIALS
        )
        self._session_headers = CIMultiDict(
            (k, v) for k, v in headers.items() if k not in CREDENTIALS
        )
        if self._owns_session:
            self._default: Mapping[str, str] | None = credentials or None
        else:
            self._default = self._headers
        self._ssl: bool | ssl.SSLContext = (
            True if options.verify is True else options.verify
        )
        self._proxy = str(options.proxy) if options.proxy is not None else None
        self._fast: FastPath | None = None

    async def open(self) -> None:
        """Create our own session (unless the caller gave one).

        Raises:
            ValueError: the caller's session belongs to another event loop.
        """
        if not self._owns_session:
            session = self._session
            if session is not None and session._loop is not asyncio.get_running_loop():
                raise ValueError(
                    "session belongs to another event loop; create it inside the "
                    "coroutine that uses the Fetcher"
                )
            return
        connector = aiohttp.TCPConnector(
            limit=0, limit_per_host=0, ssl=self._options.verify
        )
        session = aiohttp.ClientSession(
            connector=connector,
            headers=self._session_headers,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        # aiohttp resends an idempotent request once, silently, when the
        # connection fails before a response (aiohttp #7363, #10790; no
        # public switch). Here every network attempt is ours: counted in
        # `attempts`, logged, and retried by the Retry policy.
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        self._session = session
        if self._proxy is None and fast_path_enabled():
            fast = FastPath(self._options, self._session_headers)
            self._fast = fast if fast.usable else None

    async def close(self) -> None:
        """Close our own session; a caller's session is left open."""
        session, self._session = self._session, None
        fast, self._fast = self._fast, None
        if fast is not None:
            await fast.close()
        if self._owns_session and session is not None:
            await session.close()

    @property
    def fast(self) -> FastPath | None:
        """The fast path under our own session, if it is in use."""
        return self._fast

    @property
    def max_bytes(self) -> int | None:
        """The body size beyond which a response fails with BodyTooLarge."""
        return self._options.max_bytes

    def encode(self, request: Request, url: URL) -> bytes | None:
        """The bytes of ``request``'s first hop on the fast path, or None if
        it must go through ClientSession (or there is no fast path)."""
        fast = self._fast
        if fast is None:
            return None
        headers = self._headers_for(request)
        return fast.encode(request.method, url, headers, request.data, request.json)

    def lane_result(
        self,
        request: Request,
        url: URL,
        message: Any,
        content: bytes,
        attempts: int,
        started: float,
    ) -> Result:
        """The result of a first hop that the lane read whole: ``message`` is
        aiohttp's response head, final (not a redirect, not 1xx), and
        ``content`` within ``max_bytes``."""
        self.bytes_received += len(content)
        return response_result(
            request,
            url,
            message.code,
            message.reason,
            message.headers,
            content,
            attempts,
            time.monotonic() - started,
            (),
            None,
        )

    def failed(
        self,
        request: Request,
        url: URL,
        exc: BaseException,
        attempts: int,
        started: float,
    ) -> Result:
        """The result of an attempt that failed before any response."""
        return Result(
            request,
            url,
            error=translate(exc, request, url, sent=False),
            attempts=attempts,
            elapsed=time.monotonic() - started,
        )

    def shed(self, url: URL) -> None:
        """Close the idle connections to ``url``'s origin beyond a few: the
        Fetcher has no work left that needs them."""
        if self._fast is not None:
            self._fast.shed(url)

    def _timeout(self, timeout: Timeout, deadline: float | None) -> Any:
        """The aiohttp timeout of one hop: the whole budget for the first hop,
        what is left of it for a redirect."""
        if deadline is None:
            if timeout is self._last_timeout:  # nearly always: the Fetcher's
                return self._last_client_timeout
            cached = self._timeouts.get(timeout)
            if cached is None:
                cached = _client_timeout(timeout, timeout.total)
                self._timeouts[timeout] = cached
            self._last_timeout, self._last_client_timeout = timeout, cached
            return cached
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise asyncio.TimeoutError
        return _client_timeout(timeout, remaining)

    def _headers_for(self, request: Request) -> Mapping[str, str] | None:
        if not request.headers:
            return self._default
        merged = CIMultiDict(self._default or ())
        merged.update(request.headers)
        return merged

    async def attempt(
        self,
        request: Request,
        url: URL,
        timeout: Timeout,
        *,
        attempts: int = 1,
        started: float | None = None,
        hop: Callable[[URL], float] | None = None,
        save: Callable[[URL], Path] | None = None,
        max_redirects: int | None = None,
        gate: Callable[[Request, URL], Awaitable[FetchError | None]] | None = None,
        via: Conn | None = None,
    ) -> Result:
        """Send ``request`` to ``url`` once, following redirects.

        Never raises a network error (it is on the result); cancellation
        propagates. ``hop(url)`` returns how long a redirect to ``url`` must
        wait for its host (its rate limit or pause); that wait is not counted
        in the timeout. ``save(url)`` names the file a final response with a
        status below 400 is streamed to (``content`` is then empty).
        ``max_redirects`` overrides the Fetcher's (a robots.txt: 5). ``gate``
        may refuse a redirect target (a crawl's robots.txt): its error ends
        the attempt, with the redirect's status. It is awaited once the
        redirect is read and its connection released (it may read the
        target's robots.txt first); its time is not counted in the timeout.
        ``via`` is a fast-path connection on which the lane has already sent
        the first hop: the attempt goes on from its response.
        """
        session = self._session
        if session is None:
            raise RuntimeError("the transport is not open")
        if max_redirects is None:
            max_redirects = self._options.max_redirects
        asked = url  # files are named from it, wherever redirects lead
        t0 = time.monotonic()
        first = t0 if started is None else started
        if via is not None:  # sent by the lane when the attempt started
            t0 = first
        deadline: float | None = None  # the first hop has the whole budget
        method = request.method
        headers = self._headers_for(request)
        data, json = request.data, request.json
        history: list[URL] = []
        status: int | None = None
        reason: str | None = None
        resp_headers: CIMultiDictProxy[str] = EMPTY_HEADERS
        sent = False
        fast = self._fast
        resp: _Response
        try:
            while True:
                sent = False
                payload = (
                    fast.encode(method, url, headers, data, json)
                    if fast is not None and via is None
                    else None
                )
                if via is not None:
                    assert fast is not None
                    conn, via = via, None
                    resp = await fast.receive(conn, host_key(url))
                elif payload is not None:
                    assert fast is not None
                    resp = await fast.send(method, url, payload, timeout, deadline)
                else:
                    resp = await session.request(
                        method,
                        url,
                        headers=headers,
                        data=data,
                        json=json,
                        allow_redirects=False,
                        raise_for_status=False,
                        timeout=(
                            self._last_client_timeout
                            if timeout is self._last_timeout and deadline is None
                            else self._timeout(timeout, deadline)
                        ),
                        proxy=self._proxy,
                        ssl=self._ssl,
                    )
                sent = True
                try:
                    status, reason = resp.status, resp.reason
                    resp_headers = resp.headers
                    location = (
                        resp_headers.get("Location") if status in REDIRECTS else None
                    )
                    if location is None or max_redirects == 0:
                        if location is not None:  # the 3xx response is the result
                            history.append(url)
                        sink = save if save is not None and status < 400 else None
                        content, path = await self._read(
                            resp, request, url, sink, asked
                        )
                        return self._result(
                            request, url, resp, content, attempts, first, history, path
                        )
                    history.append(url)
                    if len(history) > max_redirects:
                        raise _Failed(
                            TooManyRedirects(
                                f"{url}: more than {max_redirects} "
                                f"redirect{'s' if max_redirects > 1 else ''}",
                                request=request,
                            )
                        )
                    target = self._redirect_target(request, url, location)
                    await self._drain(resp)
                finally:
                    resp.release()
                gated = 0.0  # time the gate took (it may read a robots.txt)
                if gate is not None:
                    asked_at = time.monotonic()
                    refused = await gate(request, target)
                    if refused is not None:
                        raise _Failed(refused)
                    gated = time.monotonic() - asked_at
                if (status == 303 and method != "HEAD") or (
                    status in (301, 302) and method == "POST"
                ):
                    method, data, json = "GET", None, None
                if (
                    headers is not None
                    and _origin(target) != _origin(url)
                    and any(name in headers for name in CREDENTIALS)
                ):
                    headers = CIMultiDict(headers)
                    for name in CREDENTIALS:
                        headers.popall(name, None)
                if deadline is None and timeout.total is not None:
                    deadline = t0 + timeout.total
                if deadline is not None:
                    deadline += gated
                wait = hop(target) if hop is not None else 0.0
                if wait > 0:
                    await asyncio.sleep(wait)
                    if deadline is not None:
                        deadline += wait
                url = target
        except asyncio.CancelledError:
            raise
        except _Failed as failed:
            error = failed.error
        except CATCH as exc:
            error = translate(exc, request, url, sent=sent)
        if not sent:
            status, reason, resp_headers = None, None, EMPTY_HEADERS
        return Result(
            request,
            url,
            status,
            reason,
            resp_headers,
            b"",
            error,
            attempts,
            time.monotonic() - first,
            tuple(history),
        )

    def _result(
        self,
        request: Request,
        url: URL,
        resp: _Response,
        content: bytes,
        attempts: int,
        first: float,
        history: list[URL],
        path: Path | None,
    ) -> Result:
        return response_result(
            request,
            url,
            resp.status,
            resp.reason,
            resp.headers,
            content,
            attempts,
            time.monotonic() - first,
            tuple(history) if history else (),
            path,
        )

    def _redirect_target(self, request: Request, url: URL, location: str) -> URL:
        try:
            given = URL(location)
            if given.scheme and (
                given.scheme not in HTTP_SCHEMES or not given.raw_host
            ):
                raise _Failed(
                    InvalidURL(
                        f"{url}: redirect to {location!r}, not an http(s) URL",
                        request=request,
                    )
                )
            target = url.join(given)
        except ValueError as exc:
            raise _Failed(
                InvalidURL(
                    f"{url}: redirect to an invalid URL {location!r}", request=request
                )
            ) from exc
        if target.scheme not in HTTP_SCHEMES or not target.raw_host:
            raise _Failed(
                InvalidURL(
                    f"{url}: redirect to {location!r}, not an http(s) URL",
                    request=request,
                )
            )
        return target.with_fragment(None)

    async def _read(
        self,
        resp: _Response,
        request: Request,
        url: URL,
        save: Callable[[URL], Path] | None = None,
        asked: URL | None = None,
    ) -> tuple[bytes, Path | None]:
        """Read the body, stopping as soon as it passes ``max_bytes``; with
        ``save``, stream it to that file instead (then ``content`` is empty)."""
        limit = self._options.max_bytes
        if save is None and type(resp) is Response:
            body = resp.body_now()  # small bodies: all there with the head
            if body is not None:
                self.bytes_received += len(body)
                if limit is not None and len(body) > limit:
                    resp.close()
                    raise _Failed(self._too_large(request, url, limit))
                return body, None
        length = resp.content_length
        plain = "Content-Encoding" not in resp.headers
        if save is None and (
            limit is None or (plain and length is not None and length <= limit)
        ):
            # aiohttp stops at Content-Length: read in one go.
            body = await resp.read()
            self.bytes_received += len(body)
            return body, None
        if plain and length is not None and limit is not None and length > limit:
            raise _Failed(self._too_large(request, url, limit))
        sink = (
            self._open_sink(request, url, save, asked or url)
            if save is not None
            else None
        )
        try:
            stream = resp.content
            chunks: list[bytes] = []
            size = 0
            while True:
                chunk = await stream.readany()
                if not chunk:
                    break
                size += len(chunk)
                self.bytes_received += len(chunk)
                if limit is not None and size > limit:
                    resp.close()  # the rest is not wanted: drop the connection
                    raise _Failed(self._too_large(request, url, limit))
                if sink is None:
                    chunks.append(chunk)
                    continue
                try:
                    sink.write(chunk)
                except OSError as exc:
                    raise _Failed(_save_error(request, url, exc)) from exc
            if sink is not None:
                try:
                    path = sink.commit()
                except OSError as exc:
                    raise _Failed(_save_error(request, url, exc)) from exc
                sink = None
                return b"", path
        finally:
            if sink is not None:  # failed, oversized or cancelled: no file
                sink.discard()
        return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), None

    @staticmethod
    def _open_sink(
        request: Request, url: URL, save: Callable[[URL], Path], asked: URL
    ) -> BodyFile:
        try:
            return BodyFile(save(asked))
        except OSError as exc:
            raise _Failed(_save_error(request, url, exc)) from exc

    @staticmethod
    def _too_large(request: Request, url: URL, limit: int) -> BodyTooLarge:
        return BodyTooLarge(
            f"{url}: body larger than max_bytes={limit}", request=request
        )

    async def _drain(self, resp: _Response) -> None:
        """Read a small redirect body so the connection can be reused."""
        stream = resp.content
        size = 0
        while size <= REDIRECT_BODY_CAP:
            chunk = await stream.readany()
            if not chunk:
                return
            size += len(chunk)
        resp.close()
