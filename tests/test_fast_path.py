"""The HTTP/1.1 fast path (``_h1``) against ClientSession: the same on the wire.

The whole suite runs twice in CI (``scripts/check``): once as is, on the fast
path, and once with ``ASYNCFETCH_NO_FAST_PATH=1``, on ClientSession. The tests
here pin what only the fast path has: which requests it takes, connection
reuse and idle expiry, name resolution, its timeouts, and that a request it
sends is byte for byte what ClientSession would have sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from servers import AppServer, RawServer, eventually

import asyncfetch
from asyncfetch import Fetcher, Request, Timeout, _dial, _h1, _lane, _runs, _transport


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URLs the fast path sends, in order (the rest went through
    ClientSession): by a worker (``FastPath.send``) or by the lane."""
    seen: list[str] = []
    original = _h1.FastPath.send
    begin, connect = _lane.Lane._begin, _lane.Lane._connect

    async def send(self: _h1.FastPath, method: str, url: Any, *args: Any) -> Any:
        seen.append(str(url))
        return await original(self, method, url, *args)

    def on_conn(self: _lane.Lane, fast: Any, conn: Any, job: Any, *args: Any) -> bool:
        seen.append(str(job.url))
        return begin(self, fast, conn, job, *args)

    def on_new_conn(self: _lane.Lane, fast: Any, job: Any, *args: Any) -> Any:
        seen.append(str(job.url))
        return connect(self, fast, job, *args)

    monkeypatch.delenv(_h1.ENV_SWITCH, raising=False)
    monkeypatch.setattr(_h1.FastPath, "send", send)
    monkeypatch.setattr(_lane.Lane, "_begin", on_conn)
    monkeypatch.setattr(_lane.Lane, "_connect", on_new_conn)
    return seen


def fast_path_of(f: Fetcher) -> _h1.FastPath:
    """The open Fetcher's fast path."""
    engine = f._engine
    assert engine is not None
    fast = engine.transport._fast
    assert fast is not None
    return fast


async def one(url: str | Request, **options: Any) -> asyncfetch.Result:
    options.setdefault("retries", 0)
    [result] = await asyncfetch.fetch_all([url], **options)
    return result


async def test_plain_requests_take_the_fast_path(
    server: AppServer, sends: list[str]
) -> None:
    url = server.url("/ok")
    results = await asyncfetch.fetch_all(
        [url, Request(url, method="POST", data=b"x"), Request(url, json={"a": 1})]
    )
    assert all(r.ok for r in results)
    assert sends == [url] * 3


@pytest.mark.parametrize(
    ("request_", "options"),
    [
        (Request("/echo", method="POST", data={"form": "1"}), {}),
        (Request("/echo", headers={"Connection": "close"}), {}),
        (Request("/echo", method="GET"), {"headers": {"Transfer-Encoding": "x"}}),
        (Request("/echo", method="GET"), {"session": "caller's"}),
        (Request("/echo", method="GET"), {"proxy": "own"}),
        (Request("/echo", method="GET"), {"env": "1"}),
    ],
    ids=["form", "connection", "fetcher-te", "session", "proxy", "opt-out"],
)
async def test_what_the_fast_path_leaves_to_clientsession(
    server: AppServer,
    sends: list[str],
    monkeypatch: pytest.MonkeyPatch,
    request_: Request,
    options: dict[str, Any],
) -> None:
    options = dict(options)
    request = Request(
        server.url(str(request_.url)),
        method=request_.method,
        headers=request_.headers,
        data=request_.data,
    )
    if options.pop("env", None):
        monkeypatch.setenv(_h1.ENV_SWITCH, "1")
    session = None
    if options.get("session"):
        session = options["session"] = aiohttp.ClientSession()
    if options.get("proxy"):
        options["proxy"] = server.origin  # an http proxy that answers /echo itself
    try:
        result = await one(request, **options)
    finally:
        if session is not None:
            await session.close()
    assert sends == []
    assert result.status is not None or result.error is not None


