"""Self-tests for the test servers and the async runner in conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import ssl
import time
import zlib
from urllib.parse import quote

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from servers import BIG_HEADER_SIZE, CHARSET_TEXT, AppServer, RawServer, eventually

TIMEOUT = aiohttp.ClientTimeout(total=5)


def session(**kwargs: object) -> aiohttp.ClientSession:
    kwargs.setdefault("timeout", TIMEOUT)
    return aiohttp.ClientSession(**kwargs)  # type: ignore[arg-type]


async def fetch(url: str, **kwargs: object) -> tuple[int, bytes]:
    async with session() as s, s.get(url, **kwargs) as resp:  # type: ignore[arg-type]
        return resp.status, await resp.read()


async def raw_exchange(
    host: str, port: int, request: bytes, read_for: float = 2.0
) -> bytes:
    """Send ``request`` on a raw socket and read until EOF (or ``read_for`` s)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        chunks: list[bytes] = []

        async def read_all() -> None:
            while chunk := await reader.read(65536):
                chunks.append(chunk)

        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(read_all(), read_for)
        return b"".join(chunks)
    finally:
        writer.close()
        await writer.wait_closed()


def get_request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()


# -- the runner ---------------------------------------------------------------


async def test_runner_uses_fresh_debug_loop() -> None:
    assert asyncio.get_running_loop().get_debug()


@settings(max_examples=5, deadline=None)
@given(n=st.integers(0, 5000))
async def test_runner_supports_hypothesis(server: AppServer, n: int) -> None:
    assert asyncio.get_running_loop().get_debug()
    assert await fetch(server.url(f"/bytes/{n}")) == (200, b"x" * n)


# -- AppServer ----------------------------------------------------------------


async def test_url_and_attributes(server: AppServer, server2: AppServer) -> None:
    assert server.url("/a?b=c") == f"http://127.0.0.1:{server.port}/a?b=c"
    assert server.url("ok") == server.url("/ok")
    assert (server.host, server.scheme) == ("127.0.0.1", "http")
    assert server2.host == "127.0.0.2"
    assert await fetch(server2.url("/ok")) == (200, b"ok")


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"])
async def test_ok(server: AppServer, method: str) -> None:
    async with session() as s, s.request(method, server.url("/ok")) as resp:
        assert resp.status == 200
        assert await resp.read() == (b"" if method == "HEAD" else b"ok")


@pytest.mark.parametrize("n", [0, 1, 200_000])
@pytest.mark.parametrize("chunked", [False, True])
async def test_bytes(server: AppServer, n: int, chunked: bool) -> None:
    url = server.url(f"/bytes/{n}" + ("?chunked=1" if chunked else ""))
    async with session() as s, s.get(url) as resp:
        assert resp.content_type == "application/octet-stream"
        assert (resp.headers.get("Transfer-Encoding") == "chunked") is chunked
        assert (resp.content_length is None) is chunked
        assert await resp.read() == b"x" * n


@pytest.mark.parametrize("code", [200, 201, 299, 404, 500, 503, 599])
async def test_status(server: AppServer, code: int) -> None:
    assert await fetch(server.url(f"/status/{code}")) == (
        code,
        f"status {code}".encode(),
    )


@pytest.mark.parametrize("code", [204, 304])
async def test_status_without_body(server: AppServer, code: int) -> None:
    assert await fetch(server.url(f"/status/{code}")) == (code, b"")


async def test_delay(server: AppServer) -> None:
    start = time.monotonic()
    assert await fetch(server.url("/delay/150")) == (200, b"ok")
    assert time.monotonic() - start >= 0.15


async def test_redirects(server: AppServer) -> None:
    async with session() as s:
        async with s.get(server.url("/redirect/3"), allow_redirects=False) as resp:
            assert resp.status == 302
            assert resp.headers["Location"] == "/redirect/2"
        async with s.get(server.url("/redirect/3")) as resp:
            assert (resp.status, await resp.text()) == (200, "done")
            assert len(resp.history) == 3
        target = "http://example.invalid/x?y=%20z"
        url = server.url(f"/redirect-to?status=307&url={quote(target, safe='')}")
        async with s.get(url, allow_redirects=False) as resp:
            assert resp.status == 307
            assert resp.headers["Location"] == target
        async with s.get(server.url("/redirect-loop"), allow_redirects=False) as resp:
            assert resp.status == 302
            assert resp.headers["Location"] == "/redirect-loop"
        with pytest.raises(aiohttp.TooManyRedirects):
            await s.get(server.url("/redirect-loop"), max_redirects=3)


