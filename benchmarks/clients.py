"""Benchmark clients: one client per process, one JSON line on stdout.

Usage::

    python benchmarks/clients.py CLIENT --url-base http://127.0.0.1:PORT \\
        --n 20000 --concurrency 64 [--size 1024] [--path /bytes/{size}] \\
        [--per-host 8] [--loop asyncio|uvloop]

``--url-base`` may be a comma-separated list of bases: the URLs then go
round-robin over them (the many-hosts scenario).

Clients, each in its best-practice configuration for C = ``--concurrency``:

* ``aiohttp-hand``: hand-written aiohttp -- one ``ClientSession`` with
  ``TCPConnector(limit=C)`` (plus ``limit_per_host`` with ``--per-host``),
  C worker tasks pulling from one lazy iterator.
* ``aiohttp-hand-list``: the same, keeping every response in a list in input
  order (what ``fetch_all`` returns), checked at the end.
* ``aiohttp-gather``: the naive pattern -- one coroutine per URL created up
  front, ``asyncio.gather`` over all of them, one session whose connector
  limit is C.
* ``aiohttp-semaphore``: one task per URL created up front, each holding an
  ``asyncio.Semaphore(C)`` around its request; connector limit C.
* ``httpx``: ``httpx.AsyncClient(limits=httpx.Limits(max_connections=C,
  max_keepalive_connections=C))``, C worker tasks over one lazy iterator.
* ``aiometer-httpx``: the same ``httpx.AsyncClient``, requests started by
  ``aiometer.run_on_each(fetch, urls, max_at_once=C)`` over the lazy
  iterator.
* ``pycurl``: libcurl's multi interface without asyncio -- one ``CurlMulti``
  and C ``Curl`` easy handles reused for every request (so connections are
  kept alive), a ``perform``/``info_read``/``select`` loop.
* ``asyncio-protocol``: a reference, not a usable client -- the floor of a
  Python client on that event loop. C connections opened at once, one
  ``asyncio.Protocol`` each, every request written from ``data_received``
  the moment the previous response ends; a minimal parser (status line and
  ``Content-Length`` only: no chunked bodies, redirects, decompression,
  timeouts or retries). One origin only (the first URL's).
* ``asyncfetch-fetch_all``: ``await asyncfetch.fetch_all(urls, concurrency=C)``.
* ``asyncfetch-stream``: ``async with asyncfetch.Fetcher(concurrency=C) as f:
  async for r in f.stream(urls)``.

Every client fetches ``{path}?i=<k>`` (``path`` defaults to
``/bytes/{size}``) for k in range(n), reads every body in full and counts as
``ok`` only responses with status 200 and exactly ``size`` bytes. The timed
window starts after imports (and, for the asyncio clients, inside the
client's own ``asyncio.run``/``uvloop.run``), before the session / fetcher is
created, and ends after it is closed. Just before the window each client
runs one full garbage collection (``gc.collect()``, see ``settle_heap``);
the collector stays on inside the window. CPU time is ``getrusage(RUSAGE_SELF)``
user + system over the window; peak RSS is ``ru_maxrss``. Exit status is 0
only if ``ok == n``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
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
from urllib.parse import urlsplit

import aiohttp

REPO_ROOT = Path(__file__).resolve().parent.parent
CLIENTS = (
    "aiohttp-hand",
    "aiohttp-hand-list",
    "aiohttp-gather",
    "aiohttp-semaphore",
    "httpx",
    "aiometer-httpx",
    "pycurl",
    "asyncio-protocol",
    "asyncfetch-fetch_all",
    "asyncfetch-stream",
)
# Clients that do not run on an asyncio event loop (``--loop`` is ignored).
SYNC_CLIENTS = frozenset({"pycurl"})
# The third-party module each optional client needs.
CLIENT_MODULES = {
    "httpx": "httpx",
    "aiometer-httpx": "aiometer",
    "pycurl": "pycurl",
}
HTTPX_TIMEOUT_S = 30.0  # asyncfetch's default per attempt (httpx's is 5 s)


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


@dataclass
class Job:
    """What one client run fetches and how (the same for every client)."""

    urls: Iterator[str]
    concurrency: int
    per_host: int | None
    tally: Tally
    mod: ModuleType | None = None


def import_asyncfetch() -> ModuleType:
    """Import asyncfetch; fall back to the repo checkout if not installed."""
    try:
        import asyncfetch
    except ImportError:
        sys.path.insert(0, str(REPO_ROOT))
        import asyncfetch
    return asyncfetch


def make_urls(
    url_base: str, n: int, size: int, path: str | None = None
) -> Iterator[str]:
    """Lazily yield ``n`` distinct URLs for ``size``-byte bodies.

    ``url_base`` may be a comma-separated list of bases: URL k then goes to
    base k mod len(bases) (round-robin over hosts). ``path`` defaults to
    ``/bytes/{size}``.
    """
    suffix = (path or f"/bytes/{size}") + "?i="
    bases = [b.rstrip("/") + suffix for b in url_base.split(",") if b]
    if len(bases) == 1:
        base = bases[0]
        return (f"{base}{i}" for i in range(n))
    return (f"{base}{i}" for i, base in zip(range(n), itertools.cycle(bases)))


def _connector(job: Job) -> aiohttp.TCPConnector:
    """``TCPConnector(limit=C)``, plus ``limit_per_host`` when one is set."""
    return aiohttp.TCPConnector(limit=job.concurrency, limit_per_host=job.per_host or 0)


async def run_aiohttp_hand(job: Job) -> None:
    """Hand-written aiohttp: C workers sharing one lazy URL iterator."""
    urls, tally = job.urls, job.tally

    async def worker(session: aiohttp.ClientSession) -> None:
        for url in urls:  # shared generator: next() never awaits, so this is safe
            try:
                async with session.get(url) as r:
                    body = await r.read()
                    tally.check(r.status, len(body))
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                tally.check(None, 0, exc)

    async with aiohttp.ClientSession(connector=_connector(job)) as session:
        await asyncio.gather(*(worker(session) for _ in range(job.concurrency)))


async def run_aiohttp_hand_list(job: Job) -> None:
    """Hand-written aiohttp that keeps every response, as ``fetch_all`` must.

    The same workers as ``aiohttp-hand``, each storing (url, status, headers,
    body) at the input's index; the check runs over the list at the end.
    """
    urls, tally = job.urls, job.tally
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

    async with aiohttp.ClientSession(connector=_connector(job)) as session:
        await asyncio.gather(*(worker(session) for _ in range(job.concurrency)))
    for item in kept:
        if item is not None:
            tally.check(item[1], len(item[3]))


async def _aiohttp_get(session: aiohttp.ClientSession, url: str, tally: Tally) -> None:
    """GET ``url``, read the body in full and check it."""
    try:
        async with session.get(url) as r:
            body = await r.read()
            tally.check(r.status, len(body))
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        tally.check(None, 0, exc)


async def run_aiohttp_gather(job: Job) -> None:
    """The naive pattern: every request created up front, ``asyncio.gather``.

    The connector limit (default 100) is set to C, so at most C requests are
    on the wire; the rest wait inside the connector.
    """
    async with aiohttp.ClientSession(connector=_connector(job)) as session:
        await asyncio.gather(*(_aiohttp_get(session, u, job.tally) for u in job.urls))


async def run_aiohttp_semaphore(job: Job) -> None:
    """A task per URL, created up front, each under ``asyncio.Semaphore(C)``."""
    sem = asyncio.Semaphore(job.concurrency)

    async def fetch(session: aiohttp.ClientSession, url: str) -> None:
        async with sem:
            await _aiohttp_get(session, url, job.tally)

    async with aiohttp.ClientSession(connector=_connector(job)) as session:
        tasks = [asyncio.create_task(fetch(session, u)) for u in job.urls]
        await asyncio.gather(*tasks)


def _httpx_client(job: Job) -> Any:
    """``httpx.AsyncClient`` with a pool of C connections, all kept alive."""
    import httpx

    limits = httpx.Limits(
        max_connections=job.concurrency, max_keepalive_connections=job.concurrency
    )
    return httpx.AsyncClient(limits=limits, timeout=HTTPX_TIMEOUT_S)


async def _httpx_get(client: Any, url: str, tally: Tally) -> None:
    """GET ``url`` with httpx (the body is read in full) and check it."""
    import httpx

    try:
        r = await client.get(url)
        tally.check(r.status_code, len(r.content))
    except httpx.HTTPError as exc:
        tally.check(None, 0, exc)


async def run_httpx(job: Job) -> None:
    """httpx: one ``AsyncClient``, C workers sharing one lazy URL iterator."""

    async def worker(client: Any) -> None:
        for url in job.urls:
            await _httpx_get(client, url, job.tally)

    async with _httpx_client(job) as client:
        await asyncio.gather(*(worker(client) for _ in range(job.concurrency)))


async def run_aiometer_httpx(job: Job) -> None:
    """aiometer + httpx: ``run_on_each(fetch, urls, max_at_once=C)``.

    ``run_on_each`` iterates its argument lazily and starts one task per
    item, at most C at once (``amap`` would need a sized sequence).
    """
    import aiometer

    async with _httpx_client(job) as client:

        async def fetch(url: str) -> None:
            await _httpx_get(client, url, job.tally)

        await aiometer.run_on_each(fetch, job.urls, max_at_once=job.concurrency)  # type: ignore[arg-type]


def run_pycurl(job: Job, deadline: float) -> None:
    """libcurl multi: C reused easy handles, a perform/info_read/select loop.

    Each easy handle keeps its connection alive (libcurl's connection cache,
    shared by the multi handle); bodies are collected by a write callback
    and joined, so every body exists in full as ``bytes`` like elsewhere.
    """
    import pycurl

    multi = pycurl.CurlMulti()
    multi.setopt(pycurl.M_MAX_TOTAL_CONNECTIONS, job.concurrency)
    multi.setopt(pycurl.M_MAXCONNECTS, job.concurrency)
    if job.per_host:
        multi.setopt(pycurl.M_MAX_HOST_CONNECTIONS, job.per_host)
    bodies: dict[Any, list[bytes]] = {}
    free = []
    for _ in range(job.concurrency):
        easy = pycurl.Curl()
        chunks: list[bytes] = []
        bodies[easy] = chunks
        easy.setopt(pycurl.WRITEFUNCTION, chunks.append)
        easy.setopt(pycurl.NOSIGNAL, 1)
        easy.setopt(pycurl.TIMEOUT, int(HTTPX_TIMEOUT_S))
        easy.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        free.append(easy)
    in_flight = 0
    urls = job.urls
    exhausted = False
    try:
        while True:
            while free and not exhausted:
                url = next(urls, None)
                if url is None:
                    exhausted = True
                    break
                easy = free.pop()
                easy.setopt(pycurl.URL, url)
                multi.add_handle(easy)
                in_flight += 1
            if in_flight == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("pycurl run passed its deadline")
            ret = pycurl.E_CALL_MULTI_PERFORM
            while ret == pycurl.E_CALL_MULTI_PERFORM:
                ret, _ = multi.perform()
            completed = 0
            while True:
                queued, done, failed = multi.info_read()
                for easy in done:
                    chunks = bodies[easy]
                    body = b"".join(chunks)
                    job.tally.check(easy.getinfo(pycurl.RESPONSE_CODE), len(body))
                    chunks.clear()
                    multi.remove_handle(easy)
                    free.append(easy)
                for easy, errno, message in failed:
                    bodies[easy].clear()
                    job.tally.check(None, 0, f"curl error {errno}: {message}")
                    multi.remove_handle(easy)
                    free.append(easy)
                completed += len(done) + len(failed)
                if not queued:
                    break
            in_flight -= completed
            if not completed:  # nothing to refill: wait for socket activity
                multi.select(1.0)
    finally:
        for easy in bodies:
            easy.close()
        multi.close()


class _FloorProtocol(asyncio.Protocol):
    """One connection of ``asyncio-protocol``: write, parse, write the next."""

    def __init__(self, client: _FloorClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.head: tuple[int, int] | None = None  # (status, Content-Length)
        self.waiting = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send()

    def send(self) -> None:
        """Write the next request, or close when the URLs are used up."""
        assert self.transport is not None
        request = self.client.next_request()
        if request is None:
            self.transport.close()
            return
        self.waiting = True
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while self.waiting:
            if self.head is None:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                lines = bytes(buf[:end]).split(b"\r\n")
                del buf[: end + 4]
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                self.head = (int(lines[0].split(b" ", 2)[1]), length)
            status, length = self.head
            if len(buf) < length:
                return
            del buf[:length]
            self.head = None
            self.waiting = False
            self.client.tally.check(status, length)
            self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiting:
            self.client.tally.check(None, 0, exc or "connection closed")
        self.client.closed()


class _FloorClient:
    """The shared state of ``asyncio-protocol``'s connections."""

    def __init__(self, job: Job, host: str) -> None:
        self.urls = job.urls
        self.tally = job.tally
        self.host = host
        self.open = job.concurrency
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def next_request(self) -> bytes | None:
        """The bytes of the next GET, or None at the end of the URLs."""
        url = next(self.urls, None)
        if url is None:
            return None
        target = urlsplit(url)
        path = f"{target.path or '/'}{'?' if target.query else ''}{target.query}"
        return f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode()

    def closed(self) -> None:
        """One connection ended; the run ends with the last."""
        self.open -= 1
        if self.open == 0 and not self.done.done():
            self.done.set_result(None)