def _wire(result: asyncfetch.Result) -> dict[str, Any]:
    sent = result.json()
    return {
        "method": sent["method"],
        "path": sent["raw_path"],
        "body": sent["body"],
        "headers": sent["headers"],
    }


WIRE_CASES = [
    Request("/echo?q=a%20b&r=%2F&é=ü"),
    Request("/echo", method="HEAD"),
    Request("/echo", method="POST", data=b"\x00\x01bytes"),
    Request("/echo", method="PUT", data="text é"),
    Request("/echo", method="PATCH", json={"a": [1, "é"]}),
    Request("/echo", method="PUT"),
    Request("/echo", method="DELETE"),
    Request("/echo", method="POST", data="x", headers={"Content-Type": "text/csv"}),
    Request("/echo", headers={"Host": "example.org", "Accept": "text/html"}),
    Request("/echo", headers={"user-agent": "req/1", "X-Multi": "1"}),
]


@pytest.mark.parametrize("case", WIRE_CASES, ids=lambda r: f"{r.method} {r.url}")
async def test_the_fast_path_sends_what_clientsession_sends(
    server: AppServer,
    monkeypatch: pytest.MonkeyPatch,
    sends: list[str],
    case: Request,
) -> None:
    request = Request(
        server.url(str(case.url)),
        method=case.method,
        headers=case.headers,
        data=case.data,
        json=case.json,
    )
    options = {"headers": {"X-Fetcher": "f", "Authorization": "Bearer t"}}
    fast = await one(request, **options)
    monkeypatch.setenv(_h1.ENV_SWITCH, "1")
    slow = await one(request, **options)
    assert len(sends) == 1  # the first went the fast way, the second did not
    assert fast.status == slow.status
    if case.method == "HEAD":
        assert fast.content == slow.content == b""
        return
    assert fast.status == 200
    assert _wire(fast) == _wire(slow)


@pytest.mark.parametrize("kept", [1024, 1])
async def test_each_origin_gets_its_own_host_line(
    server: AppServer, sends: list[str], monkeypatch: pytest.MonkeyPatch, kept: int
) -> None:
    # The bytes after a GET's request line are kept per origin, up to a bound.
    monkeypatch.setattr(_h1, "ORIGINS_KEPT", kept)
    port = server.port
    hosts = ["127.0.0.1", "localhost", "127.0.0.1", "LocalHost", "localhost"]
    async with Fetcher() as f:
        results = [
            await f.fetch(f"http://{host}:{port}/echo?h={host}") for host in hosts
        ]
        assert len(fast_path_of(f)._get_tails) == min(kept, 2)
    assert len(sends) == len(hosts)
    assert [r.json()["headers"]["Host"] for r in results] == [
        f"{host.lower()}:{port}" for host in hosts
    ]


@pytest.mark.parametrize(
    "headers", [{"X-Bad": "a\r\nX-Injected: 1"}, {"X-Bad": "a\x00"}, {"Bad Name": "1"}]
)
def test_headers_that_could_inject_lines_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"X-Bad|Bad Name"):
        Request("http://h/", headers=headers)
    with pytest.raises(ValueError, match="headers"):
        Fetcher(headers=headers)
    with pytest.raises(ValueError, match="token"):
        Request("http://h/", method="GE T")
    with pytest.raises(TypeError, match="str to str"):
        Request("http://h/", headers={"X-Num": 1})  # type: ignore[dict-item]


