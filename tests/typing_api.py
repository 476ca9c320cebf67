"""Type-checked, never run: pins the public types (mypy --strict checks this file)."""

from __future__ import annotations

import asyncio
from typing import Any

from multidict import CIMultiDictProxy
from typing_extensions import assert_type
from yarl import URL

import asyncfetch
from asyncfetch import Fetcher, Request, Result, Stats


async def usage(urls: list[str]) -> None:
    results = await asyncfetch.fetch_all(urls, concurrency=10, per_host=2)
    assert_type(results, list[Result])
    async for result in Fetcher(urls):
        assert_type(result, Result)
    async with Fetcher(
        timeout=asyncfetch.Timeout(total=5), retries=asyncfetch.Retry()
    ) as f:
        async for r in f.stream(urls, ordered=True):
            assert_type(r.url, URL)
            assert_type(r.status, int | None)
            assert_type(r.headers, CIMultiDictProxy[str])
            assert_type(r.content, bytes)
            assert_type(r.text, str)
            assert_type(r.ok, bool)
            assert_type(r.error, asyncfetch.FetchError | None)
            assert_type(r.history, tuple[URL, ...])
            assert_type(r.meta, Any)
            assert_type(r.request, Request)
        assert_type(await f.fetch(URL("http://h/")), Result)
        assert_type(f.submit(Request("http://h/")), asyncio.Future[Result])
        assert_type(await f.fetch_all(urls), list[Result])
        assert_type(f.stats, Stats)
        assert_type(f.stats.by_status[200], int)
