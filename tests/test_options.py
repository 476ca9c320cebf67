"""Options are validated at the edge: a bad value is a ValueError naming it."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

import asyncfetch
from asyncfetch import Retry, Timeout
from asyncfetch._config import USER_AGENT, Options

BAD = [
    ("concurrency", 0),
    ("concurrency", -1),
    ("concurrency", 1.5),
    ("concurrency", "10"),
    ("concurrency", True),
    ("concurrency", None),
    ("per_host", 0),
    ("per_host", "2"),
    ("rate", 0),
    ("rate", -1.0),
    ("rate", "fast"),
    ("rate", float("nan")),
    ("timeout", 0),
    ("timeout", -5),
    ("timeout", "30"),
    ("timeout", float("nan")),
    ("retries", -1),
    ("retries", 1.0),
    ("retries", "2"),
    ("max_bytes", -1),
    ("max_bytes", 1.5),
    ("max_redirects", -1),
    ("max_redirects", None),
    ("max_host_failures", 0),
    ("max_host_failures", "20"),
    ("headers", ["User-Agent: x"]),
    ("headers", {"X": 1}),
    ("verify", "yes"),
    ("verify", None),
    ("proxy", "socks5://127.0.0.1:1080"),
    ("proxy", "not a url"),
    ("proxy", 8080),
    ("session", object()),
    ("progress", "yes"),
]


@pytest.mark.parametrize(("name", "value"), BAD)
def test_bad_option_raises_value_error_naming_it(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name):
        asyncfetch.Fetcher(**{name: value})


@pytest.mark.parametrize(("name", "value"), BAD[:6])
async def test_fetch_all_validates_before_any_request(
    name: str, value: Any, server: Any
) -> None:
    with pytest.raises(ValueError, match=name):
        await asyncfetch.fetch_all([server.url("/ok")], **{name: value})
    assert server.total_hits() == 0


def test_defaults_match_the_contract() -> None:
    o = Options.from_kwargs()
    assert o.concurrency == 100
    assert o.per_host is None
    assert o.rate is None
    assert o.timeout == Timeout(total=30.0)
    assert o.retry == Retry(attempts=3)
    assert o.max_bytes == 64 * 1024 * 1024
    assert o.max_redirects == 10
    assert o.verify is True
    assert o.proxy is None
    assert o.max_host_failures == 20
    assert o.progress is False
    assert o.read_ahead == 300
    assert f"asyncfetch/{asyncfetch.__version__}" == USER_AGENT


def test_retries_int_means_attempts_plus_one() -> None:
    assert Options.from_kwargs(retries=0).retry.attempts == 1
    assert Options.from_kwargs(retries=5).retry.attempts == 6
    r = Retry(attempts=2, statuses={503}, methods={"get"})
    assert Options.from_kwargs(retries=r).retry is r
    assert r.methods == frozenset({"GET"})
    assert r.statuses == frozenset({503})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"attempts": 1.0},
        {"backoff": -1},
        {"max_backoff": "x"},
        {"statuses": "500"},
        {"statuses": {99}},
        {"statuses": 5},
        {"methods": "GET"},
        {"methods": {1}},
        {"methods": 3},
        {"respect_retry_after": 1},
    ],
)
def test_bad_retry(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="retries"):
        Retry(**kwargs)


def test_timeout_forms() -> None:
    assert Timeout.of(5) == Timeout(total=5.0)
    assert Timeout.of(None) == Timeout()
    t = Timeout(total=None, connect=1, read=2.5)
    assert Timeout.of(t) is t
    assert (t.connect, t.read) == (1.0, 2.5)
    with pytest.raises(ValueError, match=r"timeout\.read"):
        Timeout(read=0)
    with pytest.raises(ValueError, match="timeout"):
        Timeout.of([1])
    assert Options.from_kwargs(timeout=None).timeout == Timeout()


def test_good_values_are_kept() -> None:
    ctx = ssl.create_default_context()
    o = Options.from_kwargs(
        concurrency=3,
        per_host=1,
        rate=2,
        max_bytes=None,
        max_redirects=0,
        headers={"X-A": "1"},
        verify=ctx,
        proxy="http://127.0.0.1:3128",
        max_host_failures=None,
        progress=print,
    )
    assert o.rate == 2.0
    assert o.max_bytes is None
    assert o.verify is ctx
    assert str(o.proxy) == "http://127.0.0.1:3128"
    assert o.headers["x-a"] == "1"
    assert o.max_host_failures is None


async def test_closed_session_is_refused() -> None:
    import aiohttp

    session = aiohttp.ClientSession()
    await session.close()
    with pytest.raises(ValueError, match="session"):
        asyncfetch.Fetcher(session=session)
