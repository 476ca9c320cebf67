"""Crawl benchmark: ``Fetcher.crawl`` against the same crawl written by hand.

Usage::

    python benchmarks/crawl.py [--n 50000] [--quick] [--reps 3]
        [--clients a,b] [--server auto|nginx|aiohttp] [--out benchmarks/results]

Generates a static site of ``--n`` small HTML pages (2-4 KiB, about nine
``<a href>`` each) into a temp dir, serves it with nginx pinned to core 0
(or, without nginx, with an aiohttp.web static server started from this
file, ``crawl.py serve``, and labelled so) and crawls it from ``/`` with
each client, every run a fresh subprocess pinned to core 1:

* ``asyncfetch-crawl``: ``async with Fetcher(concurrency=64) as f: async for
  r in f.crawl([root])``, the default ``follow`` (``asyncfetch.links``) and
  robots.txt on (the defaults);
* ``asyncfetch-crawl-same-extract``: the same with ``follow=`` this file's
  ``extract``, the extractor the hand-written crawler uses (the standard
  library's ``html.parser``, with ``asyncfetch.links``' rules: ``<base
  href>``, http(s) only, no fragments, no duplicates), so the two differ only
  in the crawl machinery;
* ``aiohttp-hand-crawl``: the crawl written by hand on aiohttp, the usual
  way: one ``ClientSession`` with ``TCPConnector(limit=64)``, an
  ``asyncio.Queue`` frontier, a ``set`` of seen URLs (yarl, fragment
  dropped), 64 worker tasks, ``extract``, a same-host filter, robots.txt
  fetched once and checked with protego (what asyncfetch uses).

Every run must visit each of the N pages exactly once (status 200, an HTML
body); anything else is a failed run, excluded from the medians and listed
under Notes. The timed window starts after imports (every client imports the
same modules first), before the session / Fetcher is created, and ends after
it is closed; CPU time is ``getrusage`` user + system, peak RSS
``ru_maxrss``. Rounds are interleaved, each in the order of a balanced
Latin square, as in ``run.py``.

Writes ``OUT/crawl-<timestamp>.jsonl`` (a ``meta`` record, one record per
run as it happens, ``meta-end``) and ``OUT/crawl-<timestamp>.md`` (also
printed), and copies of both as ``OUT/crawl-latest.*``. The exit status is 1
if any run failed. The same file is also the fallback server and the client
(internal subcommands ``serve`` and ``client``, started by the driver).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import http.client
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeAlias

import aiohttp
from _harness import (
    CLIENT_CORE,
    PYTHON,
    SERVER_CORE,
    CoreMeter,
    NginxServer,
    Server,
    _group_exists,
    asyncfetch_status,
    exit_on_sigterm,
    failed_runs,
    git_commit,
    json_record,
    load_jsonl,
    nginx_status,
    notes_section,
    package_version,
    pinned,
    pinning_status,
    publish,
)
from run import Entry, loadavg, paired_ratios, rotated
from yarl import URL

if TYPE_CHECKING:
    from aiohttp import web

    from asyncfetch import Result

SCRIPT = str(Path(__file__).resolve())
BENCH_DIR = Path(__file__).resolve().parent

BASELINE = "aiohttp-hand-crawl"
CLIENTS = ("asyncfetch-crawl", "asyncfetch-crawl-same-extract", BASELINE)
CONCURRENCY = 64
DISTURBED = 0.2  # share of the client core taken by others that flags a run
SERVER_BOUND = 0.8

# The site: page 0 is "/", page i > 0 is /p/<i // PER_DIR>/<i>.html; the
# tree gives page i the children BRANCH*i+1 ... BRANCH*i+BRANCH, so 50,000
# pages are all reachable from "/" within 6 levels (6 + 36 + ... + 6**6).
PER_DIR = 1000
BRANCH = 6
PAGE_MIN, PAGE_MAX = 2048, 4096
ROBOTS_TXT = "# a benchmark site: everything is allowed\nUser-agent: *\nDisallow:\n"
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
HTTP_SCHEMES = frozenset({"http", "https"})
HAND_AGENT = "Python"  # the product token of aiohttp's User-Agent


# -- the site ------------------------------------------------------------------


def page_path(i: int) -> str:
    """The URL path of page ``i``."""
    return "/" if i == 0 else f"/p/{i // PER_DIR}/{i}.html"


def page_index(path: str) -> int | None:
    """The page number of a URL path of the site, or None."""
    if path == "/":
        return 0
    parts = path.split("/")
    if len(parts) != 4 or parts[1] != "p" or not parts[3].endswith(".html"):
        return None
    number = parts[3][: -len(".html")]
    if not number.isdigit() or parts[2] != str(int(number) // PER_DIR):
        return None
    return int(number) or None  # /p/0/0.html is not page 0


def relative_href(src: int, dst: int) -> str:
    """A relative link from page ``src`` to page ``dst``."""
    if dst == 0:
        return "./" if src == 0 else "../../"
    if src == 0:
        return f"p/{dst // PER_DIR}/{dst}.html"
    if src // PER_DIR == dst // PER_DIR:
        return f"{dst}.html"
    return f"../{dst // PER_DIR}/{dst}.html"


def page_hrefs(i: int, n: int, rng: random.Random) -> list[str]:
    """The ``<a href>`` values of page ``i``: tree, cross links and noise.

    A link home, one to the parent (relative), the tree children (absolute
    paths and relative ones, alternately), cross links to random pages (the
    same mix), one duplicate, one link with a fragment to another page, a
    ``#top`` on the page itself; on every 10th page a ``mailto:`` and on
    every 13th an off-site link.
    """
    hrefs = ["/"]
    if i:
        hrefs.append(relative_href(i, (i - 1) // BRANCH))
    children = [c for c in range(BRANCH * i + 1, BRANCH * i + BRANCH + 1) if c < n]
    for k, child in enumerate(children):
        hrefs.append(page_path(child) if k % 2 == 0 else relative_href(i, child))
    for _ in range(max(1, 4 - len(children))):
        other = rng.randrange(n)
        hrefs.append(
            page_path(other) if rng.random() < 0.5 else relative_href(i, other)
        )
    hrefs.append(rng.choice(hrefs))  # a duplicate
    hrefs.append(f"{page_path(rng.randrange(n))}#s{rng.randrange(9)}")
    hrefs.append("#top")
    if i % 10 == 3:
        hrefs.append("mailto:webmaster@example.org")
    if i % 13 == 5:
        hrefs.append(f"https://elsewhere.invalid/ref/{i}")
    rng.shuffle(hrefs)
    return hrefs


def _filler(rng: random.Random) -> str:
    words = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing"]
    words += ["elit", "sed", "do", "eiusmod", "tempor", "incididunt", "ut", "labore"]
    return " ".join(rng.choice(words) for _ in range(12_000))


def render_page(i: int, hrefs: Sequence[str], size: int, text: str, at: int) -> str:
    """Page ``i`` as HTML of about ``size`` bytes (filler text from ``text``)."""
    items = "\n".join(
        f'<li><a href="{h}">link {k} of page {i}</a></li>' for k, h in enumerate(hrefs)
    )
    head = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<title>Page {i}</title></head>\n<body id="top">\n<h1>Page {i}</h1>\n'
    )
    tail = f"\n<ul>\n{items}\n</ul>\n<footer>page {i}</footer>\n</body></html>\n"
    room = max(0, size - len(head) - len(tail) - len("<p></p>\n"))
    start = at % max(1, len(text) - room)
    return f"{head}<p>{text[start : start + room]}</p>\n{tail}"


@dataclass
class Site:
    """A generated site on disk and what was put in it."""

    root: Path
    n: int
    seed: int
    total_bytes: int = 0
    anchors: int = 0
    tree_depth: int = 0
    seconds: float = 0.0

    def describe(self) -> str:
        """One line for the report."""
        return (
            f"{self.n:,} pages, {self.total_bytes / 2**20:.1f} MiB "
            f"(mean {self.total_bytes / self.n / 1024:.1f} KiB), "
            f"{self.anchors / self.n:.1f} <a href> per page, tree of branching "
            f"{BRANCH} ({self.tree_depth} levels below /) plus random cross "
            f"links, seed {self.seed}; generated in {self.seconds:.1f} s"
        )


def generate_site(n: int, seed: int) -> Site:
    """Write ``n`` pages and a robots.txt into a new temp dir (deterministic)."""
    t0 = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="asyncfetch-bench-crawl-site-"))
    site = Site(root=root, n=n, seed=seed)
    try:
        rng = random.Random(seed)
        text = _filler(rng)
        (root / "robots.txt").write_text(ROBOTS_TXT)
        for d in range((n - 1) // PER_DIR + 1):
            (root / "p" / str(d)).mkdir(parents=True)
        for i in range(n):
            hrefs = page_hrefs(i, n, rng)
            size = rng.randint(PAGE_MIN, PAGE_MAX)
            html = render_page(i, hrefs, size, text, rng.randrange(len(text))).encode()
            path = root / "index.html" if i == 0 else root / page_path(i)[1:]
            path.write_bytes(html)
            site.total_bytes += len(html)
            site.anchors += len(hrefs)
        depth, last = 0, 0
        while last < n - 1:  # the deepest page's depth in the tree
            last = BRANCH * last + BRANCH
            depth += 1
        site.tree_depth = depth
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    site.seconds = time.perf_counter() - t0
    return site


# -- servers -------------------------------------------------------------------

SITE_NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
{user}
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    types {{
        text/html html;
        text/plain txt;
    }}
    default_type application/octet-stream;
    charset utf-8;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    open_file_cache off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {root};
        index index.html;
        location / {{ }}
    }}
}}
"""