async def run_asyncio_protocol(job: Job) -> None:
    """The floor: bare ``asyncio.Protocol`` connections, no HTTP library."""
    first = next(job.urls)
    target = urlsplit(first)
    urls = itertools.chain([first], job.urls)
    client = _FloorClient(
        Job(urls, job.concurrency, job.per_host, job.tally), target.netloc
    )
    loop = asyncio.get_running_loop()
    await asyncio.gather(
        *(
            loop.create_connection(
                lambda: _FloorProtocol(client), target.hostname, target.port
            )
            for _ in range(job.concurrency)
        )
    )
    await client.done


async def run_asyncfetch_fetch_all(job: Job) -> None:
    """``asyncfetch.fetch_all`` with defaults apart from ``concurrency``."""
    assert job.mod is not None
    results = await job.mod.fetch_all(
        job.urls, concurrency=job.concurrency, per_host=job.per_host
    )
    for r in results:
        job.tally.check(r.status, len(r.content), r.error)


async def run_asyncfetch_stream(job: Job) -> None:
    """``asyncfetch.Fetcher(...).stream(urls)`` with default options."""
    assert job.mod is not None
    async with job.mod.Fetcher(concurrency=job.concurrency, per_host=job.per_host) as f:
        async for r in f.stream(job.urls):
            job.tally.check(r.status, len(r.content), r.error)


