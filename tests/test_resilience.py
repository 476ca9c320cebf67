"""Retries, host pause, rate and breaker against real faulty servers."""

from __future__ import annotations

import itertools
import logging
import uuid
from urllib.parse import quote

import pytest
from servers import AppServer, RawServer

import asyncfetch
from asyncfetch import Fetcher, Request, Retry, Timeout

FAST = Retry(attempts=3, backoff=0.01, max_backoff=0.05)


def key() -> str:
    return uuid.uuid4().hex[:8]


async def one(url: str | Request, **options: object) -> asyncfetch.Result:
    options.setdefault("retries", FAST)
    [result] = await asyncfetch.fetch_all([url], **options)  # type: ignore[arg-type]
    return result


# -- retries ------------------------------------------------------------------


async def test_503_is_retried_until_it_succeeds(server: AppServer) -> None:
    k = key()
    async with Fetcher(retries=FAST) as f:
        result = await f.fetch(server.url(f"/flaky/{k}?fail=2"))
        assert (result.status, result.attempts, result.error) == (200, 3, None)
        assert f.stats.retries == 2
    assert server.hits(f"flaky-{k}") == 3
    starts = server.start_times(f"flaky-{k}")
    assert result.elapsed >= starts[-1] - starts[0]


async def test_retries_exhausted_give_the_last_response(server: AppServer) -> None:
    k = key()
    result = await one(server.url(f"/flaky/{k}?fail=9&status=500"))
    assert (result.status, result.attempts, result.error, result.ok) == (
        500,
        3,
        None,
        False,
    )
    assert server.hits(f"flaky-{k}") == 3


@pytest.mark.parametrize(("retries", "attempts"), [(0, 1), (1, 2), (4, 5)])
async def test_retries_int_means_that_many_retries(
    server: AppServer, retries: int, attempts: int
) -> None:
    k = key()
    retry = Retry(attempts=retries + 1, backoff=0.001)
    result = await one(server.url(f"/flaky/{k}?fail=9"), retries=retry)
    assert result.attempts == attempts
    assert server.hits(f"flaky-{k}") == attempts


async def test_unlisted_status_and_method_are_not_retried(server: AppServer) -> None:
    k = key()
    assert (await one(server.url(f"/flaky/{k}?fail=9&status=404"))).attempts == 1
    post = Request(server.url(f"/flaky/{k}p?fail=9"), method="POST", data=b"x")
    assert (await one(post)).attempts == 1
    assert server.hits(f"flaky-{k}p") == 1


async def test_a_request_body_is_sent_again_on_retry(server: AppServer) -> None:
    k = key()
    retry = Retry(attempts=3, backoff=0.01, methods={"POST"})
    post = Request(server.url(f"/flaky/{k}?fail=2"), method="POST", data=b"payload")
    result = await one(post, retries=retry)
    assert (result.status, result.attempts, result.content) == (200, 3, b"payload")
    form = Request(server.url(f"/flaky/{k}f?fail=1"), method="POST", json={"a": 1})
    assert (await one(form, retries=retry)).content == b'{"a": 1}'


async def test_a_consumed_body_stream_is_not_retried(server: AppServer) -> None:
    k = key()

    async def body():  # type: ignore[no-untyped-def]
        yield b"once"

    retry = Retry(attempts=3, backoff=0.01, methods={"POST"})
    post = Request(server.url(f"/flaky/{k}?fail=2"), method="POST", data=body())
    result = await one(post, retries=retry)
    assert (result.status, result.attempts) == (503, 1)


async def test_connect_errors_are_retried(closed_port: int) -> None:
    result = await one(f"http://127.0.0.1:{closed_port}/")
    assert isinstance(result.error, asyncfetch.ConnectError)
    assert result.attempts == 3


async def test_resets_are_retried_and_every_attempt_is_counted(
    raw_server: RawServer,
) -> None:
    """aiohttp's own hidden resend is off: the server sees exactly `attempts`."""
    result = await one(raw_server.url("reset"))
    assert isinstance(result.error, asyncfetch.ProtocolError)
    assert result.attempts == 3
    assert raw_server.hits("reset") == 3
    k = key()
    healed = await one(raw_server.url("flaky-reset", key=k, fail=2))
    assert (healed.status, healed.attempts, healed.content) == (200, 3, b"ok")
    assert raw_server.hits(f"flaky-reset-{k}") == 3


async def test_timeouts_are_retried(raw_server: RawServer) -> None:
    result = await one(raw_server.url("silence"), timeout=0.2)
    assert isinstance(result.error, asyncfetch.FetchTimeout)
    assert result.attempts == 3


async def test_tls_errors_are_not_retried(untrusted_tls_server: AppServer) -> None:
    result = await one(untrusted_tls_server.url("/ok"))
    assert isinstance(result.error, asyncfetch.TLSError)
    assert result.attempts == 1


