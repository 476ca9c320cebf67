"""Options, resolved once at the edge into frozen, validated objects.

Inner layers receive one ``Options``; nothing below this module looks
at keyword arguments or re-checks a value.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ._version import __version__

if TYPE_CHECKING:
    from ._models import Stats

__all__ = ["DEFAULT_MAX_BYTES", "Options", "Retry", "Timeout"]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
USER_AGENT = f"asyncfetch/{__version__}"


TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_LINE_BREAKING = re.compile(r"[\r\n\x00]")


def check_headers(headers: Mapping[Any, Any], what: str) -> None:
    """Refuse header names and values that are not str, or that could end a line.

    Raises:
        TypeError: a name or value is not a str.
        ValueError: a name is not an HTTP token, or a value holds CR, LF or NUL
            (header injection).
    """
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"{what} must map str to str, not {name!r}: {value!r}")
        if not TOKEN.fullmatch(name):
            raise ValueError(f"{what}: {name!r} is not a valid header name")
        if _LINE_BREAKING.search(value):
            raise ValueError(
                f"{what}: the value of {name!r} holds CR, LF or NUL, "
                "which could inject headers"
            )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_seconds(name: str, value: object) -> float | None:
    if value is None:
        return None
    if not _is_number(value):
        raise ValueError(f"{name} must be a number of seconds or None, not {value!r}")
    seconds = float(value)  # type: ignore[arg-type]
    if not seconds > 0:  # also rejects NaN
        raise ValueError(f"{name} must be > 0, not {value!r}")
    return seconds


@dataclass(frozen=True, slots=True)
class Timeout:
    """Time limits for one attempt, in seconds; ``None`` means no limit of that kind.

    The clock starts when the attempt gets its slot: time spent waiting for
    ``concurrency``, ``per_host``, ``rate``, a host pause or a retry backoff
    never counts.

    Args:
        total: the whole attempt, redirects and the body included.
        connect: opening a connection, the TLS handshake included.
        read: the longest wait for any one piece of the response.

    Raises:
        ValueError: a value is not a positive number or ``None``.

    Example:
        ```python
        asyncfetch.fetch_all(urls, timeout=asyncfetch.Timeout(total=60, connect=5))
        ```
    """

    total: float | None = None
    connect: float | None = None
    read: float | None = None

    def __post_init__(self) -> None:
        for name in ("total", "connect", "read"):
            checked = _check_seconds(f"timeout.{name}", getattr(self, name))
            object.__setattr__(self, name, checked)

    @classmethod
    def of(cls, value: object, name: str = "timeout") -> Timeout:
        """Turn a number of seconds (``Timeout(total=...)``) or a Timeout into one."""
        if isinstance(value, Timeout):
            return value
        if value is None or _is_number(value):
            return cls(total=_check_seconds(name, value))
        raise ValueError(f"{name} must be seconds, a Timeout or None, not {value!r}")


DEFAULT_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True, slots=True)
class Retry:
    """When and how a failed attempt is tried again.

    Retries happen on ``ConnectError`` (not ``HostDown``), ``FetchTimeout``,
    ``ProtocolError`` and the listed statuses, only for the listed methods,
    with exponential backoff and full jitter, waiting at least what a
    ``Retry-After`` header asks (capped at ``max_backoff``). A retry waits
    without holding a slot.

    Args:
        attempts: attempts in all, the first one included (``retries=n`` means
            ``Retry(attempts=n + 1)``).
        backoff: the base of the exponential backoff, in seconds.
        max_backoff: the longest wait before a retry, in seconds.
        statuses: response statuses that are retried.
        methods: methods that are retried (idempotent ones by default).
        respect_retry_after: honour ``Retry-After`` on retries and pause the
            host on a 429 or 503 that carries one.

    Raises:
        ValueError: a value is out of range or of the wrong type.

    Example:
        ```python
        retry = asyncfetch.Retry(attempts=5, backoff=1.0, statuses={503})
        results = await asyncfetch.fetch_all(urls, retries=retry)
        ```
    """

    attempts: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0
    statuses: frozenset[int] = field(default=DEFAULT_STATUSES)
    methods: frozenset[str] = field(default=DEFAULT_METHODS)
    respect_retry_after: bool = True

    def __post_init__(self) -> None:
        if not _is_int(self.attempts) or self.attempts < 1:
            raise ValueError(
                f"retries.attempts must be an int >= 1, not {self.attempts!r}"
            )
        for name in ("backoff", "max_backoff"):
            value = getattr(self, name)
            if not _is_number(value) or not value >= 0:
                raise ValueError(f"retries.{name} must be a number >= 0, not {value!r}")
            object.__setattr__(self, name, float(value))
        statuses = self.statuses
        if isinstance(statuses, (str, bytes)) or not isinstance(statuses, Iterable):
            raise ValueError(
                f"retries.statuses must be a set of ints, not {statuses!r}"
            )
        statuses = frozenset(statuses)
        if not all(_is_int(s) and 100 <= s <= 599 for s in statuses):
            raise ValueError(
                f"retries.statuses must hold HTTP statuses, not {statuses!r}"
            )
        object.__setattr__(self, "statuses", statuses)
        methods = self.methods
        if isinstance(methods, (str, bytes)) or not isinstance(methods, Iterable):
            raise ValueError(f"retries.methods must be a set of str, not {methods!r}")
        if not all(isinstance(m, str) for m in methods):
            raise ValueError(f"retries.methods must be a set of str, not {methods!r}")
        object.__setattr__(self, "methods", frozenset(m.upper() for m in methods))
        if not isinstance(self.respect_retry_after, bool):
            raise ValueError(
                f"retries.respect_retry_after must be a bool, not {self.respect_retry_after!r}"
            )

    @classmethod
    def of(cls, value: object) -> Retry:
        """Turn ``retries=n`` (``Retry(attempts=n + 1)``) or a Retry into one."""
        if isinstance(value, Retry):
            return value
        if not _is_int(value):
            raise ValueError(f"retries must be an int or a Retry, not {value!r}")
        if value < 0:  # type: ignore[operator]
            raise ValueError(f"retries must be >= 0, not {value!r}")
        return cls(attempts=value + 1)  # type: ignore[operator]


def _count(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an int, not {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, not {value!r}")
    return value


def _optional_count(name: str, value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an int or None, not {value!r}")
    return _count(name, value)


def _rate(value: object) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"rate must be a number > 0 or None, not {value!r}")
    return float(value)


@overload
def _at_least_zero(name: str, value: object) -> int: ...
@overload
def _at_least_zero(name: str, value: object, *, allow_none: bool) -> int | None: ...
def _at_least_zero(name: str, value: object, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        kind = "an int >= 0 or None" if allow_none else "an int >= 0"
        raise ValueError(f"{name} must be {kind}, not {value!r}")
    return value


def _headers(value: object) -> CIMultiDictProxy[str]:
    if value is None:
        return CIMultiDictProxy(CIMultiDict())
    if not isinstance(value, Mapping):
        raise ValueError(f"headers must be a mapping of str to str, not {value!r}")
    try:
        check_headers(value, "headers")
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    headers: CIMultiDict[str] = CIMultiDict()
    for name, val in value.items():
        headers.add(name, val)
    return CIMultiDictProxy(headers)


def _proxy(value: object) -> URL | None:
    if value is None:
        return None
    if not isinstance(value, (str, URL)):
        raise ValueError(f"proxy must be an http(s) URL, not {value!r}")
    try:
        url = URL(value)
    except ValueError as exc:
        raise ValueError(f"proxy must be an http(s) URL, not {value!r}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"proxy must be an http(s) URL, not {value!r}")
    return url


@dataclass(frozen=True, slots=True)
class Options:
    """Every option of a Fetcher, validated; built by ``from_kwargs``."""

    concurrency: int = 100
    per_host: int | None = None
    rate: float | None = None
    timeout: Timeout = field(default_factory=lambda: Timeout(total=30.0))
    retry: Retry = field(default_factory=Retry)
    max_bytes: int | None = DEFAULT_MAX_BYTES
    max_redirects: int = 10
    headers: CIMultiDictProxy[str] = field(default_factory=lambda: _headers(None))
    verify: bool | ssl.SSLContext = True
    proxy: URL | None = None
    session: Any = None
    max_host_failures: int | None = 20
    progress: bool | Callable[[Stats], object] = False

    @classmethod
    def from_kwargs(
        cls,
        *,
        concurrency: object = 100,
        per_host: object = None,
        rate: object = None,
        timeout: object = 30.0,
        retries: object = 2,
        max_bytes: object = DEFAULT_MAX_BYTES,
        max_redirects: object = 10,
        headers: object = None,
        verify: object = True,
        proxy: object = None,
        session: object = None,
        max_host_failures: object = 20,
        progress: object = False,
    ) -> Options:
        """Validate the public keyword arguments; raise ``ValueError`` naming the option."""
        if not isinstance(verify, (bool, ssl.SSLContext)):
            raise ValueError(
                f"verify must be a bool or an ssl.SSLContext, not {verify!r}"
            )
        if not (isinstance(progress, bool) or callable(progress)):
            raise ValueError(f"progress must be a bool or a callable, not {progress!r}")
        if session is not None:
            from ._transport import check_session  # the only aiohttp-aware module

            check_session(session)
        return cls(
            concurrency=_count("concurrency", concurrency),
            per_host=_optional_count("per_host", per_host),
            rate=_rate(rate),
            timeout=Timeout.of(timeout),
            retry=Retry.of(retries),
            max_bytes=_at_least_zero("max_bytes", max_bytes, allow_none=True),
            max_redirects=_at_least_zero("max_redirects", max_redirects),
            headers=_headers(headers),
            verify=verify,
            proxy=_proxy(proxy),
            session=session,
            max_host_failures=_optional_count("max_host_failures", max_host_failures),
            progress=progress,
        )

    @property
    def read_ahead(self) -> int:
        """How many items a stream may read ahead of what it has delivered."""
        return 2 * self.concurrency + 100
