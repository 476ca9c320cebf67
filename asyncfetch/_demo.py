"""``asyncfetch demo``: fetch a couple of thousand URLs from a server in this process.

The server listens on loopback only (127.0.0.1 to .4, or extra ports on
127.0.0.1 where those cannot be bound) with fast, slow, missing, failing,
redirecting, compressed, large, stalling and rate-limited pages, next to a
closed port that stands for a host that is down. The demo streams the URLs
through one [`Fetcher`][asyncfetch.Fetcher], draws progress on stderr when it
is a terminal, prints a table per host built from the results (and from what
the server saw), and shuts everything down.
"""

from __future__ import annotations

import asyncio
import gzip
import random
import shutil
import socket
import statistics
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from aiohttp import web
from aiohttp.typedefs import Handler

from ._config import Retry
from ._fetcher import Fetcher
from ._loop import run_coroutine
from ._models import Result, Stats

__all__ = ["HostTally", "format_table", "main", "tally"]

CONCURRENCY = 64
PER_HOST = 16
MAX_REDIRECTS = 5
TIMEOUT = 2.0  # seconds per attempt, redirects included; /stall takes longer
STALL = 2.5
ATTEMPTS = 2  # the first try and one retry
BREAKER = 20  # max_host_failures
LIMITED = 5  # the limited host answers its first LIMITED requests with 429
SEED = 2024

Address = tuple[str, int]

# host name -> (the address it asks for, "page kind:how many URLs ...")
PLAN: dict[str, tuple[str, str]] = {
    "fast": ("127.0.0.1", "page:620 gzip:60 big:20 hops:40"),
    "slow": ("127.0.0.2", "slow:160"),
    "mixed": ("127.0.0.3", "page:640 missing:100 error:70 hops:40 loop:5 stall:5"),
    "limited": ("127.0.0.4", "limited:160"),
    "down": ("127.0.0.1", "page:80"),
}
HEADER = "host requests ok 404 5xx retried paused HostDown median max done errors"


