"""``Fetcher.crawl``: a breadth-first crawl under the Fetcher's limits.

The crawl is a stream whose input it writes itself. A frontier holds one
FIFO queue per depth; the feeder hands the engine the shallowest URL whose
host's robots.txt is known, and waits when nothing is left to hand out but
pages are still out (their links may add more). Each ``ok`` result goes
through ``follow``; its links, resolved, normalised and seen for the first
time, join the next depth. robots.txt is fetched once per origin through
the same engine (so under the same limits, timeout and retries) by a run
whose results are not counted in ``Stats``; a Crawl-delay becomes the
scheduler's least gap between starts to that host. A redirect to an origin
not read yet reads its robots.txt first, inside the redirected attempt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from yarl import URL

from ._errors import Disallowed, FetchError
from ._input import HTTP_SCHEMES, HostKey, host_key
from ._links import links
from ._models import Request, Result
from ._robots import ROBOTS_REDIRECTS, Rules, product_token, rules_from
from ._runs import StreamRun, SubmitRun

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["Crawl", "normalised"]

Follow = Callable[[Result], Any]


def normalised(url: URL) -> str:
    """The dedupe key of a URL: scheme and host lower-cased, default port
    and fragment dropped (yarl does the first two), an empty path as ``/``."""
    userinfo = ""
    if url.raw_user is not None:
        userinfo = f"{url.raw_user}:{url.raw_password or ''}@"
    return f"{url.scheme}://{userinfo}{url.host_port_subcomponent}{url.raw_path_qs}"


def _robots_url(url: URL) -> URL:
    return url.with_path("/robots.txt").with_query(None).with_fragment(None)


def _key(url: URL) -> HostKey | None:
    if url.scheme not in HTTP_SCHEMES or not url.raw_host:
        return None
    return host_key(url)


class _RobotsRun(SubmitRun):
    """robots.txt fetches: through the engine, not counted as results."""

    counted = False
    max_redirects = ROBOTS_REDIRECTS


class _CrawlRun(StreamRun):
    """The crawl's stream: gives each result its depth; robots gate."""

    def __init__(self, engine: Engine, crawl: Crawl) -> None:
        super().__init__(engine, crawl.feed(), ordered=False)
        self.depths: dict[int, int] = {}
        self._crawl = crawl
        if crawl.robots:
            self.gate = crawl.refuse
            self.hop_gate = crawl.refuse_hop

    def take(self, item: object) -> None:
        request, depth = cast("tuple[Request, int]", item)
        self.depths[self.read] = depth
        self.accept(request)

    def deliver(self, index: int, result: Result) -> None:
        depth = self.depths.pop(index, 0)
        if depth:
            object.__setattr__(result, "depth", depth)  # a fresh result: ours
        super().deliver(index, result)


