"""Top-level functions: open a Fetcher, delegate, close it."""

from __future__ import annotations

import concurrent.futures
import os
import ssl
from collections.abc import Callable
from typing import Any

from yarl import URL

from ._config import DEFAULT_MAX_BYTES, Retry, Timeout
from ._fetcher import Fetcher, URLs
from ._models import Result, Stats
from ._parse import check_parse

__all__ = ["fetch_all"]


async def fetch_all(
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
    """Fetch every URL and return the results in input order.

    Opens a [`Fetcher`][asyncfetch.Fetcher] with the given options, fetches, and closes it,
    leaving nothing behind. A failed URL never raises: it is a result with an
    ``error`` (and a 404 is a result with ``status == 404``).

    Args:
        urls: an iterable or async iterable of ``str``, ``yarl.URL`` or
            [`Request`][asyncfetch.Request], read lazily.
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
        session: your own ``aiohttp.ClientSession`` (used, never closed).
        max_host_failures: failures in a row that open a host's breaker.
        progress: ``True`` for a progress bar on stderr, or a callable
            receiving [`Stats`][asyncfetch.Stats] snapshots.
        parse: a callable run on every ``ok`` result; its return value is
            ``result.parsed`` (see [`Fetcher.stream`][asyncfetch.Fetcher.stream]).
        executor: where ``parse`` runs: ``None`` (the event loop) or a
            ``concurrent.futures`` thread or process pool.
        save_to: a folder: bodies with a status below 400 are streamed to
            files there (``result.path``) instead of ``content``.

    Returns:
        One [`Result`][asyncfetch.Result] per input item, in input order.

    Raises:
        ValueError: an option has a bad value; the message names it.
        TypeError: ``urls`` is not iterable, an item is not a str, URL or
            Request, or a bad ``parse``/``executor`` pair.

    Example:
        ```python
        results = await asyncfetch.fetch_all(urls, concurrency=100)
        ok = [r for r in results if r.ok]
        ```
    """
    check_parse(parse, executor)
    async with Fetcher(
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
    ) as fetcher:
        return await fetcher.fetch_all(
            urls, parse=parse, executor=executor, save_to=save_to
        )
