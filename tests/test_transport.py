"""One attempt on the wire: bodies, redirects, headers, TLS, proxies, error mapping."""

from __future__ import annotations

import asyncio
import inspect
import ssl

import aiohttp
import pytest
from aiohttp import client_exceptions, http_exceptions
from servers import AppServer, RawServer

import asyncfetch
from asyncfetch import Fetcher, Request
from asyncfetch._transport import error_class


async def one(url: str | Request, **options: object) -> asyncfetch.Result:
    options.setdefault("retries", 0)
    [result] = await asyncfetch.fetch_all([url], **options)  # type: ignore[arg-type]
    return result


# -- bodies ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/bytes/100000", "/bytes/100000?chunked=1"])
async def test_large_bodies_arrive_whole(server: AppServer, path: str) -> None:
    result = await one(server.url(path))
    assert result.content == b"x" * 100000


@pytest.mark.parametrize(
    "path", ["/bytes/1001", "/bytes/1001?chunked=1", "/gzip/1001", "/deflate/1001"]
)
async def test_max_bytes_counts_after_decompression(
    server: AppServer, path: str
) -> None:
    result = await one(server.url(path), max_bytes=1000)
    assert isinstance(result.error, asyncfetch.BodyTooLarge)
    assert result.status == 200
    assert result.content == b""
    assert "max_bytes=1000" in str(result.error)
    fits = await one(server.url(path.replace("1001", "1000")), max_bytes=1000)
    assert fits.ok
    assert len(fits.content) == 1000


async def test_max_bytes_none_and_zero(server: AppServer) -> None:
    assert len((await one(server.url("/bytes/5000"), max_bytes=None)).content) == 5000
    assert (await one(server.url("/status/204"), max_bytes=0)).ok
    assert isinstance(
        (await one(server.url("/ok"), max_bytes=0)).error, asyncfetch.BodyTooLarge
    )


async def test_gzip_bomb_is_stopped_while_reading(raw_server: RawServer) -> None:
    result = await one(
        raw_server.url("gzip-bomb", size=100 * 1024 * 1024), max_bytes=1 << 20
    )
    assert isinstance(result.error, asyncfetch.BodyTooLarge)


async def test_decompressed_content(server: AppServer) -> None:
    result = await one(server.url("/gzip/5000"))
    assert result.content == b"a" * 5000


async def test_text_and_json_from_the_wire(server: AppServer) -> None:
    assert (await one(server.url("/charset/latin-1"))).text == "héllo wörld"
    assert (await one(server.url("/charset-none"))).text == "héllo wörld"
    assert (await one(server.url("/charset-bad"))).text == "héllo wörld"
    assert (await one(server.url("/invalid-utf8"))).text == "ok\ufffd\ufffd"
    assert (await one(server.url("/json"))).json() == {"hello": "world", "n": 1}


async def test_head_and_methods(server: AppServer) -> None:
    head = await one(Request(server.url("/bytes/50"), method="HEAD"))
    assert (head.status, head.content) == (200, b"")
    put = await one(Request(server.url("/echo"), method="put", json={"a": 1}))
    assert put.json()["method"] == "PUT"
    assert put.json()["body"] == '{"a": 1}'
    params = await one(Request(server.url("/echo?x=1"), params={"y": "2"}))
    assert params.json()["path_qs"] == "/echo?x=1&y=2"
    assert str(params.url).endswith("/echo?x=1&y=2")


# -- redirects -------------------------------------------------------------


async def test_redirects_are_followed_with_history(server: AppServer) -> None:
    result = await one(server.url("/redirect/3"))
    assert result.ok
    assert result.content == b"done"
    assert str(result.url) == server.url("/redirect/0")
    assert [str(u) for u in result.history] == [
        server.url(f"/redirect/{n}") for n in (3, 2, 1)
    ]