async def test_connections_are_reused_and_expire_when_idle(
    server: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(_h1.ENV_SWITCH, raising=False)
    monkeypatch.setattr(_h1, "KEEPALIVE", 0.2)
    before = server.connections_accepted()
    async with Fetcher(concurrency=2) as f:
        results = [r async for r in f.stream([server.url("/ok")] * 40)]
        assert all(r.ok for r in results)
        assert server.connections_accepted() - before == 2
        assert server.connections_open() == 2
        await eventually(lambda: server.connections_open() == 0, timeout=3)
        assert (await f.fetch(server.url("/ok"))).ok  # a fresh connection
        assert server.connections_accepted() - before == 3
    await eventually(lambda: server.connections_open() == 0)


async def test_surplus_idle_connections_close_once_no_work_is_left(
    server: AppServer, sends: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_h1, "IDLE_KEEP", 2)
    monkeypatch.setattr(_h1, "KEEPALIVE", 60.0)  # no idle sweep during the test
    before = server.connections_accepted()
    async with Fetcher(concurrency=6) as f:
        # Two rounds of six: the second reuses every connection of the first
        # (input was left), then all but IDLE_KEEP close, the Fetcher open.
        results = await f.fetch_all([server.url("/delay/100")] * 12)
        assert all(r.ok for r in results)
        assert server.connections_accepted() - before == 6
        await eventually(lambda: server.connections_open() == 2, timeout=3)
        # Submissions are calls of their own: when they are done, the same.
        results = await asyncio.gather(
            *(f.fetch(server.url("/delay/100")) for _ in range(6))
        )
        assert all(r.ok for r in results)
        await eventually(lambda: server.connections_open() == 2, timeout=3)
        # One request at a time keeps its connection.
        accepted = server.connections_accepted()
        for _ in range(3):
            assert (await f.fetch(server.url("/ok"))).ok
        assert server.connections_accepted() == accepted
    await eventually(lambda: server.connections_open() == 0)
    assert len(sends) == 12 + 6 + 3


async def test_idle_connections_stay_while_a_stream_has_input_left(
    server: AppServer, sends: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_h1, "IDLE_KEEP", 2)
    url = server.url("/delay/50")
    open_in_gap: list[int] = []

    async def urls() -> Any:
        for _ in range(6):
            yield url
        await asyncio.sleep(0.3)  # every worker retires; the input goes on
        open_in_gap.append(server.connections_open())
        for _ in range(6):
            yield url

    before = server.connections_accepted()
    async with Fetcher(concurrency=6) as f:
        results = [r async for r in f.stream(urls())]
        assert open_in_gap == [6]
        assert server.connections_accepted() - before == 6  # all six reused
        await eventually(lambda: server.connections_open() == 2, timeout=3)
    assert len(results) == 12
    assert all(r.ok for r in results)


async def test_a_connection_the_server_closed_is_not_reused(
    raw_server: RawServer, sends: list[str]
) -> None:
    url = raw_server.url("ok-then-close")
    async with Fetcher(retries=0, concurrency=1) as f:
        first = await f.fetch(url)
        await asyncio.sleep(0.2)  # the FIN arrives while the connection is idle
        second = await f.fetch(url)
    assert first.ok
    assert second.ok
    assert second.attempts == 1
    assert len(sends) == 2


async def test_informational_responses_are_skipped(raw_server: RawServer) -> None:
    result = await one(raw_server.url("informational"))
    assert (result.status, result.content) == (200, b"ok")


async def test_host_names_are_resolved_and_cached(
    server: AppServer, sends: list[str]
) -> None:
    url = server.url("/ok").replace("127.0.0.1", "localhost")
    async with Fetcher(concurrency=4) as f:
        results = [r async for r in f.stream([url] * 8)]
        assert ("localhost", server.port) in fast_path_of(f)._dialer._dns
    assert all(r.ok for r in results), [r.error for r in results]
    assert len(sends) == 8


async def test_an_unknown_host_is_a_connect_error(sends: list[str]) -> None:
    result = await one("http://no-such-host.invalid/x")
    assert isinstance(result.error, asyncfetch.ConnectError)
    assert "cannot resolve host" in str(result.error)
    assert isinstance(result.error.__cause__, socket.gaierror)


async def test_a_known_address_is_dialled_without_a_coroutine(
    server: AppServer, monkeypatch: pytest.MonkeyPatch, on_the_fast_path: None
) -> None:
    # An IP address, or a name looked up within DNS_TTL to one address, is
    # opened by a task running only the loop's create_connection; a name
    # to look up goes through Dialer.connect.
    ways: list[str] = []
    dial, connect = _dial.Dialer.dial, _dial.Dialer.connect

    def on_dial(self: Any, key: Any, *args: Any) -> Any:
        dialing = dial(self, key, *args)
        ways.append(f"{key[1]} " + ("connect" if dialing is None else "dial"))
        return dialing

    async def on_connect(self: Any, key: Any, *args: Any) -> Any:
        ways.append(f"{key[1]} coroutine")
        return await connect(self, key, *args)

    monkeypatch.setattr(_dial.Dialer, "dial", on_dial)
    monkeypatch.setattr(_dial.Dialer, "connect", on_connect)
    by_name = server.url("/ok").replace("127.0.0.1", "localhost")
    async with Fetcher(concurrency=2, retries=0) as f:
        assert (await f.fetch(server.url("/ok"))).ok
        assert (await f.fetch(by_name)).ok  # looked up, then cached
        hang = [f.submit(by_name.replace("/ok", "/hang")) for _ in range(2)]
        await eventually(lambda: server.connections_open() == 3)
        for future in hang:
            future.cancel()
    assert ways == [
        "127.0.0.1 dial",
        "localhost connect",
        "localhost coroutine",
        "localhost dial",  # the first took the idle connection
    ]


async def test_a_job_cancelled_as_its_connection_opens_is_not_sent(
    server: AppServer, monkeypatch: pytest.MonkeyPatch, on_the_fast_path: None
) -> None:
    # The dial task has its connection and the stream's run is cancelled
    # (as Fetcher.close does) before the lane's done callback runs: too late
    # to cancel the task, so the callback must not send, must close the
    # connection, and the slot must be freed.
    dial = _h1.FastPath.dial
    async with Fetcher(concurrency=1, retries=0) as f:
        engine = f._engine
        assert engine is not None

        def close_first(self: _h1.FastPath, *args: Any) -> Any:
            dialing = dial(self, *args)
            assert dialing is not None
            dialing.task.add_done_callback(  # runs before the lane's
                lambda _: [
                    run.cancel()
                    for run in list(engine.runs)
                    if isinstance(run, _runs.StreamRun)
                ]
            )
            return dialing

        monkeypatch.setattr(_h1.FastPath, "dial", close_first)
        stream = f.stream([server.url("/ok?first")])
        with pytest.raises(RuntimeError, match="closed while this stream was open"):
            await anext(stream)
        await eventually(lambda: engine.sched.active == 0 and not engine.workers)
        await eventually(lambda: server.connections_open() == 0)
        monkeypatch.setattr(_h1.FastPath, "dial", dial)
        assert (await f.fetch(server.url("/ok"))).ok  # the slot is free
    assert server.total_hits() == 1  # only the second request was sent


async def test_a_bug_after_opening_a_connection_reaches_the_caller(
    server: AppServer,
    host: str,
    monkeypatch: pytest.MonkeyPatch,
    on_the_fast_path: None,
) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(_h1.FastPath, "write", broken)
    async with Fetcher(concurrency=1, retries=0) as f:
        with pytest.raises(RuntimeError, match="a bug"):
            await f.fetch(server.url("/ok").replace("127.0.0.1", host))
        engine = f._engine
        assert engine is not None
        await eventually(lambda: engine.sched.active == 0 and not engine.workers)
        await eventually(lambda: server.connections_open() == 0)
    assert server.total_hits() == 0


@pytest.fixture(params=["127.0.0.1", "localhost"], ids=["dialled", "looked-up"])
def host(request: pytest.FixtureRequest) -> str:
    """A host the lane dials in a task of the loop's own (an IP address), or
    one whose name is looked up in a coroutine first (``Dialer.connect``)."""
    return str(request.param)


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full: a new connection hangs in SYN-SENT."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # fill the queue; the kernel then drops further SYNs
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.05)
        yield port
    finally:
        for s in fillers:
            s.close()
        listener.close()


