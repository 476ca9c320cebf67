"""Retry, backoff, Retry-After, rate and breaker decisions: pure, no sleeping."""

from __future__ import annotations

import email.utils
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

import asyncfetch
from asyncfetch import Request, Result, Retry
from asyncfetch._breaker import Breaker, Gate
from asyncfetch._retry import backoff, is_retryable, pause_for, retry_after, retry_delay
from asyncfetch._scheduler import Scheduler

REQ = Request("http://h/")


def result(
    status: int | None = None,
    error: type[asyncfetch.FetchError] | None = None,
    headers: dict[str, str] | None = None,
) -> Result:
    err = error("http://h/: x", request=REQ) if error is not None else None
    return Result(
        REQ,
        URL("http://h/"),
        status,
        None,
        CIMultiDictProxy(CIMultiDict(headers or {})),
        b"",
        err,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# -- which attempts are retried ---------------------------------------------


@pytest.mark.parametrize(
    ("res", "method", "expected"),
    [
        (result(error=asyncfetch.ConnectError), "GET", True),
        (result(error=asyncfetch.FetchTimeout), "GET", True),
        (result(error=asyncfetch.ProtocolError), "HEAD", True),
        (result(error=asyncfetch.HostDown), "GET", False),
        (result(error=asyncfetch.TLSError), "GET", False),
        (result(error=asyncfetch.InvalidURL), "GET", False),
        (result(error=asyncfetch.BodyTooLarge, status=200), "GET", False),
        (result(error=asyncfetch.TooManyRedirects, status=302), "GET", False),
        (result(status=503), "GET", True),
        (result(status=429), "PUT", True),
        (result(status=500), "DELETE", True),
        (result(status=404), "GET", False),
        (result(status=200), "GET", False),
        (result(status=503), "POST", False),
        (result(error=asyncfetch.ConnectError), "POST", False),
        (result(error=asyncfetch.ConnectError), "PATCH", False),
    ],
)
def test_is_retryable(res: Result, method: str, expected: bool) -> None:
    assert is_retryable(res, Retry(), method) is expected


def test_listed_methods_and_statuses_only() -> None:
    retry = Retry(statuses={418}, methods={"POST"})
    assert is_retryable(result(status=418), retry, "POST")
    assert not is_retryable(result(status=503), retry, "POST")
    assert not is_retryable(result(status=418), retry, "GET")


# -- backoff ------------------------------------------------------------------


def test_backoff_is_full_jitter_exponential() -> None:
    retry = Retry(backoff=0.5, max_backoff=30)
    assert [backoff(retry, n, lambda: 0.999999) for n in range(4)] == pytest.approx(
        [0.5, 1.0, 2.0, 4.0], rel=1e-5
    )
    assert backoff(retry, 3, lambda: 0.0) == 0.0
    assert backoff(retry, 10, lambda: 0.999999) == pytest.approx(30, rel=1e-5)
    assert backoff(retry, 10_000, lambda: 0.5) == 15.0


@settings(max_examples=300)
@given(
    base=st.floats(0, 100),
    cap=st.floats(0, 1000),
    n=st.integers(0, 10_000),
    draw=st.floats(0, 1, exclude_max=True),
    asked=st.none() | st.integers(0, 10**9).map(str),
)
def test_delay_never_exceeds_max_backoff(
    base: float, cap: float, n: int, draw: float, asked: str | None
) -> None:
    retry = Retry(backoff=base, max_backoff=cap)
    headers = {"Retry-After": asked} if asked is not None else {}
    delay = retry_delay(retry, n, headers, lambda: draw, now=0.0)
    assert 0.0 <= delay <= cap
    if asked is not None:
        assert delay >= min(int(asked), cap)  # at least what Retry-After asks


def test_retry_after_values() -> None:
    now = 1_700_000_000.0
    assert retry_after("120", now) == 120.0
    assert retry_after(" 0 ", now) == 0.0
    date = email.utils.formatdate(now + 90, usegmt=True)
    assert retry_after(date, now) == pytest.approx(90, abs=1)
    past = email.utils.formatdate(now - 90, usegmt=True)
    assert retry_after(past, now) == 0.0
    for bad in (None, "", "-5", "1.5", "soon", "Wed, 99 Foo 2015 07:28:00"):
        assert retry_after(bad, now) is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00", now) is None  # no zone


def test_retry_after_ignored_when_not_respected() -> None:
    retry = Retry(backoff=0, respect_retry_after=False)
    assert retry_delay(retry, 0, {"Retry-After": "10"}, random.random, 0.0) == 0.0


def test_pause_for() -> None:
    retry = Retry(max_backoff=60)
    assert (
        pause_for(result(status=429, headers={"Retry-After": "5"}), retry, 0.0) == 5.0
    )
    assert (
        pause_for(result(status=503, headers={"Retry-After": "500"}), retry, 0.0) == 60
    )
    assert pause_for(result(status=503), retry, 0.0) is None
    assert (
        pause_for(result(status=500, headers={"Retry-After": "5"}), retry, 0.0) is None
    )
    off = Retry(respect_retry_after=False)
    assert pause_for(result(status=429, headers={"Retry-After": "5"}), off, 0.0) is None


# -- rate: the token bucket ---------------------------------------------------


def started(s: Scheduler[int]) -> int:
    n = 0
    while (job := s.pop()) is not None:
        s.release(job)
        n += 1
    return n


def test_rate_bucket_is_full_at_first_then_steady() -> None:
    clock = Clock()
    s: Scheduler[int] = Scheduler(100, clock=clock, rate=5)
    for _ in range(20):
        s.push(1, 1)
    assert started(s) == 5  # the burst: max(1, rate) tokens
    assert s.next_wakeup() == pytest.approx(0.2)
    clock.now = 0.19
    assert started(s) == 0
    clock.now = 0.2
    assert started(s) == 1
    clock.now = 1.2
    assert started(s) == 5


def test_rate_below_one_allows_one_start_per_interval() -> None:
    clock = Clock()
    s: Scheduler[int] = Scheduler(10, clock=clock, rate=0.5)
    for _ in range(3):
        s.push(1, 1)
    assert started(s) == 1
    clock.now = 1.9
    assert started(s) == 0
    clock.now = 2.0
    assert started(s) == 1


def test_rate_is_per_host_and_reserve_counts_hops() -> None:
    clock = Clock()
    s: Scheduler[str] = Scheduler(10, clock=clock, rate=1)
    s.push("a", "a")
    s.push("b", "b")
    assert sorted(j for j in iter(s.pop, None)) == ["a", "b"]
    assert s.reserve("a") == pytest.approx(1.0)  # a redirect hop to a waits
    assert s.reserve("c") == 0.0
    s.hold("c", 5.0)
    assert s.reserve("c") == pytest.approx(5.0)


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.1, 50),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=60),
)
def test_bucket_never_admits_more_than_rate_times_window_plus_burst(
    rate: float, gaps: list[float]
) -> None:
    clock = Clock()
    s: Scheduler[int] = Scheduler(1000, clock=clock, rate=rate)
    starts: list[float] = []
    for gap in gaps:
        clock.now += gap
        for _ in range(5):
            s.push(0, 0)
        while (job := s.pop()) is not None:
            s.release(job)
            starts.append(clock.now)
    burst = max(1.0, rate)
    for i, t0 in enumerate(starts):
        for j in range(i, len(starts)):
            window = starts[j] - t0
            assert j - i + 1 <= rate * window + burst + 1e-6