Runner = Callable[[Job], Awaitable[None]]
RUNNERS: dict[str, Runner] = {
    "aiohttp-hand": run_aiohttp_hand,
    "aiohttp-hand-list": run_aiohttp_hand_list,
    "aiohttp-gather": run_aiohttp_gather,
    "aiohttp-semaphore": run_aiohttp_semaphore,
    "httpx": run_httpx,
    "aiometer-httpx": run_aiometer_httpx,
    "asyncio-protocol": run_asyncio_protocol,
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


def cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads) so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _record(
    client: str,
    args: argparse.Namespace,
    mod: ModuleType | None,
    tally: Tally,
    wall: float,
    cpu: float,
    rss_start: float,
    error: str | None,
    window_start: float,
) -> dict[str, Any]:
    """The JSON record of one run."""
    return {
        "client": client,
        "n": args.n,
        "ok": tally.ok,
        "wall_s": round(wall, 4),
        "cpu_s": round(cpu, 4),
        "rss_peak_mib": round(peak_rss_mib(), 1),
        "req_per_s": round(tally.ok / wall, 1) if wall > 0 else 0.0,
        "mib_per_s": round(tally.ok * args.size / wall / 2**20, 2) if wall else 0.0,
        "cpu_ms_per_req": round(1000 * cpu / tally.ok, 4) if tally.ok else None,
        "rss_start_mib": round(rss_start, 1),
        "concurrency": args.concurrency,
        "per_host": args.per_host,
        "size": args.size,
        "hosts": len([b for b in args.url_base.split(",") if b]),
        "loop": "-" if client in SYNC_CLIENTS else args.loop,
        "bad": tally.bad,
        "bad_samples": tally.samples,
        "error": error,
        "asyncfetch_version": getattr(mod, "__version__", None) if mod else None,
        # Which package ran (a benchmark may point at another tree).
        "asyncfetch_path": str(Path(mod.__file__).parent)
        if mod and mod.__file__
        else None,
        "window_start": window_start,  # time.monotonic(), for anatomy.py
    }