async def test_connect_timeout_on_the_fast_path(
    full_backlog: int, host: str, sends: list[str]
) -> None:
    url = f"http://{host}:{full_backlog}/x"
    connect = await one(url, timeout=Timeout(total=5, connect=0.3))
    assert isinstance(connect.error, asyncfetch.FetchTimeout)
    assert "timed out connecting" in str(connect.error)
    total = await one(url, timeout=Timeout(total=0.3, connect=5))
    assert isinstance(total.error, asyncfetch.FetchTimeout)
    assert 0.25 < total.elapsed < 3
    assert len(sends) == 2


async def test_each_connect_gives_up_at_its_own_time(
    full_backlog: int, host: str, sends: list[str]
) -> None:
    # One watchdog timer serves every connection being opened: it fires for
    # the earliest, then re-arms for the next.
    url = f"http://{host}:{full_backlog}/x"
    limits = [0.6, 0.2, 1.0]
    async with Fetcher(retries=0, timeout=Timeout(total=10)) as f:
        results = await asyncio.wait_for(
            asyncio.gather(
                *(f.fetch(Request(url, timeout=Timeout(connect=c))) for c in limits)
            ),
            10,
        )
        dialer = fast_path_of(f)._dialer
        assert not dialer._opening
        assert not dialer._expired
    for result, limit in zip(results, limits, strict=True):
        assert isinstance(result.error, asyncfetch.FetchTimeout), result
        assert "timed out connecting" in str(result.error)
        assert limit - 0.05 < result.elapsed < limit + 1.5
    # 0.2 s, then 0.6 s, then 1.0 s: each one its own give-up time
    assert results[1].elapsed < results[0].elapsed < results[2].elapsed
    assert len(sends) == 3


