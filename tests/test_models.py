"""Request, Result, Stats and the error tree as values: no network."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

import asyncfetch
from asyncfetch import Request, Result, Stats, Timeout
from asyncfetch._input import as_request, check_url


def make(
    content: bytes = b"", ctype: str | None = None, status: int | None = 200
) -> Result:
    headers: CIMultiDict[str] = CIMultiDict()
    if ctype is not None:
        headers["Content-Type"] = ctype
    return Result(
        Request("http://h/"),
        URL("http://h/"),
        status,
        "OK",
        CIMultiDictProxy(headers),
        content,
    )


def test_request_is_a_frozen_value() -> None:
    a = Request("http://h/x", method="post", json={"a": 1}, timeout=5, meta=[1])
    b = Request(URL("http://h/x"), method="POST", json={"a": 1}, timeout=Timeout(5))
    assert a.url == URL("http://h/x")
    assert a.method == "POST"
    assert a.timeout == Timeout(total=5)
    assert a != b  # meta differs
    assert a == dataclasses.replace(b, meta=[1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.url = URL("http://other/")  # type: ignore[misc]


@pytest.mark.parametrize(
    ("args", "kwargs", "exc"),
    [
        ((123,), {}, TypeError),
        (("http://h/",), {"method": ""}, TypeError),
        (("http://h/",), {"method": 1}, TypeError),
        (("http://h/",), {"data": b"x", "json": 1}, ValueError),
        (("http://h/",), {"timeout": -1}, ValueError),
        (("http://h/",), {"headers": ["a"]}, TypeError),
    ],
)
def test_request_rejects_programming_errors(
    args: tuple[object, ...], kwargs: dict[str, object], exc: type[Exception]
) -> None:
    with pytest.raises(exc):
        Request(*args, **kwargs)  # type: ignore[arg-type]


def test_request_and_result_and_errors_pickle() -> None:
    req = Request(
        "http://h/x", method="PUT", headers={"A": "b"}, data=b"1", meta={"id": 7}
    )
    assert pickle.loads(pickle.dumps(req)) == req
    err = asyncfetch.ConnectError("http://h/x: refused", request=req)
    err.__cause__ = OSError("boom")
    res = dataclasses.replace(make(b"body", "text/plain"), request=req, error=err)
    back = pickle.loads(pickle.dumps(res))
    assert type(back) is Result
    assert (back.status, back.content, back.url, back.meta) == (
        200,
        b"body",
        res.url,
        {"id": 7},
    )
    assert back.headers["content-type"] == "text/plain"
    assert type(back.error) is asyncfetch.ConnectError
    assert str(back.error) == str(err)
    assert back.error.request == req
    assert back.error.__cause__ is None
    status_err = asyncfetch.HTTPStatusError("x", request=req, status=503)
    back_status = pickle.loads(pickle.dumps(status_err))
    assert back_status.status == 503
    assert back_status.request == req
    assert not pickle.loads(pickle.dumps(make())).headers


def test_every_error_class_pickles_and_is_public() -> None:
    req = Request("http://h/")
    for name in asyncfetch.__all__:
        cls = getattr(asyncfetch, name)
        if isinstance(cls, type) and issubclass(cls, asyncfetch.FetchError):
            kwargs = {"status": 500} if cls is asyncfetch.HTTPStatusError else {}
            exc = cls(f"http://h/: {name}", request=req, **kwargs)
            back = pickle.loads(pickle.dumps(exc))
            assert type(back) is cls
            assert str(back) == str(exc)
            assert cls.__module__ == "asyncfetch"


def test_error_tree() -> None:
    assert issubclass(asyncfetch.HostDown, asyncfetch.ConnectError)
    assert issubclass(asyncfetch.FetchTimeout, TimeoutError)
    for name in [
        "InvalidURL",
        "ConnectError",
        "FetchTimeout",
        "TLSError",
        "TooManyRedirects",
        "BodyTooLarge",
        "ProtocolError",
        "Disallowed",
        "ParseError",
        "SaveError",
        "HTTPStatusError",
    ]:
        assert issubclass(getattr(asyncfetch, name), asyncfetch.FetchError)


@pytest.mark.parametrize(
    ("content", "ctype", "text"),
    [
        ("héllo".encode("latin-1"), "text/plain; charset=ISO-8859-1", "héllo"),
        ("héllo".encode(), "text/plain", "héllo"),
        ("héllo".encode(), None, "héllo"),
        ("héllo".encode(), 'text/html; charset="utf-8"', "héllo"),
        (b"ok\xff", "text/plain; charset=utf-8", "ok\ufffd"),
        ("héllo".encode(), "text/plain; charset=no-such-codec", "héllo"),
        ("héllo".encode(), "text/plain; charset=", "héllo"),
        ("héllo".encode("utf-16"), "text/plain; charset=utf-16", "héllo"),
    ],
)
def test_text_decoding(content: bytes, ctype: str | None, text: str) -> None:
    assert make(content, ctype).text == text


def test_result_properties_and_raise_for_status() -> None:
    ok = make(b'{"a": [1]}', "application/json")
    assert ok.ok
    assert ok.json() == {"a": [1]}
    assert ok.raise_for_status() is ok
    assert ok.meta is None
    assert (ok.parsed, ok.path, ok.depth, ok.history, ok.attempts) == (
        None,
        None,
        0,
        (),
        0,
    )
    missing = make(status=404)
    assert not missing.ok
    with pytest.raises(asyncfetch.HTTPStatusError, match="404") as info:
        missing.raise_for_status()
    assert info.value.status == 404
    err = asyncfetch.FetchTimeout("http://h/: timed out", request=ok.request)
    failed = dataclasses.replace(make(status=None), error=err)
    assert not failed.ok
    with pytest.raises(asyncfetch.FetchTimeout):
        failed.raise_for_status()
    assert "FetchTimeout" in repr(failed)
    assert "404" in repr(missing)
    assert "500 ProtocolError" in repr(
        dataclasses.replace(
            make(status=500),
            error=asyncfetch.ProtocolError("x", request=ok.request),
        )
    )


def test_stats_line() -> None:
    s = Stats(
        completed=10,
        ok=8,
        failed=1,
        retries=2,
        bytes=3 * 1024 * 1024,
        in_flight=0,
        by_status={200: 8, 404: 1},
        elapsed=2.0,
    )
    line = str(s)
    assert "\n" not in line
    for part in ("10 done", "8 ok", "1 failed", "2 retries", "3.0 MiB", "5/s", "404:1"):
        assert part in line
    assert "0 B" in str(Stats())
    assert "1.5 KiB" in str(Stats(bytes=1536))


@pytest.mark.parametrize(
    "text",
    [
        "not a url",
        "ftp://x/",
        "file:///etc/passwd",
        "http://",
        "http:///path",
        "",
        "//host/path",
        "http://exa mple.com/",
        "http://\x00/",
        "http://[::1",
        "http://a:99999/",
        "mailto:a@b.c",
    ],
)
def test_invalid_urls_are_data(text: str) -> None:
    req = as_request(text)
    error = check_url(req)
    assert isinstance(error, asyncfetch.InvalidURL)
    assert error.request is req


def test_valid_urls_and_host_keys() -> None:
    checked = check_url(Request("HTTP://Example.COM:80/a?b=1#f", params={"c": "2"}))
    assert not isinstance(checked, asyncfetch.InvalidURL)
    url, key = checked
    assert url.query["c"] == "2"
    assert key == ("http", "example.com", 80)
    assert check_url(Request("https://h/")) == (URL("https://h/"), ("https", "h", 443))
    assert as_request(URL("http://h/")).url == URL("http://h/")
    req = Request("http://h/")
    assert as_request(req) is req
    assert as_request("http://[::1").url == URL.build(path="http://[::1", encoded=True)
    bad = check_url(Request("http://h/", params=object()))
    assert isinstance(bad, asyncfetch.InvalidURL)
    with pytest.raises(TypeError, match="int"):
        as_request(5)
