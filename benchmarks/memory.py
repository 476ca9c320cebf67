"""Peak-RSS check: does a lazy stream of N URLs use flat memory in N?

Runs ``asyncfetch-stream`` (``async with Fetcher(concurrency=64) as f:
async for r in f.stream(gen)``, ``gen`` a lazy generator of N URLs) and, for
comparison, ``aiohttp-hand`` as separate pinned subprocesses for
N = 100,000 and N = 1,000,000 (``--quick``: 20,000 and 200,000), interleaved,
against nginx (or the aiohttp fallback server without it), and reports peak
RSS (MiB) of each. Flat memory means peak RSS barely changes between the two
N; the target is at most 100 MiB. ``run.py``'s ``memory`` scenario runs the
same for ``asyncfetch-stream`` alone.

Usage::

    python benchmarks/memory.py [--quick] [--concurrency 64] [--size 1024]
        [--clients asyncfetch-stream,aiohttp-hand] [--server auto|nginx|aiohttp]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _harness import (
    NginxServer,
    Server,
    asyncfetch_status,
    exit_on_sigterm,
    nginx_status,
    pinning_status,
    run_client,
)

FULL_NS = (100_000, 1_000_000)
QUICK_NS = (20_000, 200_000)
MEMORY_CLIENTS = ("asyncfetch-stream", "aiohttp-hand")
TIMEOUT_S = 900.0
LIMIT_MIB = 100.0


def run_memory(
    url_base: str,
    pin: bool,
    ns: Sequence[int],
    clients: Sequence[str] = MEMORY_CLIENTS,
    concurrency: int = 64,
    size: int = 1024,
    timeout: float = TIMEOUT_S,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run each client for each N (clients interleaved); return the records."""
    records = []
    for n in ns:
        for client in clients:
            print(f"[memory] {client} n={n:,} ...", file=sys.stderr, flush=True)
            rec = run_client(client, url_base, n, concurrency, size, pin, timeout)
            rec["kind"] = "memory"
            records.append(rec)
            if on_record is not None:
                on_record(rec)
    return records


def memory_table(records: Sequence[dict[str, Any]]) -> str:
    """Markdown table of peak RSS per (client, N), plus growth per client."""
    lines = [
        "| client | loop | N | ok | req/s | CPU ms/req | peak RSS MiB "
        f"| RSS at start MiB | peak - start MiB | target (<= {LIMIT_MIB:.0f} MiB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in records:
        peak, start = r.get("rss_peak_mib"), r.get("rss_start_mib")
        delta = f"{peak - start:.1f}" if peak is not None and start is not None else "-"
        status = " (FAILED)" if r.get("failed") else ""
        target = "-" if peak is None else ("PASS" if peak <= LIMIT_MIB else "FAIL")
        lines.append(
            f"| {r['client']}{status} | {r.get('loop', 'asyncio')} | {r['n']:,} "
            f"| {r.get('ok', 0):,} | {_fmt(r.get('req_per_s'), 0)} "
            f"| {_fmt(r.get('cpu_ms_per_req'), 3)} | {_fmt(peak)} | {_fmt(start)} "
            f"| {delta} | {target} |"
        )
    lines.append("")
    for client in dict.fromkeys(r["client"] for r in records):
        rows = [r for r in records if r["client"] == client and not r.get("failed")]
        if len(rows) >= 2:
            lo, hi = rows[0], rows[-1]
            grow = hi["rss_peak_mib"] - lo["rss_peak_mib"]
            pct = 100 * grow / lo["rss_peak_mib"]
            lines.append(
                f"- {client}: peak RSS {lo['rss_peak_mib']:.1f} MiB at N={lo['n']:,} "
                f"-> {hi['rss_peak_mib']:.1f} MiB at N={hi['n']:,} "
                f"({grow:+.1f} MiB, {pct:+.1f}%) for {hi['n'] / lo['n']:.0f}x the URLs"
            )
        else:
            lines.append(f"- {client}: not enough successful runs to compare")
    return "\n".join(lines) + "\n"


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: start the server, run, print the table."""
    p = argparse.ArgumentParser(description="Peak RSS vs N for lazy streams.")
    p.add_argument("--quick", action="store_true", help="N = 20,000 / 200,000")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--timeout", type=float, default=TIMEOUT_S, help="per subprocess")
    p.add_argument("--jsonl", type=Path, help="also write raw records here")
    p.add_argument("--clients", default=",".join(MEMORY_CLIENTS))
    p.add_argument("--server", choices=("auto", "nginx", "aiohttp"), default="auto")
    args = p.parse_args(argv)
    exit_on_sigterm()

    pin, note = pinning_status()
    ns = QUICK_NS if args.quick else FULL_NS
    af_ok, af_note = asyncfetch_status()
    wanted = [c.strip() for c in args.clients.split(",") if c.strip()]
    clients = [c for c in wanted if af_ok or not c.startswith("asyncfetch")]
    if not af_ok:
        print(f"asyncfetch not importable ({af_note}): skipped", file=sys.stderr)
    nginx_ok, version = nginx_status()
    if args.server == "nginx" and not nginx_ok:
        p.error(f"--server nginx: {version}")
    server: Server = (
        NginxServer(pin, sizes=[args.size])
        if nginx_ok and args.server != "aiohttp"
        else Server(pin)
    )
    with server:
        records = run_memory(
            server.url_base,
            pin,
            ns,
            clients=clients,
            concurrency=args.concurrency,
            size=args.size,
            timeout=args.timeout,
        )
    if args.jsonl:
        args.jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    print(f"Server: {server.label}; pinning: {note}\n")
    print(memory_table(records))
    return 1 if any(r.get("failed") for r in records) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; server stopped", file=sys.stderr)
        sys.exit(130)