async def test_cancelling_a_fetch_while_it_connects_is_not_a_timeout(
    full_backlog: int, host: str, sends: list[str]
) -> None:
    url = f"http://{host}:{full_backlog}/x"
    async with Fetcher(retries=0, timeout=Timeout(connect=0.3)) as f:
        waiting = f.submit(url)
        await eventually(lambda: len(sends) == 1)
        waiting.cancel()
        await asyncio.sleep(0.5)  # past the give-up time: nothing fires for it
        dialer = fast_path_of(f)._dialer
        assert not dialer._opening
        assert not dialer._expired
        late = await f.fetch(url)  # the watchdog still serves later connects
    assert waiting.cancelled()
    assert isinstance(late.error, asyncfetch.FetchTimeout)
    assert "timed out connecting" in str(late.error)


async def test_a_spent_budget_fails_before_sending(server: AppServer) -> None:
    fast = _h1.FastPath(asyncfetch._config.Options(), {})
    try:
        with pytest.raises(asyncio.TimeoutError):
            await fast.send(
                "GET", server.url("/ok"), b"", Timeout(total=1), time.monotonic() - 1
            )
    finally:
        await fast.close()
    assert server.total_hits() == 0


@pytest.mark.parametrize("verify", ["context", False])
async def test_tls_on_the_fast_path(
    tls_server: AppServer,
    client_ssl_context: ssl.SSLContext,
    sends: list[str],
    verify: str | bool,
) -> None:
    result = await one(
        tls_server.url("/ok"), verify=client_ssl_context if verify else False
    )
    assert result.ok, result.error
    assert sends == [tls_server.url("/ok")]


async def test_untrusted_certificate_on_the_fast_path(
    untrusted_tls_server: AppServer, sends: list[str]
) -> None:
    result = await one(untrusted_tls_server.url("/ok"))
    assert isinstance(result.error, asyncfetch.TLSError)
    assert "certificate not trusted" in str(result.error)
    assert len(sends) == 1


async def test_closing_the_fetcher_closes_every_connection(
    server: AppServer, sends: list[str]
) -> None:
    async with Fetcher(concurrency=8) as f:
        results = [r async for r in f.stream([server.url("/ok")] * 32)]
        assert server.connections_open() >= 1
    assert all(r.ok for r in results)
    await eventually(lambda: server.connections_open() == 0)