# -- the breaker ----------------------------------------------------------------

CONNECT = asyncfetch.ConnectError("http://h/: refused", request=REQ)


def test_breaker_opens_after_threshold_failures_in_a_row() -> None:
    b = Breaker(threshold=3, cooldown=30)
    assert not b.record("h", CONNECT, responded=False, now=0)
    assert not b.record("h", CONNECT, responded=False, now=1)
    assert b.gate("h", 1) is Gate.GO
    assert b.record("h", CONNECT, responded=False, now=2)  # tripped
    assert b.is_open("h")
    assert b.gate("h", 2) is Gate.DOWN
    assert "refused" in b.down_message("h", "h:80")
    assert b.gate("other", 2) is Gate.GO


def test_a_response_resets_the_count() -> None:
    b = Breaker(threshold=2)
    b.record("h", CONNECT, responded=False, now=0)
    b.record("h", None, responded=True, now=0)  # e.g. a 500: still a response
    assert not b.record("h", CONNECT, responded=False, now=0)
    timeout_after_headers = asyncfetch.FetchTimeout("x", request=REQ)
    b.record("h", timeout_after_headers, responded=True, now=0)
    assert not b.record("h", CONNECT, responded=False, now=0)
    assert len(b) == 1


def test_probe_after_cooldown() -> None:
    b = Breaker(threshold=1, cooldown=30)
    assert b.record("h", CONNECT, responded=False, now=0)
    assert b.gate("h", 29.9) is Gate.DOWN
    assert b.gate("h", 30) is Gate.PROBE
    assert b.gate("h", 30) is Gate.DOWN  # one probe at a time
    b.record("h", CONNECT, responded=False, now=31, probe=True)  # the probe failed
    assert b.gate("h", 60) is Gate.DOWN
    assert b.gate("h", 61) is Gate.PROBE
    b.abandon("h")  # cancelled: another probe may go
    assert b.gate("h", 61) is Gate.PROBE
    b.record("h", None, responded=True, now=62)
    assert b.gate("h", 62) is Gate.GO
    assert len(b) == 0


