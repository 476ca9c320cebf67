"""asyncfetch.links: <a href> targets of an HTML page."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from servers import AppServer
from yarl import URL

import asyncfetch
from asyncfetch import Request, Result, _links, links

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


# -- the scanner against the standard library's html.parser, as the oracle ----


class _Oracle(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.base: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("a", "base"):
            return
        href = next((v for k, v in attrs if k == "href" and v is not None), None)
        if href is None:
            return
        if tag == "a":
            self.hrefs.append(href)
        elif self.base is None:
            self.base = href

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def oracle(html: str) -> tuple[list[str], str | None]:
    parser = _Oracle()
    parser.feed(html)
    parser.close()
    return parser.hrefs, parser.base


TRICKY = [
    PAGE,
    "<a href=x>1</a><a href='y'>2</a><a href=\"z\">3</a>",
    "<a  HREF = 'spaced' >s</a><a title='t' href='second'>",
    "<a href='q&amp;r&#38;s&lt;t'>entities</a><a href=a&b>bare</a>",
    "<!-- <a href='/commented'> --><a href='/after-comment'>",
    "<script>var a = '<a href=\"/in-script\">';</script><a href='/after'>",
    "<SCRIPT type='x'>'<a href=/s2>'</SCRIPT ><a href='/after2'>",
    "<style>a[href='/css'] {}</style><a href='/after-style'>",
    "<div title=\"<a href='/in-attr'>\"><a href='/real'></div>",
    "<a href='/one' href='/two'>first href wins</a>",
    "<a data-href='/no' href='/yes'>",
    "<a href='/self-closing'/>",
    "<abbr href='/not-a'><a-b href='/custom'><a\thref='/tab'>",
    "<base href='/b1/'><base href='/b2/'><a href='rel'>",
    "<a href=''>empty</a><a href>no value</a><a>none</a>",
    "<a href='multi\nline'>nl</a><a href=\"x>y\">gt in quotes</a>",
    "text < not a tag <a href='/lt'> 3 > 2",
    "<p><a href='/p1'><img src='i.png' alt='<a href=/img>'></a></p>",
]


@pytest.mark.parametrize("html", TRICKY)
def test_the_scanner_reads_what_html_parser_reads(html: str) -> None:
    assert _links._hrefs(html) == oracle(html)


_piece = st.sampled_from(
    [
        "<a href='/a'>",
        '<a href="/b?x=1&amp;y=2">',
        "<a href=/c>",
        "<A HREF='/d'>",
        "</a>",
        "<div class='x'>",
        "</div>",
        "<!-- <a href='/in-comment'> -->",
        "<script>",
        "</script>",
        "<style>",
        "</style>",
        "<base href='/base/'>",
        "<p title='<a href=/t>'>",
        "text ",
        "a < b ",
        "&amp; ",
        "<img src='x'/>",
        "\n",
    ]
)


def test_an_unterminated_comment_runs_to_the_end() -> None:
    # As in HTML5 (html.parser, at close(), gives up differently).
    assert _links._hrefs("<a href='/a'><!-- <a href='/b'><a href='/c'>") == (
        ["/a"],
        None,
    )


@given(st.lists(_piece, max_size=40).map("".join))
def test_the_scanner_agrees_with_html_parser_on_tag_soup(html: str) -> None:
    assert _links._hrefs(html) == oracle(html)