async def test_one_connection_serves_every_kind_of_response_in_turn(
    server: AppServer, sends: list[str]
) -> None:
    # The parser of a kept-alive connection is reused while the request
    # kind stays the same (not for HEAD, not for another read timeout).
    requests = [
        Request(server.url("/bytes/10")),
        Request(server.url("/bytes/20000?chunked=1")),
        Request(server.url("/gzip/3000")),
        Request(server.url("/bytes/30"), method="HEAD"),
        Request(server.url("/bytes/40")),
        Request(server.url("/status/204")),
        Request(server.url("/bytes/50"), timeout=Timeout(total=5, read=5)),
        Request(server.url("/bytes/60")),
        Request(server.url("/redirect/1")),
        Request(server.url("/ok"), method="POST", data=b"x"),
    ]
    before = server.connections_accepted()
    async with Fetcher(concurrency=1) as f:
        results = [await f.fetch(r) for r in requests]
    sizes = [len(r.content) for r in results]
    assert sizes == [10, 20000, 3000, 0, 40, 0, 50, 60, 4, 2], results
    assert [r.status for r in results] == [200] * 5 + [204] + [200] * 4
    assert server.connections_accepted() - before == 1
    assert len(sends) == 11  # the redirect is two


@pytest.mark.parametrize("tls", [False, True])
async def test_fast_path_connections_have_nodelay(
    server: AppServer,
    tls_server: AppServer,
    client_ssl_context: ssl.SSLContext,
    sends: list[str],
    tls: bool,
) -> None:
    """The loop sets TCP_NODELAY when it opens a connection; the fast path
    relies on that instead of setting it again."""
    url = tls_server.url("/ok") if tls else server.url("/ok")
    async with Fetcher(verify=client_ssl_context) as f:
        assert (await f.fetch(url)).ok
        [conn] = [c for idle in fast_path_of(f)._idle.values() for c in idle]
        assert conn.transport is not None
        sock = conn.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    assert sends == [url]


# -- the lane: requests driven by their connection (``_lane``) ----------------


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The responses a worker task waited for (``FastPath.receive``); the
    lane's own need no task."""
    seen: list[str] = []
    original = _h1.FastPath.receive

    async def receive(self: _h1.FastPath, conn: Any, key: Any) -> Any:
        response = await original(self, conn, key)
        seen.append(f"{response.status}")
        return response

    monkeypatch.delenv(_h1.ENV_SWITCH, raising=False)
    monkeypatch.setattr(_h1.FastPath, "receive", receive)
    return seen


@pytest.fixture
def on_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run on the fast path even in the suite's ClientSession pass."""
    monkeypatch.delenv(_h1.ENV_SWITCH, raising=False)


def in_the_lane(f: Fetcher, n: int) -> bool:
    """``n`` requests hold a slot and no worker task waits for any of them."""
    engine = f._engine
    assert engine is not None
    return engine.sched.active == n and not engine.workers


async def test_plain_requests_need_no_task_each(
    server: AppServer, waits: list[str]
) -> None:
    urls = [server.url(f"/ok?i={i}") for i in range(30)]
    async with Fetcher(concurrency=3) as f:
        results = [r async for r in f.stream(urls)]
    assert sorted(str(r.url) for r in results) == sorted(urls)
    assert all(r.ok and r.attempts == 1 and r.elapsed > 0 for r in results)
    assert waits == []  # every response was read by the lane
    assert server.total_hits() == 30


async def test_a_redirect_leaves_the_lane_for_a_worker(
    server: AppServer, waits: list[str]
) -> None:
    ok = server.url("/ok")
    urls = [ok, server.url("/redirect/1"), ok]
    async with Fetcher(concurrency=1) as f:
        results = [r async for r in f.stream(urls, ordered=True)]
        assert server.connections_open() == 1  # the same connection throughout
    assert [r.status for r in results] == [200, 200, 200]
    assert [len(r.history) for r in results] == [0, 1, 0]
    # A worker went on from the redirect (and followed it); the rest was the lane's.
    assert waits == ["302", "200"]