def test_a_straggler_is_not_the_probe_and_an_odd_probe_is_released() -> None:
    b = Breaker(threshold=1, cooldown=30)
    b.record("h", CONNECT, responded=False, now=0)
    assert b.gate("h", 30) is Gate.PROBE
    b.record("h", CONNECT, responded=False, now=30)  # started before it opened
    assert b.gate("h", 30) is Gate.DOWN  # the probe is still out
    invalid = asyncfetch.InvalidURL("x", request=REQ)
    b.record("h", invalid, responded=False, now=31, probe=True)  # neither answer
    assert b.gate("h", 31) is Gate.PROBE  # so another probe may go


def test_breaker_ignores_what_is_not_a_host_failure() -> None:
    b = Breaker(threshold=1)
    for error in (
        asyncfetch.InvalidURL("x", request=REQ),
        asyncfetch.HostDown("x", request=REQ),
        asyncfetch.BodyTooLarge("x", request=REQ),
        None,
    ):
        assert not b.record("h", error, responded=False, now=0)
    assert Breaker(threshold=None).record("h", CONNECT, responded=False, now=0) is False
    for error in (
        asyncfetch.TLSError,
        asyncfetch.FetchTimeout,
        asyncfetch.ProtocolError,
    ):
        assert Breaker(1).record("h", error("x", request=REQ), responded=False, now=0)


@settings(max_examples=300)
@given(
    events=st.lists(
        st.tuples(st.sampled_from(["fail", "ok", "gate", "tick"]), st.floats(0, 40)),
        max_size=80,
    )
)
def test_breaker_state_machine(events: list[tuple[str, float]]) -> None:
    """Closed until `threshold` failures in a row; open means DOWN until the
    cooldown passes; then exactly one PROBE until an outcome is recorded."""
    b = Breaker(threshold=3, cooldown=30)
    now = 0.0
    in_a_row = 0
    opened_at: float | None = None
    probe_out = False
    for kind, dt in events:
        if kind == "tick":
            now += dt
        elif kind == "ok":
            b.record("h", None, responded=True, now=now)
            in_a_row, opened_at, probe_out = 0, None, False
        elif kind == "fail":
            tripped = b.record("h", CONNECT, responded=False, now=now, probe=probe_out)
            if opened_at is None:
                in_a_row += 1
                assert tripped is (in_a_row == 3)
                if tripped:
                    opened_at = now
            else:
                assert not tripped
                if probe_out:
                    opened_at, probe_out = now, False
        else:
            gate = b.gate("h", now)
            if opened_at is None:
                assert gate is Gate.GO
            elif probe_out or now < opened_at + 30:
                assert gate is Gate.DOWN
            else:
                assert gate is Gate.PROBE
                probe_out = True