def settle_heap() -> None:
    """Run the interpreter's first full collection now, outside the window.

    A fresh interpreter has not yet collected its oldest generation: the
    objects its imports made (about 30,000 here) wait for the first full
    collection, which comes once the middle generation has been collected
    more than ten times, whatever the process does by then. Without this, the window of
    a client that allocates a little more than another pays that collection
    (24-45 ms in the latency scenario) and the other does not. After it, a
    full collection needs the survivors to grow by a quarter, as in a
    process that has been running for a while.
    """
    gc.collect()


async def timed(
    client: str, args: argparse.Namespace, mod: ModuleType | None
) -> dict[str, Any]:
    """Run one asyncio client inside the timed window; return its record."""
    tally = Tally(size=args.size)
    job = Job(
        make_urls(args.url_base, args.n, args.size, args.path),
        args.concurrency,
        args.per_host,
        tally,
        mod,
    )
    runner = RUNNERS[client]
    rss_start = current_rss_mib()
    error: str | None = None
    settle_heap()
    cpu0, wall0, start = cpu_seconds(), time.perf_counter(), time.monotonic()
    try:
        await asyncio.wait_for(runner(job), args.timeout)
    except asyncio.TimeoutError:
        error = f"timed out after {args.timeout} s"
    except Exception as exc:  # a crash is a failed run, reported as data
        error = f"{type(exc).__name__}: {exc}"
    wall = time.perf_counter() - wall0
    cpu = cpu_seconds() - cpu0
    return _record(client, args, mod, tally, wall, cpu, rss_start, error, start)


