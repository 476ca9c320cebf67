"""Run the benchmark: asyncfetch defaults vs a hand-written aiohttp client.

Usage::

    python benchmarks/run.py [--n 20000] [--concurrency 64] [--size 1024]
        [--reps 3] [--memory] [--quick] [--clients a,b] [--out DIR]

Starts the aiohttp fallback server pinned to core 0, runs each client as a
subprocess pinned to core 1, interleaved (A B C A B C ...) for ``--reps``
rounds, writes ``OUT/raw.jsonl`` and ``OUT/results.md`` and prints the
markdown. ``--memory`` adds the peak-RSS-vs-N table (see memory.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from _harness import (
    BENCH_DIR,
    Server,
    asyncfetch_status,
    exit_on_sigterm,
    package_version,
    pinning_status,
    run_client,
)
from clients import CLIENTS
from memory import FULL_NS, QUICK_NS, memory_table, run_memory

BASELINE = "aiohttp-hand"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse and resolve command-line options."""
    p = argparse.ArgumentParser(description="asyncfetch vs hand-written aiohttp.")
    p.add_argument("--n", type=int, help="requests per run (default 20000; quick 5000)")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--size", type=int, default=1024, help="body size in bytes")
    p.add_argument("--reps", type=int, default=3, help="interleaved rounds")
    p.add_argument("--memory", action="store_true", help="also run memory.py checks")
    p.add_argument("--quick", action="store_true", help="smaller default N everywhere")
    p.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    p.add_argument("--timeout", type=float, default=600.0, help="per client run (s)")
    p.add_argument("--warmup", type=int, default=2000, help="untimed warm-up requests")
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    p.add_argument("--no-pin", action="store_true", help="do not use taskset")
    args = p.parse_args(argv)
    if args.n is None:
        args.n = 5000 if args.quick else 20000
    args.clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    unknown = sorted(set(args.clients) - set(CLIENTS))
    if unknown:
        p.error(f"unknown client(s) {unknown}; choose from {list(CLIENTS)}")
    if args.reps < 1 or args.n < 1:
        p.error("--reps and --n must be >= 1")
    return args


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _median(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def paired_ratios(
    records: Sequence[dict[str, Any]], client: str, key: str
) -> list[float]:
    """Per-round ratio ``client[key] / aiohttp-hand[key]`` (same round only)."""
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for r in records:
        if not r.get("failed") and r.get(key) is not None:
            by_round.setdefault(r["round"], {})[r["client"]] = r
    return [
        rnd[client][key] / rnd[BASELINE][key]
        for rnd in by_round.values()
        if client in rnd and BASELINE in rnd and rnd[BASELINE][key]
    ]


def results_table(records: Sequence[dict[str, Any]], clients: Sequence[str]) -> str:
    """Markdown table of medians and paired ratios per client."""
    lines = [
        "| client | ok runs | median req/s | min-max req/s | req/s ratio vs "
        f"{BASELINE} | median CPU ms/req | CPU ratio vs {BASELINE} "
        "| median peak RSS MiB | median client CPU/wall "
        "| median server CPU/wall |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in clients:
        runs = [r for r in records if r["client"] == c]
        good = [r for r in runs if not r.get("failed")]
        rps = [r["req_per_s"] for r in good]
        cpu = [r["cpu_ms_per_req"] for r in good]
        rss = [r["rss_peak_mib"] for r in good]
        util = [r["cpu_s"] / r["wall_s"] for r in good if r["wall_s"]]
        srv = [
            r["server_cpu_s"] / r["wall_s"]
            for r in good
            if r["wall_s"] and r.get("server_cpu_s") is not None
        ]
        rng = f"{min(rps):,.0f}-{max(rps):,.0f}" if rps else "-"
        lines.append(
            f"| {c} | {len(good)}/{len(runs)} | {_fmt(_median(rps), 0)} | {rng} "
            f"| {_ratio(records, c, 'req_per_s')} | {_fmt(_median(cpu), 3)} "
            f"| {_ratio(records, c, 'cpu_ms_per_req')} | {_fmt(_median(rss))} "
            f"| {_fmt(_median(util), 2)} | {_fmt(_median(srv), 2)} |"
        )
    return "\n".join(lines) + "\n"


def _ratio(records: Sequence[dict[str, Any]], client: str, key: str) -> str:
    if client == BASELINE:
        return "1.00 (baseline)"
    rs = paired_ratios(records, client, key)
    if not rs:
        return "-"
    return f"{statistics.median(rs):.2f} ({min(rs):.2f}-{max(rs):.2f})"


def loadavg() -> str:
    """The 1/5/15-minute load averages, or '?' where unavailable."""
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def header(
    args: argparse.Namespace, pin_note: str, af_note: str, loads: Sequence[str]
) -> str:
    """Machine and configuration info for the top of the report."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return "\n".join(
        [
            "# asyncfetch benchmark",
            "",
            f"- date: {now}",
            f"- python: {platform.python_version()} ({platform.platform()})",
            f"- aiohttp: {package_version('aiohttp')}, yarl: {package_version('yarl')}"
            f", uvloop: {package_version('uvloop')}",
            f"- asyncfetch: {af_note}",
            f"- cpu count: {os.cpu_count()} (usable by this process: {affinity})",
            f"- pinning (taskset): {pin_note}",
            f"- load average 1/5/15 min: {loads[0]} at start, {loads[1]} at end",
            f"- server: {Server.label}, uvloop if importable",
            f"- client event loop: {args.loop}",
            f"- workload: n={args.n:,} GETs of /bytes/{args.size} per run, "
            f"concurrency={args.concurrency}, {args.reps} interleaved rounds, "
            f"{args.warmup:,} untimed warm-up requests first",
            "",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    args = parse_args(argv)
    exit_on_sigterm()
    args.out.mkdir(parents=True, exist_ok=True)
    pin, pin_note = (False, "disabled by --no-pin") if args.no_pin else pinning_status()
    af_ok, af_note = asyncfetch_status()
    notes: list[str] = []
    clients = list(args.clients)
    if not af_ok:
        skipped = [c for c in clients if c.startswith("asyncfetch")]
        clients = [c for c in clients if c not in skipped]
        if skipped:
            notes.append(f"skipped {skipped}: asyncfetch not importable ({af_note})")
        af_note = f"NOT importable ({af_note})"
    if not clients:
        print("no runnable clients", file=sys.stderr)
        return 2

    common: dict[str, Any] = {
        "concurrency": args.concurrency,
        "size": args.size,
        "pin": pin,
        "timeout": args.timeout,
        "loop": args.loop,
    }
    load_start = loadavg()
    records: list[dict[str, Any]] = []
    mem_records: list[dict[str, Any]] = []
    with open(args.out / "raw.jsonl", "w") as raw, Server(pin) as server:

        def save(rec: dict[str, Any], fh: IO[str] = raw) -> None:
            fh.write(json.dumps(rec) + "\n")
            fh.flush()

        if args.warmup > 0:
            print(f"[warm-up] {BASELINE} n={args.warmup}", file=sys.stderr)
            warm = run_client(BASELINE, server.url_base, args.warmup, **common)
            save({**warm, "kind": "warmup"})
        for rnd in range(args.reps):
            for client in clients:
                print(f"[round {rnd + 1}/{args.reps}] {client} ...", file=sys.stderr)
                srv0 = server.cpu_seconds()
                rec = run_client(client, server.url_base, args.n, **common)
                srv1 = server.cpu_seconds()
                if srv0 is not None and srv1 is not None:
                    rec["server_cpu_s"] = round(srv1 - srv0, 3)
                rec.update(kind="throughput", round=rnd)
                records.append(rec)
                save(rec)
                if rec["failed"]:
                    print(f"  FAILED: {rec.get('error')}", file=sys.stderr)
        if args.memory:
            mem_clients = ["asyncfetch-stream", BASELINE] if af_ok else [BASELINE]
            mem_records = run_memory(
                server.url_base,
                pin,
                QUICK_NS if args.quick else FULL_NS,
                clients=mem_clients,
                concurrency=args.concurrency,
                size=args.size,
                on_record=save,
            )

    failed = [r for r in records + mem_records if r.get("failed")]
    md = [header(args, pin_note, af_note, (load_start, loadavg()))]
    md.append("## Throughput and CPU\n\n")
    md.append(results_table(records, clients))
    md.append(
        "\nRatios are medians of per-round ratios (each asyncfetch run divided by "
        f"the {BASELINE} run of the same round), with min-max in brackets. "
        "req/s ratio > 1 = faster than hand-written; CPU ratio < 1 = cheaper. "
        "Client CPU/wall well below 1 means the client was waiting: on the "
        "server, on other load on the machine, or on idle time of its own. "
        "Server CPU/wall is the server's CPU time during the client subprocess "
        "(including its start-up) over the client's timed wall time; near 1 "
        "means the server was the bottleneck.\n"
    )
    if args.memory:
        md.append("\n## Peak RSS vs N (lazy stream, concurrency ")
        md.append(f"{args.concurrency})\n\n{memory_table(mem_records)}")
    if notes or failed:
        md.append("\n## Notes\n\n")
        md.extend(f"- {n}\n" for n in notes)
        md.extend(
            f"- FAILED run: {r['client']} n={r['n']} round={r.get('round', '-')}"
            f" ok={r.get('ok')} error={r.get('error')} samples={r.get('bad_samples')}\n"
            for r in failed
        )
    text = "".join(md)
    (args.out / "results.md").write_text(text)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; server stopped", file=sys.stderr)
        sys.exit(130)
