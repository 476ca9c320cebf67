"""parse= and executor=: on the loop, in threads, in processes; ParseError."""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import threading
from collections.abc import Iterator

import parsers
import pytest
from servers import AppServer

import asyncfetch
from asyncfetch import Fetcher, Result


async def test_parse_on_the_loop_sees_ok_results_only(server: AppServer) -> None:
    seen: list[str] = []

    def size(result: Result) -> int:
        seen.append(threading.current_thread().name)
        return len(result.content)

    urls = [server.url("/bytes/10"), server.url("/status/404"), "bad"]
    results = await asyncfetch.fetch_all(urls, parse=size, retries=0)
    assert [r.parsed for r in results] == [10, None, None]
    assert seen == [threading.current_thread().name]  # the loop's own thread


async def test_async_parse_is_awaited(server: AppServer) -> None:
    async def upper(result: Result) -> str:
        return result.text.upper()

    async with Fetcher() as f:
        got = [r.parsed async for r in f.stream([server.url("/ok")], parse=upper)]
    assert got == ["OK"]


async def test_a_raising_parser_gives_parse_error_and_the_batch_goes_on(
    server: AppServer,
) -> None:
    async with Fetcher() as f:
        results = await f.fetch_all(
            [server.url("/bytes/3"), server.url("/ok")], parse=parsers.explode
        )
        stats = f.stats
    for result in results:
        assert isinstance(result.error, asyncfetch.ParseError)
        assert isinstance(result.error.__cause__, ValueError)
        assert not result.ok
        assert result.status == 200
        assert result.content  # the body the parser got is kept
        assert str(result.url) in str(result.error)
    assert (stats.completed, stats.failed, stats.ok) == (2, 2, 0)


async def test_parse_in_a_thread_pool(server: AppServer) -> None:
    with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="parser") as pool:
        results = await asyncfetch.fetch_all(
            [server.url("/ok")] * 4, parse=parsers.thread_name, executor=pool
        )
    assert all(r.parsed.startswith("parser") for r in results)


async def test_parse_in_a_process_pool(server: AppServer) -> None:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        async with Fetcher() as f:
            got = [
                r.parsed
                async for r in f.stream(
                    [server.url("/bytes/7")] * 3,
                    parse=parsers.pid_and_size,
                    executor=pool,
                )
            ]
    assert {size for _, size in got} == {7}
    assert all(pid != os.getpid() for pid, _ in got)
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        [failed] = await asyncfetch.fetch_all(
            [server.url("/ok")], parse=parsers.explode, executor=pool
        )
    assert isinstance(failed.error, asyncfetch.ParseError)
    assert isinstance(failed.error.__cause__, ValueError)


async def test_bad_parse_arguments_fail_before_any_request(server: AppServer) -> None:
    async def coro(result: Result) -> None:
        return None

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        with pytest.raises(TypeError, match="async def"):
            await asyncfetch.fetch_all([server.url("/ok")], parse=coro, executor=pool)
        with pytest.raises(ValueError, match="parse"):
            await asyncfetch.fetch_all([server.url("/ok")], executor=pool)
    with pytest.raises(TypeError, match="callable"):
        await asyncfetch.fetch_all([server.url("/ok")], parse=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Executor"):
        await asyncfetch.fetch_all(
            [server.url("/ok")],
            parse=len,
            executor=object(),  # type: ignore[arg-type]
        )
    async with Fetcher() as f:
        with (
            pytest.raises(TypeError, match="async def"),
            concurrent.futures.ThreadPoolExecutor(1) as pool,
        ):
            f.stream([server.url("/ok")], parse=coro, executor=pool)
    assert server.total_hits() == 0


async def test_a_slow_parser_slows_the_reading_instead_of_filling_memory(
    server: AppServer,
) -> None:
    read = [0]

    def endless() -> Iterator[str]:
        while True:
            read[0] += 1
            yield server.url("/ok")

    got = 0
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        async with Fetcher(concurrency=4) as f:  # read-ahead bound: 2 * 4 + 100
            async for result in f.stream(endless(), parse=parsers.slow, executor=pool):
                assert result.parsed == 2
                got += 1
                assert read[0] <= got + 108
                if got == 150:
                    break
    assert read[0] <= 150 + 108


async def test_an_async_parser_that_is_cancelled_does_not_hang(
    server: AppServer,
) -> None:
    async def cancelled(result: Result) -> None:
        raise asyncio.CancelledError

    results = await asyncio.wait_for(
        asyncfetch.fetch_all([server.url("/ok")] * 2, parse=cancelled), timeout=10
    )
    assert all(isinstance(r.error, asyncfetch.ParseError) for r in results)


async def test_an_awaitable_returned_from_an_executor_is_an_error(
    server: AppServer,
) -> None:
    async def later(result: Result) -> int:
        return 1

    def sneaky(result: Result) -> object:
        return later(result)  # a coroutine, made in a worker thread

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        [result] = await asyncfetch.fetch_all(
            [server.url("/ok")], parse=sneaky, executor=pool
        )
    assert isinstance(result.error, asyncfetch.ParseError)
    assert isinstance(result.error.__cause__, TypeError)