class SiteNginx(NginxServer):
    """``_harness.NginxServer``, serving a given directory as a static site.

    Same process handling (pinned, ``daemon off``, stopped by PID, config and
    logs in a temp dir), one worker, ``text/html; charset=utf-8`` for
    ``.html``. ``open_file_cache`` is off: each page is read once per crawl,
    and a cache of every page would hold a descriptor per file (past the
    open-files limit at 50,000 pages, and nginx then answers 500).
    """

    def __init__(self, pin: bool, root: Path, startup_timeout: float = 30.0) -> None:
        super().__init__(pin, sizes=(1,), startup_timeout=startup_timeout)
        self.root = root
        self.label = f"{self.version} (worker_processes 1, static site)"

    def _write_files(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="asyncfetch-bench-crawl-nginx-"))

    def _config(self, tmp: Path, port: int) -> str:
        user = ""
        if os.geteuid() == 0:  # workers would drop to "nobody" and not read tmp
            user = "user root root;" if _group_exists("root") else "user root;"
        return SITE_NGINX_CONF.format(tmp=tmp, port=port, root=self.root, user=user)

    def _wait_ready(self, hosts: Sequence[str]) -> bool:
        return wait_site_ready(self)


def wait_site_ready(server: Server) -> bool:
    """Poll (bounded) until ``/`` and ``/robots.txt`` answer 200; False if dead."""
    deadline = time.monotonic() + server.startup_timeout
    while time.monotonic() < deadline:
        if server.proc is None or server.proc.poll() is not None:
            return False
        try:
            for path in ("/", "/robots.txt"):
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                conn.close()
                if resp.status != 200:
                    raise RuntimeError(f"{path} answered {resp.status}")
            return True
        except OSError:
            time.sleep(0.1)
    return False