class Crawl:
    """The state of one ``Fetcher.crawl`` call."""

    def __init__(
        self,
        engine: Engine,
        seeds: Iterable[Any],
        *,
        follow: Follow | None,
        max_depth: int | None,
        max_pages: int | None,
        same_host: bool,
        robots: bool,
        agent: str,
    ) -> None:
        self.engine = engine
        self.follow = follow if follow is not None else links
        self.max_depth = max_depth
        self.max_pages = max_pages
        self.robots = robots
        self.agent = product_token(agent)
        # The frontier: one FIFO per depth of URLs (a Request only when
        # follow gave one), turned into Requests when handed out.
        self.levels: list[deque[URL | Request]] = [deque()]
        self.level = 0  # the shallowest depth that may have URLs
        self.seen: set[str] = set()
        self.hosts: set[str] | None = set() if same_host else None
        self.out = 0  # handed to the engine, result not yet followed
        self.fed = 0
        self.rules: dict[HostKey, Rules] = {}
        self.gaps: list[HostKey] = []  # Crawl-delays set on the scheduler
        self.blocked: dict[HostKey, list[tuple[URL | Request, int]]] = {}
        self.fetching: dict[HostKey, asyncio.Task[None]] = {}
        # robots.txt read by a redirected attempt, until it is known
        self.reading: dict[HostKey, asyncio.Future[None]] = {}
        self._robots_run: _RobotsRun | None = None
        self._changed: asyncio.Future[None] | None = None
        self.failure: BaseException | None = None  # from a robots.txt fetch
        for seed in seeds:
            item = self._item(seed, None)
            url = item.url if isinstance(item, Request) else item
            if self.hosts is not None and url.host:
                self.hosts.add(url.host.lower())
            self._add(item, 0)

    # -- the frontier ----------------------------------------------------

    @staticmethod
    def _item(item: Any, base: URL | None) -> URL | Request:
        """``item`` (str, URL or Request) resolved against ``base``."""
        if isinstance(item, str):
            try:
                url = URL(item)
            except ValueError:
                return Request(item)  # an InvalidURL result, as for any input
        elif isinstance(item, URL):
            url = item
        elif isinstance(item, Request):
            if base is None or item.url.is_absolute():
                return item
            return dataclasses.replace(item, url=base.join(item.url))
        else:
            raise TypeError(
                "crawl seeds and follow() items must be str, yarl.URL or "
                f"asyncfetch.Request, not {type(item).__name__}: {item!r}"
            )
        if base is not None and not url.is_absolute():
            url = base.join(url)
        return url

    def _add(self, item: URL | Request, depth: int) -> None:
        url = item.url if isinstance(item, Request) else item
        key = normalised(url) if url.is_absolute() else str(url)
        if key in self.seen:
            return
        self.seen.add(key)
        while len(self.levels) <= depth:
            self.levels.append(deque())
        self.levels[depth].append(item)
        if depth < self.level:  # from a page that was slow to come back
            self.level = depth
        self._wake()

    def _next(self) -> tuple[Request, int] | None:
        """The shallowest URL whose host may be asked now."""
        levels = self.levels
        while self.level < len(levels):
            queue = levels[self.level]
            while queue:
                item = queue.popleft()
                url = item.url if isinstance(item, Request) else item
                key = _key(url) if self.robots else None
                if key is None or key in self.rules:
                    if isinstance(item, Request):
                        return item, self.level
                    if url.raw_fragment:
                        url = url.with_fragment(None)
                    return Request._get(url), self.level
                self.blocked.setdefault(key, []).append((item, self.level))
                if key not in self.fetching:
                    self._fetch_robots(key, url)
            if self.level + 1 < len(levels):
                self.level += 1
            else:
                break
        return None

    async def feed(self) -> AsyncIterator[tuple[Request, int]]:
        """The stream's input: frontier URLs, shallowest first."""
        while True:
            if self.max_pages is not None and self.fed >= self.max_pages:
                return
            if self.failure is not None:
                raise self.failure
            item = self._next()
            if item is not None:
                self.fed += 1
                self.out += 1
                yield item
                continue
            if not self.out and not self.fetching:
                return  # nothing out, nothing blocked on robots: done
            self._changed = self.engine.loop.create_future()
            await self._changed

    def _wake(self) -> None:
        changed = self._changed
        if changed is not None and not changed.done():
            changed.set_result(None)

    # -- robots.txt ------------------------------------------------------

    def _fetch_robots(self, key: HostKey, url: URL) -> None:
        self.fetching[key] = self.engine.loop.create_task(
            self._robots(key, _robots_url(url))
        )

    async def _robots(self, key: HostKey, url: URL) -> None:
        run = self._robots_run
        if run is None:
            run = self._robots_run = _RobotsRun(self.engine)
        try:
            result = await run.submit(Request(url))
            rules = rules_from(result, self.agent)
        except Exception as exc:  # a bug: end the crawl with it, do not hang
            self.failure = exc
            self._wake()
            return
        if key not in self.rules:  # else a redirect read it first
            self._learn(key, rules)

    def _learn(self, key: HostKey, rules: Rules) -> None:
        """Keep ``key``'s rules; release the URLs that waited for them."""
        self.rules[key] = rules
        if rules.delay:
            self.engine.sched.set_gap(key, rules.delay)
            self.gaps.append(key)
        fetching = self.fetching.pop(key, None)
        if fetching is not None and fetching is not asyncio.current_task():
            fetching.cancel()  # a redirect read the file first: not twice
        # Back to the front of their depths, in their order.
        for item, depth in reversed(self.blocked.pop(key, [])):
            self.levels[depth].appendleft(item)
            self.level = min(self.level, depth)
        self._wake()

    def refuse(self, request: Request, url: URL) -> FetchError | None:
        """The run's gate: ``Disallowed`` for what robots.txt forbids."""
        key = _key(url)
        rules = self.rules.get(key) if key is not None else None
        if rules is None or rules.allowed(url):
            return None
        return Disallowed(f"{url}: {rules.why}", request=request)

    async def refuse_hop(self, request: Request, url: URL) -> FetchError | None:
        """The gate of a redirect's target: :meth:`refuse`, once the target's
        robots.txt is read."""
        key = _key(url)
        while key is not None and key not in self.rules:
            reading = self.reading.get(key)
            if reading is None:
                await self._read_robots_now(key, url)
            else:  # another redirect is reading it: wait for that
                await asyncio.shield(reading)
        return self.refuse(request, url)

    async def _read_robots_now(self, key: HostKey, url: URL) -> None:
        """Read ``key``'s robots.txt within the attempt whose redirect needs it.

        The attempt holds a slot while it waits; going through the engine
        would need another, and with every slot held that way nothing would
        move. So the file is fetched here, under that slot, with the
        Fetcher's timeout, rate and pauses for its host, and its retries.
        """
        engine = self.engine
        robots = _robots_url(url)
        request = Request(robots)
        done = self.reading[key] = engine.loop.create_future()
        try:
            await self._read_robots(key, robots, request)
        finally:
            del self.reading[key]
            done.set_result(None)

    async def _read_robots(self, key: HostKey, robots: URL, request: Request) -> None:
        engine = self.engine
        attempts = 0
        while True:
            attempts += 1
            if attempts > 1:
                engine.retries += 1
            wait = engine.hop(robots)
            if wait > 0:
                await asyncio.sleep(wait)
            result = await engine.transport.attempt(
                request,
                robots,
                engine.options.timeout,
                attempts=attempts,
                hop=engine.hop,
                max_redirects=ROBOTS_REDIRECTS,
            )
            if key in self.rules:
                return  # the crawl's own fetch ended meanwhile
            delay = engine.retry_wait(request, key, attempts, result)
            if delay is None:
                break
            await asyncio.sleep(delay)
        self._learn(key, rules_from(result, self.agent))

    # -- results ---------------------------------------------------------

    async def _follow(self, result: Result) -> None:
        out = self.follow(result)
        base = result.url
        depth = result.depth + 1
        if inspect.isasyncgen(out):
            async for item in out:
                self._found(item, base, depth)
            return
        if inspect.isawaitable(out):
            out = await out
        if out is None:
            return
        for item in out:
            self._found(item, base, depth)

    def _found(self, item: Any, base: URL, depth: int) -> None:
        found = self._item(item, base)
        host = (found.url if isinstance(found, Request) else found).host
        if self.hosts is not None and (host is None or host.lower() not in self.hosts):
            return
        self._add(found, depth)

    async def results(self) -> AsyncGenerator[Result, None]:
        """Run the crawl; yield each result as it completes."""
        run = _CrawlRun(self.engine, self)
        yielded = 0
        try:
            run.start()
            async for result in run.results():
                if result.history:  # a redirect's target counts as seen
                    self.seen.add(normalised(result.url))
                if result.ok and (
                    self.max_depth is None or result.depth < self.max_depth
                ):
                    await self._follow(result)
                self.out -= 1
                self._wake()
                yield result
                yielded += 1
                if self.max_pages is not None and yielded >= self.max_pages:
                    return
        finally:
            await self._close(run)

    async def _close(self, run: _CrawlRun) -> None:
        for key in self.gaps:  # the Crawl-delays were this crawl's
            self.engine.sched.set_gap(key, 0)
        tasks = list(self.fetching.values())
        for task in tasks:
            task.cancel()
        await run.aclose()
        if self._robots_run is not None:
            self._robots_run.cancel()
            await self._robots_run.aclose()
            self.engine.runs.discard(self._robots_run)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
