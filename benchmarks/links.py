"""How fast ``asyncfetch.links`` reads large pages, next to the alternatives.

Usage::

    python benchmarks/links.py [--sizes 10,100,1000,5000] [--reps 5]

For generated HTML pages of each size (KiB; realistic markup: nested divs,
attributes, text, a ``<script>`` and a comment holding fake links, about one
``<a href>`` per 250 bytes, a ``<base href>``), it times, in this process:

* ``asyncfetch.links``: the whole function (its scanner, then yarl to
  resolve, filter and dedupe);
* ``asyncfetch scanner only``: the tokenizing part of the above;
* ``html.parser only``: the standard library's parser, collecting the hrefs
  (what ``asyncfetch.links`` used before its scanner; the scanner's oracle
  in the tests);
* ``regex``: ``re.finditer`` over ``<a ... href=...>`` (fast, and wrong on
  links inside scripts and comments: it is shown for scale, not as an option);
* ``selectolax`` (lexbor) and ``lxml`` (C parsers) when installed, collecting the
  hrefs only (no resolving).

It prints a markdown table: median ms per page and MiB/s over ``--reps``
runs, and how many links each found. Pure CPU, no network; bounded by
``--reps`` and the sizes.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

try:
    import asyncfetch
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import asyncfetch
from asyncfetch import _links


def make_page(kib: int, seed: int = 7) -> str:
    """An HTML page of about ``kib`` KiB."""
    rng = random.Random(seed)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>t</title>",
        "<base href='/section/'>",
        "<script>var s = '<a href=\"/not-a-link\">';</script>",
        "<!-- <a href='/commented-out'>x</a> --></head><body>",
    ]
    size = sum(map(len, parts))
    i = 0
    while size < kib * 1024:
        i += 1
        kind = rng.random()
        if kind < 0.6:
            href = f"page-{rng.randrange(10_000)}.html"
        elif kind < 0.8:
            href = f"/abs/{rng.randrange(10_000)}?q={i}#frag"
        elif kind < 0.9:
            href = f"https://other.example/{i}"
        else:
            href = "mailto:someone@example.org"
        chunk = (
            f"<div class='item c{i % 7}' data-id='{i}'><p>Item {i} &amp; "
            f"some text about it, more words here.</p>"
            f"<a class='l' href='{href}' title='go'>link {i}</a></div>\n"
        )
        parts.append(chunk)
        size += len(chunk)
    parts.append("</body></html>")
    return "".join(parts)


def result_for(html: str) -> asyncfetch.Result:
    headers = CIMultiDictProxy(
        CIMultiDict({"Content-Type": "text/html; charset=utf-8"})
    )
    url = URL("https://site.example/dir/page.html")
    return asyncfetch.Result(
        asyncfetch.Request(url), url, 200, "OK", headers, html.encode()
    )


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            for name, value in attrs:
                if name == "href" and value is not None:
                    self.hrefs.append(value)
                    break


def html_parser_only(html: str) -> int:
    parser = _Hrefs()
    parser.feed(html)
    parser.close()
    return len(parser.hrefs)


_A_HREF = re.compile(
    r"""<a\s[^>]*?href\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.I
)


def regex(html: str) -> int:
    return sum(1 for _ in _A_HREF.finditer(html))


def contenders() -> dict[str, Callable[[str], int]]:
    """name -> a function of the page text returning the number of links."""
    found: dict[str, Callable[[str], int]] = {
        "asyncfetch.links": lambda html: len(asyncfetch.links(result_for(html))),
        "asyncfetch scanner only": lambda html: len(_links._hrefs(html)[0]),
        "html.parser only": html_parser_only,
        "regex (wrong on scripts)": regex,
    }
    try:
        from selectolax.lexbor import LexborHTMLParser

        found["selectolax/lexbor (hrefs only)"] = lambda html: sum(
            1 for node in LexborHTMLParser(html).css("a[href]")
        )
    except ImportError:
        pass
    try:
        import lxml.html

        found["lxml (hrefs only)"] = lambda html: len(
            lxml.html.fromstring(html).xpath("//a/@href")
        )
    except ImportError:
        pass
    return found


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10,100,1000,5000", help="page sizes in KiB")
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    funcs = contenders()
    print("| page | extractor | links found | median ms/page | MiB/s |")
    print("|---:|---|---:|---:|---:|")
    for kib in sizes:
        html = make_page(kib)
        mib = len(html.encode()) / (1024 * 1024)
        for name, func in funcs.items():
            times = []
            count = 0
            for _ in range(max(1, args.reps)):
                t0 = time.perf_counter()
                count = func(html)
                times.append(time.perf_counter() - t0)
            median = statistics.median(times)
            print(
                f"| {kib:,} KiB | {name} | {count:,} | {median * 1000:,.1f} "
                f"| {mib / median:,.1f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