class SiteAiohttp(Server):
    """The fallback: ``crawl.py serve`` (aiohttp.web, static files), pinned."""

    label = "aiohttp fallback (crawl.py serve, aiohttp.web static files)"
    name = "aiohttp fallback"

    def __init__(self, pin: bool, root: Path, startup_timeout: float = 30.0) -> None:
        super().__init__(pin, startup_timeout)
        self.root = root

    def command(self) -> list[str]:
        """This file's static server, pinned to the server core."""
        cmd = [PYTHON, SCRIPT, "serve", "--root", str(self.root)]
        return pinned(cmd, SERVER_CORE, self.pin)


async def _serve(root: Path, max_seconds: float) -> None:
    """Serve ``root`` (``/`` is ``index.html``) until TERM, stdin EOF or timeout."""
    from _serving import serve_app
    from aiohttp import web

    root = root.resolve()

    async def handle(request: web.Request) -> web.StreamResponse:
        rel = request.path
        if rel.endswith("/"):
            rel += "index.html"
        target = (root / rel.lstrip("/")).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(target)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    await serve_app(app, max_seconds)


def serve_main(argv: list[str]) -> int:
    """Entry point of the ``serve`` subcommand."""
    from _serving import run_fast

    p = argparse.ArgumentParser(prog="crawl.py serve")
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--max-seconds", type=float, default=3 * 3600.0)
    args = p.parse_args(argv)
    run_fast(_serve(args.root, args.max_seconds))
    return 0


# -- link extraction: html.parser, with asyncfetch.links' rules -----------------


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
        return None
    try:
        url = base.join(URL(href))
    except ValueError:
        return None
    if url.scheme not in HTTP_SCHEMES or not url.raw_host:
        return None
    return url.with_fragment(None)


def is_html(content_type: str) -> bool:
    """Whether a Content-Type header is HTML (what asyncfetch.links reads)."""
    return content_type.split(";", 1)[0].strip().lower() in HTML_TYPES


def extract(body: bytes, base: URL) -> list[URL]:
    """The ``<a href>`` targets of an HTML body: absolute, http(s), no
    fragment, duplicates removed in order.

    What a hand-written crawler does with the standard library: the same
    results as ``asyncfetch.links``, which gets them from a regex scanner
    that reads as ``html.parser`` does (checked in tests/test_links.py).
    """
    if not body:
        return []
    parser = _Hrefs()
    parser.feed(body.decode("utf-8", "replace"))
    parser.close()
    if parser.base is not None:
        base = _join(base, parser.base) or base
    seen: set[URL] = set()
    found: list[URL] = []
    for href in parser.hrefs:
        url = _join(base, href)
        if url is not None and url not in seen:
            seen.add(url)
            found.append(url)
    return found


