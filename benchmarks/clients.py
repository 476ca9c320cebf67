"""Benchmark clients: one client per process, one JSON line on stdout.

Usage::

    python benchmarks/clients.py CLIENT --url-base http://127.0.0.1:PORT \\
        --n 20000 --concurrency 64 [--size 1024]

Clients:

* ``aiohttp-hand``: hand-written aiohttp -- one ``ClientSession`` with
  ``TCPConnector(limit=C)``, C worker tasks pulling from one lazy iterator.
* ``aiohttp-hand-list``: the same, keeping every response in a list in input
  order (what ``fetch_all`` returns), checked at the end.
* ``asyncfetch-fetch_all``: ``await asyncfetch.fetch_all(urls, concurrency=C)``.
* ``asyncfetch-stream``: ``async with asyncfetch.Fetcher(concurrency=C) as f:
  async for r in f.stream(urls)``.

Every client fetches ``/bytes/{size}?i=<k>`` for k in range(n), reads every
body in full and counts as ``ok`` only responses with status 200 and exactly
``size`` bytes. The timed window starts after imports, before the session /
fetcher is created, and ends after it is closed. Exit status is 0 only if
``ok == n``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp

REPO_ROOT = Path(__file__).resolve().parent.parent
CLIENTS = (
    "aiohttp-hand",
    "aiohttp-hand-list",
    "asyncfetch-fetch_all",
    "asyncfetch-stream",
)


@dataclass
class Tally:
    """Counts checked responses; keeps the first few failures for diagnosis."""

    size: int
    ok: int = 0
    bad: int = 0
    samples: list[str] = field(default_factory=list)

    def check(self, status: int | None, body_len: int, error: object = None) -> None:
        """Count one response as ok (200 + exact size) or bad."""
        if error is None and status == 200 and body_len == self.size:
            self.ok += 1
            return
        self.bad += 1
        if len(self.samples) < 5:
            self.samples.append(f"status={status} len={body_len} error={error!r}"[:200])


def import_asyncfetch() -> ModuleType:
    """Import asyncfetch; fall back to the repo checkout if not installed."""
    try:
        import asyncfetch
    except ImportError:
        sys.path.insert(0, str(REPO_ROOT))
        import asyncfetch
    return asyncfetch


def make_urls(url_base: str, n: int, size: int) -> Iterator[str]:
    """Lazily yield ``n`` distinct URLs for ``size``-byte bodies."""
    base = f"{url_base.rstrip('/')}/bytes/{size}?i="
    return (f"{base}{i}" for i in range(n))


async def run_aiohttp_hand(
    urls: Iterator[str], concurrency: int, tally: Tally, _mod: ModuleType | None
) -> None:
    """Hand-written aiohttp: C workers sharing one lazy URL iterator."""

    async def worker(session: aiohttp.ClientSession) -> None:
        for url in urls:  # shared generator: next() never awaits, so this is safe
            try:
                async with session.get(url) as r:
                    body = await r.read()
                    tally.check(r.status, len(body))
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                tally.check(None, 0, exc)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))


async def run_aiohttp_hand_list(
    urls: Iterator[str], concurrency: int, tally: Tally, _mod: ModuleType | None
) -> None:
    """Hand-written aiohttp that keeps every response, as ``fetch_all`` must.

    The same workers as ``aiohttp-hand``, each storing (url, status, headers,
    body) at the input's index; the check runs over the list at the end.
    """
    kept: list[tuple[Any, int, Any, bytes] | None] = []

    async def worker(session: aiohttp.ClientSession) -> None:
        for url in urls:
            index = len(kept)
            kept.append(None)
            try:
                async with session.get(url) as r:
                    kept[index] = (r.url, r.status, r.headers, await r.read())
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                tally.check(None, 0, exc)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    for item in kept:
        if item is not None:
            tally.check(item[1], len(item[3]))


async def run_asyncfetch_fetch_all(
    urls: Iterator[str], concurrency: int, tally: Tally, mod: ModuleType | None
) -> None:
    """``asyncfetch.fetch_all`` with defaults apart from ``concurrency``."""
    assert mod is not None
    results = await mod.fetch_all(urls, concurrency=concurrency)
    for r in results:
        tally.check(r.status, len(r.content), r.error)


async def run_asyncfetch_stream(
    urls: Iterator[str], concurrency: int, tally: Tally, mod: ModuleType | None
) -> None:
    """``asyncfetch.Fetcher(...).stream(urls)`` with default options."""
    assert mod is not None
    async with mod.Fetcher(concurrency=concurrency) as f:
        async for r in f.stream(urls):
            tally.check(r.status, len(r.content), r.error)


Runner = Callable[[Iterator[str], int, Tally, "ModuleType | None"], Awaitable[None]]
RUNNERS: dict[str, Runner] = {
    "aiohttp-hand": run_aiohttp_hand,
    "aiohttp-hand-list": run_aiohttp_hand_list,
    "asyncfetch-fetch_all": run_asyncfetch_fetch_all,
    "asyncfetch-stream": run_asyncfetch_stream,
}


def current_rss_mib() -> float:
    """Current resident set size in MiB (Linux /proc; else peak RSS)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return peak_rss_mib()
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def peak_rss_mib() -> float:
    """Peak RSS of this process in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def timed(
    client: str, args: argparse.Namespace, mod: ModuleType | None
) -> dict[str, Any]:
    """Run one client inside the timed window and return its JSON record."""
    tally = Tally(size=args.size)
    urls = make_urls(args.url_base, args.n, args.size)
    runner = RUNNERS[client]
    rss_start = current_rss_mib()
    error: str | None = None
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        await asyncio.wait_for(runner(urls, args.concurrency, tally, mod), args.timeout)
    except asyncio.TimeoutError:
        error = f"timed out after {args.timeout} s"
    except Exception as exc:  # a crash is a failed run, reported as data
        error = f"{type(exc).__name__}: {exc}"
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    return {
        "client": client,
        "n": args.n,
        "ok": tally.ok,
        "wall_s": round(wall, 4),
        "cpu_s": round(cpu, 4),
        "rss_peak_mib": round(peak_rss_mib(), 1),
        "req_per_s": round(tally.ok / wall, 1) if wall > 0 else 0.0,
        "cpu_ms_per_req": round(1000 * cpu / tally.ok, 4) if tally.ok else None,
        "rss_start_mib": round(rss_start, 1),
        "concurrency": args.concurrency,
        "size": args.size,
        "loop": args.loop,
        "bad": tally.bad,
        "bad_samples": tally.samples,
        "error": error,
        "asyncfetch_version": getattr(mod, "__version__", None) if mod else None,
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: run one client, print one JSON line."""
    p = argparse.ArgumentParser(description="Run one benchmark client.")
    p.add_argument("client", choices=CLIENTS)
    p.add_argument("--url-base", required=True, help="e.g. http://127.0.0.1:8080")
    p.add_argument("--n", type=int, required=True, help="number of requests")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--size", type=int, default=1024, help="body size in bytes")
    p.add_argument("--timeout", type=float, default=600.0, help="whole-run bound")
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = p.parse_args(argv)

    mod = import_asyncfetch() if args.client.startswith("asyncfetch") else None
    if args.loop == "uvloop":
        import uvloop

        record = uvloop.run(timed(args.client, args, mod))
    else:
        record = asyncio.run(timed(args.client, args, mod))
    print(json.dumps(record), flush=True)
    return 0 if record["ok"] == args.n and record["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
