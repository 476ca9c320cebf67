"""The sync bridge: ``asyncfetch.run`` and ``SyncFetcher``.

``SyncFetcher`` runs one event loop in one background thread for its whole
life (like anyio's blocking portal) and hands out
``concurrent.futures.Future`` objects, so any number of threads can submit
at once and share one Fetcher's limits. It refuses calls from its own loop's
thread (they would deadlock) and works where a loop already runs in the
calling thread, as in a Jupyter notebook. ``run`` owns a loop for one call
and refuses to nest inside a running one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import os
import ssl
import threading
from collections.abc import Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, TypeVar

from yarl import URL

from ._api import fetch_all
from ._config import DEFAULT_MAX_BYTES, Retry, Timeout
from ._fetcher import Fetcher, URLInput, URLs
from ._input import as_request, is_async
from ._loop import new_event_loop, run_coroutine
from ._models import Result, Stats
from ._parse import check_parse
from ._save import SaveDir

__all__ = ["SyncFetcher", "run"]

T = TypeVar("T")


def _no_session(session: object, where: str) -> None:
    if session is not None:
        raise ValueError(
            f"session is not accepted by {where}: it owns its event loop, and an "
            "aiohttp session belongs to the loop it was made on"
        )


def run(
    urls: URLs,
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
    parse: Callable[[Result], Any] | None = None,
    executor: concurrent.futures.Executor | None = None,
    save_to: str | os.PathLike[str] | None = None,
) -> list[Result]:
    """Fetch every URL from synchronous code; block until all are done.

    The same as ``asyncio.run(asyncfetch.fetch_all(urls, ...))``: results in
    input order, a failed URL is a result with an ``error``. Ctrl-C cancels
    what is in flight and raises ``KeyboardInterrupt``.

    Args:
        urls: an iterable or async iterable of ``str``, ``yarl.URL`` or
            [`Request`][asyncfetch.Request].
        concurrency: requests in flight at once, all hosts together.
        per_host: requests in flight at once to one host.
        rate: request starts per second to one host.
        timeout: seconds per attempt, or a [`Timeout`][asyncfetch.Timeout].
        retries: retries after the first attempt, or a [`Retry`][asyncfetch.Retry].
        max_bytes: the largest body kept, after decompression.
        max_redirects: redirects followed.
        headers: default headers for every request.
        verify: TLS verification: ``True``, ``False`` or an ``ssl.SSLContext``.
        proxy: an http(s) proxy URL.
        session: not accepted here (``ValueError``); use ``fetch_all``.
        max_host_failures: failures in a row that open a host's breaker.
        progress: ``True`` for a progress bar, or a callable receiving Stats.
        parse: a callable run on every ``ok`` result (``result.parsed``).
        executor: where ``parse`` runs: ``None`` or a concurrent.futures pool.
        save_to: a folder to stream bodies to (``result.path``).

    Returns:
        One [`Result`][asyncfetch.Result] per input item, in input order.

    Raises:
        RuntimeError: called from a running event loop (``await
            asyncfetch.fetch_all(...)`` there instead).
        ValueError: a bad option value, or ``session``.
        TypeError: ``urls`` is not iterable, or an item is not a str, URL or
            Request.

    Example:
        ```python
        results = asyncfetch.run(["https://example.org/"], concurrency=20)
        print(results[0].status)
        ```
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "asyncfetch.run() cannot be called from a running event loop; "
            "use 'await asyncfetch.fetch_all(urls, ...)' there instead "
            "(or asyncfetch.SyncFetcher, which runs its own loop in a thread)"
        )
    _no_session(session, "asyncfetch.run()")
    options: dict[str, Any] = {
        "concurrency": concurrency,
        "per_host": per_host,
        "rate": rate,
        "timeout": timeout,
        "retries": retries,
        "max_bytes": max_bytes,
        "max_redirects": max_redirects,
        "headers": headers,
        "verify": verify,
        "proxy": proxy,
        "max_host_failures": max_host_failures,
        "progress": progress,
    }
    Fetcher(**options)  # ValueError for a bad option, before any loop starts
    check_parse(parse, executor)
    return run_coroutine(
        fetch_all(urls, parse=parse, executor=executor, save_to=save_to, **options)
    )


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class SyncFetcher:
    """A Fetcher for synchronous code and threads: its event loop runs in a
    background thread for as long as the ``with`` block lasts.

    Every method blocks the calling thread only (``submit`` not at all), and
    is safe from any number of threads at once; the limits (``concurrency``,
    ``per_host``, ``rate``) hold across all of them together. Leaving the
    ``with`` cancels what is still pending, closes the session and joins the
    thread.

    Args:
        concurrency: requests in flight at once, all hosts together.
        per_host: requests in flight at once to one host.
        rate: request starts per second to one host.
        timeout: seconds per attempt, or a [`Timeout`][asyncfetch.Timeout].
        retries: retries after the first attempt, or a [`Retry`][asyncfetch.Retry].
        max_bytes: the largest body kept, after decompression.
        max_redirects: redirects followed.
        headers: default headers for every request.
        verify: TLS verification: ``True``, ``False`` or an ``ssl.SSLContext``.
        proxy: an http(s) proxy URL.
        session: not accepted (``ValueError``): the SyncFetcher owns its loop.
        max_host_failures: failures in a row that open a host's breaker.
        progress: ``True`` for a progress bar, or a callable receiving Stats.

    Raises:
        ValueError: a bad option value, or ``session``.

    Example:
        ```python
        with asyncfetch.SyncFetcher(concurrency=50, per_host=4) as f:
            future = f.submit("https://example.org/")  # concurrent.futures.Future
            for result in f.stream(urls):
                print(result.status, result.url)
            print(future.result().status, f.stats)
        ```
    """

    def __init__(
        self,
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
        _no_session(session, "SyncFetcher")
        self._fetcher = Fetcher(
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
            max_host_failures=max_host_failures,
            progress=progress,
        )
        self._state = _State.NEW
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<SyncFetcher {self._state.value}>"

    # -- lifetime ----------------------------------------------------------

    def __enter__(self) -> SyncFetcher:
        if self._state is not _State.NEW:
            raise RuntimeError(
                "a SyncFetcher can be entered only once; create a new one"
            )
        loop = new_event_loop()
        thread = threading.Thread(
            target=self._serve, args=(loop,), name="asyncfetch-loop", daemon=True
        )
        self._loop, self._thread = loop, thread
        thread.start()
        try:
            self._call(self._fetcher.__aenter__())
        except BaseException:
            self._stop()
            raise
        self._state = _State.OPEN
        return self

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state is not _State.OPEN:
            return
        self._state = _State.CLOSED
        try:
            # Pending work is cancelled, whatever the reason for leaving.
            self._call(self._fetcher.__aexit__(asyncio.CancelledError, None, None))
        finally:
            self._stop()

    def _stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()

    def _check(self, what: str) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if self._state is _State.NEW or loop is None:
            raise RuntimeError(
                f"SyncFetcher.{what}() called before the SyncFetcher was opened; "
                "use it inside 'with asyncfetch.SyncFetcher(...) as f:'"
            )
        if self._state is _State.CLOSED:
            raise RuntimeError(
                f"SyncFetcher.{what}() called after the SyncFetcher was closed"
            )
        if threading.current_thread() is self._thread:
            raise RuntimeError(
                f"SyncFetcher.{what}() called from the SyncFetcher's own event loop "
                "thread, where it would wait for itself forever; use the async "
                "Fetcher there"
            )
        return loop

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for it; Ctrl-C cancels it.

        A running ``concurrent.futures.Future`` cannot be cancelled, so the
        task itself is cancelled on the loop, and waited for (briefly), so
        that the caller's clean-up never races it.
        """
        loop = self._loop
        if loop is None:  # pragma: no cover - set on enter
            raise RuntimeError("the SyncFetcher's loop is not running")
        tasks: list[asyncio.Task[Any]] = []

        async def call() -> T:
            task = asyncio.current_task()
            if task is not None:
                tasks.append(task)
            return await coro

        future = asyncio.run_coroutine_threadsafe(call(), loop)
        try:
            return future.result()
        except BaseException:
            if not future.done():
                loop.call_soon_threadsafe(lambda: [task.cancel() for task in tasks])
                with contextlib.suppress(BaseException):
                    future.result(timeout=10)
            raise

    # -- the ways in -------------------------------------------------------

    def submit(self, url: URLInput) -> concurrent.futures.Future[Result]:
        """Schedule one request now; return a ``concurrent.futures.Future``.

        Safe from any thread. Cancelling the future cancels the request.

        Args:
            url: a ``str``, ``yarl.URL`` or [`Request`][asyncfetch.Request].

        Raises:
            RuntimeError: the SyncFetcher is not open, or this is its loop thread.
            TypeError: ``url`` is not a str, URL or Request.

        Example:
            ```python
            futures = [f.submit(u) for u in urls]
            results = [fut.result() for fut in futures]
            ```
        """
        loop = self._check("submit")
        as_request(url)  # TypeError here, in the caller's thread
        outer: concurrent.futures.Future[Result] = concurrent.futures.Future()

        def start() -> None:
            if outer.cancelled():
                return
            try:
                inner = self._fetcher.submit(url)
            except BaseException as exc:  # closed meanwhile: tell the caller
                outer.set_exception(exc)
                return
            inner.add_done_callback(lambda fut: _copy(fut, outer))

            def cancel_inner(done: concurrent.futures.Future[Result]) -> None:
                if done.cancelled():  # the caller cancelled: stop the request
                    loop.call_soon_threadsafe(inner.cancel)

            outer.add_done_callback(cancel_inner)

        loop.call_soon_threadsafe(start)
        return outer

    def fetch(self, url: URLInput) -> Result:
        """Fetch one URL and return its result (errors are on the result).

        Raises:
            RuntimeError: the SyncFetcher is not open, or this is its loop thread.
            TypeError: ``url`` is not a str, URL or Request.
        """
        self._check("fetch")
        return self._call(self._fetcher.fetch(url))

    def fetch_all(
        self,
        urls: URLs,
        *,
        parse: Callable[[Result], Any] | None = None,
        executor: concurrent.futures.Executor | None = None,
        save_to: str | os.PathLike[str] | None = None,
    ) -> list[Result]:
        """Fetch ``urls`` and return every result in input order.

        Args:
            urls: an iterable or async iterable of ``str``, ``yarl.URL`` or
                [`Request`][asyncfetch.Request].
            parse: a callable run on every ``ok`` result (``result.parsed``).
            executor: where ``parse`` runs.
            save_to: a folder to stream bodies to (``result.path``).

        Raises:
            RuntimeError: the SyncFetcher is not open, or this is its loop thread.
            TypeError: ``urls`` is not iterable, or an item is not a str, URL
                or Request.
        """
        self._check("fetch_all")
        check_parse(parse, executor)
        return self._call(
            self._fetcher.fetch_all(
                urls, parse=parse, executor=executor, save_to=save_to
            )
        )

    def download(self, url: URLInput, path: str | os.PathLike[str]) -> Result:
        """Fetch one URL and stream its body to ``path`` (see
        [`Fetcher.download`][asyncfetch.Fetcher.download]).

        Raises:
            RuntimeError: the SyncFetcher is not open, or this is its loop thread.
            TypeError: ``url`` is not a str, URL or Request.
        """
        self._check("download")
        return self._call(self._fetcher.download(url, path))

    def stream(
        self,
        urls: URLs,
        *,
        ordered: bool = False,
        parse: Callable[[Result], Any] | None = None,
        executor: concurrent.futures.Executor | None = None,
        save_to: str | os.PathLike[str] | None = None,
    ) -> Iterator[Result]:
        """Yield results as they complete (or in input order with ``ordered``).

        Lazy and bounded like ``Fetcher.stream``; breaking out of the loop
        cancels what this stream has in flight.

        Raises:
            RuntimeError: the SyncFetcher is not open, or this is its loop thread.
            TypeError: ``urls`` is not iterable, or (when reached) an item is
                not a str, URL or Request.
        """
        self._check("stream")
        is_async(urls)
        check_parse(parse, executor)
        if save_to is not None:
            SaveDir(save_to)  # ValueError now, like Fetcher.stream
        return self._stream(urls, ordered, parse, executor, save_to)

    def _stream(
        self,
        urls: URLs,
        ordered: bool,
        parse: Callable[[Result], Any] | None,
        executor: concurrent.futures.Executor | None,
        save_to: str | os.PathLike[str] | None,
    ) -> Iterator[Result]:
        async def open_stream() -> Any:
            return self._fetcher.stream(
                urls, ordered=ordered, parse=parse, executor=executor, save_to=save_to
            )

        agen = self._call(open_stream())
        try:
            while True:
                try:
                    result = self._call(anext(agen))
                except StopAsyncIteration:
                    return
                yield result
        finally:
            if self._state is _State.OPEN:
                self._call(agen.aclose())

    @property
    def stats(self) -> Stats:
        """A snapshot of the counters (see [`Stats`][asyncfetch.Stats])."""
        return self._fetcher.stats


def _copy(
    inner: asyncio.Future[Result], outer: concurrent.futures.Future[Result]
) -> None:
    if outer.done():
        return
    if inner.cancelled():
        outer.cancel()
    elif (exc := inner.exception()) is not None:
        outer.set_exception(exc)
    else:
        outer.set_result(inner.result())
