"""The ways in: fetch_all, Fetcher iteration, stream, fetch, submit; inputs; stats."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from servers import AppServer
from yarl import URL

import asyncfetch
from asyncfetch import Fetcher, Request, Stats


async def test_fetch_all_one_result_per_input_in_order(
    server: AppServer, closed_port: int
) -> None:
    urls: list[Any] = [
        server.url("/ok"),
        "not a url",
        server.url("/status/404"),
        URL(server.url("/bytes/10")),
        f"http://127.0.0.1:{closed_port}/",
        Request(server.url("/echo"), method="POST", data=b"hi", meta="m"),
        "ftp://example.org/",
    ]
    results = await asyncfetch.fetch_all(urls, retries=0)
    assert len(results) == len(urls)
    assert [r.request.url for r in results[:1]] == [URL(urls[0])]
    ok, invalid, missing, sized, refused, posted, ftp = results
    assert ok.ok
    assert (ok.status, ok.reason, ok.content, ok.text, ok.attempts) == (
        200,
        "OK",
        b"ok",
        "ok",
        1,
    )
    assert ok.elapsed > 0
    assert ok.headers["content-length"] == "2"
    assert isinstance(invalid.error, asyncfetch.InvalidURL)
    assert (invalid.status, invalid.attempts, invalid.elapsed) == (None, 0, 0.0)
    assert "not a url" in str(invalid.error) or "not%20a%20url" in str(invalid.error)
    assert (missing.status, missing.error, missing.ok) == (404, None, False)
    assert sized.content == b"x" * 10
    assert isinstance(refused.error, asyncfetch.ConnectError)
    assert refused.status is None
    assert str(closed_port) in str(refused.error)
    assert isinstance(refused.error.__cause__, OSError)
    assert posted.json()["method"] == "POST"
    assert posted.json()["body"] == "hi"
    assert posted.meta == "m"
    assert isinstance(ftp.error, asyncfetch.InvalidURL)
    assert "ftp" in str(ftp.error)


async def test_empty_input() -> None:
    assert await asyncfetch.fetch_all([]) == []
    async with Fetcher() as f:
        assert [r async for r in f.stream([])] == []
        assert await f.fetch_all(iter(())) == []


async def test_fetcher_as_async_iterable(server: AppServer) -> None:
    urls = [server.url(f"/bytes/{n}") for n in range(20)]
    sizes = sorted([len(r.content) async for r in Fetcher(urls, concurrency=4)])
    assert sizes == list(range(20))


async def test_fetcher_iterable_inside_its_own_context(server: AppServer) -> None:
    async with Fetcher([server.url("/ok")] * 3) as f:
        assert [r.status async for r in f] == [200, 200, 200]
        assert f.stats.completed == 3


async def test_stream_completion_order_and_ordered(server: AppServer) -> None:
    urls = [server.url("/delay/300"), server.url("/ok"), server.url("/delay/100")]
    async with Fetcher(concurrency=3) as f:
        done = [str(r.url) async for r in f.stream(urls)]
        assert done == [urls[1], urls[2], urls[0]]
        ordered = [str(r.url) async for r in f.stream(urls, ordered=True)]
        assert ordered == urls


async def test_ordered_stream_keeps_input_order_at_scale(server: AppServer) -> None:
    urls = [server.url(f"/bytes/{n % 50}?i={n}") for n in range(600)]
    async with Fetcher(concurrency=20) as f:
        got = [str(r.url) async for r in f.stream(urls, ordered=True)]
    assert got == urls


async def test_async_iterable_input(server: AppServer) -> None:
    async def gen() -> AsyncIterator[str]:
        for i in range(30):
            await asyncio.sleep(0)
            yield server.url(f"/bytes/{i}")

    results = await asyncfetch.fetch_all(gen(), concurrency=5)
    assert [len(r.content) for r in results] == list(range(30))
    async with Fetcher(concurrency=5) as f:
        assert len([r async for r in f.stream(gen(), ordered=True)]) == 30


async def test_fetch_and_submit(server: AppServer) -> None:
    async with Fetcher() as f:
        result = await f.fetch(server.url("/ok"))
        assert result.ok
        future = f.submit(server.url("/track/sub"))
        assert isinstance(future, asyncio.Future)
        for _ in range(200):  # already scheduled: it starts without being awaited
            if server.hits("sub"):
                break
            await asyncio.sleep(0.01)
        assert server.hits("sub") == 1
        assert (await future).status == 200
        bad = f.submit("nope")
        assert bad.done()
        assert isinstance(bad.result().error, asyncfetch.InvalidURL)
        with pytest.raises(TypeError, match="int"):
            f.submit(5)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await f.fetch(None)  # type: ignore[arg-type]
        results = await f.fetch_all([server.url("/ok")] * 3)
        assert [r.status for r in results] == [200] * 3


async def test_leaving_normally_waits_for_submitted(server: AppServer) -> None:
    async with Fetcher() as f:
        futures = [f.submit(server.url("/delay/200")) for _ in range(3)]
    assert all(fut.done() and fut.result().ok for fut in futures)
    assert f.stats.completed == 3


async def test_cancelling_a_submitted_future_cancels_the_request(
    server: AppServer,
) -> None:
    async with Fetcher(concurrency=1) as f:
        first = f.submit(server.url("/hang"))
        waiting = f.submit(server.url("/track/never"))
        await asyncio.sleep(0.1)
        waiting.cancel()
        first.cancel()
        done = await f.fetch(server.url("/ok"))
        assert done.ok
    assert server.hits("never") == 0
    assert f.stats.in_flight == 0


async def test_fetch_cancelled_by_its_caller(server: AppServer) -> None:
    async with Fetcher() as f:
        task = asyncio.ensure_future(f.fetch(server.url("/hang")))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await f.fetch(server.url("/ok"))).ok


def counting(urls: Iterator[str], seen: list[int]) -> Iterator[str]:
    for url in urls:
        seen[0] += 1
        yield url


async def test_input_is_read_lazily_within_the_bound(server: AppServer) -> None:
    seen = [0]
    endless = counting((server.url("/ok") for _ in iter(int, 1)), seen)
    async with Fetcher(concurrency=5) as f:  # bound: 2 * 5 + 100 = 110
        got = 0
        async for _ in f.stream(endless):
            got += 1
            assert seen[0] <= got + 110
            if got == 300:
                break
    assert seen[0] <= 300 + 110


async def test_the_first_fill_reads_what_the_first_workers_take(
    server: AppServer,
) -> None:
    """At a large concurrency the first fill stops at the workers' share and
    a batch (300 + 64), not the whole window (2 * 300 + 100); the rest is
    read once the caller takes a result."""
    seen = [0]
    endless = counting((server.url("/ok") for _ in iter(int, 1)), seen)
    async with Fetcher(concurrency=300) as f:
        stream = f.stream(endless)
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)  # the stream starts in that turn
        assert seen[0] == 300 + 64
        await first
        assert seen[0] == 1 + 2 * 300 + 100
        await stream.aclose()


async def test_slow_consumer_stops_the_reading(server: AppServer) -> None:
    seen = [0]
    endless = counting((server.url("/ok") for _ in iter(int, 1)), seen)
    async with Fetcher(concurrency=4) as f:
        stream = f.stream(endless)
        await anext(stream)
        await asyncio.sleep(0.3)  # the consumer dawdles; nothing past the bound is read
        assert seen[0] <= 1 + 2 * 4 + 100
        assert f.stats.completed <= 1 + 2 * 4 + 100
        await stream.aclose()


async def test_bad_item_raises_type_error_after_the_items_before_it(
    server: AppServer,
) -> None:
    urls: list[Any] = [server.url("/ok"), server.url("/ok"), 123, server.url("/ok")]
    got = []
    async with Fetcher() as f:
        with pytest.raises(TypeError, match="int"):
            async for r in f.stream(urls):
                got.append(r)
        assert len(got) == 2
        with pytest.raises(TypeError, match="NoneType"):
            await f.fetch_all([server.url("/ok"), None])
    with pytest.raises(TypeError):
        await asyncfetch.fetch_all([None])


async def test_input_iterator_exception_propagates_after_earlier_results(
    server: AppServer,
) -> None:
    def broken() -> Iterator[str]:
        yield server.url("/ok")
        raise KeyError("db went away")

    async with Fetcher() as f:
        got = []
        with pytest.raises(KeyError, match="db went away"):
            async for r in f.stream(broken()):
                got.append(r)
        assert len(got) == 1


def test_non_iterable_input_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="single str"):
        Fetcher("http://example.org/")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="iterable"):
        Fetcher(42)  # type: ignore[arg-type]


async def test_stream_rejects_non_iterables_at_call() -> None:
    async with Fetcher() as f:
        with pytest.raises(TypeError):
            f.stream(5)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await f.fetch_all(5)  # type: ignore[arg-type]


async def test_stats_and_progress(server: AppServer, closed_port: int) -> None:
    seen: list[Stats] = []
    urls = [server.url("/ok")] * 5 + [
        server.url("/status/404"),
        "bad",
        f"http://127.0.0.1:{closed_port}/",
    ]
    async with Fetcher(retries=0, progress=seen.append) as f:
        assert f.stats.completed == 0
        await f.fetch_all(urls)
        stats = f.stats
    assert (stats.completed, stats.ok, stats.failed, stats.in_flight) == (8, 5, 2, 0)
    assert stats.by_status == {200: 5, 404: 1}
    assert stats.bytes == 5 * 2 + len(b"status 404")
    assert stats.elapsed > 0
    assert seen
    assert seen[-1].completed == 8
    assert f.stats.completed == 8  # frozen at close


async def test_debug_log_line_per_attempt(
    server: AppServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="asyncfetch"):
        await asyncfetch.fetch_all(
            [server.url("/ok"), server.url("/status/500")], retries=0
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "asyncfetch"]
    assert len(lines) == 2
    assert any("/ok -> 200" in line for line in lines)


async def test_mixed_batch_results_equal_inputs(
    server: AppServer, server2: AppServer, closed_port: int
) -> None:
    urls: list[str] = []
    for i in range(2000):
        kind = i % 5
        if kind == 0:
            urls.append(server.url(f"/bytes/{i % 97}?i={i}"))
        elif kind == 1:
            urls.append(server2.url(f"/status/{404 if i % 2 else 200}?i={i}"))
        elif kind == 2:
            urls.append(f"bad url {i}")
        elif kind == 3:
            urls.append(f"http://127.0.0.1:{closed_port}/{i}")
        else:
            urls.append(server2.url(f"/redirect/2?i={i}"))
    async with Fetcher(concurrency=50, retries=0) as f:
        results = [r async for r in f.stream(urls)]
    assert sorted(str(r.request.url) for r in results) == sorted(
        str(Request(u).url) for u in urls
    )
    assert f.stats.completed == 2000


async def test_many_invalid_urls_in_a_row() -> None:
    # each is completed while the input is being read: no recursion, no task
    results = await asyncfetch.fetch_all(f"bad {i}" for i in range(20_000))
    assert len(results) == 20_000
    assert all(isinstance(r.error, asyncfetch.InvalidURL) for r in results)


class Boom(Exception):
    pass


def exploding(stats: Stats) -> None:
    if stats.completed >= 3:
        raise Boom


async def test_a_raising_progress_callable_reaches_the_caller(
    server: AppServer,
) -> None:
    with pytest.raises(Boom):
        await asyncfetch.fetch_all([server.url("/ok")] * 10, progress=exploding)
    with pytest.raises(Boom):
        await asyncfetch.fetch_all(["bad"] * 10, progress=exploding)
    async with Fetcher(progress=exploding) as f:
        with pytest.raises(Boom):
            async for _ in f.stream([server.url("/ok")] * 10):
                pass


async def test_a_raising_progress_callable_with_async_input(server: AppServer) -> None:
    async def gen() -> AsyncIterator[str]:
        for _ in range(10):
            yield "bad"

    async with Fetcher(progress=exploding) as f:
        with pytest.raises(Boom):
            async for _ in f.stream(gen()):
                pass


async def test_workers_are_reused_not_created_per_request(server: AppServer) -> None:
    created = 0
    loop = asyncio.get_running_loop()
    factory = loop.get_task_factory()

    def counting_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> Any:
        nonlocal created
        created += 1
        return asyncio.Task(coro, loop=loop, **kw)

    loop.set_task_factory(counting_factory)
    try:
        async with Fetcher(concurrency=8) as f:
            results = await f.fetch_all([server.url("/ok")] * 400)
    finally:
        loop.set_task_factory(factory)
    assert all(r.ok for r in results)
    assert created < 100  # 400 requests on about 8 workers


async def test_progress_bar_on_stderr(
    server: AppServer, capsys: pytest.CaptureFixture[str]
) -> None:
    await asyncfetch.fetch_all([server.url("/ok")] * 7 + ["bad"], progress=True)
    err = capsys.readouterr().err
    assert "8/8" in err
    assert "ok=7" in err
    assert "failed=1" in err


async def test_progress_bar_without_a_known_total(
    server: AppServer, capsys: pytest.CaptureFixture[str]
) -> None:
    async with Fetcher(progress=True) as f:
        async for _ in f.stream(server.url("/ok") for _ in range(5)):
            pass
    last = capsys.readouterr().err.split("\r")[-1]
    assert last.startswith("5 results [")  # no total: no "5/5"
    assert "ok=5" in last