def follow_same_extract(result: Result) -> list[URL]:
    """``follow=`` for asyncfetch with the hand-written crawler's extractor."""
    if not is_html(result.headers.get("Content-Type", "")):
        return []
    return extract(result.content, result.url)


# -- clients (subcommand ``client``) -------------------------------------------


@dataclass
class Tally:
    """Checks that each of the ``n`` pages is visited once, with a 200 HTML body."""

    n: int
    host: str
    visited: bytearray = field(init=False)
    ok: int = 0
    results: int = 0
    bad: int = 0
    max_depth: int = 0
    samples: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.visited = bytearray(self.n)  # one byte per page: flat and cheap

    def check(
        self,
        url: URL,
        status: int | None,
        content_type: str,
        body_len: int,
        error: object,
        depth: int,
    ) -> None:
        """Count one visit as ok or bad (keeps the first few bad ones)."""
        self.results += 1
        self.max_depth = max(self.max_depth, depth)
        index = page_index(url.path) if url.host == self.host else None
        if error is not None or status != 200:
            problem = "error or status"
        elif not is_html(content_type) or not body_len:
            problem = "not an HTML body"
        elif index is None or index >= self.n:
            problem = "not a page of the site"
        elif self.visited[index]:
            problem = "visited twice"
        else:
            self.visited[index] = 1
            self.ok += 1
            return
        self.bad += 1
        if len(self.samples) < 5:
            self.samples.append(
                f"{problem}: {url} status={status} type={content_type!r} "
                f"len={body_len} error={error!r}"[:240]
            )


async def run_asyncfetch(
    cfg: dict[str, Any], tally: Tally, extra: dict[str, Any]
) -> None:
    """``Fetcher(concurrency=C).crawl([root])``: defaults, or our extractor."""
    import asyncfetch

    follow = follow_same_extract if cfg["client"].endswith("same-extract") else None
    async with asyncfetch.Fetcher(concurrency=cfg["concurrency"]) as f:
        async for r in f.crawl(
            [cfg["root"]], follow=follow, max_pages=cfg.get("max_pages")
        ):
            ctype = r.headers.get("Content-Type", "")
            tally.check(r.url, r.status, ctype, len(r.content), r.error, r.depth)
        stats = f.stats
    extra.update(stats_bytes=stats.bytes, stats_retries=stats.retries)


class HandRobots:
    """robots.txt for the hand-written crawler: fetched once, protego rules."""

    def __init__(self, parser: Any, allow_all: bool) -> None:
        self.parser = parser
        self.allow_all = allow_all

    @classmethod
    async def fetch(cls, session: aiohttp.ClientSession, root: URL) -> HandRobots:
        """RFC 9309 in short: 2xx rules, 4xx allow all, else disallow all."""
        from protego import Protego

        try:
            async with session.get(root.with_path("/robots.txt")) as r:
                status, text = r.status, await r.text(errors="replace")
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return cls(None, allow_all=False)
        if 200 <= status < 300:
            return cls(Protego.parse(text), allow_all=False)
        return cls(None, allow_all=400 <= status < 500)

    def allowed(self, url: URL) -> bool:
        """Whether ``url`` may be fetched."""
        if self.parser is None:
            return self.allow_all
        return bool(self.parser.can_fetch(str(url), HAND_AGENT))


async def run_hand(cfg: dict[str, Any], tally: Tally, extra: dict[str, Any]) -> None:
    """The crawl by hand: a Queue frontier, a seen set, C workers, one session."""
    root = URL(cfg["root"])
    limit: int | None = cfg.get("max_pages")
    hosts = {root.host}
    seen = {str(root)}
    queue: asyncio.Queue[tuple[URL, int]] = asyncio.Queue()
    queue.put_nowait((root, 0))
    connector = aiohttp.TCPConnector(limit=cfg["concurrency"])
    async with aiohttp.ClientSession(connector=connector) as session:
        robots = await HandRobots.fetch(session, root)

        async def visit(url: URL, depth: int) -> None:
            if not robots.allowed(url):
                tally.check(url, None, "", 0, "disallowed by robots.txt", depth)
                return
            try:
                async with session.get(url) as r:
                    body = await r.read()
                    status, final = r.status, r.url
                    ctype = r.headers.get("Content-Type", "")
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                tally.check(url, None, "", 0, exc, depth)
                return
            tally.check(final, status, ctype, len(body), None, depth)
            if status >= 400 or not is_html(ctype):
                return
            for link in extract(body, final):
                if link.host not in hosts:
                    continue
                key = str(link)
                if key in seen or (limit is not None and len(seen) >= limit):
                    continue
                seen.add(key)
                queue.put_nowait((link, depth + 1))

        async def worker() -> None:
            while True:
                url, depth = await queue.get()
                try:
                    await visit(url, depth)
                finally:
                    queue.task_done()

        workers = [asyncio.create_task(worker()) for _ in range(cfg["concurrency"])]
        try:
            await queue.join()
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
    extra["seen"] = len(seen)


