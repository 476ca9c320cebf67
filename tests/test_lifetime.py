"""Lifetime and cancellation: states, clean exits, no warnings, connections released."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import trustme
from servers import AppServer

import asyncfetch
from asyncfetch import Fetcher


async def wait_for(predicate: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.02)
    return bool(predicate())  # type: ignore[operator]


async def test_methods_before_open_and_after_close(server: AppServer) -> None:
    f = Fetcher()
    with pytest.raises(RuntimeError, match="before the Fetcher was opened"):
        await f.fetch(server.url("/ok"))
    with pytest.raises(RuntimeError, match="async with"):
        f.submit(server.url("/ok"))
    with pytest.raises(RuntimeError, match="before"):
        f.stream([server.url("/ok")])
    with pytest.raises(RuntimeError, match="before"):
        await f.fetch_all([server.url("/ok")])
    async with f:
        assert "open" in repr(f)
    with pytest.raises(RuntimeError, match="after the Fetcher was closed"):
        await f.fetch(server.url("/ok"))
    with pytest.raises(RuntimeError, match="closed"):
        f.submit(server.url("/ok"))
    with pytest.raises(RuntimeError, match="entered only once"):
        async with f:
            pass
    with pytest.raises(TypeError, match="no urls"):
        f.__aiter__()


async def test_break_out_of_stream_cancels_its_requests(server: AppServer) -> None:
    urls = [server.url("/track/brk?delay_ms=60000")] * 5 + [server.url("/ok")]
    async with Fetcher(concurrency=6) as f:
        async for result in f.stream(urls):
            assert result.ok
            break
        assert server.in_flight("brk") == 5
        assert await wait_for(lambda: f.stats.in_flight == 0)
        assert await wait_for(lambda: server.connections_open() <= 1)
        # the Fetcher is still usable
        assert (await f.fetch(server.url("/ok"))).ok
    assert await wait_for(lambda: server.connections_open() == 0)


async def test_leaving_async_with_closes_open_streams(server: AppServer) -> None:
    async with Fetcher(concurrency=3) as f:
        stream = f.stream([server.url("/ok")] + [server.url("/hang")] * 3, ordered=True)
        await anext(stream)
    assert f.stats.in_flight == 0
    with pytest.raises(RuntimeError, match="closed while this stream was open"):
        await anext(stream)
    assert await wait_for(lambda: server.connections_open() == 0)


async def test_exception_inside_async_with_cancels_everything(
    server: AppServer,
) -> None:
    started = time.monotonic()
    with pytest.raises(ZeroDivisionError):
        async with Fetcher() as f:
            futures = [f.submit(server.url("/hang")) for _ in range(4)]
            await asyncio.sleep(0.1)
            1 / 0  # noqa: B018
    assert time.monotonic() - started < 10  # not waiting for /hang
    assert all(fut.cancelled() for fut in futures)
    assert await wait_for(lambda: server.connections_open() == 0)


async def test_cancelling_fetch_all_raises_cancelled_and_releases(
    server: AppServer,
) -> None:
    task = asyncio.ensure_future(
        asyncfetch.fetch_all(
            [server.url("/track/c?delay_ms=60000")] * 10, concurrency=4
        )
    )
    assert await wait_for(lambda: server.in_flight("c") == 4)
    assert server.connections_open() == 4
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_for(lambda: server.connections_open() == 0)
    assert server.hits("c") == 4


async def test_cancelling_one_fetch_all_leaves_the_other(server: AppServer) -> None:
    async with Fetcher(concurrency=10) as f:
        hanging = asyncio.ensure_future(f.fetch_all([server.url("/hang")] * 3))
        other = asyncio.ensure_future(f.fetch_all([server.url("/delay/200")] * 3))
        await asyncio.sleep(0.05)
        hanging.cancel()
        results = await other
        assert [r.status for r in results] == [200] * 3
        with pytest.raises(asyncio.CancelledError):
            await hanging


async def test_break_out_of_fetcher_iteration_closes_it(server: AppServer) -> None:
    f = Fetcher([server.url("/ok")] + [server.url("/hang")] * 3, concurrency=4)
    agen = f.__aiter__()
    async for _ in agen:
        break
    await agen.aclose()  # what the event loop's finalizer does, made prompt
    assert "closed" in repr(f)
    assert await wait_for(lambda: server.connections_open() == 0)


async def test_caller_session_is_used_and_not_closed(server: AppServer) -> None:
    import aiohttp

    async with aiohttp.ClientSession(headers={"User-Agent": "mine/1"}) as session:
        results = await asyncfetch.fetch_all([server.url("/echo")], session=session)
        assert results[0].json()["headers"]["User-Agent"] == "mine/1"
        assert not session.closed
        async with Fetcher(session=session) as f:
            assert (await f.fetch(server.url("/ok"))).ok
        assert not session.closed


SCRIPT = """
import asyncio, ssl, sys
import asyncfetch

async def main():
    verify = True
    if len(sys.argv) > 2:
        verify = ssl.create_default_context(cafile=sys.argv[2])
    results = await asyncfetch.fetch_all([sys.argv[1]] * 20 + ["bad"], verify=verify)
    assert sum(r.ok for r in results) == 20, results
    async with asyncfetch.Fetcher(verify=verify) as f:
        async for r in f.stream([sys.argv[1]] * 5):
            break
        f.submit(sys.argv[1])

asyncio.run(main())
print("clean")
"""


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_asyncio_run_exits_without_any_warning(
    scheme: str,
    server: AppServer,
    tls_server: AppServer,
    ca: trustme.CA,
    tmp_path: Path,
) -> None:
    args = [server.url("/bytes/100")]
    if scheme == "https":
        cafile = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(cafile))
        args = [tls_server.url("/bytes/100"), str(cafile)]
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "dev",
            "-W",
            "error",
            "-c",
            textwrap.dedent(SCRIPT),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "clean"
    assert proc.stderr == ""


async def test_a_worker_cancelled_from_inside_still_gives_a_result(
    server: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiohttp's timer can surface as a CancelledError nobody here asked for:
    the request still ends with one result instead of a stream that waits
    forever. (On the fast path a request waits in the lane, with no task to
    cancel: this is about ClientSession's workers.)"""
    monkeypatch.setenv("ASYNCFETCH_NO_FAST_PATH", "1")
    async with Fetcher(retries=0) as f:
        stream = f.stream([server.url("/hang"), server.url("/ok")], ordered=True)
        task = asyncio.ensure_future(anext(stream))
        engine = f._engine
        assert engine is not None
        assert await wait_for(
            lambda: len(engine.workers) == 1 and engine.sched.active == 1
        )
        for worker in list(engine.workers):
            worker.cancel()  # as if from inside the attempt
        first = await asyncio.wait_for(task, timeout=10)
        assert isinstance(first.error, asyncfetch.FetchTimeout)
        second = await asyncio.wait_for(anext(stream), timeout=10)
        assert second.ok
        await stream.aclose()
