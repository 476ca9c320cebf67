"""Run the whole benchmark: asyncfetch vs hand-written aiohttp and others.

Usage::

    python benchmarks/run.py [--quick] [--reps 3]
        [--scenarios small,latency,memory,big,hosts] [--clients a,b]
        [--server auto|nginx|aiohttp] [--out DIR] [--no-pin]

Starts nginx (or, without it, the aiohttp fallback server) pinned to core 0,
and the raw-asyncio delay server for the latency scenario; runs every client
as a subprocess pinned to core 1, in interleaved rounds (every round runs
every client once, in the order of a balanced Latin square); runs ``wrk``
for the server's own limit. Writes ``OUT/<timestamp>.jsonl`` (one JSON record per run, as it
happens), ``OUT/<timestamp>.md`` and copies of both as ``OUT/latest.*``, and
prints the markdown. The exit status is 1 if any run failed.

Scenarios (``--quick``: smaller N, 1 round):

1. ``small``: 20,000 x 1 KiB from one host, C=64; every client on asyncio,
   aiohttp-hand and both asyncfetch clients on uvloop too; wrk -c64.
2. ``latency``: 5,000 x ``/delay`` (100 ms), C=500; throughput as a
   fraction of the ideal C / 0.1 s; wrk -c500.
3. ``memory``: peak RSS of ``asyncfetch-stream`` over a lazy generator of
   100,000 and 1,000,000 URLs (quick: 20,000 / 200,000), one run each.
4. ``big``: 100 x 10 MiB, C=8, MiB/s.
5. ``hosts``: 10,000 requests round-robin over 200 loopback hosts
   (127.0.1.1-127.0.1.200), C=64, per-host cap 8.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from _harness import (
    BENCH_DIR,
    CLIENT_CORE,
    CoreMeter,
    DelayServer,
    NginxServer,
    Server,
    asyncfetch_status,
    exit_on_sigterm,
    failed_runs,
    git_commit,
    load_jsonl,
    nginx_status,
    notes_section,
    package_version,
    pinning_status,
    publish,
    rotated,
    run_client,
    run_wrk,
    wrk_status,
)
from clients import CLIENT_MODULES, CLIENTS, SYNC_CLIENTS
from memory import memory_table, run_memory

BASELINE = "aiohttp-hand"
SCENARIOS = ("small", "latency", "memory", "big", "hosts")
ASYNCFETCH_CLIENTS = ("asyncfetch-fetch_all", "asyncfetch-stream")
UVLOOP_CLIENTS = (BASELINE, *ASYNCFETCH_CLIENTS)
FLOOR = "asyncio-protocol"  # the floor of a Python client, one origin only
KIB, MIB = 1024, 1024 * 1024
LATENCY_DELAY_S = 0.1
MEMORY_LIMIT_MIB = 100.0
MEMORY_FLAT_PCT = 10.0
MEMORY_TIMEOUT_S = 900.0
SERVER_BOUND = 0.8  # server CPU/wall from which a row is flagged server-bound
DISTURBED = 0.2  # share of the client core taken by others that flags a run


@dataclass(frozen=True)
class Entry:
    """One row of a scenario: a client on an event loop ('-': no asyncio)."""

    client: str
    loop: str

    @property
    def baseline_loop(self) -> str:
        """The loop of the aiohttp-hand run this entry is compared with."""
        return "asyncio" if self.loop == "-" else self.loop


@dataclass
class Scenario:
    """A workload, the clients that run it and the target they are held to."""

    name: str
    title: str
    n: int
    concurrency: int
    size: int
    entries: list[Entry]
    metric: str = "req_per_s"  # or "mib_per_s"
    path: str | None = None
    per_host: int | None = None
    many_hosts: bool = False
    delay_server: bool = False
    wrk_connections: int | None = None
    target: Callable[[Entry, dict[str, Any]], str] | None = None

    @property
    def unit(self) -> str:
        """The metric's unit, for column headers."""
        return "MiB/s" if self.metric == "mib_per_s" else "req/s"


# -- targets ---------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def target_small(entry: Entry, row: dict[str, Any]) -> str:
    """asyncfetch >= 1.5x aiohttp-hand req/s and <= 0.67x its CPU ms/req."""
    if entry.client not in ASYNCFETCH_CLIENTS:
        return ""
    speed, cpu = row.get("ratio"), row.get("cpu_ratio")
    if speed is None or cpu is None:
        return "- (no paired runs)"
    ok = speed >= 1.5 and cpu <= 0.67
    return f"{_verdict(ok)} (req/s {speed:.2f}x >= 1.5, CPU {cpu:.2f}x <= 0.67)"


