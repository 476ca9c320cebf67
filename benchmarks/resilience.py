"""Resilience benchmark: what retries, rate and the breaker cost, and save.

Usage::

    python benchmarks/resilience.py [--quick] [--reps 3] [--out benchmarks/results]

Two measurements, every client run a fresh subprocess pinned to core 1, the
server(s) pinned to core 0, rounds interleaved, medians reported:

1. **Happy-path overhead.** n GETs of ``/bytes/1024`` from one host
   (``server.py``), concurrency 64, through a Fetcher stream and through
   ``fetch_all``, with the resilience features *off* (``retries=0,
   max_host_failures=None``), at the library *defaults*, and *on* but never
   triggered (``retries=Retry(attempts=3), rate=1e6,
   max_host_failures=20``). Reports req/s, CPU ms/request and on/off ratios,
   plus (unless ``--no-profile``) one extra untimed cProfile run per client:
   Python calls per request, a noise-free measure of the work added.
2. **200 hosts, 20 dead: breaker on vs off.** 180 live hosts (one aiohttp
   process listening on 180 loopback addresses) and 20 dead ones, URLs
   round-robin over the 200, ``concurrency=64, per_host=4,
   retries=Retry(attempts=2, backoff=0.05)``, with ``max_host_failures=20``
   and ``None``. Two kinds of dead host: *refused* (nothing listens;
   ``timeout=5``) and *silent* (accepts and never answers; ``timeout=1``).

Writes ``OUT/resilience.jsonl`` (one record per run, as it happens) and
``OUT/resilience.md`` (also printed). Every result is checked: one result
per URL in input order, live URLs status 200 with the right size, dead URLs
``ConnectError``/``HostDown``/``FetchTimeout``. Any failed run makes the
exit status 1.

The same file is also the server and the client (internal subcommands
``serve-hosts`` and ``client``, started by the driver).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import json
import os
import platform
import pstats
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import IO, Any

from _harness import (
    BENCH_DIR,
    CLIENT_CORE,
    PYTHON,
    SERVER_CORE,
    Server,
    asyncfetch_status,
    exit_on_sigterm,
    failed_runs,
    json_record,
    notes_section,
    package_version,
    pinned,
    pinning_status,
)
from clients import Tally, current_rss_mib, import_asyncfetch, make_urls, peak_rss_mib
from run import loadavg

SCRIPT = str(Path(__file__).resolve())

# Happy path: (API, features) per client, "off" first (the baseline).
HAPPY_CLIENTS: dict[str, tuple[str, str]] = {
    "stream-off": ("stream", "off"),
    "stream-defaults": ("stream", "defaults"),
    "stream-on": ("stream", "on"),
    "fetch_all-off": ("fetch_all", "off"),
    "fetch_all-on": ("fetch_all", "on"),
}
FEATURES_DOC = {
    "off": "retries=0, max_host_failures=None",
    "defaults": "library defaults (retries=2, max_host_failures=20)",
    "on": "retries=Retry(attempts=3), rate=1e6, max_host_failures=20",
}
TARGET_RATIO = 0.95

# Host layout: loopback blocks 127.<block>.x.y, one port for all.
LIVE_BLOCK, REFUSED_BLOCK, SILENT_BLOCK = 10, 20, 30
LIVE_HOSTS, DEAD_HOSTS = 180, 20
VARIANTS: dict[str, dict[str, Any]] = {
    "refused": {"block": REFUSED_BLOCK, "fetch_timeout": 5.0},
    "silent": {"block": SILENT_BLOCK, "fetch_timeout": 1.0},
}
HOSTS_OPTIONS: dict[str, Any] = {
    "concurrency": 64,
    "per_host": 4,
    "attempts": 2,
    "backoff": 0.05,
}
BREAKER_ON = 20


# -- host layout -----------------------------------------------------------


def host_addr(block: int, i: int) -> str:
    """The i-th loopback address of ``block`` (127.block.x.y, y in 1..250)."""
    return f"127.{block}.{i // 250}.{i % 250 + 1}"


def spread(n_live: int, n_dead: int) -> list[bool]:
    """Dead flags for ``n_live + n_dead`` hosts, the dead spread evenly."""
    total = n_live + n_dead
    return [(j * n_dead) // total != ((j + 1) * n_dead) // total for j in range(total)]


def host_urls(port: int, dead_block: int) -> tuple[list[str], list[bool]]:
    """Base URLs of the 200 hosts (live and dead interleaved) and dead flags."""
    flags = spread(LIVE_HOSTS, DEAD_HOSTS)
    counters = {True: iter(range(DEAD_HOSTS)), False: iter(range(LIVE_HOSTS))}
    blocks = {True: dead_block, False: LIVE_BLOCK}
    urls = [f"http://{host_addr(blocks[f], next(counters[f]))}:{port}" for f in flags]
    return urls, flags


# -- the multi-host server (subprocess) ------------------------------------


class _Silent(asyncio.Protocol):
    """Accepts a connection and never answers; closes when the peer does."""

    def data_received(self, data: bytes) -> None:
        """Ignore the request."""


async def _serve_hosts(live: int, silent: int, max_seconds: float) -> None:
    """Serve ``/bytes`` on ``live`` addresses, stay silent on ``silent`` more."""
    from _serving import serve_app
    from aiohttp import web
    from server import make_app

    async def more_hosts(
        runner: web.AppRunner, port: int
    ) -> list[asyncio.AbstractServer]:
        for i in range(1, live):
            site = web.TCPSite(runner, host_addr(LIVE_BLOCK, i), port, backlog=1024)
            await site.start()
        loop = asyncio.get_running_loop()
        return [
            await loop.create_server(
                _Silent, host_addr(SILENT_BLOCK, i), port, backlog=1024
            )
            for i in range(silent)
        ]

    await serve_app(
        make_app(), max_seconds, host=host_addr(LIVE_BLOCK, 0), more=more_hosts
    )


def serve_hosts_main(argv: list[str]) -> int:
    """Entry point of the ``serve-hosts`` subcommand."""
    from _serving import run_fast

    p = argparse.ArgumentParser(prog="resilience.py serve-hosts")
    p.add_argument("--live", type=int, default=LIVE_HOSTS)
    p.add_argument("--silent", type=int, default=DEAD_HOSTS)
    p.add_argument("--max-seconds", type=float, default=2 * 3600.0)
    args = p.parse_args(argv)
    run_fast(_serve_hosts(args.live, args.silent, args.max_seconds))
    return 0


class HostsServer(Server):
    """The multi-host server as a pinned subprocess; ``port`` is shared."""

    label = (
        f"{LIVE_HOSTS} live hosts 127.{LIVE_BLOCK}.0.x and {DEAD_HOSTS} silent "
        f"127.{SILENT_BLOCK}.0.x on one port, one aiohttp.web process"
    )

    def command(self) -> list[str]:
        """This benchmark's own server."""
        return pinned([PYTHON, SCRIPT, "serve-hosts"], SERVER_CORE, self.pin)


