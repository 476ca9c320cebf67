"""From an input item to a Request that can be sent, or the reason it cannot.

An item is a ``str``, a ``yarl.URL`` or a [`Request`][asyncfetch.Request]. Anything else is
a programming error (``TypeError``); a string that is not an absolute http(s)
URL is data: it becomes one result whose error is ``InvalidURL``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, Iterable

from yarl import URL

from ._errors import InvalidURL
from ._models import Request, to_url

__all__ = ["HostKey", "as_request", "check_url", "is_async"]

HostKey = tuple[str, str, int]
HTTP_SCHEMES = frozenset({"http", "https"})


def as_request(item: object) -> Request:
    """Turn an input item into a Request.

    Raises:
        TypeError: the item is not a str, a yarl.URL or a Request.
    """
    if isinstance(item, str):
        try:
            return Request._get(URL(item))
        except ValueError:
            return Request._get(to_url(item))
    if isinstance(item, Request):
        return item
    if isinstance(item, URL):
        return Request._get(item)
    raise TypeError(
        "asyncfetch expects each input item to be a str, a yarl.URL or an "
        f"asyncfetch.Request, not {type(item).__name__}: {item!r}"
    )


def host_key(url: URL) -> HostKey:
    """The scheduler's key of ``url``'s host: (scheme, host, port or 0)."""
    return (url.scheme, url.raw_host or "", url.port or 0)


_NOT_IN_A_HOST = re.compile(r"[\s\x00-\x1f\x7f]")


def check_url(request: Request) -> tuple[URL, HostKey] | InvalidURL:
    """The URL to send (``params`` applied) and its host key, or an
    ``InvalidURL`` saying why not."""
    url = request.url
    scheme = url.scheme
    host = url.raw_host
    if scheme not in HTTP_SCHEMES or not host or _NOT_IN_A_HOST.search(host):
        if url.is_absolute() and scheme and scheme not in HTTP_SCHEMES:
            why = f"scheme {scheme!r} is not http or https"
        else:
            why = "not an absolute http(s) URL"
        return InvalidURL(f"{url.human_repr()}: {why}", request=request)
    if request.params is not None:
        try:
            url = url.extend_query(request.params)
        except (TypeError, ValueError) as exc:
            return InvalidURL(f"{url}: bad params: {exc}", request=request)
    return url, host_key(url)


def is_async(urls: object) -> bool:
    """True for an async iterable input, False for a plain iterable.

    Raises:
        TypeError: ``urls`` is neither (a single str is refused too: it would be
            read one character at a time).
    """
    if isinstance(urls, AsyncIterable):
        return True
    if isinstance(urls, (str, bytes, URL, Request)):
        raise TypeError(
            "urls must be an iterable or async iterable of URLs, not a single "
            f"{type(urls).__name__}; wrap it in a list: [{urls!r}]"
        )
    if isinstance(urls, Iterable):
        return False
    raise TypeError(
        f"urls must be an iterable or async iterable of URLs, not {type(urls).__name__}"
    )
