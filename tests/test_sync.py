"""The sync bridge: run() and SyncFetcher, from scripts, threads and notebooks."""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from servers import AppServer

import asyncfetch
from asyncfetch import Result, SyncFetcher, _loop

ROOT = Path(__file__).resolve().parent.parent


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "asyncfetch-loop"]


def test_run_returns_results_in_input_order(server: AppServer) -> None:
    urls = [server.url(f"/bytes/{n}") for n in (5, 1, 3)] + ["bad"]
    results = asyncfetch.run(urls, concurrency=2)
    assert [len(r.content) for r in results[:3]] == [5, 1, 3]
    assert isinstance(results[3].error, asyncfetch.InvalidURL)


def test_run_validates_before_fetching(server: AppServer) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        asyncfetch.run([server.url("/ok")], concurrency=0)
    with pytest.raises(ValueError, match="session"):
        asyncfetch.run([server.url("/ok")], session=object())
    with pytest.raises(ValueError, match="session"):
        SyncFetcher(session=object())
    assert server.total_hits() == 0


async def test_inside_a_running_loop_like_a_notebook(server: AppServer) -> None:
    with pytest.raises(RuntimeError, match=r"await asyncfetch\.fetch_all"):
        asyncfetch.run([server.url("/ok")])
    with SyncFetcher() as f:  # its loop lives in its own thread
        assert f.fetch(server.url("/ok")).ok
        assert [r.status for r in f.fetch_all([server.url("/ok")] * 2)] == [200, 200]
    assert not loop_threads()


def test_sync_fetcher_ways_in(server: AppServer) -> None:
    with SyncFetcher(concurrency=4) as f:
        assert "open" in repr(f)
        future = f.submit(server.url("/bytes/4"))
        assert isinstance(future, concurrent.futures.Future)
        assert f.fetch(server.url("/ok")).ok
        urls = [server.url(f"/bytes/{n}") for n in range(20)]
        ordered = [len(r.content) for r in f.stream(urls, ordered=True)]
        assert ordered == list(range(20))
        assert sorted(len(r.content) for r in f.stream(urls)) == list(range(20))
        assert len(future.result(timeout=10).content) == 4
        assert [r.status for r in f.fetch_all(urls)] == [200] * 20
        with pytest.raises(TypeError, match="int"):
            f.submit(5)  # type: ignore[arg-type]
        assert f.stats.completed == 62  # 1 + 1 + 20 + 20 + 20
    assert f.stats.completed == 62
    assert not loop_threads()


def test_many_threads_share_the_limits(server: AppServer) -> None:
    results: list[Result] = []
    lock = threading.Lock()
    with SyncFetcher(per_host=2, concurrency=50) as f:

        def worker(n: int) -> None:
            futures = [
                f.submit(server.url(f"/track/mt?delay_ms=20&t={n}&i={i}"))
                for i in range(10)
            ]
            done = [fut.result(timeout=30) for fut in futures]
            with lock:
                results.extend(done)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(results) == 80
    assert all(r.ok for r in results)
    assert server.max_in_flight("mt") == 2


def test_breaking_out_of_a_sync_stream_cancels_it(server: AppServer) -> None:
    with SyncFetcher(concurrency=5) as f:
        urls = [server.url("/ok")] + [server.url("/track/brk?delay_ms=60000")] * 4
        for result in f.stream(urls):
            assert result.ok
            break
        assert f.stats.in_flight == 0
        assert f.fetch(server.url("/ok")).ok


def test_leaving_the_with_cancels_what_is_pending(server: AppServer) -> None:
    started = time.monotonic()
    with SyncFetcher() as f:
        futures = [f.submit(server.url("/hang")) for _ in range(3)]
        time.sleep(0.1)
    assert all(fut.cancelled() for fut in futures)
    assert time.monotonic() - started < 10
    assert not loop_threads()


def test_cancelling_a_future_cancels_the_request(server: AppServer) -> None:
    with SyncFetcher(concurrency=1) as f:
        hanging = f.submit(server.url("/hang"))
        time.sleep(0.1)
        assert hanging.cancel() or hanging.done()
        assert f.fetch(server.url("/ok")).ok  # the slot came back


def test_lifetime_errors(server: AppServer) -> None:
    f = SyncFetcher()
    with pytest.raises(RuntimeError, match="before"):
        f.fetch(server.url("/ok"))
    with f:
        pass
    with pytest.raises(RuntimeError, match="after"):
        f.submit(server.url("/ok"))
    with pytest.raises(RuntimeError, match="only once"), f:
        pass


