"""Value objects: what is asked for (Request), what came back (Result), Stats."""

from __future__ import annotations

import codecs
import json as _json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ._config import TOKEN, Timeout, check_headers
from ._errors import FetchError, HTTPStatusError

__all__ = ["EMPTY_HEADERS", "Request", "Result", "Stats", "to_url"]

EMPTY_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())


def to_url(value: str | URL) -> URL:
    """Parse ``value`` into a URL; text yarl cannot parse becomes a relative URL.

    A relative URL is never fetched (it gives ``InvalidURL``), so a malformed
    port or IPv6 literal in one input is one failed result, not an exception.
    """
    if isinstance(value, URL):
        return value
    try:
        return URL(value)
    except ValueError:
        return URL.build(path=value, encoded=True)


@dataclass(frozen=True, slots=True, init=False)
class Request:
    """What to fetch: a frozen value object; equal fields make equal Requests.

    Args:
        url: an absolute http(s) URL (``str`` or ``yarl.URL``). Anything else
            is accepted here and gives a result whose error is ``InvalidURL``.
        method: the HTTP method, upper-cased.
        headers: headers for this request, over the Fetcher's ``headers``.
        params: query parameters added to the URL.
        data: the body: bytes, str, or a form mapping.
        json: a value sent as a JSON body (not together with ``data``).
        timeout: seconds, a [`Timeout`][asyncfetch.Timeout], or ``None`` for the Fetcher's.
        meta: any object of the caller's, handed back as ``result.meta``.

    Raises:
        TypeError: ``url`` is not a str or URL, ``method`` is not a str, or
            ``headers`` is not a mapping of str to str.
        ValueError: both ``data`` and ``json`` are given, a bad ``timeout``, a
            ``method`` that is not an HTTP token, or a header name or value
            that could inject lines (CR, LF, NUL).

    Example:
        ```python
        req = asyncfetch.Request("https://example.org/api", method="POST",
                                 json={"q": 1}, meta={"row": 17})
        result = await f.fetch(req)
        ```
    """

    url: URL
    method: str
    headers: Mapping[str, str] | None
    params: Any
    data: Any
    json: Any
    timeout: Timeout | None
    meta: Any

    def __init__(
        self,
        url: str | URL,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        params: Any = None,
        data: Any = None,
        json: Any = None,
        timeout: float | Timeout | None = None,
        meta: Any = None,
    ) -> None:
        set_ = object.__setattr__
        if not isinstance(url, URL):
            if not isinstance(url, str):
                raise TypeError(f"Request url must be a str or yarl.URL, not {url!r}")
            url = to_url(url)
        if not isinstance(method, str) or not method:
            raise TypeError(f"Request method must be a non-empty str, not {method!r}")
        if data is not None and json is not None:
            raise ValueError("Request takes data or json, not both")
        if headers is not None:
            if not isinstance(headers, Mapping):
                raise TypeError(f"Request headers must be a mapping, not {headers!r}")
            check_headers(headers, "Request headers")
        if not TOKEN.fullmatch(method):
            raise ValueError(f"Request method must be an HTTP token, not {method!r}")
        set_(self, "url", url)
        set_(self, "method", method.upper())
        set_(self, "headers", headers)
        set_(self, "params", params)
        set_(self, "data", data)
        set_(self, "json", json)
        set_(self, "timeout", None if timeout is None else Timeout.of(timeout))
        set_(self, "meta", meta)

    @classmethod
    def _get(cls, url: URL) -> Request:
        """A plain GET, built without re-validating (the hot path for str input)."""
        req = object.__new__(cls)
        set_ = object.__setattr__
        set_(req, "url", url)
        set_(req, "method", "GET")
        set_(req, "headers", None)
        set_(req, "params", None)
        set_(req, "data", None)
        set_(req, "json", None)
        set_(req, "timeout", None)
        set_(req, "meta", None)
        return req

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_request,
            (
                self.url,
                self.method,
                self.headers,
                self.params,
                self.data,
                self.json,
                self.timeout,
                self.meta,
            ),
        )


def _rebuild_request(url: URL, method: str, *rest: Any) -> Request:
    headers, params, data, json, timeout, meta = rest
    return Request(
        url,
        method=method,
        headers=headers,
        params=params,
        data=data,
        json=json,
        timeout=timeout,
        meta=meta,
    )


def _charset(headers: Mapping[str, str]) -> str | None:
    ctype = headers.get("Content-Type")
    if not ctype:
        return None
    for part in ctype.split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip("\"'") or None
    return None