def timed_sync(client: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run the (non-asyncio) pycurl client inside the timed window."""
    import pycurl  # noqa: F401  (imported before the window, like the others)

    tally = Tally(size=args.size)
    job = Job(
        make_urls(args.url_base, args.n, args.size, args.path),
        args.concurrency,
        args.per_host,
        tally,
    )
    rss_start = current_rss_mib()
    error: str | None = None
    settle_heap()
    cpu0, wall0, start = cpu_seconds(), time.perf_counter(), time.monotonic()
    try:
        run_pycurl(job, time.monotonic() + args.timeout)
    except Exception as exc:  # a crash is a failed run, reported as data
        error = f"{type(exc).__name__}: {exc}"
    wall = time.perf_counter() - wall0
    cpu = cpu_seconds() - cpu0
    return _record(client, args, None, tally, wall, cpu, rss_start, error, start)


def import_client_deps(client: str) -> ModuleType | None:
    """Import what ``client`` needs before the timed window; asyncfetch or None."""
    if client.startswith("asyncfetch"):
        return import_asyncfetch()
    if client == "aiometer-httpx":
        import aiometer  # noqa: F401
    if client in ("httpx", "aiometer-httpx"):
        import httpx  # noqa: F401
    return None


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: run one client, print one JSON line."""
    p = argparse.ArgumentParser(description="Run one benchmark client.")
    p.add_argument("client", choices=CLIENTS)
    p.add_argument(
        "--url-base", required=True, help="e.g. http://127.0.0.1:8080 (or a,b,c)"
    )
    p.add_argument("--n", type=int, required=True, help="number of requests")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--per-host", type=int, default=None, help="per-host cap")
    p.add_argument("--size", type=int, default=1024, help="body size in bytes")
    p.add_argument("--path", default=None, help="URL path (default /bytes/SIZE)")
    p.add_argument("--timeout", type=float, default=600.0, help="whole-run bound")
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = p.parse_args(argv)

    mod = import_client_deps(args.client)
    if args.client in SYNC_CLIENTS:
        record = timed_sync(args.client, args)
    elif args.loop == "uvloop":
        import uvloop

        record = uvloop.run(timed(args.client, args, mod))
    else:
        record = asyncio.run(timed(args.client, args, mod))
    print(json.dumps(record), flush=True)
    return 0 if record["ok"] == args.n and record["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