def probe_hosts(port: int) -> list[str]:
    """Check the layout: live and silent hosts accept, refused ones refuse."""
    problems = []
    checks = [(LIVE_BLOCK, LIVE_HOSTS, True), (SILENT_BLOCK, DEAD_HOSTS, True)]
    checks.append((REFUSED_BLOCK, DEAD_HOSTS, False))
    for block, count, should_accept in checks:
        for i in range(count):
            addr = host_addr(block, i)
            try:
                with socket.create_connection((addr, port), timeout=2):
                    accepted = True
            except ConnectionRefusedError:
                accepted = False
            except OSError as exc:
                problems.append(f"{addr}:{port}: {exc!r}")
                continue
            if accepted != should_accept:
                want = "accept" if should_accept else "refuse"
                problems.append(f"{addr}:{port} does not {want} connections")
    return problems


# -- clients (subprocess) --------------------------------------------------


def feature_options(features: str) -> dict[str, Any]:
    """Fetcher options of a happy-path features mode."""
    import asyncfetch

    if features == "off":
        return {"retries": 0, "max_host_failures": None}
    if features == "defaults":
        return {}
    if features == "on":
        return {
            "retries": asyncfetch.Retry(attempts=3),
            "rate": 1e6,
            "max_host_failures": 20,
        }
    raise ValueError(f"unknown features mode {features!r}")


