"""robots.txt rules for a crawl, per RFC 9309, parsed by protego.

A host's robots.txt is fetched once (by ``_crawl``) and turned here into
``Rules``: what an unavailable or unreachable file means is decided by the
RFC from the fetch's result; the file's own rules are protego's (the group
of our product token, else ``*``; the longest match wins; ``*`` and ``$``
wildcards; ``Crawl-delay``).
"""

from __future__ import annotations

from typing import Final

from yarl import URL

from ._errors import BodyTooLarge, InvalidURL, TooManyRedirects
from ._models import Result

__all__ = ["ROBOTS_REDIRECTS", "Rules", "product_token", "rules_from"]

#: Redirects followed for a robots.txt, whatever ``max_redirects`` says (RFC 9309).
ROBOTS_REDIRECTS: Final = 5

# Errors that mean the file is unavailable (like a 4xx: everything is
# allowed), not that the host is unreachable (everything is disallowed).
_UNAVAILABLE: Final = (TooManyRedirects, InvalidURL, BodyTooLarge)


def product_token(user_agent: str) -> str:
    """The product token of a User-Agent: ``MyBot`` for ``MyBot/1.0 (+url)``."""
    token = user_agent.strip().split("/", 1)[0].split(None, 1)
    return token[0] if token else "*"


class Rules:
    """What one origin's robots.txt allows us, and its Crawl-delay."""

    __slots__ = ("_parser", "agent", "allow_all", "delay", "why")

    def __init__(
        self,
        agent: str,
        *,
        allow_all: bool,
        parser: object = None,
        delay: float | None = None,
        why: str = "",
    ) -> None:
        self.agent = agent
        self.allow_all = allow_all
        self._parser = parser
        self.delay = delay
        self.why = why  # how the rules came about, for Disallowed messages

    def allowed(self, url: URL) -> bool:
        """Whether ``url`` may be fetched."""
        if self._parser is None:
            return self.allow_all
        return bool(self._parser.can_fetch(str(url), self.agent))  # type: ignore[attr-defined]


def _parse(text: str, agent: str) -> Rules:
    from protego import Protego

    parser = Protego.parse(text)
    delay = parser.crawl_delay(agent)
    return Rules(
        agent,
        allow_all=False,
        parser=parser,
        delay=float(delay) if delay else None,
        why="robots.txt disallows it",
    )


def rules_from(result: Result, agent: str) -> Rules:
    """The rules a robots.txt fetch gives (RFC 9309, section 2.3.1).

    2xx: the file's rules. 4xx, a redirect chain longer than
    ``ROBOTS_REDIRECTS`` or to a non-http(s) URL, or a file too big: no
    usable file, everything is allowed. 5xx, no connection, a timeout or a
    broken response: unreachable, everything is disallowed.
    """
    error = result.error
    status = result.status
    if error is None and status is not None:
        if 200 <= status < 300:
            return _parse(result.text, agent)
        if status >= 500:
            return Rules(agent, allow_all=False, why=f"robots.txt answered {status}")
        return Rules(agent, allow_all=True)  # 4xx, or a 3xx left over
    if isinstance(error, _UNAVAILABLE):
        return Rules(agent, allow_all=True)
    name = type(error).__name__ if error is not None else "no answer"
    return Rules(agent, allow_all=False, why=f"robots.txt is unreachable ({name})")
