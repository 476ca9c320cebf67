"""Retry decisions, backoff and Retry-After: pure functions, no I/O, no sleeping.

The random source and the wall clock are arguments, so every decision can be
tested exactly. Backoff is "full jitter" (AWS Architecture Blog, "Exponential
Backoff And Jitter", 2015): a uniform draw between 0 and
``min(max_backoff, backoff * 2 ** (retry - 1))``, which spreads the retries
of many clients instead of synchronising them.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Mapping

from ._config import Retry
from ._errors import ConnectError, FetchTimeout, HostDown, ProtocolError
from ._models import Request, Result

__all__ = [
    "PAUSE_STATUSES",
    "backoff",
    "is_retryable",
    "pause_for",
    "retry_after",
    "retry_delay",
]

RETRIED_ERRORS = (ConnectError, FetchTimeout, ProtocolError)
PAUSE_STATUSES = frozenset({429, 503})


def is_retryable(result: Result, retry: Retry, method: str) -> bool:
    """Whether the attempt that gave ``result`` may be tried again.

    Errors: ``ConnectError`` (not ``HostDown``), ``FetchTimeout`` and
    ``ProtocolError``; responses: a status in ``retry.statuses``; both only
    for a method in ``retry.methods``. Whether attempts are left is the
    caller's to check.
    """
    if method not in retry.methods:
        return False
    error = result.error
    if error is not None:
        return isinstance(error, RETRIED_ERRORS) and not isinstance(error, HostDown)
    return result.status in retry.statuses


def resendable(request: Request) -> bool:
    """Whether the request's body can be sent again as it was the first time.

    Bytes, text, a form mapping or a list of pairs, and any ``json`` value
    can; a file object, a generator or another stream was consumed by the
    first attempt, so such a request is never retried.
    """
    data = request.data
    return data is None or isinstance(
        data, (bytes, bytearray, str, Mapping, list, tuple)
    )


def backoff(retry: Retry, retries_done: int, random: Callable[[], float]) -> float:
    """The jittered wait before retry number ``retries_done + 1``.

    Args:
        retry: the policy.
        retries_done: retries made so far (0 before the first retry).
        random: returns a float in [0, 1), like ``random.random``.
    """
    if retries_done >= 64:  # 2 ** 64 * backoff is past any sane max_backoff
        cap = retry.max_backoff
    else:
        cap = min(retry.max_backoff, retry.backoff * 2.0**retries_done)
    return random() * cap


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds asked for by a ``Retry-After`` header, or ``None`` if unusable.

    Args:
        value: the header value: delay-seconds (``"120"``) or an HTTP-date
            (``"Wed, 21 Oct 2015 07:28:00 GMT"``).
        now: the current wall-clock time (``time.time()``), for HTTP-dates.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        return None
    return max(0.0, when.timestamp() - now)


def retry_delay(
    retry: Retry,
    retries_done: int,
    headers: Mapping[str, str],
    random: Callable[[], float],
    now: float,
) -> float:
    """How long to wait before the next retry: the jittered backoff, but at
    least what ``Retry-After`` asks (capped at ``max_backoff``)."""
    delay = backoff(retry, retries_done, random)
    if retry.respect_retry_after:
        asked = retry_after(headers.get("Retry-After"), now)
        if asked is not None:
            delay = max(delay, min(asked, retry.max_backoff))
    return delay


def pause_for(result: Result, retry: Retry, now: float) -> float | None:
    """How long a 429 or 503 with ``Retry-After`` pauses its whole host.

    ``None`` when the response asks for no pause or ``respect_retry_after``
    is off; the pause is capped at ``max_backoff``.
    """
    if not retry.respect_retry_after or result.status not in PAUSE_STATUSES:
        return None
    asked = retry_after(result.headers.get("Retry-After"), now)
    if asked is None:
        return None
    return min(asked, retry.max_backoff)
