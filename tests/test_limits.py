"""Concurrency, per-host caps, fairness across hosts, and per-attempt timeouts."""

from __future__ import annotations

import asyncio
import contextlib

from servers import AppServer, eventually

import asyncfetch
from asyncfetch import Fetcher, Request, Timeout
from asyncfetch._engine import STARTS_PER_TURN


async def test_concurrency_cap_holds_server_side(server: AppServer) -> None:
    urls = [server.url(f"/track/all?delay_ms=30&i={i}") for i in range(60)]
    results = await asyncfetch.fetch_all(urls, concurrency=7)
    assert all(r.ok for r in results)
    assert server.max_in_flight("all") == 7


async def test_per_host_cap_holds_server_side(
    server: AppServer, server2: AppServer
) -> None:
    urls = []
    for i in range(40):
        urls.append(server.url(f"/track/a?delay_ms=20&i={i}"))
        urls.append(server2.url(f"/track/b?delay_ms=20&i={i}"))
    results = await asyncfetch.fetch_all(urls, concurrency=10, per_host=3)
    assert all(r.ok for r in results)
    assert server.max_in_flight("a") == 3
    assert server2.max_in_flight("b") == 3


async def test_slow_host_does_not_hold_up_the_fast_one(
    server: AppServer, server2: AppServer
) -> None:
    """concurrency=10, per_host=2: 40 slow URLs, then 40 fast ones."""
    slow = [server.url(f"/track/slow?delay_ms=300&i={i}") for i in range(40)]
    fast = [server2.url(f"/track/fast?i={i}") for i in range(40)]
    order: list[str] = []
    async with Fetcher(concurrency=10, per_host=2) as f:
        async for result in f.stream(slow + fast):
            order.append(result.url.host or "")
            if order.count("127.0.0.2") == 40:
                break  # every fast URL is done: how many slow ones were?
    assert order.count("127.0.0.1") <= 4
    assert server.max_in_flight("slow") == 2


async def test_held_host_lets_the_stream_read_further(
    server: AppServer, server2: AppServer
) -> None:
    """per_host=1 on a slow host: later hosts' URLs are read and fetched meanwhile."""
    urls = [server.url(f"/track/s?delay_ms=500&i={i}") for i in range(3)]
    urls += [server2.url(f"/ok?i={i}") for i in range(50)]
    first: list[str] = []
    async with Fetcher(concurrency=4, per_host=1) as f:
        async for result in f.stream(urls):
            first.append(result.url.host or "")
            if len(first) == 50:
                break
    assert first.count("127.0.0.2") >= 49


async def test_timeout_counts_from_the_slot_not_the_queue(server: AppServer) -> None:
    # Each request takes 0.2 s; the third waits 0.4 s for a slot, more than
    # the 0.35 s timeout: it must still succeed.
    urls = [server.url(f"/delay/200?i={i}") for i in range(3)]
    results = await asyncfetch.fetch_all(urls, concurrency=1, timeout=0.35, retries=0)
    assert [r.status for r in results] == [200, 200, 200]


async def test_total_timeout(server: AppServer) -> None:
    [result] = await asyncfetch.fetch_all([server.url("/hang")], timeout=0.2, retries=0)
    assert isinstance(result.error, asyncfetch.FetchTimeout)
    assert isinstance(result.error, TimeoutError)
    assert result.status is None
    assert "timed out" in str(result.error)
    assert server.url("/hang") in str(result.error)


async def test_read_timeout_on_a_slow_body(server: AppServer) -> None:
    url = server.url("/slow-body/100?delay_ms=300")
    [result] = await asyncfetch.fetch_all(
        [url], timeout=Timeout(total=None, read=0.1), retries=0
    )
    assert isinstance(result.error, asyncfetch.FetchTimeout)
    assert result.status == 200  # headers came; the body did not
    [fine] = await asyncfetch.fetch_all(
        [server.url("/slow-body/100?delay_ms=20")], timeout=Timeout(read=1.0)
    )
    assert fine.ok
    assert len(fine.content) == 100


async def test_request_timeout_overrides_the_fetcher(server: AppServer) -> None:
    async with Fetcher(timeout=10) as f:
        result = await f.fetch(Request(server.url("/hang"), timeout=0.1))
    assert isinstance(result.error, asyncfetch.FetchTimeout)


async def test_connect_timeout_counts_per_attempt(server: AppServer) -> None:
    # A connect timeout alone never fires on loopback; it must not break anything.
    results = await asyncfetch.fetch_all(
        [server.url("/ok")] * 5, timeout=Timeout(connect=0.5, read=0.5)
    )
    assert all(r.ok for r in results)


async def test_many_hosts_round_robin(server: AppServer, server2: AppServer) -> None:
    urls = [server.url(f"/track/x?i={i}") for i in range(30)]
    urls += [server2.url(f"/track/y?i={i}") for i in range(30)]
    async with Fetcher(concurrency=2) as f:
        order = [r.url.host async for r in f.stream(urls)]
    # both hosts are served from the start, not one after the other
    assert "127.0.0.2" in order[:10]


async def test_workers_start_in_turns_up_to_the_cap(server: AppServer) -> None:
    """A large ``concurrency`` is reached a turn of the loop at a time, so
    the first requests go out while later connections are still opening."""
    urls = [server.url(f"/hang?i={i}") for i in range(100)]
    before = server.total_hits()
    async with Fetcher(concurrency=100, retries=0) as f:
        stream = f.stream(urls)
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)  # the stream starts in that turn
        engine = f._engine
        assert engine is not None
        assert len(engine.workers) == STARTS_PER_TURN
        # The requests never get an answer, so all 100 must be out at once
        # (each holding its slot, whether a worker or the lane waits for it).
        await eventually(lambda: server.total_hits() - before == 100)
        assert engine.sched.active == 100
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        await stream.aclose()