async def test_echo(server: AppServer) -> None:
    async with (
        session() as s,
        s.patch(
            server.url("/echo?a=1&b=%C3%A9"),
            data=b"caf\xe9",
            headers={"X-Test": "yes"},
        ) as resp,
    ):
        echo = await resp.json()
    assert echo["method"] == "PATCH"
    assert echo["path_qs"] == "/echo?a=1&b=%C3%A9"
    assert echo["raw_path"] == "/echo?a=1&b=%C3%A9"
    assert echo["headers"]["X-Test"] == "yes"
    assert echo["headers"]["Content-Length"] == "4"
    assert echo["body"] == "caf\xe9"


async def test_echo_last_header_value_wins(server: AppServer) -> None:
    request = (
        b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Dup: 1\r\nX-Dup: 2\r\n"
        b"Connection: close\r\n\r\n"
    )
    data = await raw_exchange(server.host, server.port, request)
    assert b'"X-Dup": "2"' in data


@pytest.mark.parametrize(
    ("kind", "decompress"), [("gzip", gzip.decompress), ("deflate", zlib.decompress)]
)
async def test_compressed(server: AppServer, kind: str, decompress: object) -> None:
    async with (
        session(auto_decompress=False) as s,
        s.get(server.url(f"/{kind}/5000")) as resp,
    ):
        assert resp.headers["Content-Encoding"] == kind
        raw = await resp.read()
    assert len(raw) < 5000
    assert decompress(raw) == b"a" * 5000  # type: ignore[operator]
    assert await fetch(server.url(f"/{kind}/5000")) == (200, b"a" * 5000)


@pytest.mark.parametrize("charset", ["utf-8", "latin-1", "utf-16", "cp1252"])
async def test_charset(server: AppServer, charset: str) -> None:
    async with session() as s, s.get(server.url(f"/charset/{charset}")) as resp:
        assert resp.headers["Content-Type"] == f"text/plain; charset={charset}"
        assert await resp.read() == CHARSET_TEXT.encode(charset)
        assert await resp.text() == CHARSET_TEXT


async def test_charset_oddities(server: AppServer) -> None:
    async with session() as s:
        async with s.get(server.url("/charset-none")) as resp:
            assert resp.headers["Content-Type"] == "text/plain"
            assert await resp.read() == CHARSET_TEXT.encode()
        async with s.get(server.url("/charset-bad")) as resp:
            assert resp.headers["Content-Type"] == "text/plain; charset=no-such-codec"
            assert await resp.read() == CHARSET_TEXT.encode()
        async with s.get(server.url("/invalid-utf8")) as resp:
            assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
            assert await resp.read() == b"ok\xff\xfe"
        async with s.get(server.url("/charset/no-such-codec")) as resp:
            assert resp.status == 400


async def test_small_routes(server: AppServer) -> None:
    async with session() as s:
        async with s.get(server.url("/json")) as resp:
            assert resp.content_type == "application/json"
            assert await resp.json() == {"hello": "world", "n": 1}
        async with s.get(server.url("/html")) as resp:
            assert resp.content_type == "text/html"
            assert "<html>" in await resp.text()
        async with s.get(server.url("/retry-after/7")) as resp:
            assert (resp.status, resp.headers["Retry-After"]) == (429, "7")
        async with s.get(server.url("/set-cookie")) as resp:
            assert resp.headers["Set-Cookie"] == "a=1"
            assert resp.cookies["a"].value == "1"