def target_latency(entry: Entry, row: dict[str, Any]) -> str:
    """Throughput >= 0.90 of the ideal C / delay (checked for asyncfetch)."""
    value, ideal = row.get("median"), row.get("ideal")
    if value is None or not ideal:
        return "-"
    frac = value / ideal
    text = f"{frac:.2f} of ideal"
    if entry.client in ASYNCFETCH_CLIENTS:
        return f"{_verdict(frac >= 0.90)} ({text} >= 0.90)"
    return text


def _ratio_target(minimum: float) -> Callable[[Entry, dict[str, Any]], str]:
    def target(entry: Entry, row: dict[str, Any]) -> str:
        if entry.client not in ASYNCFETCH_CLIENTS:
            return ""
        speed = row.get("ratio")
        if speed is None:
            return "- (no paired runs)"
        return f"{_verdict(speed >= minimum)} ({speed:.2f}x >= {minimum:.1f})"

    target.__doc__ = f"asyncfetch >= {minimum}x aiohttp-hand."
    return target


# -- scenario definitions --------------------------------------------------


def build_scenarios(args: argparse.Namespace) -> list[Scenario]:
    """The selected scenarios with their N (full or ``--quick``)."""
    quick = args.quick
    everyone = [Entry(c, "-" if c in SYNC_CLIENTS else "asyncio") for c in CLIENTS]
    on_uvloop = [Entry(c, "uvloop") for c in (*UVLOOP_CLIENTS, FLOOR)]
    on_asyncio = [Entry(c, "asyncio") for c in UVLOOP_CLIENTS]
    all_scenarios = {
        "small": Scenario(
            name="small",
            title="small: {n:,} x 1 KiB, one host, C=64",
            n=args.n or (2_000 if quick else 20_000),
            concurrency=64,
            size=KIB,
            entries=everyone + on_uvloop,
            wrk_connections=64,
            target=target_small,
        ),
        "latency": Scenario(
            name="latency",
            title="latency: {n:,} x /delay (100 ms), C=500",
            n=5_000,
            concurrency=500,
            size=2,
            path="/delay",
            entries=[*on_asyncio, Entry(FLOOR, "asyncio"), *on_uvloop],
            delay_server=True,
            wrk_connections=500,
            target=target_latency,
        ),
        "big": Scenario(
            name="big",
            title="big: {n:,} x 10 MiB, one host, C=8",
            n=20 if quick else 100,
            concurrency=8,
            size=10 * MIB,
            entries=[
                Entry(BASELINE, "asyncio"),
                Entry("aiohttp-hand-list", "asyncio"),
                Entry("asyncfetch-fetch_all", "asyncio"),
                Entry("asyncfetch-stream", "asyncio"),
            ],
            metric="mib_per_s",
            target=_ratio_target(0.9),
        ),
        "hosts": Scenario(
            name="hosts",
            title="many hosts: {n:,} x 1 KiB round-robin over 200 hosts, C=64, "
            "8 per host",
            n=2_000 if quick else 10_000,
            concurrency=64,
            size=KIB,
            per_host=8,
            many_hosts=True,
            entries=list(on_asyncio),
            target=_ratio_target(1.0),
        ),
    }
    return [all_scenarios[s] for s in args.scenarios if s in all_scenarios]


