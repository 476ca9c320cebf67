"""``asyncfetch.links``: the ``<a href>`` targets of an HTML page."""

from __future__ import annotations

from html.parser import HTMLParser

from yarl import URL

from ._input import HTTP_SCHEMES
from ._models import Result

__all__ = ["links"]

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})


class _Hrefs(HTMLParser):
    """Collects every ``<a href>`` and the first ``<base href>``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.base: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            for name, value in attrs:
                if name == "href" and value is not None:
                    self.hrefs.append(value)
                    break
        elif tag == "base" and self.base is None:
            for name, value in attrs:
                if name == "href" and value is not None:
                    self.base = value
                    break


def _join(base: URL, href: str) -> URL | None:
    href = href.strip()
    if not href or href.startswith("#"):
        return None  # this same document
    try:
        url = base.join(URL(href))
    except ValueError:
        return None
    if url.scheme not in HTTP_SCHEMES or not url.raw_host:
        return None
    return url.with_fragment(None)


def links(result: Result) -> list[URL]:
    """The ``<a href>`` targets of an HTML result, as absolute URLs.

    Only ``text/html`` and ``application/xhtml+xml`` bodies are read, whatever
    the status. Each ``href`` is resolved against ``<base href>`` (itself
    resolved against ``result.url``) or else ``result.url``; only http(s)
    targets are kept, fragments are dropped, and duplicates are removed,
    first occurrence first. Links to the page itself (``""``, ``"#top"``)
    are left out.

    Args:
        result: a [`Result`][asyncfetch.Result] with its body in ``content``.

    Returns:
        A list of ``yarl.URL``; ``[]`` for anything that is not HTML.

    Example:
        ```python
        result = await f.fetch("https://example.org/")
        for url in asyncfetch.links(result):
            print(url)
        ```
    """
    ctype = result.headers.get("Content-Type", "")
    if ctype.split(";", 1)[0].strip().lower() not in HTML_TYPES or not result.content:
        return []
    parser = _Hrefs()
    parser.feed(result.text)
    parser.close()
    base = result.url
    if parser.base is not None:
        base = _join(result.url, parser.base) or result.url
    seen: set[URL] = set()
    found: list[URL] = []
    for href in parser.hrefs:
        url = _join(base, href)
        if url is not None and url not in seen:
            seen.add(url)
            found.append(url)
    return found