async def test_retry_after_is_waited_for(server: AppServer) -> None:
    k = key()
    result = await one(
        server.url(f"/flaky/{k}?fail=1&status=503&retry_after=1"),
        retries=Retry(attempts=2, backoff=0.001, max_backoff=5),
    )
    assert (result.status, result.attempts) == (200, 2)
    first, second = server.start_times(f"flaky-{k}")
    assert second - first >= 0.95  # the server saw the gap it asked for


async def test_retry_after_is_capped_at_max_backoff(server: AppServer) -> None:
    k = key()
    result = await one(
        server.url(f"/flaky/{k}?fail=1&status=429&retry_after=3600"),
        retries=Retry(attempts=2, backoff=0.001, max_backoff=0.2),
    )
    assert (result.status, result.attempts) == (200, 2)
    first, second = server.start_times(f"flaky-{k}")
    assert 0.15 <= second - first < 30


async def test_a_retry_waits_without_holding_a_slot(server: AppServer) -> None:
    k = key()
    urls = [server.url(f"/flaky/{k}?fail=1&status=500&retry_after=1")] + [
        server.url(f"/ok?i={i}") for i in range(5)
    ]
    async with Fetcher(concurrency=1, retries=Retry(attempts=2, max_backoff=2)) as f:
        order = [str(r.url) async for r in f.stream(urls)]
    assert order[-1] == urls[0]  # the others ran while it waited to retry


# -- host pause ---------------------------------------------------------------


async def test_429_with_retry_after_pauses_the_whole_host(
    server: AppServer, server2: AppServer
) -> None:
    k = key()
    paused = [server.url(f"/flaky/{k}?fail=1&status=429&retry_after=1")]
    paused += [server.url(f"/track/p{k}?i={i}") for i in range(3)]
    other = [server2.url(f"/track/o{k}?i={i}") for i in range(3)]
    async with Fetcher(concurrency=1, retries=0) as f:
        results = [r async for r in f.stream(paused + other)]
    assert [r.status for r in results].count(200) == 6
    pause_start = server.start_times(f"flaky-{k}")[0]
    assert min(server.start_times(f"p{k}")) - pause_start >= 0.95
    assert min(server2.start_times(f"o{k}")) - pause_start < 0.9  # not paused


async def test_no_pause_when_retry_after_is_not_respected(server: AppServer) -> None:
    k = key()
    urls = [server.url(f"/flaky/{k}?fail=1&status=503&retry_after=5")]
    urls += [server.url(f"/track/q{k}")]
    retry = Retry(attempts=1, respect_retry_after=False)
    async with Fetcher(concurrency=1, retries=retry) as f:
        results = await f.fetch_all(urls)
    assert [r.status for r in results] == [503, 200]
    first = server.start_times(f"flaky-{k}")[0]
    assert server.start_times(f"q{k}")[0] - first < 4


# -- rate -----------------------------------------------------------------------


async def test_rate_limits_starts_per_host(
    server: AppServer, server2: AppServer
) -> None:
    k = key()
    urls = [server.url(f"/track/r{k}?i={i}") for i in range(8)]
    urls += [server2.url(f"/track/s{k}?i={i}") for i in range(8)]
    await asyncfetch.fetch_all(urls, rate=10)
    for srv, group in ((server, f"r{k}"), (server2, f"s{k}")):
        starts = sorted(srv.start_times(group))
        assert len(starts) == 8
        # a burst of 10 tokens: all at once, per host (the other host is not
        # counted against it)
        assert starts[-1] - starts[0] < 0.5
    slow = [server.url(f"/track/t{k}?i={i}") for i in range(6)]
    await asyncfetch.fetch_all(slow, rate=4)
    starts = sorted(server.start_times(f"t{k}"))
    assert starts[4] - starts[0] >= 0.2  # the fifth start waited for a token


async def test_redirect_hops_take_tokens_and_waiting_is_not_timed(
    server: AppServer,
) -> None:
    # rate=2: the first two starts are the burst, the third hop waits 0.5 s,
    # more than the 0.4 s timeout, which must not count that wait.
    result = await one(server.url("/redirect/2"), rate=2, timeout=0.4)
    assert result.ok, result.error
    assert len(result.history) == 2


# -- the breaker ------------------------------------------------------------------