async def test_a_response_that_closes_its_connection_is_not_reused(
    server: AppServer,
) -> None:
    urls = [server.url("/close"), server.url("/ok"), server.url("/close")]
    results = await asyncfetch.fetch_all(urls, concurrency=1, retries=0)
    assert [(r.status, r.attempts) for r in results] == [(200, 1)] * 3


async def test_closing_a_stream_closes_the_lane_connections(
    server: AppServer, on_the_fast_path: None
) -> None:
    async with Fetcher(concurrency=3, retries=0) as f:
        stream = f.stream([server.url(f"/hang?i={i}") for i in range(3)])
        first = asyncio.ensure_future(anext(stream))
        await eventually(lambda: in_the_lane(f, 3) and server.total_hits() == 3)
        assert server.connections_open() == 3
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        await stream.aclose()
        engine = f._engine
        assert engine is not None
        assert engine.sched.active == 0
        await eventually(lambda: server.connections_open() == 0)
        assert (await f.fetch(server.url("/ok"))).ok  # the slots are free


async def test_cancelling_a_submission_in_the_lane(
    server: AppServer, on_the_fast_path: None
) -> None:
    async with Fetcher(concurrency=1, retries=0) as f:
        future = f.submit(server.url("/hang"))
        await eventually(lambda: in_the_lane(f, 1))
        future.cancel()
        await eventually(lambda: server.connections_open() == 0)
        assert (await f.fetch(server.url("/ok"))).ok


async def test_a_bug_in_the_lane_reaches_the_caller(
    server: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.delenv(_h1.ENV_SWITCH, raising=False)
    monkeypatch.setattr(_transport.Transport, "lane_result", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        await asyncfetch.fetch_all([server.url("/ok")])
    await eventually(lambda: server.connections_open() == 0)


async def test_a_job_a_worker_hands_to_the_lane_is_cancelled_there(
    server: AppServer, on_the_fast_path: None
) -> None:
    # The worker that followed the redirect takes the next job and, finding
    # the connection idle, leaves it to the lane: closing the stream must
    # still close that connection, though no task runs the job.
    urls = [server.url("/redirect/1"), server.url("/hang")]
    async with Fetcher(concurrency=1, retries=0) as f:
        stream = f.stream(urls)
        first = await anext(stream)
        assert first.ok
        await eventually(lambda: in_the_lane(f, 1) and server.connections_open() == 1)
        await stream.aclose()
        await eventually(lambda: server.connections_open() == 0)
        assert (await f.fetch(server.url("/ok"))).ok


async def test_a_redirect_from_the_lane_keeps_the_attempts_time_budget(
    server: AppServer, on_the_fast_path: None
) -> None:
    # 0.6 s to the redirect, 0.6 s more to its target: over a 1 s total,
    # counted from when the lane sent the request, not from the hand-over.
    url = server.url("/redirect-to?url=/delay/600&delay=600")
    result = await one(url, timeout=Timeout(total=1.0))
    assert isinstance(result.error, asyncfetch.FetchTimeout), result
    assert 0.9 < result.elapsed < 1.5


async def test_a_connection_with_large_answers_stays_with_its_worker(
    server: AppServer, waits: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first large body leaves the lane; the worker that read it keeps
    # the connection's next requests instead of handing each one back.
    handed: list[object] = []
    resume = asyncfetch._engine.Engine.resume

    def counted(self: Any, job: Any, conn: Any) -> None:
        handed.append(job)
        resume(self, job, conn)

    monkeypatch.setattr(asyncfetch._engine.Engine, "resume", counted)
    size = 4 * _lane.LANE_BODY
    urls = [server.url(f"/bytes/{size}?i={i}") for i in range(5)]
    results = await asyncfetch.fetch_all(urls, concurrency=1)
    assert [len(r.content) for r in results] == [size] * 5
    assert len(handed) == 1
    assert waits == ["200"] * 5