async def test_headers_big(server: AppServer) -> None:
    with pytest.raises(aiohttp.ClientResponseError, match="8190"):
        await fetch(server.url("/headers-big"))
    data = await raw_exchange(server.host, server.port, get_request("/headers-big"))
    assert b"\r\nX-Big: " + b"b" * BIG_HEADER_SIZE + b"\r\n" in data


async def test_track_and_counters(server: AppServer) -> None:
    async with session() as s:

        async def track(group: str) -> None:
            async with s.get(server.url(f"/track/{group}?delay_ms=200")) as resp:
                assert await resp.text() == "ok"

        before = time.monotonic()
        await asyncio.gather(*[track("a") for _ in range(4)], track("b"), track("b"))
    assert (server.hits("a"), server.hits("b"), server.hits("c")) == (4, 2, 0)
    assert (server.max_in_flight("a"), server.max_in_flight("b")) == (4, 2)
    assert server.max_in_flight_total() == 6
    assert server.in_flight() == 0
    assert server.total_hits() == 6
    starts = server.start_times("a")
    assert len(starts) == 4
    assert all(before <= t <= time.monotonic() for t in starts)
    server.reset()
    assert (server.hits("a"), server.max_in_flight_total(), server.total_hits()) == (
        0,
        0,
        0,
    )
    assert server.start_times("a") == []


async def test_total_hits_counts_every_route(server: AppServer) -> None:
    assert server.total_hits() == 0  # the autouse fixture reset it
    await fetch(server.url("/ok"))
    await fetch(server.url("/no-such-route"))
    assert server.total_hits() == 2


async def test_slow_body(server: AppServer) -> None:
    start = time.monotonic()
    async with session() as s, s.get(server.url("/slow-body/1005?delay_ms=30")) as resp:
        headers_after = time.monotonic() - start
        assert resp.content_length == 1005
        body = await resp.read()
    total = time.monotonic() - start
    assert body == b"x" * 1005
    assert headers_after < 0.1
    assert total >= 0.3


async def test_hang_is_cancelled_when_client_leaves(server: AppServer) -> None:
    with pytest.raises(asyncio.TimeoutError):
        async with session(timeout=aiohttp.ClientTimeout(total=0.2)) as s:
            await s.get(server.url("/hang"))
    await eventually(lambda: server.connections_open() == 0)


async def test_connections_open(server: AppServer) -> None:
    await eventually(lambda: server.connections_open() == 0)
    async with session() as s:
        for _ in range(3):
            async with s.get(server.url("/ok")) as resp:
                await resp.read()
        assert server.connections_open() == 1  # kept alive and reused
        assert server.connections_accepted() == 1
        await asyncio.gather(*[s.get(server.url("/delay/100")) for _ in range(3)])
        assert server.connections_open() == 3
    await eventually(lambda: server.connections_open() == 0)


async def test_tls(
    tls_server: AppServer,
    untrusted_tls_server: AppServer,
    client_ssl_context: ssl.SSLContext,
) -> None:
    assert tls_server.url("/ok").startswith("https://127.0.0.1:")
    assert await fetch(tls_server.url("/ok"), ssl=client_ssl_context) == (200, b"ok")
    localhost = f"https://localhost:{tls_server.port}/json"
    assert (await fetch(localhost, ssl=client_ssl_context))[0] == 200
    assert tls_server.total_hits() == 2
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await fetch(untrusted_tls_server.url("/ok"), ssl=client_ssl_context)
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await fetch(tls_server.url("/ok"))  # the system trust store knows no test CA
    await eventually(lambda: tls_server.connections_open() == 0)


async def test_closed_port(closed_port: int) -> None:
    with pytest.raises(aiohttp.ClientConnectorError):
        await fetch(f"http://127.0.0.1:{closed_port}/")
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", closed_port)) != 0


# -- RawServer ----------------------------------------------------------------