async def test_breaker_fails_a_dead_host_fast(
    closed_port: int, server: AppServer
) -> None:
    dead = [f"http://127.0.0.1:{closed_port}/{i}" for i in range(2000)]
    alive = [server.url(f"/ok?i={i}") for i in range(50)]
    async with Fetcher(max_host_failures=5, retries=0, concurrency=4) as f:
        results = await f.fetch_all(dead + alive)
    errors = [type(r.error).__name__ for r in results[:2000]]
    assert errors.count("ConnectError") <= 5 + 4  # stragglers already in flight
    assert errors.count("HostDown") >= 2000 - 9
    down = next(r for r in results if isinstance(r.error, asyncfetch.HostDown))
    assert down.attempts == 0
    assert down.status is None
    assert f"127.0.0.1:{closed_port}" in str(down.error)
    assert "cannot connect" in str(down.error)  # the last error
    assert isinstance(down.error, asyncfetch.ConnectError)
    assert all(r.ok for r in results[2000:])


async def test_host_down_is_never_retried(closed_port: int) -> None:
    urls = [f"http://127.0.0.1:{closed_port}/{i}" for i in range(10)]
    results = await asyncfetch.fetch_all(
        urls, max_host_failures=2, retries=FAST, concurrency=1
    )
    assert all(isinstance(r.error, asyncfetch.ConnectError) for r in results)
    assert sum(isinstance(r.error, asyncfetch.HostDown) for r in results) >= 8
    assert all(r.attempts <= 3 for r in results)


async def test_breaker_off_with_none(closed_port: int) -> None:
    urls = [f"http://127.0.0.1:{closed_port}/{i}" for i in range(30)]
    results = await asyncfetch.fetch_all(urls, max_host_failures=None, retries=0)
    assert not any(isinstance(r.error, asyncfetch.HostDown) for r in results)


async def test_responses_keep_the_breaker_closed(server: AppServer) -> None:
    k = key()
    urls = [server.url(f"/flaky/{k}?fail=100&status=500") for _ in range(30)]
    results = await asyncfetch.fetch_all(urls, max_host_failures=2, retries=0)
    assert [r.status for r in results] == [500] * 30