Runner: TypeAlias = Callable[[dict[str, Any], Tally, dict[str, Any]], Awaitable[None]]
RUNNERS: dict[str, Runner] = {
    "asyncfetch-crawl": run_asyncfetch,
    "asyncfetch-crawl-same-extract": run_asyncfetch,
    BASELINE: run_hand,
}


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _rss_mib() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def client_run(cfg: dict[str, Any]) -> dict[str, Any]:
    """One timed crawl; return its JSON record."""
    expected = cfg.get("max_pages") or cfg["n"]
    tally = Tally(n=cfg["n"], host=URL(cfg["root"]).host or "")
    extra: dict[str, Any] = {}
    error: str | None = None
    rss_start = _rss_mib()
    cpu0, wall0 = _cpu_s(), time.perf_counter()
    try:
        await asyncio.wait_for(
            RUNNERS[cfg["client"]](cfg, tally, extra), cfg["timeout"]
        )
    except asyncio.TimeoutError:
        error = f"timed out after {cfg['timeout']} s"
    except Exception as exc:  # a crash is a failed run, reported as data
        error = f"{type(exc).__name__}: {exc}"
    wall = time.perf_counter() - wall0
    cpu = _cpu_s() - cpu0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    failed = error is not None or tally.ok != expected or tally.results != expected
    return {
        "client": cfg["client"],
        "loop": "asyncio",
        "n": cfg["n"],
        "expected": expected,
        "ok": tally.ok,
        "results": tally.results,
        "bad": tally.bad,
        "bad_samples": tally.samples,
        "max_depth": tally.max_depth,
        "wall_s": round(wall, 4),
        "cpu_s": round(cpu, 4),
        "pages_per_s": round(tally.ok / wall, 1) if wall > 0 else 0.0,
        "cpu_ms_per_page": round(1000 * cpu / tally.ok, 4) if tally.ok else None,
        "rss_peak_mib": round(peak, 1),
        "rss_start_mib": round(rss_start, 1),
        "concurrency": cfg["concurrency"],
        "error": error,
        "failed": failed,
        **extra,
    }


def client_main(argv: list[str]) -> int:
    """Entry point of the ``client`` subcommand: one run, one JSON line."""
    if len(argv) != 1:
        print("usage: crawl.py client CONFIG_JSON", file=sys.stderr)
        return 2
    cfg = json.loads(argv[0])
    # Every client imports the same modules before its window, so the peak
    # RSS columns compare like with like.
    import protego  # noqa: F401
    from clients import import_asyncfetch

    import_asyncfetch()
    record = asyncio.run(client_run(cfg))
    print(json.dumps(record), flush=True)
    return 1 if record["failed"] else 0


def run_client(cfg: dict[str, Any], pin: bool) -> dict[str, Any]:
    """Run one client subprocess pinned to the client core, bounded in time."""
    cmd = pinned([PYTHON, SCRIPT, "client", json.dumps(cfg)], CLIENT_CORE, pin)
    record: dict[str, Any] = {"client": cfg["client"], "loop": "asyncio", "ok": 0}
    try:
        # subprocess.run kills the child on timeout and on KeyboardInterrupt.
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=cfg["timeout"] + 60
        )
    except subprocess.TimeoutExpired:
        record.update(returncode=None, failed=True, error="subprocess timed out")
        return record
    record = json_record(proc.stdout, proc.stderr, record)
    record["returncode"] = proc.returncode
    record["failed"] = bool(record.get("failed", True)) or proc.returncode != 0
    return record