# -- arguments -------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse and resolve command-line options."""
    p = argparse.ArgumentParser(description="The asyncfetch benchmark suite.")
    p.add_argument("--quick", action="store_true", help="small N, 1 round (~2 min)")
    p.add_argument("--reps", type=int, help="interleaved rounds (default 3; quick 1)")
    p.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma-separated subset"
    )
    p.add_argument(
        "--clients",
        default="",
        help="only these clients (comma-separated; aiohttp-hand, the baseline, "
        "and wrk always run)",
    )
    p.add_argument(
        "--server",
        choices=("auto", "nginx", "aiohttp"),
        default="auto",
        help="static server: nginx if installed (auto), or the aiohttp fallback",
    )
    p.add_argument("--n", type=int, help="override N of the small scenario")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    p.add_argument("--timeout", type=float, default=600.0, help="per client run (s)")
    p.add_argument("--warmup", type=int, help="untimed warm-up requests (2000)")
    p.add_argument("--wrk-seconds", type=float, help="wrk duration (5; quick 2)")
    p.add_argument("--no-pin", action="store_true", help="do not use taskset")
    p.add_argument(
        "--report",
        type=Path,
        metavar="JSONL",
        help="only re-render the markdown of an earlier run's JSON lines",
    )
    args = p.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown:
        p.error(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    args.clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    unknown = sorted(set(args.clients) - set(CLIENTS))
    if unknown:
        p.error(f"unknown client(s) {unknown}; choose from {list(CLIENTS)}")
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    if args.warmup is None:
        args.warmup = 500 if args.quick else 2000
    if args.wrk_seconds is None:
        args.wrk_seconds = 2.0 if args.quick else 5.0
    if args.reps < 1 or (args.n is not None and args.n < 1):
        p.error("--reps and --n must be >= 1")
    return args


# -- statistics and tables -------------------------------------------------


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _median(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _key(r: dict[str, Any]) -> tuple[str, str]:
    return r["client"], r.get("loop", "asyncio")


def paired_ratios(
    records: Sequence[dict[str, Any]],
    entry: Entry,
    key: str,
    base_client: str = BASELINE,
) -> list[float]:
    """Per-round ratio ``entry[key] / aiohttp-hand[key]`` on the same loop."""
    by_round: dict[int, dict[tuple[str, str], dict[str, Any]]] = {}
    for r in records:
        if not r.get("failed") and r.get(key) is not None:
            by_round.setdefault(r["round"], {})[_key(r)] = r
    base = (base_client, entry.baseline_loop)
    me = (entry.client, entry.loop)
    return [
        rnd[me][key] / rnd[base][key]
        for rnd in by_round.values()
        if me in rnd and base in rnd and rnd[base][key]
    ]


def summarize(
    records: Sequence[dict[str, Any]], entry: Entry, sc: Scenario
) -> dict[str, Any]:
    """Medians, spreads and paired ratios of one entry's runs."""
    runs = [r for r in records if _key(r) == (entry.client, entry.loop)]
    good = [r for r in runs if not r.get("failed")]
    values = [r[sc.metric] for r in good]
    ratios = paired_ratios(records, entry, sc.metric)
    cpu_ratios = paired_ratios(records, entry, "cpu_ms_per_req")
    srv = [
        r["server_cpu_s"] / r["wall_s"]
        for r in good
        if r.get("wall_s") and r.get("server_cpu_s") is not None
    ]
    return {
        "runs": len(runs),
        "good": len(good),
        "median": _median(values),
        "min": min(values) if values else None,
        "max": max(values) if values else None,
        "ratio": _median(ratios),
        "ratio_min": min(ratios) if ratios else None,
        "ratio_max": max(ratios) if ratios else None,
        "cpu": _median([r["cpu_ms_per_req"] for r in good if r.get("cpu_ms_per_req")]),
        "cpu_ratio": _median(cpu_ratios),
        "rss": _median([r["rss_peak_mib"] for r in good if r.get("rss_peak_mib")]),
        "server_util": _median(srv),
        "ideal": sc.concurrency / LATENCY_DELAY_S if sc.delay_server else None,
    }


def results_table(
    records: Sequence[dict[str, Any]], sc: Scenario, entries: Sequence[Entry]
) -> str:
    """The scenario's markdown table."""
    digits = 1 if sc.metric == "mib_per_s" else 0
    u = sc.unit
    lines = [
        f"| client | loop | median {u} | min-max {u} | ratio vs {BASELINE} "
        "| CPU ms/req | CPU ratio | peak RSS MiB | server CPU/wall | target |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for e in entries:
        row = summarize(records, e, sc)
        name = e.client
        if row["good"] < row["runs"]:
            name += f" ({row['runs'] - row['good']}/{row['runs']} runs FAILED)"
        if e.client == BASELINE:
            ratio = cpu_ratio = "1.00 (baseline)"
        else:
            ratio = "-"
            if row["ratio"] is not None:
                ratio = (
                    f"{row['ratio']:.2f} "
                    f"({row['ratio_min']:.2f}-{row['ratio_max']:.2f})"
                )
            cpu_ratio = _fmt(row["cpu_ratio"], 2)
        spread = (
            f"{row['min']:,.{digits}f}-{row['max']:,.{digits}f}"
            if row["min"] is not None
            else "-"
        )
        target = sc.target(e, row) if sc.target else ""
        if e.client == "wrk" and not target:
            target = "server limit (not a client)"
        lines.append(
            f"| {name} | {e.loop} | {_fmt(row['median'], digits)} | {spread} "
            f"| {ratio} | {_fmt(row['cpu'], 3)} | {cpu_ratio} | {_fmt(row['rss'])} "
            f"| {_fmt(row['server_util'], 2)} | {target} |"
        )
    return "\n".join(lines) + "\n"


def table_notes(
    records: Sequence[dict[str, Any]], sc: Scenario, entries: Sequence[Entry]
) -> list[str]:
    """Lines under a table: like-for-like fetch_all ratio, server-bound rows."""
    lines = []
    have = {(e.client, e.loop) for e in entries}
    for e in entries:
        if e.client != "asyncfetch-fetch_all":
            continue
        if ("aiohttp-hand-list", e.baseline_loop) not in have:
            continue
        rs = paired_ratios(records, e, sc.metric, base_client="aiohttp-hand-list")
        cpu = paired_ratios(records, e, "cpu_ms_per_req", "aiohttp-hand-list")
        if rs and cpu:
            lines.append(
                f"- like for like ({e.loop}): `fetch_all` returns every result, so "
                "it compares with aiohttp-hand-list, which also keeps every "
                f"response: {sc.unit} ratio {statistics.median(rs):.2f}, CPU ratio "
                f"{statistics.median(cpu):.2f} (medians of per-round ratios)\n"
            )
    bound = []
    for e in entries:
        util = summarize(records, e, sc)["server_util"]
        if util is not None and util >= SERVER_BOUND:
            bound.append(f"{e.client} ({e.loop}, {util:.2f})")
    if bound:
        lines.append(
            f"- server-bound (server CPU/wall >= {SERVER_BOUND:.2f}): "
            f"{', '.join(bound)}: these rows show the server's limit more than "
            "the client's\n"
        )
    disturbed = [
        f"{r['client']} ({r.get('loop')}) round {r['round'] + 1}: others "
        f"{r['client_core']['other_load']:.2f}, steal {r['client_core']['steal']:.2f}"
        for r in records
        if r.get("client_core")
        and (
            r["client_core"]["other_load"] >= DISTURBED
            or r["client_core"]["steal"] >= DISTURBED
        )
    ]
    if disturbed:
        more = f"; and {len(disturbed) - 8} more" if len(disturbed) > 8 else ""
        lines.append(
            f"- {len(disturbed)} of {len(records)} runs disturbed (other processes "
            f"or the hypervisor took >= {DISTURBED:.0%} of the client's core; "
            "their req/s is low, their CPU ms/req still valid): "
            f"{'; '.join(disturbed[:8])}{more}\n"
        )
    return ["\n", *lines] if lines else []


def memory_verdicts(records: Sequence[dict[str, Any]]) -> list[str]:
    """PASS/FAIL lines for the memory scenario: <= 100 MiB, flat in N."""
    good = [r for r in records if not r.get("failed")]
    if not good:
        return ["- memory target: - (no successful runs)"]
    lines = []
    peak = max(r["rss_peak_mib"] for r in good)
    lines.append(
        f"- peak RSS <= {MEMORY_LIMIT_MIB:.0f} MiB at every N: "
        f"{_verdict(peak <= MEMORY_LIMIT_MIB)} (max {peak:.1f} MiB)"
    )
    if len(good) >= 2:
        lo, hi = good[0], good[-1]
        grow = 100 * (hi["rss_peak_mib"] - lo["rss_peak_mib"]) / lo["rss_peak_mib"]
        lines.append(
            f"- flat (peak RSS grows <= {MEMORY_FLAT_PCT:.0f}% from N={lo['n']:,} to "
            f"N={hi['n']:,}): {_verdict(grow <= MEMORY_FLAT_PCT)} ({grow:+.1f}%)"
        )
    return lines


# -- running ---------------------------------------------------------------


def loadavg() -> str:
    """The 1/5/15-minute load averages, or '?' where unavailable."""
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def run_scenario(
    sc: Scenario,
    entries: Sequence[Entry],
    server: Server,
    args: argparse.Namespace,
    pin: bool,
    save: Callable[[dict[str, Any]], None],
) -> list[dict[str, Any]]:
    """Run ``args.reps`` interleaved rounds of ``entries``; return the records."""
    url_base = ",".join(server.host_bases()) if sc.many_hosts else server.url_base
    meter = CoreMeter(CLIENT_CORE, pin)
    records = []
    for rnd in range(args.reps):
        for e in rotated(entries, rnd):
            label = f"[{sc.name} {rnd + 1}/{args.reps}] {e.client} ({e.loop})"
            print(f"{label} ...", file=sys.stderr, flush=True)
            srv0 = server.cpu_seconds()
            meter.start()
            if e.client == "wrk":
                path = sc.path or f"/bytes/{sc.size}"
                rec = run_wrk(
                    server.url_base + path,
                    sc.wrk_connections or sc.concurrency,
                    args.wrk_seconds,
                    pin,
                )
            else:
                rec = run_client(
                    e.client,
                    url_base,
                    sc.n,
                    sc.concurrency,
                    sc.size,
                    pin,
                    args.timeout,
                    "asyncio" if e.loop == "-" else e.loop,
                    path=sc.path,
                    per_host=sc.per_host,
                )
                rec["loop"] = e.loop
            core = meter.stop()
            srv1 = server.cpu_seconds()
            if core is not None:
                rec["client_core"] = core
            if srv0 is not None and srv1 is not None:
                rec["server_cpu_s"] = round(srv1 - srv0, 3)
            rec.update(kind="run", scenario=sc.name, round=rnd)
            records.append(rec)
            save(rec)
            if rec.get("failed"):
                print(f"  FAILED: {rec.get('error')}", file=sys.stderr)
    return records


def select_entries(
    sc: Scenario, args: argparse.Namespace, skip: dict[str, str], notes: list[str]
) -> list[Entry]:
    """The scenario's entries minus unavailable or unselected clients."""
    entries = []
    for e in sc.entries:
        reason = skip.get(e.client) or (
            skip.get("uvloop") if e.loop == "uvloop" else ""
        )
        if reason:
            notes.append(f"{sc.name}: skipped {e.client} ({e.loop}): {reason}")
            continue
        if args.clients and e.client != BASELINE and e.client not in args.clients:
            continue
        entries.append(e)
    if args.clients and BASELINE not in args.clients:
        # keep a baseline only on the loops that some selected client uses
        loops = {e.baseline_loop for e in entries if e.client != BASELINE}
        entries = [e for e in entries if e.client != BASELINE or e.loop in loops]
    if sc.wrk_connections is not None:
        if "wrk" in skip:
            notes.append(f"{sc.name}: no wrk row: {skip['wrk']}")
        else:
            entries.append(Entry("wrk", "-"))
    return entries


def unavailable(af_ok: bool, af_note: str) -> dict[str, str]:
    """Clients (and 'uvloop', 'wrk') that cannot run here, with the reason."""
    skip = {}
    if not af_ok:
        for c in ASYNCFETCH_CLIENTS:
            skip[c] = f"asyncfetch not importable ({af_note})"
    for client, module in CLIENT_MODULES.items():
        if importlib.util.find_spec(module) is None:
            skip[client] = f"{module} not installed (run benchmarks/setup.sh)"
    if importlib.util.find_spec("httpx") is None:  # aiometer-httpx needs both
        skip.setdefault("aiometer-httpx", "httpx not installed")
    if importlib.util.find_spec("uvloop") is None:
        skip["uvloop"] = "uvloop not installed"
    ok, note = wrk_status()
    if not ok:
        skip["wrk"] = note
    return skip


def make_server(args: argparse.Namespace, pin: bool, notes: list[str]) -> Server:
    """nginx when available (and not ``--server aiohttp``), else the fallback."""
    want_nginx = args.server in ("auto", "nginx")
    ok, version = nginx_status()
    if want_nginx and ok:
        return NginxServer(pin, sizes=(KIB, 10 * MIB), extra_hosts=200)
    if args.server == "nginx":
        raise SystemExit(f"--server nginx: {version}")
    if args.server == "auto":
        notes.append(f"nginx unavailable ({version}): server is the aiohttp fallback")
    return Server(pin, extra_hosts=200)


# -- report ----------------------------------------------------------------


def header(meta: dict[str, Any]) -> str:
    """Machine, versions and configuration for the top of the report."""
    mode = "quick" if meta["quick"] else "full"
    return "\n".join(
        [
            "# asyncfetch benchmark",
            "",
            f"- date: {meta['date']}",
            f"- git commit: {meta['commit']}",
            f"- python: {meta['python']}",
            f"- aiohttp: {meta['aiohttp']}, uvloop: {meta['uvloop']}, httpx: "
            f"{meta['httpx']}, aiometer: {meta['aiometer']}, pycurl: {meta['pycurl']}",
            f"- asyncfetch: {meta['asyncfetch']}",
            f"- server: {meta['server']}",
            f"- delay server: {meta.get('delay_server', '-')}",
            f"- wrk: {meta['wrk']}",
            f"- cpu count: {meta['cpus']}; pinning: {meta['pinning']}",
            f"- load average 1/5/15 min: {meta['load_start']} at start, "
            f"{meta.get('load_end', '?')} at end",
            f"- mode: {mode}, {meta['reps']} interleaved round(s), "
            f"{meta.get('warmup', 0):,} untimed warm-up requests first",
            "",
            "",
        ]
    )


HOW_TO_READ = f"""\
## How to read the tables

Each client run is a fresh process pinned to its own core; the server has the
other core. Every round runs every client once, in the order of a balanced
Latin square (each client in each place, and right after every other client
equally often). Each client collects garbage once just before its timed
window (the interpreter's first full collection; the collector stays on
inside). The median and min-max are over rounds; **ratio** is the median of per-round
ratios (this client's run / the {BASELINE} run of the same round **on the
same event loop**; clients without an asyncio loop, `-`, are compared with
{BASELINE} on asyncio), min-max in brackets; > 1 is faster. **CPU ms/req**
is the client process's user + system CPU time (getrusage) over its timed
window per checked response, and **CPU ratio** its paired ratio (< 1 is
cheaper). **Peak RSS** is the client's `ru_maxrss` (interpreter and imports
included, about 35-45 MiB). **Server CPU/wall** is the server's CPU time
during the run over the client's wall time: near 1.00 the server was the
bottleneck and the ratios understate client differences. The **wrk** row is
the server's own limit on that workload (wrk's own timed run; it checks
statuses, not body sizes): its ratio is the headroom above {BASELINE}.
Absolute numbers from a shared machine are noise; read the ratios.
"""


def entries_of(records: Sequence[dict[str, Any]]) -> list[Entry]:
    """A scenario's entries in their first round's (unrotated) order."""
    first = min((r["round"] for r in records), default=0)
    seen = dict.fromkeys(
        Entry(r["client"], r.get("loop") or "asyncio")
        for r in records
        if r["round"] == first
    )
    return list(seen)


def render(
    meta: dict[str, Any], records: Sequence[dict[str, Any]], notes: Sequence[str]
) -> str:
    """The whole markdown report, from the run's meta data and records."""
    ns = argparse.Namespace(
        quick=meta["quick"], n=meta.get("small_n"), scenarios=meta["scenarios"]
    )
    scenarios = {sc.name: sc for sc in build_scenarios(ns)}
    md = [header(meta)]
    for number, name in enumerate(SCENARIOS, start=1):
        recs = [r for r in records if r.get("scenario") == name]
        if not recs:
            continue
        if name == "memory":
            md.append(
                f"## {number}. memory: a lazy stream of {recs[0]['n']:,} and "
                f"{recs[-1]['n']:,} URLs (asyncfetch-stream, C=64, 1 KiB)\n\n"
            )
            md.append(memory_table(recs))
            md.append("\n" + "\n".join(memory_verdicts(recs)) + "\n\n")
            continue
        sc = scenarios[name]
        entries = entries_of(recs)
        md.append(f"## {number}. {sc.title.format(n=sc.n)}\n\n")
        md.append(results_table(recs, sc, entries))
        md.extend(table_notes(recs, sc, entries))
        if sc.delay_server:
            md.append(
                f"\nIdeal: C / {LATENCY_DELAY_S:g} s = "
                f"{sc.concurrency / LATENCY_DELAY_S:,.0f} req/s; the target "
                "column gives each client's median as a fraction of it.\n"
            )
        md.append("\n")
    md.append(HOW_TO_READ)
    failed = failed_runs(
        records,
        lambda r: (
            f"{r.get('scenario')} {r['client']} ({r.get('loop')}) "
            f"n={r.get('n')} round={r.get('round', '-')} ok={r.get('ok')}"
        ),
    )
    md.append(notes_section(notes, failed))
    return "".join(md)


# -- main ------------------------------------------------------------------


def run_all(
    args: argparse.Namespace, save: Callable[[dict[str, Any]], None]
) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """Start the servers, run every selected scenario; return what render needs."""
    pin, pin_note = (False, "disabled by --no-pin") if args.no_pin else pinning_status()
    af_ok, af_note = asyncfetch_status()
    notes: list[str] = []
    skip = unavailable(af_ok, af_note)
    scenarios = build_scenarios(args)
    server = make_server(args, pin, notes)
    meta: dict[str, Any] = {
        "kind": "meta",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "python": f"{platform.python_version()} ({platform.platform()})",
        "aiohttp": package_version("aiohttp"),
        "uvloop": package_version("uvloop"),
        "httpx": package_version("httpx"),
        "aiometer": package_version("aiometer"),
        "pycurl": package_version("pycurl"),
        "asyncfetch": af_note if af_ok else f"NOT importable ({af_note})",
        "server": server.label if isinstance(server, NginxServer) else server.name,
        "wrk": skip.get("wrk") or wrk_status()[1],
        "cpus": os.cpu_count(),
        "pinning": pin_note,
        "load_start": loadavg(),
        "quick": args.quick,
        "reps": args.reps,
        "warmup": args.warmup,
        "small_n": args.n,
        "scenarios": args.scenarios,
    }
    save(meta)
    records: list[dict[str, Any]] = []
    main_scenarios = [sc for sc in scenarios if not sc.delay_server]
    if main_scenarios or "memory" in args.scenarios:
        with server:
            if args.warmup > 0:
                print(f"[warm-up] {BASELINE} n={args.warmup}", file=sys.stderr)
                warm = run_client(
                    BASELINE, server.url_base, args.warmup, 64, KIB, pin, 120.0
                )
                save({**warm, "kind": "warmup"})
            for sc in main_scenarios:
                entries = select_entries(sc, args, skip, notes)
                records += run_scenario(sc, entries, server, args, pin, save)
            if "memory" in args.scenarios and not af_ok:
                notes.append("memory: skipped, asyncfetch not importable")
            elif "memory" in args.scenarios:

                def on_memory(rec: dict[str, Any]) -> None:
                    rec["scenario"] = "memory"
                    save(rec)

                records += run_memory(
                    server.url_base,
                    pin,
                    (20_000, 200_000) if args.quick else (100_000, 1_000_000),
                    clients=["asyncfetch-stream"],
                    concurrency=64,
                    size=KIB,
                    timeout=MEMORY_TIMEOUT_S,
                    on_record=on_memory,
                )
    for sc in scenarios:
        if not sc.delay_server:
            continue
        with DelayServer(pin, delay_ms=1000 * LATENCY_DELAY_S) as delay:
            meta["delay_server"] = (
                f"{DelayServer.label} on {delay.loop_name}, "
                f"{1000 * LATENCY_DELAY_S:.0f} ms"
            )
            entries = select_entries(sc, args, skip, notes)
            records += run_scenario(sc, entries, delay, args, pin, save)
    meta["load_end"] = loadavg()
    end = {k: meta[k] for k in ("load_end",) if k in meta}
    if "delay_server" in meta:
        end["delay_server"] = meta["delay_server"]
    save({"kind": "meta-end", **end, "notes": notes})
    return meta, records, notes


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    args = parse_args(argv)
    if args.report is not None:
        meta, records, notes = load_jsonl(args.report, ("run", "memory"), "run.py")
        print(render(meta, records, notes))
        return 1 if any(r.get("failed") for r in records) else 0
    exit_on_sigterm()
    args.out.mkdir(parents=True, exist_ok=True)
    stem = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    jsonl_path, md_path = args.out / f"{stem}.jsonl", args.out / f"{stem}.md"
    with open(jsonl_path, "w") as raw:

        def save(rec: dict[str, Any], fh: IO[str] = raw) -> None:
            fh.write(json.dumps(rec) + "\n")
            fh.flush()

        meta, records, notes = run_all(args, save)
    publish(render(meta, records, notes), md_path, jsonl_path, "latest")
    return 1 if any(r.get("failed") for r in records) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