# aiohttp retries an idempotent request once after ClientOSError or
# ServerDisconnectedError, even on a fresh connection: those modes see 2 hits.
@pytest.mark.parametrize(
    ("mode", "error", "match", "hits"),
    [
        ("reset", aiohttp.ClientOSError, "reset by peer", 2),
        ("close", aiohttp.ServerDisconnectedError, None, 2),
        ("garbage", aiohttp.ClientResponseError, "Bad status line", 1),
        ("truncated", aiohttp.ClientPayloadError, "received 100 of 1000 ", 1),
        ("reset-mid-body", aiohttp.ClientPayloadError, "received 1000 of 100000", 1),
        ("bad-chunked", aiohttp.ClientResponseError, "chunk size", 1),
        ("big-header", aiohttp.ClientResponseError, "8190", 1),
        ("status-only", aiohttp.ServerDisconnectedError, None, 2),
    ],
)
async def test_raw_failures(
    raw_server: RawServer,
    mode: str,
    error: type[Exception],
    match: str | None,
    hits: int,
) -> None:
    with pytest.raises(error, match=match):
        await fetch(raw_server.url(mode))
    assert raw_server.hits(mode) == hits
    await eventually(lambda: raw_server.connections_open() == 0)
    assert raw_server.errors == []


async def test_raw_reset_is_a_tcp_rst(raw_server: RawServer) -> None:
    for mode in ("reset", "reset-mid-body"):
        reader, writer = await asyncio.open_connection(raw_server.host, raw_server.port)
        writer.write(get_request(f"/{mode}"))
        with pytest.raises(ConnectionResetError):
            while await reader.read(65536):
                pass
        writer.close()
        with pytest.raises(ConnectionResetError):
            await writer.wait_closed()


@pytest.mark.parametrize("mode", ["silence", "silent-body"])
async def test_raw_silence(raw_server: RawServer, mode: str) -> None:
    timeout = aiohttp.ClientTimeout(sock_read=0.2)
    with pytest.raises(aiohttp.SocketTimeoutError):
        await fetch(raw_server.url(mode), timeout=timeout)
    await eventually(lambda: raw_server.connections_open() == 0)
    data = await raw_exchange(
        raw_server.host, raw_server.port, get_request(f"/{mode}"), read_for=0.2
    )
    expected = b"" if mode == "silence" else b"HTTP/1.1 200 OK\r\nContent-Length: 10"
    assert data.startswith(expected)
    assert not data.endswith(b"\r\n\r\n\r\n")
    await eventually(lambda: raw_server.connections_open() == 0)
    assert raw_server.hits(mode) == 2


async def test_raw_ok_keeps_alive_and_drip(raw_server: RawServer) -> None:
    async with session() as s:
        for _ in range(2):
            async with s.get(raw_server.url("ok")) as resp:
                assert (resp.status, await resp.read()) == (200, b"ok")
        start = time.monotonic()
        async with s.get(raw_server.url("drip", interval_ms=3)) as resp:
            assert await resp.read() == b"d" * 100
        assert time.monotonic() - start >= 0.3
        async with s.get(raw_server.url("no-such-mode")) as resp:
            assert resp.status == 404
    assert raw_server.connections_accepted() == 1
    assert (raw_server.hits("ok"), raw_server.hits("drip")) == (2, 1)
    assert raw_server.total_hits() == 4
    raw_server.reset()
    assert (raw_server.total_hits(), raw_server.connections_accepted()) == (0, 0)


@pytest.mark.parametrize("size", [None, 1_000_000])
async def test_raw_gzip_bomb(raw_server: RawServer, size: int | None) -> None:
    params = {} if size is None else {"size": size}
    async with (
        session(auto_decompress=False) as s,
        s.get(raw_server.url("gzip-bomb", **params)) as resp,
    ):
        assert resp.headers["Content-Encoding"] == "gzip"
        body = await resp.read()
        assert resp.content_length == len(body) < 200 * 1024
    inflater = zlib.decompressobj(31)
    total = 0
    while body:
        out = inflater.decompress(body, 1024 * 1024)
        assert out.count(0) == len(out)
        total += len(out)
        body = inflater.unconsumed_tail
    assert inflater.eof
    assert total == (size or 100 * 1024 * 1024)


def test_raw_url(raw_server: RawServer) -> None:
    assert raw_server.url("ok") == f"http://127.0.0.1:{raw_server.port}/ok"
    assert raw_server.url("drip", interval_ms=5).endswith("/drip?interval_ms=5")