async def test_too_many_redirects(server: AppServer) -> None:
    result = await one(server.url("/redirect/3"), max_redirects=2)
    assert isinstance(result.error, asyncfetch.TooManyRedirects)
    assert result.status == 302
    assert str(result.url) == server.url("/redirect/1")
    # every URL that answered with a redirect, the last one included
    assert [str(u) for u in result.history] == [
        server.url(f"/redirect/{n}") for n in (3, 2, 1)
    ]
    assert "more than 2 redirects" in str(result.error)
    loop = await one(server.url("/redirect-loop"))
    assert isinstance(loop.error, asyncfetch.TooManyRedirects)
    assert len(loop.history) == 11
    once = await one(server.url("/redirect/2"), max_redirects=1)
    assert str(once.error).endswith("more than 1 redirect")


async def test_max_redirects_zero_returns_the_redirect(server: AppServer) -> None:
    result = await one(server.url("/redirect/1"), max_redirects=0)
    assert (result.status, result.error, result.ok) == (302, None, True)
    assert [str(u) for u in result.history] == [server.url("/redirect/1")]
    assert result.headers["Location"] == "/redirect/0"


@pytest.mark.parametrize(
    "target",
    ["ftp://example.org/x", "file:///etc/passwd", "data:text/plain,hi", "http://"],
)
async def test_redirect_to_another_scheme_is_an_error(
    server: AppServer, target: str
) -> None:
    result = await one(server.url(f"/redirect-to?url={target}"))
    assert isinstance(result.error, asyncfetch.InvalidURL)
    assert result.status == 302
    assert not result.ok


async def test_credentials_not_forwarded_to_another_origin(
    server: AppServer, server2: AppServer
) -> None:
    headers = {"Authorization": "secret", "Cookie": "c=1", "X-Keep": "yes"}
    other = await one(
        Request(server.url(f"/redirect-to?url={server2.url('/echo')}"), headers=headers)
    )
    sent = other.json()["headers"]
    assert "Authorization" not in sent
    assert "Cookie" not in sent
    assert sent["X-Keep"] == "yes"
    same = await one(Request(server.url("/redirect-to?url=/echo"), headers=headers))
    assert same.json()["headers"]["Authorization"] == "secret"


@pytest.mark.parametrize(
    ("status", "method"), [(303, "GET"), (302, "GET"), (307, "POST")]
)
async def test_redirect_method_rewriting(
    server: AppServer, status: int, method: str
) -> None:
    result = await one(
        Request(
            server.url(f"/redirect-to?url=/echo&status={status}"),
            method="POST",
            data=b"x",
        )
    )
    assert result.json()["method"] == method
    assert result.json()["body"] == ("x" if method == "POST" else "")


# -- headers ---------------------------------------------------------------


async def test_default_user_agent_and_headers(server: AppServer) -> None:
    sent = (await one(server.url("/echo"))).json()["headers"]
    assert sent["User-Agent"] == f"asyncfetch/{asyncfetch.__version__}"
    sent = (
        await one(server.url("/echo"), headers={"User-Agent": "bot/2", "X-A": "1"})
    ).json()["headers"]
    assert (sent["User-Agent"], sent["X-A"]) == ("bot/2", "1")
    req = Request(server.url("/echo"), headers={"user-agent": "req/3", "X-B": "2"})
    sent = (await one(req, headers={"X-A": "1"})).json()["headers"]
    assert (sent["User-Agent"], sent["X-A"], sent["X-B"]) == ("req/3", "1", "2")


async def test_cookies_are_not_kept_between_requests(server: AppServer) -> None:
    async with Fetcher() as f:
        await f.fetch(server.url("/set-cookie"))
        sent = (await f.fetch(server.url("/echo"))).json()["headers"]
    assert "Cookie" not in sent


# -- TLS and proxies -------------------------------------------------------


async def test_tls_verified_with_a_trusted_ca(
    tls_server: AppServer, client_ssl_context: ssl.SSLContext
) -> None:
    result = await one(tls_server.url("/ok"), verify=client_ssl_context)
    assert result.ok


async def test_untrusted_certificate_is_a_tls_error(
    untrusted_tls_server: AppServer,
) -> None:
    result = await one(untrusted_tls_server.url("/ok"))
    assert isinstance(result.error, asyncfetch.TLSError)
    assert result.status is None
    assert "certificate" in str(result.error).lower()
    insecure = await one(untrusted_tls_server.url("/ok"), verify=False)
    assert insecure.ok


