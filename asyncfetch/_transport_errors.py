"""The translation of aiohttp, OS, ssl and timeout exceptions into FetchErrors.

Used only by ``_transport``, the one place that catches them. The table is
ordered most specific first; ``tests/test_transport.py`` enumerates every
aiohttp exception class and fails on one this table does not map.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Final

import aiohttp
from aiohttp import client_exceptions as cx
from aiohttp import http_exceptions as hx
from aiohttp.streams import EofStream
from yarl import URL

from ._errors import (
    ConnectError,
    FetchError,
    FetchTimeout,
    InvalidURL,
    ProtocolError,
    TLSError,
    TooManyRedirects,
)
from ._models import Request

__all__ = ["CATCH", "error_class", "translate"]

# Most specific first: aiohttp's certificate errors are ClientConnectorErrors
# and its timeouts are ServerConnectionErrors, so those come before the
# classes they derive from.
_TABLE: Final[tuple[tuple[type[BaseException], type[FetchError], str], ...]] = (
    (cx.ClientConnectorCertificateError, TLSError, "certificate not trusted"),
    (cx.ClientConnectorSSLError, TLSError, "TLS handshake failed"),
    (cx.ClientSSLError, TLSError, "TLS handshake failed"),
    (cx.ServerFingerprintMismatch, TLSError, "certificate fingerprint mismatch"),
    # The fast path (``_h1``) meets these bare, before aiohttp would wrap them.
    (ssl.SSLCertVerificationError, TLSError, "certificate not trusted"),
    (ssl.SSLError, TLSError, "TLS failure"),
    (ssl.CertificateError, TLSError, "certificate not valid"),
    (cx.ConnectionTimeoutError, FetchTimeout, "timed out connecting"),
    (cx.SocketTimeoutError, FetchTimeout, "timed out reading"),
    (cx.ServerTimeoutError, FetchTimeout, "timed out"),
    (asyncio.TimeoutError, FetchTimeout, "timed out"),
    (cx.ClientConnectorDNSError, ConnectError, "cannot resolve host"),
    (socket.gaierror, ConnectError, "cannot resolve host"),
    (cx.ClientProxyConnectionError, ConnectError, "cannot connect to proxy"),
    (cx.ClientConnectorError, ConnectError, "cannot connect"),
    (cx.ClientHttpProxyError, ConnectError, "proxy refused the tunnel"),
    (cx.TooManyRedirects, TooManyRedirects, "too many redirects"),
    (cx.InvalidURL, InvalidURL, "invalid URL"),
    (cx.NonHttpUrlClientError, InvalidURL, "not an http(s) URL"),
    (cx.RedirectClientError, InvalidURL, "invalid redirect"),
    (cx.ClientPayloadError, ProtocolError, "broken response body"),
    (cx.ServerDisconnectedError, ProtocolError, "server disconnected"),
    (cx.ClientResponseError, ProtocolError, "malformed response"),
    (hx.HttpProcessingError, ProtocolError, "malformed response"),
    (cx.UploadAbortedError, ProtocolError, "request body upload aborted"),
    (cx.ClientConnectionError, ProtocolError, "connection lost"),
    (cx.ClientError, ProtocolError, "client error"),
    (cx.WSMessageTypeError, ProtocolError, "unexpected websocket message"),
    (EofStream, ProtocolError, "connection closed early"),
)

# Raised with no aiohttp wrapper: the phase decides.
_PLAIN_OS: Final = (OSError,)


def error_class(
    exc_type: type[BaseException], *, sent: bool
) -> tuple[type[FetchError], str] | None:
    """The FetchError class and a short description for an exception type.

    ``sent`` tells whether the request had been sent (the connection was up):
    a bare ``OSError`` is a ``ConnectError`` before and a ``ProtocolError``
    after. Returns ``None`` for an exception asyncfetch does not translate
    (a bug, or a cancellation), which must propagate.
    """
    for cls, error, what in _TABLE:
        if issubclass(exc_type, cls):
            return error, what
    if issubclass(exc_type, _PLAIN_OS):
        if sent:
            return ProtocolError, "connection lost"
        return ConnectError, "cannot connect"
    return None


CATCH: Final = (
    aiohttp.ClientError,
    hx.HttpProcessingError,
    OSError,
    asyncio.TimeoutError,
)


def translate(
    exc: BaseException, request: Request, url: URL, *, sent: bool
) -> FetchError:
    """Build the FetchError for a caught exception, chained to it."""
    found = error_class(type(exc), sent=sent)
    if found is None:  # pragma: no cover - _CATCH and _TABLE agree; tested
        raise exc
    cls, what = found
    detail = str(exc).strip()
    message = f"{url}: {what}" + (f" ({detail})" if detail and detail != what else "")
    error = cls(message, request=request)
    error.__cause__ = _detached(exc)
    return error


def _detached(exc: BaseException) -> BaseException:
    """Drop the tracebacks of a chain that a result keeps.

    A traceback holds the frames it passed through, and with them the
    transport, the session and the response: a million failed results must
    not keep those alive. The exceptions, their types and messages stay.
    """
    link: BaseException | None = exc
    for _ in range(8):
        if link is None:
            break
        link.__traceback__ = None
        link = link.__cause__ or link.__context__
    return exc