# -- report --------------------------------------------------------------------


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _median(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _ratio(rs: Sequence[float]) -> str:
    if not rs:
        return "-"
    return f"{statistics.median(rs):.2f} ({min(rs):.2f}-{max(rs):.2f})"


def results_table(records: Sequence[dict[str, Any]], clients: Sequence[str]) -> str:
    """The markdown table: one row per client, medians over rounds."""
    lines = [
        f"| client | median pages/s | min-max pages/s | ratio vs {BASELINE} "
        "| CPU ms/page | CPU ratio | peak RSS MiB | RSS growth MiB | RSS ratio "
        "| server CPU/wall | BFS depth |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for client in clients:
        runs = [r for r in records if r["client"] == client]
        good = [r for r in runs if not r.get("failed")]
        name = client
        if len(good) < len(runs):
            name += f" ({len(runs) - len(good)}/{len(runs)} runs FAILED)"
        speeds = [r["pages_per_s"] for r in good]
        spread = f"{min(speeds):,.0f}-{max(speeds):,.0f}" if speeds else "-"
        entry = Entry(client, "asyncio")
        if client == BASELINE:
            ratio = cpu_ratio = rss_ratio = "1.00 (baseline)"
        else:
            ratio = _ratio(paired_ratios(records, entry, "pages_per_s", BASELINE))
            cpu_ratio = _ratio(
                paired_ratios(records, entry, "cpu_ms_per_page", BASELINE)
            )
            rss_ratio = _ratio(paired_ratios(records, entry, "rss_peak_mib", BASELINE))
        util = _median(
            [r["server_cpu_s"] / r["wall_s"] for r in good if "server_cpu_s" in r]
        )
        depth = sorted({r["max_depth"] for r in good})
        lines.append(
            f"| {name} | {_fmt(_median(speeds), 0)} | {spread} | {ratio} "
            f"| {_fmt(_median([r['cpu_ms_per_page'] for r in good]), 3)} "
            f"| {cpu_ratio} | {_fmt(_median([r['rss_peak_mib'] for r in good]))} "
            f"| {_fmt(_median([r['rss_peak_mib'] - r['rss_start_mib'] for r in good]))}"
            f" | {rss_ratio} | {_fmt(util, 2)} "
            f"| {'/'.join(str(d) for d in depth) or '-'} |"
        )
    return "\n".join(lines) + "\n"


def table_notes(records: Sequence[dict[str, Any]], clients: Sequence[str]) -> str:
    """Lines under the table: the extractor's share, server-bound, disturbed."""
    lines = []
    pair = ("asyncfetch-crawl", "asyncfetch-crawl-same-extract")
    if set(pair) <= set(clients):
        entry = Entry(pair[0], "asyncio")
        rs = paired_ratios(records, entry, "pages_per_s", pair[1])
        cpu = paired_ratios(records, entry, "cpu_ms_per_page", pair[1])
        if rs and cpu:
            lines.append(
                f"- `{pair[0]}` / `{pair[1]}`, the default `follow` "
                "(`asyncfetch.links`, a regex scanner) against `html.parser` "
                f"on the same crawl: pages/s {_ratio(rs)}, CPU {_ratio(cpu)}"
            )
    bound = []
    for client in clients:
        good = [r for r in records if r["client"] == client and not r.get("failed")]
        util = _median(
            [r["server_cpu_s"] / r["wall_s"] for r in good if "server_cpu_s" in r]
        )
        if util is not None and util >= SERVER_BOUND:
            bound.append(f"{client} ({util:.2f})")
    if bound:
        lines.append(
            f"- server-bound (server CPU/wall >= {SERVER_BOUND:.2f}): "
            f"{', '.join(bound)}"
        )
    disturbed = [
        f"{r['client']} round {r['round'] + 1}: others "
        f"{r['client_core']['other_load']:.2f}, steal {r['client_core']['steal']:.2f}"
        for r in records
        if r.get("client_core")
        and max(r["client_core"]["other_load"], r["client_core"]["steal"]) >= DISTURBED
    ]
    if disturbed:
        lines.append(
            f"- {len(disturbed)} of {len(records)} runs disturbed (others took >= "
            f"{DISTURBED:.0%} of the client's core; their pages/s is low, their CPU "
            f"ms/page still valid): {'; '.join(disturbed)}"
        )
    return "".join(f"{line}\n" for line in lines)


HOW_TO_READ = f"""\
## How to read the table

Each run crawls the whole site from `/` and must visit every page exactly
once (status 200, an HTML body); the robots.txt fetch is part of the work.
**pages/s** is pages over the timed window (Fetcher or session created,
crawl, closed), median and min-max over rounds. **ratio** is the median of
per-round ratios against `{BASELINE}` (the same crawl written by hand on
aiohttp), min-max in brackets: > 1 is faster. **CPU ms/page** is the
client's user + system CPU time per page, link extraction included, and
**CPU ratio** its paired ratio, < 1 cheaper. `asyncfetch-crawl` extracts
links with its default `follow`, `asyncfetch.links` (a regex scanner);
`asyncfetch-crawl-same-extract` and `{BASELINE}` both use `html.parser`,
so the ratio between those two isolates the crawl machinery, and the note
under the table gives what the faster extractor adds. **Peak RSS** is
`ru_maxrss` (the interpreter and the same imports in every client
included); **RSS growth** is peak minus the RSS just before the window:
what the crawl itself held (frontier, seen set, buffers). **Server
CPU/wall** near 1.00 means the server was the limit. **BFS depth** is the
deepest depth a client gave a page (depth = where first found; with 64
pages in flight a page may be found first from a deeper one, so it can
differ by one between clients). Absolute numbers on a shared machine are
noise; read the ratios.
"""


def header(meta: dict[str, Any]) -> str:
    """The top of the report: machine, versions, site and configuration."""
    return "\n".join(
        [
            "# asyncfetch crawl benchmark",
            "",
            f"- date: {meta['date']}",
            f"- git commit: {meta['commit']}",
            f"- python: {meta['python']}",
            f"- aiohttp: {meta['aiohttp']}, yarl: {meta['yarl']}, protego: "
            f"{meta['protego']}",
            f"- asyncfetch: {meta['asyncfetch']}",
            f"- server: {meta['server']}",
            f"- site: {meta['site']}",
            f"- crawl: from `/`, concurrency {meta['concurrency']}, robots.txt on, "
            "same host, no depth or page limit",
            f"- cpu count: {meta['cpus']}; pinning: {meta['pinning']}",
            f"- load average 1/5/15 min: {meta['load_start']} at start, "
            f"{meta.get('load_end', '?')} at end",
            f"- mode: {'quick' if meta['quick'] else 'full'}, {meta['reps']} "
            f"interleaved round(s), an untimed warm-up crawl of "
            f"{meta['warmup']:,} pages first",
            "",
            "",
        ]
    )


def render(
    meta: dict[str, Any], records: Sequence[dict[str, Any]], notes: Sequence[str]
) -> str:
    """The whole markdown report."""
    clients = list(dict.fromkeys(r["client"] for r in records if r["round"] == 0))
    md = [header(meta)]
    md.append(f"## Crawl of {meta['n']:,} pages, C={meta['concurrency']}\n\n")
    md.append(results_table(records, clients))
    extra = table_notes(records, clients)
    if extra:
        md.append("\n" + extra)
    md.append("\n" + HOW_TO_READ)
    failed = failed_runs(
        records,
        lambda r: (
            f"{r['client']} round={r.get('round', 0) + 1} "
            f"ok={r.get('ok')}/{r.get('expected', meta['n'])} "
            f"results={r.get('results')}"
        ),
    )
    md.append(notes_section(notes, failed))
    return "".join(md)


# -- driver --------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse and resolve command-line options."""
    p = argparse.ArgumentParser(description="Fetcher.crawl vs a hand-written crawl.")
    p.add_argument("--n", type=int, help="pages in the site (50000; quick 5000)")
    p.add_argument("--quick", action="store_true", help="5,000 pages, 1 round")
    p.add_argument("--reps", type=int, help="interleaved rounds (3; quick 1)")
    p.add_argument(
        "--clients",
        default="",
        help=f"only these clients (comma-separated; {BASELINE} always runs)",
    )
    p.add_argument("--concurrency", type=int, default=CONCURRENCY)
    p.add_argument("--seed", type=int, default=1, help="the site's RNG seed")
    p.add_argument("--warmup", type=int, help="untimed warm-up pages (2000; 500)")
    p.add_argument(
        "--server",
        choices=("auto", "nginx", "aiohttp"),
        default="auto",
        help="nginx if installed (auto), or the aiohttp fallback",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="per client run (s)")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    p.add_argument("--no-pin", action="store_true", help="do not use taskset")
    p.add_argument("--report", type=Path, metavar="JSONL", help="re-render a run")
    args = p.parse_args(argv)
    if args.n is None:
        args.n = 5_000 if args.quick else 50_000
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    if args.warmup is None:
        args.warmup = 500 if args.quick else 2000
    args.warmup = min(args.warmup, args.n)
    if args.n < 2 or args.reps < 1 or args.concurrency < 1 or args.warmup < 0:
        p.error("--n must be >= 2, --reps and --concurrency >= 1, --warmup >= 0")
    wanted = [c.strip() for c in args.clients.split(",") if c.strip()]
    unknown = sorted(set(wanted) - set(CLIENTS))
    if unknown:
        p.error(f"unknown client(s) {unknown}; choose from {list(CLIENTS)}")
    args.clients = [c for c in CLIENTS if not wanted or c in wanted or c == BASELINE]
    return args


def make_server(args: argparse.Namespace, pin: bool, root: Path) -> Server:
    """nginx when available (and not ``--server aiohttp``), else the fallback."""
    ok, version = nginx_status()
    if args.server != "aiohttp" and ok:
        return SiteNginx(pin, root)
    if args.server == "nginx":
        raise SystemExit(f"--server nginx: {version}")
    return SiteAiohttp(pin, root)


def run_rounds(
    args: argparse.Namespace,
    server: Server,
    pin: bool,
    save: Callable[[dict[str, Any]], None],
) -> list[dict[str, Any]]:
    """The warm-up crawl, then ``args.reps`` interleaved rounds of every client."""
    root = server.url_base + "/"
    common = {"root": root, "n": args.n, "concurrency": args.concurrency}
    common["timeout"] = args.timeout
    if args.warmup:
        print(f"[warm-up] {BASELINE}, {args.warmup:,} pages", file=sys.stderr)
        warm = run_client({**common, "client": BASELINE, "max_pages": args.warmup}, pin)
        save({**warm, "kind": "warmup"})
        if warm.get("failed"):
            print(f"  warm-up FAILED: {warm.get('error')}", file=sys.stderr)
    meter = CoreMeter(CLIENT_CORE, pin)
    entries = [Entry(c, "asyncio") for c in args.clients]
    records = []
    for rnd in range(args.reps):
        for entry in rotated(entries, rnd):
            print(f"[{rnd + 1}/{args.reps}] {entry.client} ...", file=sys.stderr)
            srv0 = server.cpu_seconds()
            meter.start()
            rec = run_client({**common, "client": entry.client}, pin)
            core = meter.stop()
            srv1 = server.cpu_seconds()
            if core is not None:
                rec["client_core"] = core
            if srv0 is not None and srv1 is not None:
                rec["server_cpu_s"] = round(srv1 - srv0, 3)
            rec.update(kind="run", round=rnd, loop="asyncio")
            records.append(rec)
            save(rec)
            if rec.get("failed"):
                print(
                    f"  FAILED: ok={rec.get('ok')} error={rec.get('error')} "
                    f"samples={rec.get('bad_samples')}",
                    file=sys.stderr,
                )
            else:
                print(
                    f"  {rec['pages_per_s']:,.0f} pages/s, "
                    f"{rec['cpu_ms_per_page']:.3f} CPU ms/page, "
                    f"{rec['rss_peak_mib']:.1f} MiB",
                    file=sys.stderr,
                )
    return records


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point of the driver."""
    args = parse_args(argv)
    if args.report is not None:
        old_meta, old_records, old_notes = load_jsonl(args.report, writer="crawl.py")
        print(render(old_meta, old_records, old_notes))
        return 1 if any(r.get("failed") for r in old_records) else 0
    exit_on_sigterm()
    af_ok, af_note = asyncfetch_status()
    if not af_ok:
        print(f"asyncfetch not importable: {af_note}", file=sys.stderr)
        return 2
    pin, pin_note = (False, "disabled by --no-pin") if args.no_pin else pinning_status()
    notes: list[str] = []
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "crawl-" + dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    jsonl_path, md_path = args.out / f"{stem}.jsonl", args.out / f"{stem}.md"
    print(f"[site] generating {args.n:,} pages ...", file=sys.stderr)
    site = generate_site(args.n, args.seed)
    try:
        server = make_server(args, pin, site.root)
        if isinstance(server, SiteAiohttp) and args.server == "auto":
            notes.append(
                f"nginx unavailable ({nginx_status()[1]}): the server is the "
                "aiohttp fallback, much slower than nginx, so the ratios come "
                "out closer to 1"
            )
        meta: dict[str, Any] = {
            "kind": "meta",
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": git_commit(),
            "python": f"{platform.python_version()} ({platform.platform()})",
            "aiohttp": package_version("aiohttp"),
            "yarl": package_version("yarl"),
            "protego": package_version("protego"),
            "asyncfetch": af_note,
            "server": server.label,
            "site": site.describe(),
            "n": args.n,
            "concurrency": args.concurrency,
            "cpus": os.cpu_count(),
            "pinning": pin_note,
            "load_start": loadavg(),
            "quick": args.quick,
            "reps": args.reps,
            "warmup": args.warmup,
        }
        print(f"[site] {site.describe()}", file=sys.stderr)
        with open(jsonl_path, "w") as raw:

            def save(rec: dict[str, Any], fh: IO[str] = raw) -> None:
                fh.write(json.dumps(rec) + "\n")
                fh.flush()

            save(meta)
            with server:
                records = run_rounds(args, server, pin, save)
            meta["load_end"] = loadavg()
            save({"kind": "meta-end", "load_end": meta["load_end"], "notes": notes})
    finally:
        shutil.rmtree(site.root, ignore_errors=True)
    publish(render(meta, records, notes), md_path, jsonl_path, "crawl-latest")
    return 1 if any(r.get("failed") for r in records) else 0


if __name__ == "__main__":
    commands = {"serve": serve_main, "client": client_main}
    if len(sys.argv) > 1 and sys.argv[1] in commands:
        sys.exit(commands[sys.argv[1]](sys.argv[2:]))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; server stopped, site removed", file=sys.stderr)
        sys.exit(130)