async def test_plain_http_to_a_tls_port_is_an_error(tls_server: AppServer) -> None:
    url = tls_server.url("/ok").replace("https://", "http://")
    result = await one(url, timeout=5)
    assert isinstance(result.error, asyncfetch.FetchError)


async def test_proxy_receives_the_request(
    server: AppServer, server2: AppServer
) -> None:
    # server2 plays a forward proxy: aiohttp's server routes the absolute-form
    # request line by its path, so /echo answers with what the proxy received.
    result = await one(server.url("/echo"), proxy=server2.origin)
    assert result.ok
    assert server2.total_hits() == 1
    assert server.total_hits() == 0
    assert result.json()["headers"]["Host"] == f"{server.host}:{server.port}"


# -- misbehaving peers and the error mapping ---------------------------------


@pytest.mark.parametrize(
    ("mode", "error", "status"),
    [
        ("reset", asyncfetch.ProtocolError, None),
        ("close", asyncfetch.ProtocolError, None),
        ("status-only", asyncfetch.ProtocolError, None),
        ("garbage", asyncfetch.ProtocolError, None),
        ("bad-chunked", asyncfetch.ProtocolError, None),
        ("big-header", asyncfetch.ProtocolError, None),
        ("truncated", asyncfetch.ProtocolError, 200),
        ("reset-mid-body", asyncfetch.ProtocolError, 200),
        ("silence", asyncfetch.FetchTimeout, None),
        ("silent-body", asyncfetch.FetchTimeout, 200),
    ],
)
async def test_misbehaving_peers(
    raw_server: RawServer, mode: str, error: type[Exception], status: int | None
) -> None:
    url = raw_server.url(mode)
    result = await one(url, timeout=0.5)
    assert type(result.error) is error, result.error
    assert result.status == status
    assert url in str(result.error)
    assert result.content == b""
    assert isinstance(result.error.__cause__, Exception)
    assert not isinstance(result.error.__cause__, asyncfetch.FetchError)


async def test_refused_is_a_connect_error(closed_port: int) -> None:
    result = await one(f"http://127.0.0.1:{closed_port}/x")
    assert type(result.error) is asyncfetch.ConnectError
    assert result.attempts == 1


async def test_drip_and_ok_modes_succeed(raw_server: RawServer) -> None:
    assert (await one(raw_server.url("ok"))).content == b"ok"
    drip = await one(raw_server.url("drip", interval_ms=1))
    assert len(drip.content) == 100


def all_aiohttp_exceptions() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for module in (client_exceptions, http_exceptions, aiohttp):
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.startswith("aiohttp"):
                found.append(obj)
    return sorted(set(found), key=lambda c: c.__qualname__)


@pytest.mark.parametrize("exc_type", all_aiohttp_exceptions(), ids=lambda c: c.__name__)
def test_every_aiohttp_exception_is_mapped(exc_type: type[BaseException]) -> None:
    if issubclass(exc_type, Warning):
        pytest.skip("a warning category, never raised by a request")
    web_only = exc_type.__module__.startswith("aiohttp.web")
    ws_only = exc_type.__name__.startswith(("WS", "WebSocket"))
    if (web_only or ws_only) and not issubclass(exc_type, aiohttp.ClientError):
        pytest.skip("server-side or websocket-only")
    for sent in (False, True):
        found = error_class(exc_type, sent=sent)
        assert found is not None, f"{exc_type} is not mapped"
        assert issubclass(found[0], asyncfetch.FetchError)


