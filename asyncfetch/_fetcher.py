"""Fetcher: the lifetime of one session and every way to fetch through it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import os
import ssl
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
)
from contextlib import aclosing
from pathlib import Path
from types import TracebackType
from typing import Any, TypeAlias

from yarl import URL

from ._config import (
    DEFAULT_MAX_BYTES,
    USER_AGENT,
    Options,
    Retry,
    Timeout,
    _at_least_zero,
    _optional_count,
)
from ._crawl import Crawl
from ._engine import Engine
from ._input import is_async
from ._models import Request, Result, Stats
from ._parse import ParseStage, check_parse
from ._runs import ListRun, StreamRun, SubmitRun
from ._save import SaveDir

__all__ = ["Fetcher", "URLInput", "URLs"]

URLInput: TypeAlias = "str | URL | Request"
URLs: TypeAlias = "Iterable[URLInput] | AsyncIterable[URLInput]"


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Fetcher:
    """Fetches many URLs concurrently through one session, fairly across hosts.

    Use it as ``async with Fetcher(...) as f:`` and call [`stream`][asyncfetch.Fetcher.stream],
    [`fetch_all`][asyncfetch.Fetcher.fetch_all], [`fetch`][asyncfetch.Fetcher.fetch] or [`submit`][asyncfetch.Fetcher.submit] inside; or give it
    ``urls`` and iterate over it directly, which opens and closes it for you.

    Every option is keyword-only and validated here, before any request.

    Args:
        urls: optional input for ``async for result in Fetcher(urls)``: any
            iterable or async iterable of ``str``, ``yarl.URL`` or
            [`Request`][asyncfetch.Request], read lazily.
        concurrency: requests in flight at once, all hosts together.
        per_host: requests in flight at once to one host (scheme, host,
            port); ``None`` for no cap beyond ``concurrency``.
        rate: request starts per second to one host; ``None``: unlimited.
        timeout: seconds per attempt, or a [`Timeout`][asyncfetch.Timeout]. The clock starts
            when the attempt gets its slot.
        retries: retries after the first attempt, or a [`Retry`][asyncfetch.Retry].
        max_bytes: the largest body kept, counted after decompression;
            ``None``: no cap.
        max_redirects: redirects followed; one more gives ``TooManyRedirects``;
            0 returns the 3xx response itself.
        headers: default headers for every request. ``User-Agent:
            asyncfetch/<version>`` is sent unless one is given here, on the
            Request, or in ``session``'s default headers.
        verify: TLS verification: ``True``, ``False`` or an ``ssl.SSLContext``.
        proxy: an http(s) proxy URL.
        session: your own ``aiohttp.ClientSession`` on the running loop: used,
            never closed. Cookies, connector limits and TLS settings are then
            yours.
        max_host_failures: attempts in a row ending before a response that
            open a host's breaker; ``None``: never.
        progress: a callable that receives a [`Stats`][asyncfetch.Stats] snapshot as
            results arrive (at most every 0.1 s, and when a call ends).

    Raises:
        ValueError: an option has a bad value or type; the message names it.

    Example:
        ```python
        async with asyncfetch.Fetcher(concurrency=50, per_host=4) as f:
            async for result in f.stream(urls):
                print(result.status, result.url)
            print(f.stats)
        ```
    """

    def __init__(
        self,
        urls: URLs | None = None,
        /,
        *,
        concurrency: int = 100,
        per_host: int | None = None,
        rate: float | None = None,
        timeout: float | Timeout | None = 30.0,
        retries: int | Retry = 2,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        max_redirects: int = 10,
        headers: dict[str, str] | None = None,
        verify: bool | ssl.SSLContext = True,
        proxy: str | URL | None = None,
        session: Any = None,
        max_host_failures: int | None = 20,
        progress: bool | Callable[[Stats], object] = False,
    ) -> None:
        self._options = Options.from_kwargs(
            concurrency=concurrency,
            per_host=per_host,
            rate=rate,
            timeout=timeout,
            retries=retries,
            max_bytes=max_bytes,
            max_redirects=max_redirects,
            headers=headers,
            verify=verify,
            proxy=proxy,
            session=session,
            max_host_failures=max_host_failures,
            progress=progress,
        )
        if urls is not None:
            is_async(urls)  # TypeError now for a single str or a non-iterable
        self._urls = urls
        self._state = _State.NEW
        self._engine: Engine | None = None
        self._submissions: SubmitRun | None = None
        self._last_stats = Stats()

    def __repr__(self) -> str:
        return f"<Fetcher {self._state.value} concurrency={self._options.concurrency}>"

    # -- lifetime --------------------------------------------------------

    async def __aenter__(self) -> Fetcher:
        if self._state is not _State.NEW:
            raise RuntimeError("a Fetcher can be entered only once; create a new one")
        engine = Engine(self._options)
        await engine.transport.open()
        self._engine = engine
        self._submissions = SubmitRun(engine)
        self._state = _State.OPEN
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        engine, submissions = self._engine, self._submissions
        if engine is None or submissions is None:  # pragma: no cover - set together
            return
        self._state = _State.CLOSING
        try:
            if exc_type is None:
                for run in list(engine.runs):
                    if run is not submissions:
                        run.cancel()  # streams still open: their work is not wanted
                await submissions.drain()  # like a TaskGroup: submitted work finishes
        finally:
            try:
                await engine.stop()
            finally:
                self._last_stats = engine.stats()
                self._state = _State.CLOSED
                await engine.transport.close()

    def _open_engine(self, what: str) -> Engine:
        if self._state is _State.OPEN and self._engine is not None:
            return self._engine
        if self._state is _State.NEW:
            raise RuntimeError(
                f"Fetcher.{what}() called before the Fetcher was opened; "
                "use it inside 'async with asyncfetch.Fetcher(...) as f:'"
            )
        raise RuntimeError(f"Fetcher.{what}() called after the Fetcher was closed")

    def _open_submissions(self, what: str) -> SubmitRun:
        self._open_engine(what)
        if self._submissions is None:  # pragma: no cover - set together on open
            raise RuntimeError(f"Fetcher.{what}() called on a Fetcher that is not open")
        return self._submissions

    @property
    def stats(self) -> Stats:
        """A snapshot of the counters (frozen at close once the Fetcher is closed)."""
        if self._state is _State.CLOSED or self._engine is None:
            return self._last_stats
        return self._engine.stats()

    # -- the ways in -----------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Result]:
        if self._urls is None:
            raise TypeError(
                "this Fetcher has no urls to iterate: use Fetcher(urls), "
                "or 'async for result in f.stream(urls)'"
            )
        return self._iterate(self._urls)

    async def _iterate(self, urls: URLs) -> AsyncIterator[Result]:
        if self._state is _State.OPEN:
            async with aclosing(self.stream(urls)) as results:
                async for result in results:
                    yield result
            return
        async with self, aclosing(self.stream(urls)) as results:
            async for result in results:
                yield result

    def stream(
        self,
        urls: URLs,
        *,
        ordered: bool = False,
        parse: Callable[[Result], Any] | None = None,
        executor: concurrent.futures.Executor | None = None,
        save_to: str | os.PathLike[str] | None = None,
    ) -> AsyncGenerator[Result, None]:
        """Fetch ``urls`` and yield each result as it completes.

        Input is read lazily, at most ``2 * concurrency + 100`` items ahead of
        what has been yielded (parses under way count too), so memory stays
        flat however long the input. Breaking out of the loop cancels what
        this stream has in flight.

        Args:
            urls: an iterable or async iterable of ``str``, ``yarl.URL`` or
                [`Request`][asyncfetch.Request].
            ordered: yield in input order instead of completion order.
            parse: a callable run on every ``ok`` result; what it returns is
                ``result.parsed``. If it raises, the result gets a
                ``ParseError`` (the exception is its ``__cause__``).
            executor: where ``parse`` runs: ``None`` for the event loop (an
                ``async def`` callable is awaited there), or a
                ``concurrent.futures`` thread or process pool.
            save_to: a folder (created if needed): each body with a status
                below 400 is streamed to a file there, named from its URL
                (``result.path``; ``content`` is then empty).

        Raises:
            RuntimeError: the Fetcher is not open.
            TypeError: ``urls`` is not iterable; a bad ``parse``/``executor``;
                or, when it is reached, an item that is not a str, URL or
                Request (after the results of the items before it).
            ValueError: ``executor`` without ``parse``, or a ``save_to`` that
                cannot be created or is not a folder.

        Example:
            ```python
            async for result in f.stream(urls, ordered=True):
                print(result.status, result.url)

            with concurrent.futures.ProcessPoolExecutor() as pool:
                async for result in f.stream(urls, parse=title, executor=pool):
                    print(result.parsed)
            ```
        """
        self._open_engine("stream")
        is_async(urls)
        check_parse(parse, executor)
        saver = SaveDir(save_to).path_for if save_to is not None else None
        return self._stream(urls, ordered, parse, executor, saver)

    async def _stream(
        self,
        urls: URLs,
        ordered: bool,
        parse: Callable[[Result], Any] | None,
        executor: concurrent.futures.Executor | None,
        saver: Callable[[URL], Path] | None,
    ) -> AsyncGenerator[Result, None]:
        engine = self._open_engine("stream")
        run = StreamRun(engine, urls, ordered)
        run.save = saver
        if parse is not None:
            run.parse_stage = ParseStage(parse, executor, engine.loop)
        try:
            run.start(urls)
            async for result in run.results():
                yield result
        finally:
            await run.aclose()

    async def fetch_all(
        self,
        urls: URLs,
        *,
        parse: Callable[[Result], Any] | None = None,
        executor: concurrent.futures.Executor | None = None,
        save_to: str | os.PathLike[str] | None = None,
    ) -> list[Result]:
        """Fetch ``urls`` and return every result, in input order.

        Never raises for a failed URL: each failure is a result with an
        ``error``. Cancelling the call cancels what it has in flight.

        Args:
            urls: an iterable or async iterable of ``str``, ``yarl.URL`` or
                [`Request`][asyncfetch.Request].
            parse: a callable run on every ``ok`` result (see
                [`stream`][asyncfetch.Fetcher.stream]).
            executor: where ``parse`` runs (see
                [`stream`][asyncfetch.Fetcher.stream]).
            save_to: a folder to stream bodies to (see
                [`stream`][asyncfetch.Fetcher.stream]).

        Raises:
            RuntimeError: the Fetcher is not open.
            TypeError: ``urls`` is not iterable, an item is not a str, URL
                or Request, or a bad ``parse``/``executor``.
            ValueError: ``executor`` without ``parse``, or a bad ``save_to``.

        Example:
            ```python
            results = await f.fetch_all(["https://example.org/", "https://example.com/"])
            ```
        """
        engine = self._open_engine("fetch_all")
        check_parse(parse, executor)
        saver = SaveDir(save_to).path_for if save_to is not None else None
        run = ListRun(engine, urls)
        run.save = saver
        if parse is not None:
            run.parse_stage = ParseStage(parse, executor, engine.loop)
        try:
            run.start(urls)
            return await run.collect()
        finally:
            await run.aclose()

    def submit(self, url: URLInput) -> asyncio.Future[Result]:
        """Schedule one request now and return a future for its result.

        The request starts as soon as the limits allow, whether or not the
        future is awaited; leaving the ``async with`` normally waits for it.
        Cancelling the future cancels the request.

        Args:
            url: a ``str``, ``yarl.URL`` or [`Request`][asyncfetch.Request].

        Raises:
            RuntimeError: the Fetcher is not open.
            TypeError: ``url`` is not a str, URL or Request.

        Example:
            ```python
            futures = [f.submit(u) for u in urls]
            for result in await asyncio.gather(*futures):
                print(result.status)
            ```
        """
        return self._open_submissions("submit").submit(url)

    async def download(self, url: URLInput, path: str | os.PathLike[str]) -> Result:
        """Fetch one URL and stream its body to ``path``.

        The body goes to a temporary file in the same folder and is renamed
        to ``path`` once complete, so the file appears whole or not at all:
        a failed, cancelled or oversized (``max_bytes``) download leaves no
        file behind and a file already at ``path`` untouched. Only a result
        with no error and a status below 400 is saved (``result.path``,
        ``content == b""``); any other keeps its body in ``content``.

        Args:
            url: a ``str``, ``yarl.URL`` or [`Request`][asyncfetch.Request].
            path: the file to write; missing parent folders are created.

        Raises:
            RuntimeError: the Fetcher is not open.
            TypeError: ``url`` is not a str, URL or Request.

        Example:
            ```python
            result = await f.download("https://example.org/big.iso", "big.iso")
            print(result.path, result.error)
            ```
        """
        submissions = self._open_submissions("download")
        target = Path(path)
        return await submissions.submit(url, save=lambda _: target)

    async def fetch(self, url: URLInput) -> Result:
        """Fetch one URL and return its result (errors are on the result).

        Args:
            url: a ``str``, ``yarl.URL`` or [`Request`][asyncfetch.Request].

        Raises:
            RuntimeError: the Fetcher is not open.
            TypeError: ``url`` is not a str, URL or Request.

        Example:
            ```python
            result = await f.fetch("https://example.org/")
            ```
        """
        self._open_engine("fetch")
        return await self.submit(url)

    def crawl(
        self,
        seeds: Iterable[URLInput],
        *,
        follow: Callable[[Result], Any] | None = None,
        max_depth: int | None = None,
        max_pages: int | None = None,
        same_host: bool = True,
        robots: bool = True,
    ) -> AsyncGenerator[Result, None]:
        """Crawl from ``seeds``, breadth-first, yielding results as they complete.

        Every URL is requested at most once (compared with scheme and host
        lower-cased, the default port and the fragment dropped); a result's
        ``depth`` is 0 for a seed and one more than the page where a link was
        first found. Everything runs under this Fetcher's limits, retries,
        pauses and breaker.

        Args:
            seeds: the starting URLs (``str``, ``yarl.URL`` or
                [`Request`][asyncfetch.Request]).
            follow: called with each ``ok`` result; returns the URLs to visit
                next (str, URL or Request; relative ones are resolved against
                ``result.url``). A function, an ``async def`` function or an
                async generator function. Default:
                [`asyncfetch.links`][asyncfetch.links].
            max_depth: links found on pages at this depth are not followed;
                ``None`` for no limit.
            max_pages: stop after this many results (failed and
                ``Disallowed`` ones included); ``None`` for no limit.
            same_host: follow only links to the seeds' host names (any
                scheme or port).
            robots: obey each origin's robots.txt (fetched once, before the
                first request there) and its ``Crawl-delay`` (a least gap
                between request starts to that host while the crawl runs);
                forbidden URLs give results whose error is ``Disallowed``.
                Redirect targets are checked too where that origin's
                robots.txt has been read.

        Raises:
            RuntimeError: the Fetcher is not open.
            TypeError: a seed, or an item ``follow`` returns, is not a str,
                URL or Request.
            ValueError: ``max_depth`` or ``max_pages`` is negative / below 1.
            Exception: whatever ``follow`` raises, after everything in flight
                is cancelled.

        Example:
            ```python
            async with asyncfetch.Fetcher(per_host=4) as f:
                async for result in f.crawl(["https://example.org/"], max_depth=2):
                    print(result.depth, result.status, result.url)
            ```
        """
        engine = self._open_engine("crawl")
        max_depth = _at_least_zero("max_depth", max_depth, allow_none=True)
        max_pages = _optional_count("max_pages", max_pages)
        if follow is not None and not callable(follow):
            raise TypeError(f"follow must be callable, not {follow!r}")
        if isinstance(seeds, (str, URL, Request)):
            seeds = [seeds]
        session_headers = getattr(self._options.session, "headers", {})
        agent = self._options.headers.get(
            "User-Agent", session_headers.get("User-Agent", USER_AGENT)
        )
        crawl = Crawl(
            engine,
            seeds,
            follow=follow,
            max_depth=max_depth,
            max_pages=max_pages,
            same_host=same_host,
            robots=robots,
            agent=agent,
        )
        return crawl.results()