async def test_probe_after_the_cooldown_closes_the_breaker(
    raw_server: RawServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asyncfetch import _breaker

    monkeypatch.setattr(_breaker, "COOLDOWN", 0.3)
    k = key()
    url = raw_server.url("flaky-reset", key=k, fail=2)
    async with Fetcher(max_host_failures=2, retries=0, concurrency=1) as f:
        first = await f.fetch_all([url] * 3)
        assert [type(r.error).__name__ for r in first] == [
            "ProtocolError",
            "ProtocolError",
            "HostDown",
        ]
        await asyncio_sleep(0.35)
        probe = await f.fetch(url)  # the probe: the host answers, breaker closed
        assert probe.ok
        assert all(r.ok for r in await f.fetch_all([url] * 3))


async def asyncio_sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


# -- logging and stats ------------------------------------------------------------


async def test_info_lines_for_retry_pause_and_breaker(
    server: AppServer, closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    k = key()
    with caplog.at_level(logging.INFO, logger="asyncfetch"):
        await one(server.url(f"/flaky/{k}?fail=1&status=429&retry_after=1"))
        await asyncfetch.fetch_all(
            [f"http://127.0.0.1:{closed_port}/"] * 3, max_host_failures=2, retries=0
        )
    text = "\n".join(
        r.getMessage() for r in caplog.records if r.levelno == logging.INFO
    )
    assert "retrying GET" in text
    assert "pausing" in text
    assert "is down after 2 failures" in text


async def test_results_equal_inputs_under_mixed_faults(
    server: AppServer, server2: AppServer, raw_server: RawServer, closed_port: int
) -> None:
    k = key()
    urls: list[str] = []
    for i in range(10_000):
        kind = i % 10
        if kind == 0:
            urls.append(f"http://127.0.0.1:{closed_port}/{i}")
        elif kind == 1:
            urls.append(server.url(f"/flaky/{k}{i % 50}?fail=1&i={i}"))
        elif kind == 2:
            urls.append(raw_server.url("reset", i=i) if i % 100 == 2 else f"bad {i}")
        elif kind == 3:
            urls.append(server2.url(f"/status/404?i={i}"))
        elif kind == 4 and i % 500 == 4:
            urls.append(raw_server.url("silence", i=i))
        elif kind == 5:
            urls.append(server2.url(f"/redirect/1?i={i}"))
        else:
            urls.append(server.url(f"/bytes/{i % 64}?i={i}"))
    async with Fetcher(
        concurrency=64, retries=FAST, timeout=Timeout(total=1.0), max_host_failures=10
    ) as f:
        results = [r async for r in f.stream(urls)]
    assert len(results) == len(urls)
    assert sorted(str(r.request.url) for r in results) == sorted(
        str(Request(u).url) for u in urls
    )
    stats = f.stats
    assert stats.completed == 10_000
    assert stats.in_flight == 0
    assert stats.retries > 0
    kinds = {type(r.error).__name__ for r in results if r.error is not None}
    assert {"HostDown", "InvalidURL"} <= kinds
    assert kinds & {"ProtocolError", "FetchTimeout"}  # before the raw host went down


@pytest.mark.parametrize(
    ("mode", "params", "error", "attempts"),
    [
        ("reset", {}, asyncfetch.ProtocolError, 3),
        ("close", {}, asyncfetch.ProtocolError, 3),
        ("garbage", {}, asyncfetch.ProtocolError, 3),
        ("truncated", {}, asyncfetch.ProtocolError, 3),
        ("reset-mid-body", {}, asyncfetch.ProtocolError, 3),
        ("bad-chunked", {}, asyncfetch.ProtocolError, 3),
        ("big-header", {}, asyncfetch.ProtocolError, 3),
        ("silence", {}, asyncfetch.FetchTimeout, 3),
        ("drip", {"interval_ms": 100}, asyncfetch.FetchTimeout, 3),
        ("gzip-bomb", {"size": 1 << 24}, asyncfetch.BodyTooLarge, 1),
    ],
)
async def test_every_fault_gives_its_error_and_attempts_and_the_batch_goes_on(
    raw_server: RawServer,
    server: AppServer,
    mode: str,
    params: dict[str, object],
    error: type[Exception],
    attempts: int,
) -> None:
    urls = [raw_server.url(mode, **params), server.url("/ok")]
    results = await asyncfetch.fetch_all(
        urls, retries=FAST, timeout=0.5, max_bytes=1 << 20
    )
    faulty, fine = results
    assert type(faulty.error) is error, faulty.error
    assert faulty.attempts == attempts
    assert raw_server.hits(mode) == attempts
    assert fine.ok


async def test_a_429_storm_pauses_the_host_and_everything_gets_through(
    server: AppServer, server2: AppServer
) -> None:
    k = key()
    storm = [
        server.url(f"/flaky/{k}?fail=10&status=429&retry_after=1&i={i}")
        for i in range(20)
    ]
    calm = [server2.url(f"/track/c{k}?i={i}") for i in range(20)]
    retry = Retry(attempts=3, backoff=0.01, max_backoff=5)
    async with Fetcher(concurrency=10, retries=retry) as f:
        results = await f.fetch_all(storm + calm)
    assert [r.status for r in results] == [200] * 40
    assert sum(r.attempts for r in results[:20]) == server.hits(f"flaky-{k}") == 30
    assert f.stats.retries == 10
    starts = sorted(server.start_times(f"flaky-{k}"))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert max(gaps) >= 0.9  # the host paused: nothing started for a second
    assert max(server2.start_times(f"c{k}")) - starts[0] < 0.9  # the other did not


async def test_a_rate_limited_host_takes_no_global_slot(
    server: AppServer, server2: AppServer
) -> None:
    """rate=1, one slot: host 1's second request waits a second for a token,
    and host 2's request, read after it, starts meanwhile."""
    k = key()
    urls = [server.url(f"/track/l{k}?i={i}") for i in range(3)]
    urls.append(server2.url(f"/track/f{k}"))
    async with Fetcher(concurrency=1, rate=1) as f:
        order = [r.url.host async for r in f.stream(urls)]
    assert order == ["127.0.0.1", "127.0.0.2", "127.0.0.1", "127.0.0.1"]


async def test_the_host_that_answered_is_paused_not_the_one_asked(
    server: AppServer, server2: AppServer
) -> None:
    k = key()
    target = server2.url(f"/flaky/{k}?fail=1&status=503&retry_after=2")
    via = server.url(f"/redirect-to?url={quote(target, safe='')}")
    async with Fetcher(retries=0, concurrency=1) as f:
        [redirected, _, _] = await f.fetch_all(
            [via, server.url(f"/track/a{k}"), server2.url(f"/track/b{k}")]
        )
    assert redirected.status == 503
    first = server2.start_times(f"flaky-{k}")[0]
    assert server.start_times(f"a{k}")[0] - first < 1.5  # not paused
    assert server2.start_times(f"b{k}")[0] - first >= 1.9  # paused


async def test_failures_after_a_redirect_count_against_the_failing_host(
    server: AppServer, closed_port: int
) -> None:
    dead = f"http://127.0.0.1:{closed_port}/x"
    via = server.url(f"/redirect-to?url={dead}")
    async with Fetcher(retries=0, max_host_failures=2, concurrency=1) as f:
        results = await f.fetch_all([via, via, via, server.url("/ok")])
    assert [type(r.error).__name__ for r in results] == [
        "ConnectError",
        "ConnectError",
        "ConnectError",  # the redirecting host is fine; the dead one fails
        "NoneType",
    ]
    assert results[2].attempts == 1