@pytest.mark.parametrize(
    ("exc_type", "sent", "expected"),
    [
        (client_exceptions.ClientConnectorCertificateError, False, asyncfetch.TLSError),
        (client_exceptions.ClientConnectorSSLError, False, asyncfetch.TLSError),
        (client_exceptions.ClientConnectorDNSError, False, asyncfetch.ConnectError),
        (client_exceptions.ClientConnectorError, False, asyncfetch.ConnectError),
        (client_exceptions.ConnectionTimeoutError, False, asyncfetch.FetchTimeout),
        (client_exceptions.SocketTimeoutError, True, asyncfetch.FetchTimeout),
        (asyncio.TimeoutError, True, asyncfetch.FetchTimeout),
        (client_exceptions.ServerDisconnectedError, True, asyncfetch.ProtocolError),
        (client_exceptions.ClientPayloadError, True, asyncfetch.ProtocolError),
        (client_exceptions.ClientOSError, True, asyncfetch.ProtocolError),
        (client_exceptions.ClientHttpProxyError, False, asyncfetch.ConnectError),
        (client_exceptions.TooManyRedirects, True, asyncfetch.TooManyRedirects),
        (client_exceptions.NonHttpUrlRedirectClientError, True, asyncfetch.InvalidURL),
        (http_exceptions.BadStatusLine, True, asyncfetch.ProtocolError),
        (ConnectionResetError, False, asyncfetch.ConnectError),
        (ConnectionResetError, True, asyncfetch.ProtocolError),
        (ssl.SSLCertVerificationError, False, asyncfetch.TLSError),
    ],
)
def test_mapping_is_most_specific_first(
    exc_type: type[BaseException], sent: bool, expected: type[Exception]
) -> None:
    found = error_class(exc_type, sent=sent)
    assert found is not None
    assert found[0] is expected


def test_bugs_are_not_mapped() -> None:
    assert error_class(KeyError, sent=True) is None
    assert error_class(asyncio.CancelledError, sent=True) is None


async def test_stored_errors_keep_no_frames_alive(
    closed_port: int, raw_server: RawServer
) -> None:
    for url in (f"http://127.0.0.1:{closed_port}/", raw_server.url("truncated")):
        result = await one(url)
        link: BaseException | None = result.error
        assert link is not None
        assert link.__traceback__ is None
        link = link.__cause__
        assert link is not None
        while link is not None:
            assert link.__traceback__ is None, repr(link)
            link = link.__cause__ or link.__context__


async def test_a_session_that_raises_for_status_still_gives_data(
    server: AppServer,
) -> None:
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        result = await one(server.url("/status/404"), session=session)
    assert (result.status, result.error) == (404, None)


def test_a_session_from_another_loop_is_refused() -> None:
    async def make() -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    async def use(session: aiohttp.ClientSession) -> None:
        with pytest.raises(ValueError, match="another event loop"):
            async with Fetcher(session=session):
                pass

    loop = asyncio.new_event_loop()
    try:
        session = loop.run_until_complete(make())
        asyncio.run(use(session))
        loop.run_until_complete(session.close())
    finally:
        loop.close()


async def test_credentials_in_fetcher_headers_are_dropped_across_origins(
    server: AppServer, server2: AppServer
) -> None:
    url = server.url(f"/redirect-to?url={server2.url('/echo')}")
    result = await one(url, headers={"Authorization": "secret", "X-Keep": "yes"})
    sent = result.json()["headers"]
    assert "Authorization" not in sent
    assert sent["X-Keep"] == "yes"
    direct = await one(server2.url("/echo"), headers={"Authorization": "secret"})
    assert direct.json()["headers"]["Authorization"] == "secret"


async def test_invalid_url_message_shows_the_text() -> None:
    result = await one("not a url")
    assert "not a url" in str(result.error)


async def test_a_decompression_bomb_never_exists_decoded_in_memory(
    raw_server: RawServer,
) -> None:
    """100 MiB of zeros, gzip-compressed to ~100 KiB: stopped at max_bytes
    while streaming, so the decoded body is never held (peak Python memory
    stays far below the 100 MiB it would take)."""
    import tracemalloc

    url = raw_server.url("gzip-bomb", size=100 * 1024 * 1024)
    tracemalloc.start()
    try:
        result = await one(url, max_bytes=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(result.error, asyncfetch.BodyTooLarge)
    assert peak < 16 * 1024 * 1024
