"""asyncfetch.links: <a href> targets of an HTML page."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from servers import AppServer
from yarl import URL

import asyncfetch
from asyncfetch import Request, Result, links

PAGE = """<!doctype html>
<html><head><title>t</title></head><body>
<a href="/a">a</a>
<a href="b.html#part">b</a>
<a href="  /a  ">a again</a>
<a href="HTTP://Other.Example:80/x?q=1&amp;r=2">other</a>
<a href="//cdn.example/c">protocol-relative</a>
<a href="mailto:me@example.org">mail</a>
<a href="javascript:void(0)">js</a>
<a href="ftp://example.org/f">ftp</a>
<a href="#top">same page</a>
<a href="">empty</a>
<a name="no-href">anchor</a>
<a href="http://[::1">broken</a>
<A HREF="/upper">upper</A>
<link href="/not-a-link.css">
</body></html>"""


def page(
    body: str,
    ctype: str = "text/html; charset=utf-8",
    url: str = "https://ex.org/dir/p",
) -> Result:
    headers = CIMultiDictProxy(CIMultiDict({"Content-Type": ctype}))
    return Result(Request(url), URL(url), 200, "OK", headers, body.encode())


def test_links_resolved_deduplicated_http_only() -> None:
    assert [str(u) for u in links(page(PAGE))] == [
        "https://ex.org/a",
        "https://ex.org/dir/b.html",
        "http://other.example/x?q=1&r=2",
        "https://cdn.example/c",
        "https://ex.org/upper",
    ]


def test_base_href_is_used_wherever_it_stands() -> None:
    html = '<a href="x">x</a><base href="https://base.example/root/"><base href="/ignored/">'
    assert links(page(html)) == [URL("https://base.example/root/x")]
    relative = '<base href="../up/"><a href="y">y</a>'
    assert links(page(relative)) == [URL("https://ex.org/up/y")]


@pytest.mark.parametrize(
    "ctype", ["application/json", "text/plain", "", "image/png", "text/htmlx"]
)
def test_not_html_gives_nothing(ctype: str) -> None:
    assert links(page(PAGE, ctype)) == []


def test_xhtml_and_error_statuses_are_read() -> None:
    assert links(page('<a href="/z">z</a>', "application/xhtml+xml")) == [
        URL("https://ex.org/z")
    ]
    result = page('<a href="/home">home</a>')
    not_found = Result(
        result.request, result.url, 404, "Not Found", result.headers, result.content
    )
    assert links(not_found) == [URL("https://ex.org/home")]
    empty = Result(result.request, result.url, 200, "OK", result.headers, b"")
    assert links(empty) == []


async def test_links_of_a_fetched_page(server: AppServer) -> None:
    [result] = await asyncfetch.fetch_all([server.url("/html")])
    assert links(result) == [URL(server.url("/ok"))]
    [data] = await asyncfetch.fetch_all([server.url("/json")])
    assert links(data) == []
