"""The exceptions asyncfetch raises or stores on a result.

Every error a fetch can end with is a [`FetchError`][asyncfetch.FetchError]; no aiohttp
exception ever reaches a caller (the original one may be the ``__cause__``)::

    FetchError(Exception)
    ├── InvalidURL            not an absolute http(s) URL
    ├── ConnectError          no connection: DNS, refused, reset while connecting
    │   └── HostDown          the host's breaker is open; never retried
    ├── FetchTimeout          also a builtin TimeoutError
    ├── TLSError              certificate or handshake failure
    ├── TooManyRedirects
    ├── BodyTooLarge          the body (after decompression) passed max_bytes
    ├── ProtocolError         reset, closed or malformed after the request was sent
    ├── Disallowed            robots.txt forbids the URL
    ├── ParseError            the parse callable raised; it is the __cause__
    ├── SaveError             the body could not be written to disk
    └── HTTPStatusError       only from Result.raise_for_status(); has .status

Errors pickle: the unpickled copy has the same type, message, ``request`` and
``status``, but not ``__cause__``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._models import Request

__all__ = [
    "BodyTooLarge",
    "ConnectError",
    "Disallowed",
    "FetchError",
    "FetchTimeout",
    "HTTPStatusError",
    "HostDown",
    "InvalidURL",
    "ParseError",
    "ProtocolError",
    "SaveError",
    "TLSError",
    "TooManyRedirects",
]


def _restore(cls: type[FetchError], message: str, state: dict[str, Any]) -> FetchError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.__dict__.update(state)
    return exc


class FetchError(Exception):
    """The base class of every error a fetch can end with.

    Args:
        message: what went wrong; asyncfetch's own messages start with the URL.
        request: the [`Request`][asyncfetch.Request] that failed.

    Example:
        ```python
        try:
            result.raise_for_status()
        except asyncfetch.FetchError as exc:
            print(exc.request.url, exc)
        ```
    """

    request: Request

    def __init__(self, message: str, *, request: Request) -> None:
        super().__init__(message)
        self.request = request

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), str(self), dict(self.__dict__)))


class InvalidURL(FetchError):
    """The URL is not an absolute http(s) URL (also a redirect to one that is not)."""


class ConnectError(FetchError):
    """No connection: DNS failure, refused, reset or closed while connecting."""


class HostDown(ConnectError):
    """The host's breaker is open (see ``max_host_failures``); never retried."""


class FetchTimeout(FetchError, TimeoutError):
    """An attempt ran out of time (``timeout``); also a builtin ``TimeoutError``."""


class TLSError(FetchError):
    """The TLS handshake failed, most often because the certificate is not trusted."""


class TooManyRedirects(FetchError):
    """More redirects than ``max_redirects`` in one fetch."""


class BodyTooLarge(FetchError):
    """The body, counted after decompression, grew past ``max_bytes``."""


class ProtocolError(FetchError):
    """After the request was sent: reset, closed early, or a malformed response."""


class Disallowed(FetchError):
    """robots.txt forbids the URL (``crawl(..., robots=True)``)."""


class ParseError(FetchError):
    """The ``parse`` callable raised; the exception it raised is ``__cause__``."""


class SaveError(FetchError):
    """The body could not be written to disk (permissions, disk full, a symlink)."""


class HTTPStatusError(FetchError):
    """Raised by [`raise_for_status`][asyncfetch.Result.raise_for_status] for a status of 400 or more.

    Args:
        message: the text of the error.
        request: the request that got the status.
        status: the HTTP status code.
    """

    status: int

    def __init__(self, message: str, *, request: Request, status: int) -> None:
        super().__init__(message, request=request)
        self.status = status


for _cls in (
    FetchError,
    InvalidURL,
    ConnectError,
    HostDown,
    FetchTimeout,
    TLSError,
    TooManyRedirects,
    BodyTooLarge,
    ProtocolError,
    Disallowed,
    ParseError,
    SaveError,
    HTTPStatusError,
):
    _cls.__module__ = "asyncfetch"
del _cls