class DemoServer:
    """The demo's pages; when each host (``Host`` header) heard a request; its 429s."""

    def __init__(self) -> None:
        self.arrivals: dict[str, list[float]] = {}
        self.paused: Counter[str] = Counter()  # 429s sent with Retry-After
        self._gzipped = gzip.compress(b"asyncfetch decompresses this for you.\n" * 800)
        self._big = bytes(range(256)) * 1024  # 256 KiB

    @web.middleware
    async def _arrival(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        self.arrivals.setdefault(request.host, []).append(time.monotonic())
        return await handler(request)

    async def _page(self, request: web.Request) -> web.StreamResponse:
        kind, n = request.match_info["kind"], int(request.match_info["n"])
        if kind == "slow":
            await asyncio.sleep(0.05 + (n * 7919 % 251) / 1000)  # 50-300 ms
        elif kind == "stall":
            await asyncio.sleep(STALL)
        elif kind == "missing":
            return web.Response(status=404, text="not here\n")
        elif kind == "error":
            return web.Response(status=500, text="the server broke\n")
        elif kind == "limited":  # too many requests, come back in a second
            if len(self.arrivals[request.host]) <= LIMITED:
                self.paused[request.host] += 1
                headers = {"Retry-After": "1"}
                return web.Response(status=429, text="slow down\n", headers=headers)
        elif kind == "gzip":
            headers = {"Content-Encoding": "gzip", "Content-Type": "text/plain"}
            return web.Response(body=self._gzipped, headers=headers)
        elif kind == "big":
            return web.Response(body=self._big, content_type="application/octet-stream")
        elif kind in ("hops", "loop"):  # a 302 chain: 3 hops, or one too many
            default = 3 if kind == "hops" else MAX_REDIRECTS + 1
            left = int(request.query.get("left", default))
            if left > 0:
                location = request.rel_url.with_query(left=str(left - 1))
                return web.Response(status=302, headers={"Location": str(location)})
        return web.Response(text=f"{kind} page {n}\n")

    def app(self) -> web.Application:
        """The aiohttp application serving every page kind at ``/{kind}/{n}``."""
        app = web.Application(middlewares=[self._arrival])
        app.router.add_get("/{kind}/{n:[0-9]+}", self._page)
        return app

    def quietest(self, host: str) -> tuple[float, int]:
        """The longest time ``host`` heard no request; how many others heard."""
        times = self.arrivals.get(host, [])
        gap, start = max(((b - a, a) for a, b in pairwise(times)), default=(0.0, 0.0))
        heard = (t for h, ts in self.arrivals.items() if h != host for t in ts)
        return gap, sum(start < t < start + gap for t in heard)


def _listen(host: str) -> socket.socket:
    """A socket bound to a free port of ``host``, or of 127.0.0.1 if that fails."""
    try:
        return socket.create_server((host, 0))
    except OSError:  # 127.0.0.2 and up are not loopback everywhere (macOS)
        return socket.create_server(("127.0.0.1", 0))


def _urls(addresses: Mapping[str, Address]) -> list[str]:
    urls = [
        f"http://{addresses[name][0]}:{addresses[name][1]}/{kind}/{i}"
        for name, (_, mix) in PLAN.items()
        for kind, count in (part.split(":") for part in mix.split())
        for i in range(int(count))
    ]
    random.Random(SEED).shuffle(urls)
    urls.sort(key=lambda url: "/stall/" not in url)  # their timeouts overlap the rest
    return urls


@dataclass
class HostTally:
    """What the results from one host (address and port) added up to."""

    name: str
    requests: int = 0
    ok: int = 0
    not_found: int = 0
    server_errors: int = 0
    attempts: int = 0
    retried: int = 0  # attempts beyond the first
    recovered: int = 0  # ok results that took more than one attempt
    down: int = 0  # HostDown: failed at once by an open breaker
    errors: Counter[str] = field(default_factory=Counter)  # the other errors
    elapsed: list[float] = field(default_factory=list)
    done_at: float = 0.0  # seconds after the start, of its last result

    def add(self, result: Result, at: float) -> None:
        """Count one result that arrived ``at`` seconds after the start."""
        self.requests += 1
        self.ok += result.ok
        self.not_found += result.status == 404
        self.server_errors += result.status is not None and result.status >= 500
        self.attempts += result.attempts
        self.retried += max(0, result.attempts - 1)
        self.recovered += result.ok and result.attempts > 1
        name = None if result.error is None else type(result.error).__name__
        if name == "HostDown":
            self.down += 1
        elif name is not None:
            self.errors[name] += 1
        if result.attempts:
            self.elapsed.append(result.elapsed)
        self.done_at = max(self.done_at, at)

    @property
    def median(self) -> float:
        """The median ``elapsed`` of the results that sent something."""
        return statistics.median(self.elapsed) if self.elapsed else 0.0

    def cells(self, paused: int) -> list[str]:
        """The table row; ``paused``: the 429s with Retry-After it answered."""
        counts = (self.requests, self.ok, self.not_found, self.server_errors)
        times = (self.median, max(self.elapsed, default=0.0))
        errors = " ".join(f"{k}:{v}" for k, v in sorted(self.errors.items())) or "-"
        ms = [f"{t * 1000:.0f} ms" for t in times]
        more = [str(self.retried), str(paused), str(self.down)]
        return [
            self.name,
            *map(str, counts),
            *more,
            *ms,
            f"{self.done_at:.1f} s",
            errors,
        ]


Hosts = dict[Address, HostTally]


def tally(
    results: Iterable[tuple[Result, float]],
    names: Mapping[Address, str],
    hosts: Hosts | None = None,
) -> Hosts:
    """Add ``(result, arrival time)`` pairs to ``hosts``, by ``result.url`` host and port."""
    hosts = {} if hosts is None else hosts
    for result, at in results:
        key = (result.url.host or "?", result.url.port or 0)
        if key not in hosts:
            hosts[key] = HostTally(names.get(key, f"{key[0]}:{key[1]}"))
        hosts[key].add(result, at)
    return hosts


def format_table(header: str, rows: Iterable[Sequence[str]]) -> str:
    """Columns named by the words of ``header``; the first and last left-aligned."""
    table = [header.split(), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    last = len(widths) - 1
    return "\n".join(
        "  ".join(
            cell.ljust(widths[i]) if i in (0, last) else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()
        for row in table
    )


def _draw(stats: Stats) -> None:
    width = shutil.get_terminal_size().columns - 1  # a wrapped line cannot redraw
    print(f"\r{str(stats)[:width]}\x1b[K", end="", file=sys.stderr, flush=True)


async def _fetch(urls: list[str], names: Mapping[Address, str]) -> tuple[Hosts, Stats]:
    hosts = {address: HostTally(name) for address, name in names.items()}
    progress = _draw if sys.stderr.isatty() else False
    async with Fetcher(
        concurrency=CONCURRENCY,
        per_host=PER_HOST,
        timeout=TIMEOUT,
        retries=Retry(attempts=ATTEMPTS, backoff=0.05),
        max_redirects=MAX_REDIRECTS,
        max_host_failures=BREAKER,
        progress=progress,
    ) as f:
        start = time.monotonic()
        async for result in f.stream(urls):
            tally([(result, time.monotonic() - start)], names, hosts)
    if progress:
        sys.stderr.write("\r\x1b[K")
    return hosts, f.stats


def _report(
    hosts: Hosts, addresses: Mapping[str, Address], server: DemoServer, stats: Stats
) -> None:
    rows = (t.cells(server.paused[f"{k[0]}:{k[1]}"]) for k, t in hosts.items())
    print(format_table(HEADER, rows), f"\n{stats}\n", sep="\n")
    down, slow, limited = (
        hosts[addresses[name]] for name in ("down", "slow", "limited")
    )
    errors = "".join(f"{v} {k}, " for k, v in sorted(down.errors.items()))
    if down.down:
        breaker = f"its breaker opened after {BREAKER} failures in a row"
    else:
        breaker = "its breaker never opened"
    limited_host = "{}:{}".format(*addresses["limited"])
    gap, others = server.quietest(limited_host)
    text = [
        "retried: attempts beyond the first; paused: responses the server sent that"
        " host with 429 and Retry-After; HostDown: results an open breaker failed.",
        f"The {down.requests} requests to the closed port came back as results "
        f"({errors}{down.down} HostDown), not exceptions, like the stalls and the"
        " redirect loops; a 404 or a 500 is a result with a status and no error. The"
        f" dead host cost {down.attempts} attempts instead of "
        f"{down.requests * ATTEMPTS}: {breaker} (max_host_failures={BREAKER}).",
        f"The limited host answered {server.paused[limited_host]} requests with 429"
        " and Retry-After: 1 and was paused: the server heard nothing from the client"
        f" on that host for up to {gap:.2f} s at a time, while {others} requests"
        f" reached the other hosts meanwhile; {limited.recovered} requests there came"
        " back ok on a retry.",
        f"Each host had at most {PER_HOST} requests in flight (per_host), so the"
        f" slow host, at a median of {slow.median * 1000:.0f} ms a request, never"
        f" took the other hosts' slots. Try python -X dev -W error: no warnings.",
    ]
    print("\n\n".join(textwrap.fill(paragraph, 88) for paragraph in text))


async def _demo() -> None:
    # Under -X dev, asyncio reports any step over 0.1 s; here that is only ever
    # a full GC pass over the server's and the client's objects, so allow more.
    asyncio.get_running_loop().slow_callback_duration = 0.5
    server = DemoServer()
    runner = web.AppRunner(
        server.app(), handler_cancellation=True, shutdown_timeout=1.0, access_log=None
    )
    await runner.setup()
    try:
        addresses: dict[str, Address] = {}
        for name, (host, _) in PLAN.items():
            if name == "down":  # a port that was free a moment ago: nothing listens
                with socket.create_server((host, 0)) as sock:
                    addresses[name] = sock.getsockname()[:2]
            else:
                sock = _listen(host)
                addresses[name] = sock.getsockname()[:2]
                await web.SockSite(runner, sock).start()
        names = {a: f"{a[0]}:{a[1]} ({name})" for name, a in addresses.items()}
        hosts, stats = await _fetch(_urls(addresses), names)
        _report(hosts, addresses, server, stats)
    finally:
        await runner.cleanup()


def main() -> int:
    """Run the demo; return the exit status (0)."""
    run_coroutine(_demo())
    return 0
