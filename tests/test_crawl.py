"""Fetcher.crawl against a local site: order, dedupe, limits, robots.txt."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from itertools import pairwise
from typing import Any

import aiohttp
import pytest
from servers import ServerThread, SiteServer
from yarl import URL

import asyncfetch
from asyncfetch import Fetcher, Request, Result
from asyncfetch._crawl import normalised


def page(*hrefs: str, base: str | None = None) -> str:
    head = f'<base href="{base}">' if base else ""
    anchors = "".join(f'<a href="{h}">{h}</a>' for h in hrefs)
    return f"<html><head>{head}</head><body>{anchors}</body></html>"


@pytest.fixture
def site(server_thread: ServerThread) -> Iterator[SiteServer]:
    srv = SiteServer(server_thread)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def site2(server_thread: ServerThread) -> Iterator[SiteServer]:
    srv = SiteServer(server_thread, host="127.0.0.2")
    srv.start()
    yield srv
    srv.stop()


async def crawl(seeds: Any, **kwargs: Any) -> list[Result]:
    options = kwargs.pop("options", {})
    async with Fetcher(**options) as f:
        return [r async for r in f.crawl(seeds, **kwargs)]


def by_path(results: list[Result]) -> dict[str, Result]:
    return {r.url.path_qs: r for r in results}


def test_normalised_urls() -> None:
    same = ["http://H:80/a#f", "http://h/a", "HTTP://h/a#"]
    assert len({normalised(URL(u)) for u in same}) == 1
    assert normalised(URL("https://h:443")) == "https://h/"
    assert normalised(URL("http://h:8080/a?q=1")) == "http://h:8080/a?q=1"
    assert normalised(URL("http://h/a")) != normalised(URL("http://h/a?x"))
    assert normalised(URL("http://u:p@h/")) != normalised(URL("http://h/"))


async def test_a_crawl_visits_each_page_once_at_its_depth(
    site: SiteServer, site2: SiteServer
) -> None:
    port = site.port
    site.pages = {
        "/": page(
            "/a",
            "/b#top",
            "/a",
            f"HTTP://LOCALHOST:{port}/c",
            "mailto:x@example.org",
            "ftp://127.0.0.1/f",
            site2.url("/off"),
        ),
        "/a": page("/", "/d", "#self", "/a?", "/a?q=1"),
        "/b": page("e", "/d", base="/sub/"),
        "/c": page("/a", "d"),
        "/d": page("/"),
        "/a?q=1": page(),
        "/sub/e": page("/", "/sub/e#x"),
    }
    results = await crawl([site.url("/").replace("127.0.0.1", "localhost")])
    got = {r.url.path_qs: r.depth for r in results}
    assert got == {"/": 0, "/a": 1, "/b": 1, "/c": 1, "/d": 2, "/a?q=1": 2, "/sub/e": 2}
    assert all(r.ok for r in results)
    for path in got:
        assert site.hits(path) == 1, path
    assert site.hits("/robots.txt") == 1
    assert site2.paths() == []  # off-site links are not followed


async def test_a_crawl_requests_shallower_depths_first(site: SiteServer) -> None:
    # One request at a time, so the order is the crawl's own: with more,
    # results come as they complete and may mix around a depth's boundary.
    site.pages = {
        "/": page("/a", "/b", "/c"),
        "/a": page("/d", "/a?q=1"),
        "/b": page("e", base="/sub/"),
        "/c": page("/a"),
        "/d": page("/"),
        "/a?q=1": page(),
        "/sub/e": page("/"),
    }
    results = await crawl([site.url("/")], options={"concurrency": 1})
    assert [(r.url.path_qs, r.depth) for r in results] == [
        ("/", 0),
        ("/a", 1),
        ("/b", 1),
        ("/c", 1),
        ("/d", 2),
        ("/a?q=1", 2),
        ("/sub/e", 2),
    ]
    assert site.paths() == [
        "/robots.txt",
        "/",
        "/a",
        "/b",
        "/c",
        "/d",
        "/a?q=1",
        "/sub/e",
    ]


async def test_same_host_false_follows_other_hosts(
    site: SiteServer, site2: SiteServer
) -> None:
    site.pages = {"/": page(site2.url("/x"))}
    site2.pages = {"/x": page(site.url("/"))}
    results = await crawl([site.url("/")], same_host=False)
    assert sorted(str(r.url) for r in results) == [site.url("/"), site2.url("/x")]
    assert site2.hits("/robots.txt") == 1


async def test_max_depth_and_max_pages(site: SiteServer) -> None:
    site.pages = {f"/{i}": page(f"/{i + 1}", f"/{i}b") for i in range(10)}
    site.pages.update({f"/{i}b": page() for i in range(10)})
    shallow = await crawl([site.url("/0")], max_depth=1)
    assert sorted((r.depth, r.url.path) for r in shallow) == [
        (0, "/0"),
        (1, "/0b"),
        (1, "/1"),
    ]
    assert site.hits("/2") == 0
    site.log.clear()
    three = await crawl([site.url("/0")], max_pages=3, options={"concurrency": 1})
    assert len(three) == 3
    pages = [p for p in site.paths() if p != "/robots.txt"]
    assert len(pages) == 3
    zero = await crawl([site.url("/0")], max_depth=0)
    assert [r.url.path for r in zero] == ["/0"]


async def test_robots_rules(site: SiteServer) -> None:
    site.robots = (
        200,
        "User-agent: *\n"
        "Disallow: /private\n"
        "Disallow: /p\n"
        "Allow: /p/ok\n"
        "Disallow: /*.pdf$\n",
    )
    links = ["/private/x", "/p/no", "/p/ok", "/doc.pdf", "/doc.pdf?v=1", "/fine"]
    site.pages = {"/": page(*links)}
    site.pages.update({path: page() for path in links})
    results = by_path(await crawl([site.url("/")]))
    allowed = {"/", "/p/ok", "/doc.pdf?v=1", "/fine"}
    for path, result in results.items():
        if path in allowed:
            assert result.ok, path
            assert site.hits(path) == 1
        else:
            assert isinstance(result.error, asyncfetch.Disallowed), path
            assert result.status is None
            assert result.attempts == 0
            assert result.depth == 1
            assert site.hits(path) == 0
            assert "robots.txt disallows it" in str(result.error)
    assert set(results) == set(links) | {"/"}


@pytest.mark.parametrize(
    ("agent", "blocked"), [(None, True), ("MyBot/1.0 (+https://x)", False)]
)
async def test_robots_group_of_our_product_token(
    site: SiteServer, agent: str | None, blocked: bool
) -> None:
    site.robots = (
        200,
        "User-agent: asyncfetch\nDisallow: /\n\nUser-agent: *\nDisallow: /nobody\n",
    )
    site.pages = {"/": page("/a"), "/a": page()}
    options = {"headers": {"User-Agent": agent}} if agent else {}
    results = await crawl([site.url("/")], options=options)
    if blocked:
        assert [type(r.error) for r in results] == [asyncfetch.Disallowed]
        assert site.paths() == ["/robots.txt"]
    else:
        assert [r.ok for r in results] == [True, True]


@pytest.mark.parametrize(
    ("robots", "allowed"),
    [(None, True), ((403, "x"), True), ((500, "x"), False), ((503, ""), False)],
    ids=["404", "403", "500", "503"],
)
async def test_robots_statuses(
    site: SiteServer, robots: tuple[int, str] | None, allowed: bool
) -> None:
    site.robots = robots
    site.pages = {"/": page("/a"), "/a": page()}
    results = await crawl([site.url("/")], options={"retries": 0})
    if allowed:
        assert [r.url.path for r in results if r.ok] == ["/", "/a"]
    else:
        [result] = results
        assert isinstance(result.error, asyncfetch.Disallowed)
        assert "unreachable" not in str(result.error)
        assert site.paths() == ["/robots.txt"]


async def test_an_unreachable_host_is_all_disallowed(closed_port: int) -> None:
    seed = f"http://127.0.0.1:{closed_port}/"
    [result] = await crawl([seed], options={"retries": 0})
    assert isinstance(result.error, asyncfetch.Disallowed)
    assert "unreachable (ConnectError)" in str(result.error)
    assert result.attempts == 0


async def test_robots_false_fetches_no_robots(site: SiteServer) -> None:
    site.robots = (200, "User-agent: *\nDisallow: /\n")
    site.pages = {"/": page("/a"), "/a": page()}
    results = await crawl([site.url("/")], robots=False)
    assert all(r.ok for r in results)
    assert "/robots.txt" not in site.paths()


async def test_crawl_delay_spaces_request_starts(site: SiteServer) -> None:
    site.robots = (200, "User-agent: *\nCrawl-delay: 0.2\n")
    site.pages = {"/": page("/a", "/b", "/c")}
    site.pages.update({p: page() for p in ("/a", "/b", "/c")})
    results = await crawl([site.url("/")], options={"concurrency": 8})
    assert len(results) == 4
    starts = [t for p, t, _ in site.log if p != "/robots.txt"]
    assert len(starts) == 4
    assert all(b - a >= 0.19 for a, b in pairwise(starts)), starts


async def test_robots_fetches_count_as_bytes_not_as_results(site: SiteServer) -> None:
    site.robots = (200, "User-agent: *\nAllow: /\n" + "#" * 5000)
    site.pages = {"/": page()}
    async with Fetcher() as f:
        results = [r async for r in f.crawl([site.url("/")])]
        stats = f.stats
    assert len(results) == 1
    assert (stats.completed, stats.ok, stats.failed) == (1, 1, 0)
    assert stats.by_status == {200: 1}
    assert stats.bytes >= 5000 + len(results[0].content)


async def test_a_redirect_target_counts_as_seen(site: SiteServer) -> None:
    site.pages = {"/": page("/r"), "/r": "redirect:/a", "/a": page("/a", "/", "/r")}
    results = await crawl([site.url("/")])
    assert [str(r.url.path) for r in results] == ["/", "/a"]
    assert results[1].history == (URL(site.url("/r")),)
    assert (site.hits("/r"), site.hits("/a")) == (1, 1)


async def test_follow_kinds_and_relative_urls(site: SiteServer) -> None:
    site.pages = {"/": page(), "/x": page(), "/y": page(), "/z": page()}

    def sync_follow(result: Result) -> list[Any]:
        return ["x", URL("/y"), Request("z")] if result.url.path == "/" else []

    async def async_follow(result: Result) -> list[str]:
        await asyncio.sleep(0)
        return ["/x", "/y", "/z"] if result.depth == 0 else []

    async def agen_follow(result: Result) -> AsyncIterator[str]:
        if result.depth == 0:
            for path in ("x", "y", "z"):
                yield path

    for follow in (sync_follow, async_follow, agen_follow):
        site.log.clear()
        results = await crawl([site.url("/")], follow=follow)
        assert sorted(r.url.path for r in results) == ["/", "/x", "/y", "/z"]
        assert all(r.ok for r in results)


async def test_an_exception_in_follow_propagates_after_cleanup(
    site: SiteServer,
) -> None:
    site.pages = {f"/{i}": page(*(f"/{j}" for j in range(20))) for i in range(20)}

    def follow(result: Result) -> list[URL]:
        if result.url.path == "/3":
            raise LookupError("no links for you")
        return asyncfetch.links(result)

    async with Fetcher(concurrency=4) as f:
        with pytest.raises(LookupError, match="no links"):
            async for _ in f.crawl([site.url("/0")], follow=follow):
                pass
        assert f.stats.in_flight == 0
        assert (await f.fetch(site.url("/0"))).ok  # the Fetcher still works


async def test_breaking_out_stops_the_crawl(site: SiteServer) -> None:
    site.pages = {f"/{i}": page(f"/{i + 1}", f"/{i + 2}") for i in range(200)}
    async with Fetcher(concurrency=4) as f:
        async with asyncio.timeout(10):
            gen = f.crawl([site.url("/0")])
            async for result in gen:
                if result.depth >= 3:
                    break
            await gen.aclose()
        hits = len(site.paths())
        assert f.stats.in_flight == 0
        await asyncio.sleep(0.1)
        assert len(site.paths()) == hits  # nothing left running


async def test_bad_arguments(site: SiteServer) -> None:
    async with Fetcher() as f:
        with pytest.raises(ValueError, match="max_depth"):
            f.crawl([site.url("/")], max_depth=-1)
        with pytest.raises(ValueError, match="max_pages"):
            f.crawl([site.url("/")], max_pages=0)
        with pytest.raises(TypeError, match="follow"):
            f.crawl([site.url("/")], follow="links")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        Fetcher().crawl([site.url("/")])


async def test_closing_the_fetcher_mid_crawl_leaves_nothing_behind(
    site: SiteServer, site2: SiteServer
) -> None:
    site.pages = {f"/{i}": page(f"/{i + 1}", site2.url(f"/{i}")) for i in range(100)}
    site2.pages = {f"/{i}": page() for i in range(100)}
    site2.robots = (200, "User-agent: *\nCrawl-delay: 5\n")
    f = Fetcher(concurrency=4)
    async with f:
        gen = f.crawl([site.url("/0")], same_host=False)
        first = await gen.__anext__()
        assert first.ok
    # The Fetcher closed with the crawl suspended: the crawl ends at once.
    with pytest.raises((RuntimeError, StopAsyncIteration)):
        await gen.__anext__()
    await gen.aclose()
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert tasks == []


async def test_a_crawl_delay_ends_with_its_crawl(site: SiteServer) -> None:
    site.robots = (200, "User-agent: *\nCrawl-delay: 0.5\n")
    site.pages = {"/": page(), "/x": page()}
    async with Fetcher() as f:
        [seed] = [r async for r in f.crawl([site.url("/")])]
        assert seed.ok
        site.log.clear()
        results = await f.fetch_all([site.url("/x")] * 3)
    assert all(r.ok for r in results)
    starts = site.starts("/x")
    assert len(starts) == 3
    assert starts[-1] - starts[0] < 0.4  # no gap outside the crawl


async def test_the_robots_group_follows_a_sessions_user_agent(
    site: SiteServer,
) -> None:
    site.robots = (200, "User-agent: sessionbot\nDisallow: /\n")
    site.pages = {"/": page()}
    async with aiohttp.ClientSession(headers={"User-Agent": "SessionBot/2"}) as s:
        [result] = await crawl([site.url("/")], options={"session": s})
    assert isinstance(result.error, asyncfetch.Disallowed)


async def test_a_redirect_into_a_disallowed_path_is_not_followed(
    site: SiteServer,
) -> None:
    site.robots = (200, "User-agent: *\nDisallow: /private\n")
    site.pages = {"/": page("/go"), "/go": "redirect:/private/x", "/private/x": page()}
    results = by_path(await crawl([site.url("/")]))
    went = results["/go"]
    assert isinstance(went.error, asyncfetch.Disallowed)
    assert went.status == 302  # the answer that pointed there
    assert str(went.url).endswith("/go")
    assert site.hits("/private/x") == 0


async def test_a_redirect_to_another_origin_reads_its_robots_txt_first(
    site: SiteServer, site2: SiteServer
) -> None:
    site.pages = {"/": page("/go", "/out"), "/go": "redirect:" + site2.url("/p/x")}
    site.pages["/out"] = "redirect:" + site2.url("/ok")
    site2.robots = (200, "User-agent: *\nDisallow: /p\n")
    site2.pages = {"/p/x": page(), "/ok": page("/more"), "/more": page()}
    # One slot: the redirected attempt holds it while the file is read.
    results = by_path(
        await asyncio.wait_for(
            crawl([site.url("/")], same_host=False, options={"concurrency": 1}), 10
        )
    )
    went = results["/go"]
    assert isinstance(went.error, asyncfetch.Disallowed)
    assert went.status == 302
    assert str(went.url) == site.url("/go")
    assert site2.hits("/p/x") == 0
    assert results["/ok"].ok
    assert results["/ok"].url == URL(site2.url("/ok"))
    assert results["/more"].ok  # a link to that origin: the file is not read again
    assert site2.paths() == ["/robots.txt", "/ok", "/more"]


async def test_a_redirects_robots_txt_is_read_once_and_retried(
    site: SiteServer, site2: SiteServer
) -> None:
    hops = [f"/r{i}" for i in range(4)]
    site.pages = {"/": page(*hops)}
    for hop in hops:
        site.pages[hop] = "redirect:" + site2.url("/x")
    site2.robots = (503, "")
    site2.pages = {"/x": page()}
    retry = asyncfetch.Retry(attempts=2, backoff=0.01)
    async with Fetcher(concurrency=4, retries=retry) as f:
        results = by_path([r async for r in f.crawl([site.url("/")])])
        stats = f.stats
    for hop in hops:
        error = results[hop].error
        assert isinstance(error, asyncfetch.Disallowed)
        assert "robots.txt answered 503" in str(error)
    assert site2.hits("/robots.txt") == 2  # four redirects, one reading, one retry
    assert site2.hits("/x") == 0
    assert stats.retries == 1
    assert stats.completed == 5


async def test_a_link_and_a_redirect_to_a_new_origin_read_its_robots_txt_once(
    site: SiteServer, site2: SiteServer
) -> None:
    # The link's robots.txt fetch waits for the one slot, which the redirect
    # holds while it reads the file itself: the waiting fetch is dropped.
    site.pages = {
        "/": page("/go", site2.url("/a")),
        "/go": "redirect:" + site2.url("/b"),
    }
    site2.robots = (200, "User-agent: *\nDisallow: /private\n")
    site2.pages = {"/a": page(), "/b": page()}
    results = await asyncio.wait_for(
        crawl([site.url("/")], same_host=False, options={"concurrency": 1}), 10
    )
    assert all(r.ok for r in results)
    assert site2.paths() == ["/robots.txt", "/b", "/a"]