@dataclass(frozen=True, slots=True, eq=False)
class Result:
    """The outcome of one input item: a response, an error, or both.

    An HTTP error status is data, not an error: a 404 is a result with
    ``status == 404``, ``error is None`` and ``ok is False``. A result never
    raises on access; call [`raise_for_status`][asyncfetch.Result.raise_for_status] to turn it into an
    exception.

    Attributes:
        request: the [`Request`][asyncfetch.Request] asked for (a ``str`` input is a GET).
        url: the final URL after redirects; on an error, the last one requested.
        status: the HTTP status, or ``None`` when no response came.
        reason: the reason phrase, or ``None``.
        headers: the response headers, case-insensitive (empty when none).
        content: the body; ``b""`` when there is none, when it was saved to a
            file, and on error results except ``ParseError``.
        error: ``None``, or the [`FetchError`][asyncfetch.FetchError] that ended the last attempt.
        attempts: attempts made; 0 when nothing was sent.
        elapsed: seconds from the first attempt's start to the end of the last.
        history: the URLs that answered with a redirect, the requested one first.
        parsed: what the ``parse`` callable returned, else ``None``.
        path: where the body was saved, else ``None``.
        depth: link depth in a crawl (seeds are 0); 0 outside a crawl.

    Example:
        ```python
        result = await f.fetch("https://example.org/")
        if result.ok:
            print(result.status, len(result.content), result.text[:80])
        else:
            print(result.url, result.status, result.error)
        ```
    """

    request: Request
    url: URL
    status: int | None = None
    reason: str | None = None
    headers: CIMultiDictProxy[str] = field(default_factory=lambda: EMPTY_HEADERS)
    content: bytes = b""
    error: FetchError | None = None
    attempts: int = 0
    elapsed: float = 0.0
    history: tuple[URL, ...] = ()
    parsed: Any = None
    path: Path | None = None
    depth: int = 0

    @property
    def meta(self) -> Any:
        """``request.meta``: the caller's object, unchanged."""
        return self.request.meta

    @property
    def ok(self) -> bool:
        """``True`` when there is no error and the status is below 400."""
        return self.error is None and self.status is not None and self.status < 400

    @property
    def text(self) -> str:
        """The body decoded with the ``Content-Type`` charset.

        UTF-8 with replacement characters is used when there is no charset,
        it is unknown, or the bytes are invalid in it.
        """
        content = self.content
        charset = _charset(self.headers)
        if charset:
            try:
                codecs.lookup(charset)
                return content.decode(charset)
            except (LookupError, UnicodeDecodeError):
                pass
        return content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON.

        Raises:
            ValueError: the body is not valid JSON (``json.JSONDecodeError``).
        """
        return _json.loads(self.content)

    def raise_for_status(self) -> Result:
        """Return the result if it is ``ok``; otherwise raise why it is not.

        Raises:
            FetchError: the stored ``error``, if there is one.
            HTTPStatusError: the status is 400 or more.

        Example:
            ```python
            data = (await f.fetch(url)).raise_for_status().json()
            ```
        """
        if self.error is not None:
            raise self.error
        if self.status is not None and self.status >= 400:
            reason = f" {self.reason}" if self.reason else ""
            raise HTTPStatusError(
                f"{self.url}: HTTP {self.status}{reason}",
                request=self.request,
                status=self.status,
            )
        return self

    def __repr__(self) -> str:
        if self.error is not None:
            what = f"{type(self.error).__name__}"
            if self.status is not None:
                what = f"{self.status} {what}"
        else:
            what = str(self.status)
        return f"<Result {what} {str(self.url)!r}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_result,
            (
                self.request,
                self.url,
                self.status,
                self.reason,
                list(self.headers.items()),
                self.content,
                self.error,
                self.attempts,
                self.elapsed,
                self.history,
                self.parsed,
                self.path,
                self.depth,
            ),
        )


_RESULT_SLOTS = tuple(
    Result.__dict__[name].__set__
    for name in (
        "request",
        "url",
        "status",
        "reason",
        "headers",
        "content",
        "error",
        "attempts",
        "elapsed",
        "history",
        "parsed",
        "path",
        "depth",
    )
)


def response_result(
    request: Request,
    url: URL,
    status: int,
    reason: str | None,
    headers: CIMultiDictProxy[str],
    content: bytes,
    attempts: int,
    elapsed: float,
    history: tuple[URL, ...],
    path: Path | None,
) -> Result:
    """``Result(...)`` for a response, about twice as fast as the frozen
    dataclass's ``__init__`` (the transport's hot path)."""
    result = object.__new__(Result)
    s = _RESULT_SLOTS
    s[0](result, request)
    s[1](result, url)
    s[2](result, status)
    s[3](result, reason)
    s[4](result, headers)
    s[5](result, content)
    s[6](result, None)
    s[7](result, attempts)
    s[8](result, elapsed)
    s[9](result, history)
    s[10](result, None)
    s[11](result, path)
    s[12](result, 0)
    return result


def _rebuild_result(
    request: Request,
    url: URL,
    status: int | None,
    reason: str | None,
    headers: list[tuple[str, str]],
    *rest: Any,
) -> Result:
    proxy = CIMultiDictProxy(CIMultiDict(headers)) if headers else EMPTY_HEADERS
    return Result(request, url, status, reason, proxy, *rest)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError  # the loop always returns


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of a Fetcher's counters, as of the moment it was taken.

    Attributes:
        completed: results delivered.
        ok: results with ``ok`` true.
        failed: results with an ``error``.
        retries: retry attempts made.
        bytes: body bytes received, after decompression, saved or not.
        in_flight: attempts under way now.
        by_status: final status -> number of results with it.
        elapsed: seconds since the Fetcher opened.

    Example:
        ```python
        print(f.stats)  # 1000 done (990 ok, 10 failed), 3 retries, ...
        ```
    """

    completed: int = 0
    ok: int = 0
    failed: int = 0
    retries: int = 0
    bytes: int = 0
    in_flight: int = 0
    by_status: Mapping[int, int] = field(default_factory=dict)
    elapsed: float = 0.0

    def __str__(self) -> str:
        rate = self.completed / self.elapsed if self.elapsed > 0 else 0.0
        statuses = " ".join(f"{k}:{v}" for k, v in sorted(self.by_status.items()))
        return (
            f"{self.completed} done ({self.ok} ok, {self.failed} failed), "
            f"{self.retries} {'retry' if self.retries == 1 else 'retries'}, "
            f"{_size(self.bytes)}, {self.in_flight} in flight, "
            f"{self.elapsed:.1f} s, {rate:.0f}/s"
            + (f" [{statuses}]" if statuses else "")
        )