def test_calls_from_the_loop_thread_are_refused(server: AppServer) -> None:
    with SyncFetcher() as f:

        def reenter(result: Result) -> None:  # runs on f's own loop thread
            f.fetch(server.url("/ok"))

        [result] = f.fetch_all([server.url("/ok")], parse=reenter)
    assert isinstance(result.error, asyncfetch.ParseError)
    assert isinstance(result.error.__cause__, RuntimeError)
    assert "own event loop thread" in str(result.error.__cause__)


def test_parse_through_the_sync_bridge(server: AppServer) -> None:
    results = asyncfetch.run([server.url("/bytes/9")], parse=lambda r: len(r.content))
    assert results[0].parsed == 9
    with SyncFetcher() as f, concurrent.futures.ThreadPoolExecutor(1) as pool:
        got = [
            r.parsed
            for r in f.stream([server.url("/ok")], parse=len_body, executor=pool)
        ]
    assert got == [2]


def len_body(result: Result) -> int:
    return len(result.content)


SCRIPT = """
import asyncfetch, sys
with asyncfetch.SyncFetcher() as f:
    assert f.fetch(sys.argv[1]).ok
    list(f.stream([sys.argv[1]] * 5))
assert [r.status for r in asyncfetch.run([sys.argv[1]] * 3)] == [200] * 3
print("clean")
"""


def test_clean_exit_under_dev_mode(server: AppServer) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", SCRIPT, server.url("/ok")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, "clean", "")


CTRL_C = """
import asyncfetch, signal, sys, threading
# Ctrl-C as at a terminal: started from a shell's background job (no job
# control), this process would inherit SIGINT ignored and never see it.
signal.signal(signal.SIGINT, signal.default_int_handler)
print("started", flush=True)
try:
    if sys.argv[2] == "run":
        asyncfetch.run([sys.argv[1]] * 10)
    elif sys.argv[2] == "stream":
        with asyncfetch.SyncFetcher() as f:
            for _ in f.stream([sys.argv[1]] * 10):
                pass
    else:
        with asyncfetch.SyncFetcher() as f:
            f.fetch_all([sys.argv[1]] * 10)
except KeyboardInterrupt:
    names = [t.name for t in threading.enumerate() if t.name == "asyncfetch-loop"]
    print("interrupted", names, flush=True)
    raise SystemExit(130)
"""


@pytest.mark.parametrize("how", ["run", "sync", "stream"])
def test_ctrl_c_stops_promptly(server: AppServer, how: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-X", "dev", "-c", CTRL_C, server.url("/hang"), how],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started"
        time.sleep(0.5)  # let the requests start
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert out.strip() == "interrupted []"
    assert "Unclosed" not in err
    assert "Task was destroyed" not in err


async def test_sync_fetcher_from_worker_threads_of_an_async_app(
    server: AppServer,
) -> None:
    with SyncFetcher() as f:
        results = await asyncio.gather(
            *(asyncio.to_thread(f.fetch, server.url(f"/bytes/{n}")) for n in range(5))
        )
    assert sorted(len(r.content) for r in results) == list(range(5))


# -- the loop asyncfetch makes: uvloop with the speed extra ---------------------


def test_run_and_syncfetcher_use_uvloop_when_installed(server: AppServer) -> None:
    pytest.importorskip("uvloop")
    kinds: list[str] = []

    def progress(stats: asyncfetch.Stats) -> None:
        kinds.append(_loop.loop_name(asyncio.get_running_loop()))

    [result] = asyncfetch.run([server.url("/ok")], progress=progress)
    assert result.ok
    assert set(kinds) == {"uvloop"}
    with SyncFetcher() as f:
        assert f.fetch(server.url("/ok")).ok
        assert _loop.loop_name(f._loop) == "uvloop"  # type: ignore[arg-type]


def test_without_uvloop_the_loop_is_asyncio(
    server: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop fails
    loop = _loop.new_event_loop()
    try:
        assert _loop.loop_name(loop) == "asyncio"
    finally:
        loop.close()
    with SyncFetcher() as f:
        assert f.fetch(server.url("/ok")).ok
        assert _loop.loop_name(f._loop) == "asyncio"  # type: ignore[arg-type]