def runq_wait() -> float | None:
    """Seconds this thread has spent runnable but waiting for a CPU (Linux)."""
    try:
        return int(Path("/proc/thread-self/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


async def _timed(
    work: Callable[[], Awaitable[None]], timeout: float
) -> tuple[float, float, float | None, str | None]:
    """Run ``work()`` bounded by ``timeout``.

    Returns (wall s, CPU s, run-queue wait s or None, error or None). The
    run-queue wait is time the client could have run but another process
    had its core: load from outside the benchmark.
    """
    error: str | None = None
    runq0 = runq_wait()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        await asyncio.wait_for(work(), timeout)
    except asyncio.TimeoutError:
        error = f"timed out after {timeout} s"
    except Exception as exc:  # a crash is a failed run, reported as data
        error = f"{type(exc).__name__}: {exc}"
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    runq1 = runq_wait()
    runq = None if runq0 is None or runq1 is None else round(runq1 - runq0, 4)
    return wall, cpu, runq, error


async def happy_client(cfg: dict[str, Any]) -> dict[str, Any]:
    """One happy-path run: n small GETs from one host; every result checked."""
    import asyncfetch

    n, size, conc = cfg["n"], cfg["size"], cfg["concurrency"]
    api, features = HAPPY_CLIENTS[cfg["client"]]
    opts = feature_options(features)
    tally = Tally(size=size)
    urls = make_urls(cfg["url_base"], n, size)

    async def work() -> None:
        if api == "fetch_all":
            results = await asyncfetch.fetch_all(urls, concurrency=conc, **opts)
            if len(results) != n:
                raise RuntimeError(f"{len(results)} results for {n} URLs")
            for r in results:
                tally.check(r.status, len(r.content), r.error)
        else:
            async with asyncfetch.Fetcher(concurrency=conc, **opts) as f:
                async for r in f.stream(urls):
                    tally.check(r.status, len(r.content), r.error)

    rss_start = current_rss_mib()
    profiler = cProfile.Profile() if cfg.get("profile") else None
    if profiler is not None:
        profiler.enable()
    wall, cpu, runq, error = await _timed(work, cfg["timeout"])
    if profiler is not None:
        profiler.disable()
    if error is None and tally.ok + tally.bad != n:
        error = f"{tally.ok + tally.bad} results for {n} URLs"
    return {
        **(call_counts(profiler, n) if profiler is not None else {}),
        "client": cfg["client"],
        "api": api,
        "features": features,
        "n": n,
        "ok": tally.ok,
        "bad": tally.bad,
        "bad_samples": tally.samples,
        "wall_s": round(wall, 4),
        "cpu_s": round(cpu, 4),
        "runq_wait_s": runq,
        "req_per_s": round(tally.ok / wall, 1) if wall > 0 else 0.0,
        "cpu_ms_per_req": round(1000 * cpu / tally.ok, 4) if tally.ok else None,
        "rss_start_mib": round(rss_start, 1),
        "rss_peak_mib": round(peak_rss_mib(), 1),
        "error": error,
        "failed": error is not None or tally.ok != n,
    }


def call_counts(profiler: cProfile.Profile, n: int) -> dict[str, Any]:
    """Python calls made under ``profiler``: the total, and per function for
    those called at least ``n / 20`` times (the per-request path)."""
    stats = pstats.Stats(profiler)
    per_func: dict[str, int] = {}
    for (path, line, name), (_, ncalls, *_rest) in stats.stats.items():  # type: ignore[attr-defined]
        if ncalls >= n / 20:
            where = "/".join(Path(path).parts[-2:]) if path != "~" else "~"
            key = re.sub(r" at 0x[0-9a-f]+", "", f"{where}:{line}({name})")
            per_func[key] = per_func.get(key, 0) + ncalls
    return {"py_calls": stats.total_calls, "calls_by_func": per_func}  # type: ignore[attr-defined]


async def hosts_client(cfg: dict[str, Any]) -> dict[str, Any]:
    """One multi-host run: round-robin URLs over live and dead hosts."""
    import asyncfetch

    hosts: list[str] = cfg["hosts"]
    dead: list[bool] = cfg["dead"]
    n, size = cfg["n"], cfg["size"]

    def url(k: int) -> str:
        return f"{hosts[k % len(hosts)]}/bytes/{size}?i={k}"

    retry = asyncfetch.Retry(attempts=cfg["attempts"], backoff=cfg["backoff"])
    breaker: int | None = BREAKER_ON if cfg["breaker"] else None
    results: list[asyncfetch.Result] = []
    stats: list[asyncfetch.Stats] = []

    async def work() -> None:
        async with asyncfetch.Fetcher(
            concurrency=cfg["concurrency"],
            per_host=cfg["per_host"],
            retries=retry,
            timeout=cfg["fetch_timeout"],
            max_host_failures=breaker,
        ) as f:
            results.extend(await f.fetch_all(url(k) for k in range(n)))
            stats.append(f.stats)

    wall, cpu, runq, error = await _timed(work, cfg["timeout"])
    tally = Tally(size=size)
    counts = dict.fromkeys(("HostDown", "ConnectError", "FetchTimeout", "other"), 0)
    dead_attempts = live_attempts = mismatched = n_dead = 0
    samples: list[str] = []
    attempts_hist: dict[str, dict[str, int]] = {}  # error -> attempts -> results
    for k, r in enumerate(results):
        if str(r.request.url) != url(k):
            mismatched += 1
        if not dead[k % len(hosts)]:
            live_attempts += r.attempts
            tally.check(r.status, len(r.content), r.error)
            continue
        n_dead += 1
        dead_attempts += r.attempts
        err = r.error
        if isinstance(err, asyncfetch.HostDown):
            kind = "HostDown"
        elif isinstance(err, asyncfetch.ConnectError):
            kind = "ConnectError"
        elif isinstance(err, asyncfetch.FetchTimeout):
            kind = "FetchTimeout"
        else:
            kind = "other"
            if len(samples) < 5:
                samples.append(f"dead {r.url}: status={r.status} error={err!r}"[:200])
        counts[kind] += 1
        by_attempts = attempts_hist.setdefault(kind, {})
        by_attempts[str(r.attempts)] = by_attempts.get(str(r.attempts), 0) + 1
    if error is None and len(results) != n:
        error = f"results != inputs: {len(results)} results for {n} URLs"
    if error is None and mismatched:
        error = f"results != inputs: {mismatched} results for the wrong URL"
    n_live = n - sum(dead[k % len(hosts)] for k in range(n))
    return {
        "variant": cfg["variant"],
        "breaker": "on" if cfg["breaker"] else "off",
        "n": n,
        "n_live": n_live,
        "n_dead": n_dead,
        "results": len(results),
        "live_ok": tally.ok,
        "live_bad": tally.bad,
        "dead": counts,
        "dead_attempts": dead_attempts,
        "dead_by_attempts": attempts_hist,
        "live_attempts": live_attempts,
        "retries": stats[0].retries if stats else None,
        "wall_s": round(wall, 4),
        "cpu_s": round(cpu, 4),
        "runq_wait_s": runq,
        "live_req_per_s": round(tally.ok / wall, 1) if wall > 0 else 0.0,
        "fetch_timeout": cfg["fetch_timeout"],
        "bad_samples": tally.samples + samples,
        "error": error,
        "failed": error is not None
        or tally.ok != n_live
        or counts["other"] > 0
        or len(results) != n,
    }


def client_main(argv: list[str]) -> int:
    """Entry point of the ``client`` subcommand: one run, one JSON line."""
    if len(argv) != 1:
        print("usage: resilience.py client CONFIG_JSON", file=sys.stderr)
        return 2
    cfg = json.loads(argv[0])
    import_asyncfetch()  # falls back to the repo checkout if not installed
    runner = hosts_client if cfg["kind"] == "hosts" else happy_client
    record = asyncio.run(runner(cfg))
    record["kind"] = cfg["kind"]
    print(json.dumps(record), flush=True)
    return 1 if record["failed"] else 0


def run_sub(cfg: dict[str, Any], pin: bool) -> dict[str, Any]:
    """Run one client subprocess (bounded in time); return its record."""
    cmd = pinned([PYTHON, SCRIPT, "client", json.dumps(cfg)], CLIENT_CORE, pin)
    label: dict[str, Any] = {
        k: cfg[k] for k in ("kind", "client", "variant", "n") if k in cfg
    }
    if "breaker" in cfg:
        label["breaker"] = "on" if cfg["breaker"] else "off"
    record: dict[str, Any] = {**label, "failed": True}
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=cfg["timeout"] + 60
        )
    except subprocess.TimeoutExpired:
        record["error"] = "subprocess timed out"
        return record
    record = json_record(proc.stdout, proc.stderr, record)
    record["returncode"] = proc.returncode
    record["failed"] = bool(record.get("failed")) or proc.returncode != 0
    return record


# -- report ----------------------------------------------------------------


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _med(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _spread(xs: Sequence[float], digits: int = 2) -> str:
    """``median (min-max)`` of ``xs``, or ``-``."""
    if not xs:
        return "-"
    return f"{statistics.median(xs):.{digits}f} ({min(xs):.{digits}f}-{max(xs):.{digits}f})"


def paired(
    records: Sequence[dict[str, Any]],
    pick: Callable[[dict[str, Any]], str | None],
    num: str,
    den: str,
    key: str,
) -> list[float]:
    """Per-round ratios ``num[key] / den[key]``; ``pick`` names a record's role."""
    rounds: dict[int, dict[str, dict[str, Any]]] = {}
    for r in records:
        role = pick(r)
        if role is not None and not r.get("failed") and r.get(key) is not None:
            rounds.setdefault(r["round"], {})[role] = r
    return [
        rnd[num][key] / rnd[den][key]
        for rnd in rounds.values()
        if num in rnd and den in rnd and rnd[den][key]
    ]


def happy_table(records: Sequence[dict[str, Any]]) -> str:
    """Markdown table of the happy-path runs, ratios against the same API off."""
    lines = [
        "| client | API | features | ok runs | median req/s | min-max req/s "
        "| req/s ratio vs off | median CPU ms/req | CPU ratio vs off "
        "| client CPU/wall | client run-queue wait % | server CPU/wall |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for client, (api, features) in HAPPY_CLIENTS.items():
        runs = [
            r for r in records if r.get("kind") == "happy" and r.get("client") == client
        ]
        good = [r for r in runs if not r.get("failed")]
        rps = [r["req_per_s"] for r in good]
        cpu = [r["cpu_ms_per_req"] for r in good]
        util = [r["cpu_s"] / r["wall_s"] for r in good if r["wall_s"]]
        srv = [
            r["server_cpu_s"] / r["wall_s"]
            for r in good
            if r["wall_s"] and r.get("server_cpu_s") is not None
        ]
        rng = f"{min(rps):,.0f}-{max(rps):,.0f}" if rps else "-"
        if features == "off":
            rr = cr = "1.00 (baseline)"
        else:
            base = f"{api}-off"
            rr = _spread(happy_ratios(records, client, base, "req_per_s"))
            cr = _spread(happy_ratios(records, client, base, "cpu_ms_per_req"))
        lines.append(
            f"| {client} | {api} | {features} | {len(good)}/{len(runs)} "
            f"| {_fmt(_med(rps), 0)} | {rng} | {rr} | {_fmt(_med(cpu), 3)} | {cr} "
            f"| {_fmt(_med(util), 2)} | {_fmt(_med(runq_pct(good)))} "
            f"| {_fmt(_med(srv), 2)} |"
        )
    return "\n".join(lines) + "\n"


def runq_pct(runs: Sequence[dict[str, Any]]) -> list[float]:
    """Per run: % of wall time the client waited for its core (outside load)."""
    return [
        100 * r["runq_wait_s"] / r["wall_s"]
        for r in runs
        if r.get("runq_wait_s") is not None and r["wall_s"]
    ]


def happy_ratios(
    records: Sequence[dict[str, Any]], client: str, base: str, key: str
) -> list[float]:
    """Per-round ``client / base`` ratios of ``key`` (happy path)."""

    def pick(r: dict[str, Any]) -> str | None:
        c = r.get("client")
        return c if r.get("kind") == "happy" and c in (client, base) else None

    return paired(records, pick, client, base, key)


def happy_verdicts(records: Sequence[dict[str, Any]]) -> str:
    """One line per API: features on vs off against the target ratio."""
    out = []
    for api in ("stream", "fetch_all"):
        rs = happy_ratios(records, f"{api}-on", f"{api}-off", "req_per_s")
        cs = happy_ratios(records, f"{api}-on", f"{api}-off", "cpu_ms_per_req")
        if not rs:
            continue
        med = statistics.median(rs)
        verdict = "meets" if med >= TARGET_RATIO else "BELOW"
        verdict += f" the >= {TARGET_RATIO:.2f} target"
        if min(rs) < TARGET_RATIO <= max(rs):
            verdict += (
                f" by the median, but the rounds ({min(rs):.2f}-{max(rs):.2f}) "
                "straddle it: within this run's noise"
            )
        inv = f"{1 / statistics.median(cs):.2f}" if cs else "-"
        calls = {
            r["client"]: r["py_calls"]
            for r in records
            if r.get("kind") == "happy-profile" and not r.get("failed")
        }
        on, off = calls.get(f"{api}-on"), calls.get(f"{api}-off")
        work = f"; Python calls/request off / on = {off / on:.3f}" if on and off else ""
        out.append(
            f"- {api}: features on / off = {med:.2f} in req/s (median of "
            f"{len(rs)} paired rounds) and {inv} in requests per CPU second"
            f"{work}: {verdict}\n"
        )
    return "".join(out)


def profile_section(records: Sequence[dict[str, Any]]) -> str:
    """Python calls per request (deterministic) and what "on" adds to "off"."""
    prof = {
        r["client"]: r
        for r in records
        if r.get("kind") == "happy-profile" and not r.get("failed")
    }
    if not prof:
        return ""
    lines = [
        "\n### Python calls per request (one extra cProfile run per client)\n\n"
        "Timings on a shared machine are noisy; the number of Python function "
        "calls per request is not. It counts work rather than time, but the "
        "features are pure-Python bookkeeping, so it is a noise-free proxy for "
        "their cost (the profiled runs themselves are untimed).\n\n"
        "| client | calls/request | ratio vs off |",
        "|---|---:|---:|",
    ]
    for client, (api, _) in HAPPY_CLIENTS.items():
        r, base = prof.get(client), prof.get(f"{api}-off")
        if r is None:
            continue
        ratio = f"{r['py_calls'] / base['py_calls']:.3f}" if base else "-"
        lines.append(f"| {client} | {r['py_calls'] / r['n']:.1f} | {ratio} |")
    for api in ("stream", "fetch_all"):
        on, off = prof.get(f"{api}-on"), prof.get(f"{api}-off")
        if on is None or off is None:
            continue
        n = on["n"]
        son, soff = on["calls_by_func"], off["calls_by_func"]
        diff = {k: (son.get(k, 0) - soff.get(k, 0)) / n for k in set(son) | set(soff)}
        top = sorted((d, k) for k, d in diff.items() if abs(d) >= 0.05)
        top.sort(key=lambda t: -abs(t[0]))
        lines.append(f"\nPer-request calls that differ, {api} on minus off:\n")
        lines.extend(f"- {d:+.2f} `{k}`" for d, k in top[:12])
        if not top:
            lines.append("- none (|difference| < 0.05 calls per request)")
    return "\n".join(lines) + "\n"


def hosts_table(records: Sequence[dict[str, Any]], variant: str) -> str:
    """Markdown table of one dead-host variant, breaker on and off."""
    lines = [
        "| breaker | ok runs | median wall s | min-max wall s | live req/s "
        "| live ok / live URLs | HostDown | ConnectError | FetchTimeout "
        "| attempts to dead hosts | retries | client CPU s "
        "| client run-queue wait % | server CPU/wall |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for breaker in ("on", "off"):
        runs = [
            r
            for r in records
            if r.get("kind") == "hosts"
            and r.get("variant") == variant
            and r.get("breaker") == breaker
        ]
        good = [r for r in runs if not r.get("failed")]

        def med(
            get: Callable[[dict[str, Any]], float],
            digits: int = 0,
            good: list[dict[str, Any]] = good,
        ) -> str:
            return _fmt(_med([get(r) for r in good]), digits)

        walls = [r["wall_s"] for r in good]
        rng = f"{min(walls):.2f}-{max(walls):.2f}" if walls else "-"
        live = "-"
        if good:
            live = f"{med(lambda r: r['live_ok'])} / {good[0]['n_live']:,}"
        srv = [
            r["server_cpu_s"] / r["wall_s"]
            for r in good
            if r["wall_s"] and r.get("server_cpu_s") is not None
        ]
        label = f"on (max_host_failures={BREAKER_ON})" if breaker == "on" else "off"
        lines.append(
            f"| {label} | {len(good)}/{len(runs)} | {med(lambda r: r['wall_s'], 2)} "
            f"| {rng} | {med(lambda r: r['live_req_per_s'])} | {live} "
            f"| {med(lambda r: r['dead']['HostDown'])} "
            f"| {med(lambda r: r['dead']['ConnectError'])} "
            f"| {med(lambda r: r['dead']['FetchTimeout'])} "
            f"| {med(lambda r: r['dead_attempts'])} | {med(lambda r: r['retries'])} "
            f"| {med(lambda r: r['cpu_s'], 2)} | {_fmt(_med(runq_pct(good)))} "
            f"| {_fmt(_med(srv), 2)} |"
        )
    return "\n".join(lines) + "\n"


def hosts_summary(records: Sequence[dict[str, Any]], variant: str) -> str:
    """Paired off/on ratios of one variant."""

    def pick(r: dict[str, Any]) -> str | None:
        ok = r.get("kind") == "hosts" and r.get("variant") == variant
        return str(r.get("breaker")) if ok else None

    wall = paired(records, pick, "off", "on", "wall_s")
    att = paired(records, pick, "off", "on", "dead_attempts")
    live = paired(records, pick, "on", "off", "live_req_per_s")
    return (
        f"- wall time off / on: {_spread(wall)}; live req/s on / off: "
        f"{_spread(live)}; attempts to dead hosts off / on: {_spread(att, 1)} "
        "(medians of per-round ratios, min-max in brackets)\n"
    )


def git_state() -> str:
    """The checkout's commit, and whether the working tree has changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(BENCH_DIR), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(BENCH_DIR),
                "status",
                "--porcelain",
                "--",
                "../asyncfetch",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "git state unknown"
    if not head:
        return "not a git checkout"
    return f"commit {head}" + (", asyncfetch/ has uncommitted changes" if dirty else "")


def header(
    args: argparse.Namespace, pin_note: str, af_note: str, loads: Sequence[str]
) -> str:
    """Machine and configuration info for the top of the report."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            "# asyncfetch resilience benchmark",
            "",
            f"- date: {now}",
            f"- python: {platform.python_version()} ({platform.platform()})",
            f"- aiohttp: {package_version('aiohttp')}, yarl: {package_version('yarl')}"
            f", uvloop: {package_version('uvloop')}",
            f"- asyncfetch: {af_note} ({git_state()})",
            f"- cpu count: {os.cpu_count()}; pinning (taskset): {pin_note}",
            f"- load average 1/5/15 min: {loads[0]} at start, {loads[1]} at end",
            f"- {args.reps} interleaved rounds; client event loop: asyncio; "
            "servers on uvloop if importable",
            "",
            "",
        ]
    )


def report(
    args: argparse.Namespace,
    records: Sequence[dict[str, Any]],
    notes: Sequence[str],
    head: str,
) -> str:
    """The whole markdown report."""
    md = [head]
    if "happy" in args.scenarios:
        md.append(
            f"## Happy-path overhead (n={args.n:,} x /bytes/{args.size}, "
            f"concurrency {args.concurrency}, one host)\n\n"
        )
        md.extend(f"- **{k}**: {v}\n" for k, v in FEATURES_DOC.items())
        md.append(f"- server: {Server.label}\n\n")
        md.append(happy_table(records))
        md.append(
            "\nRatios are medians of per-round ratios against the same API with "
            "the features off, min-max in brackets: req/s > 1 is faster, CPU "
            "< 1 is cheaper.\n\n"
        )
        md.append(happy_verdicts(records))
        md.append(profile_section(records))
    for variant in ("refused", "silent"):
        if variant not in args.scenarios:
            continue
        n = args.hosts_n if variant == "refused" else args.silent_n
        vt = VARIANTS[variant]["fetch_timeout"]
        what = (
            "nothing listens: connection refused"
            if variant == "refused"
            else "accept and never answer"
        )
        md.append(
            f"\n## {LIVE_HOSTS + DEAD_HOSTS} hosts, {DEAD_HOSTS} dead ({variant}: "
            f"{what}), breaker on vs off\n\n"
            f"- n={n:,} GETs of /bytes/{args.size} round-robin over the hosts "
            f"({n // (LIVE_HOSTS + DEAD_HOSTS) * DEAD_HOSTS:,} to dead hosts), "
            f"concurrency={HOSTS_OPTIONS['concurrency']}, "
            f"per_host={HOSTS_OPTIONS['per_host']}, "
            f"retries=Retry(attempts={HOSTS_OPTIONS['attempts']}, "
            f"backoff={HOSTS_OPTIONS['backoff']}), timeout={vt:g}\n"
            f"- server: {HostsServer.label}\n\n"
        )
        md.append(hosts_table(records, variant))
        md.append("\n" + hosts_summary(records, variant))
    failed = failed_runs(
        records,
        lambda r: (
            f"{r.get('client') or r.get('variant')} "
            f"breaker={r.get('breaker', '-')} round={r.get('round', '-')}"
        ),
    )
    md.append(notes_section(notes, failed))
    return "".join(md)


# -- driver ----------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse and resolve the driver's options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller default sizes")
    p.add_argument("--reps", type=int, default=3, help="interleaved rounds")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    p.add_argument("--n", type=int, help="happy-path requests (20000; quick 5000)")
    p.add_argument("--hosts-n", type=int, help="refused variant URLs (20000; 5000)")
    p.add_argument("--silent-n", type=int, help="silent variant URLs (10000; 4000)")
    p.add_argument("--concurrency", type=int, default=64, help="happy path")
    p.add_argument("--size", type=int, default=1024, help="body bytes")
    p.add_argument("--warmup", type=int, default=2000, help="untimed warm-up GETs")
    p.add_argument("--timeout", type=float, default=600.0, help="per client run (s)")
    p.add_argument(
        "--scenarios",
        default="happy,refused,silent",
        help="comma-separated subset of happy,refused,silent",
    )
    p.add_argument(
        "--no-profile",
        dest="profile",
        action="store_false",
        help="skip the extra cProfile run per happy-path client",
    )
    p.add_argument("--no-pin", action="store_true", help="do not use taskset")
    args = p.parse_args(argv)
    q = args.quick
    args.n = args.n or (5000 if q else 20000)
    args.hosts_n = args.hosts_n or (5000 if q else 20000)
    args.silent_n = args.silent_n or (4000 if q else 10000)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - {"happy", "refused", "silent"}
    if unknown:
        p.error(f"unknown scenario(s) {sorted(unknown)}")
    if args.reps < 1 or min(args.n, args.hosts_n, args.silent_n) < 1:
        p.error("--reps and the sizes must be >= 1")
    return args


def _measured(
    server: Server,
    cfg: dict[str, Any],
    pin: bool,
    save: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Run one client, add the server's CPU time during it, save the record."""
    srv0 = server.cpu_seconds()
    rec = run_sub(cfg, pin)
    srv1 = server.cpu_seconds()
    if srv0 is not None and srv1 is not None:
        rec["server_cpu_s"] = round(srv1 - srv0, 3)
    rec["round"] = cfg.get("round")
    save(rec)
    if rec.get("failed"):
        print(
            f"  FAILED: {rec.get('error')} {rec.get('bad_samples')}",
            file=sys.stderr,
            flush=True,
        )
    return rec


def run_happy(
    args: argparse.Namespace, pin: bool, save: Callable[[dict[str, Any]], None]
) -> list[dict[str, Any]]:
    """Scenario 1: the happy-path clients, interleaved rounds."""
    records = []
    common = {
        "kind": "happy",
        "size": args.size,
        "concurrency": args.concurrency,
        "timeout": args.timeout,
    }
    with Server(pin) as server:
        if args.warmup > 0:
            print(f"[happy warm-up] n={args.warmup}", file=sys.stderr, flush=True)
            cfg = {**common, "client": "stream-off", "n": args.warmup}
            _measured(server, {**cfg, "url_base": server.url_base}, pin, save)
        for rnd in range(args.reps):
            for client in HAPPY_CLIENTS:
                print(
                    f"[happy {rnd + 1}/{args.reps}] {client} ...",
                    file=sys.stderr,
                    flush=True,
                )
                cfg = {**common, "client": client, "n": args.n, "round": rnd}
                cfg["url_base"] = server.url_base
                records.append(_measured(server, cfg, pin, save))
        for client in HAPPY_CLIENTS if args.profile else ():
            print(f"[happy profile] {client} ...", file=sys.stderr, flush=True)
            cfg = {**common, "client": client, "n": args.n, "profile": True}
            cfg.update(kind="happy-profile", url_base=server.url_base)
            records.append(_measured(server, cfg, pin, save))
    return records


def run_hosts(
    args: argparse.Namespace,
    pin: bool,
    save: Callable[[dict[str, Any]], None],
    notes: list[str],
) -> list[dict[str, Any]]:
    """Scenario 2: live and dead hosts, breaker on and off, interleaved."""
    variants = [v for v in ("refused", "silent") if v in args.scenarios]
    records: list[dict[str, Any]] = []
    with HostsServer(pin) as server:
        assert server.port is not None
        problems = probe_hosts(server.port)
        if problems:
            notes.extend(problems[:10])
            raise RuntimeError(f"host layout check failed: {problems[:3]}")

        def cfg_for(variant: str, breaker: bool, n: int) -> dict[str, Any]:
            assert server.port is not None
            hosts, dead = host_urls(server.port, VARIANTS[variant]["block"])
            return {
                "kind": "hosts",
                "variant": variant,
                "breaker": breaker,
                "hosts": hosts,
                "dead": dead,
                "n": n,
                "size": args.size,
                "fetch_timeout": VARIANTS[variant]["fetch_timeout"],
                "timeout": args.timeout,
                **HOSTS_OPTIONS,
            }

        if args.warmup > 0:
            print(f"[hosts warm-up] n={args.warmup}", file=sys.stderr, flush=True)
            warm = cfg_for("refused", True, args.warmup)
            _measured(server, {**warm, "round": "warmup"}, pin, save)
        for rnd in range(args.reps):
            for variant in variants:
                n = args.hosts_n if variant == "refused" else args.silent_n
                for breaker in (True, False):
                    print(
                        f"[hosts {rnd + 1}/{args.reps}] {variant} breaker="
                        f"{'on' if breaker else 'off'} n={n} ...",
                        file=sys.stderr,
                        flush=True,
                    )
                    cfg = {**cfg_for(variant, breaker, n), "round": rnd}
                    records.append(_measured(server, cfg, pin, save))
    return records


def main(argv: list[str] | None = None) -> int:
    """Driver entry point (and dispatch to the internal subcommands)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve-hosts"]:
        return serve_hosts_main(argv[1:])
    if argv[:1] == ["client"]:
        return client_main(argv[1:])
    args = parse_args(argv)
    exit_on_sigterm()
    args.out.mkdir(parents=True, exist_ok=True)
    pin, pin_note = (False, "disabled by --no-pin") if args.no_pin else pinning_status()
    af_ok, af_note = asyncfetch_status()
    if not af_ok:
        print(f"asyncfetch not importable: {af_note}", file=sys.stderr)
        return 2
    load_start = loadavg()
    records: list[dict[str, Any]] = []
    notes: list[str] = []
    with open(args.out / "resilience.jsonl", "w") as raw:

        def save(rec: dict[str, Any], fh: IO[str] = raw) -> None:
            fh.write(json.dumps(rec) + "\n")
            fh.flush()

        if "happy" in args.scenarios:
            records += run_happy(args, pin, save)
        if {"refused", "silent"} & set(args.scenarios):
            records += run_hosts(args, pin, save, notes)
    head = header(args, pin_note, af_note, (load_start, loadavg()))
    text = report(args, records, notes, head)
    (args.out / "resilience.md").write_text(text)
    print(text)
    return 1 if any(r.get("failed") for r in records) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
