"""Parse benchmark: CPU-heavy ``parse=`` on the loop, in threads, in processes.

Usage::

    python benchmarks/parse.py [--pages 2000] [--size 204800] [--cost-ms 5]
        [--reps 3] [--out benchmarks/results]

``--pages`` generated HTML pages of ``--size`` bytes each are served by an
aiohttp.web subprocess started from this file (``parse.py serve``: the
``/page/{i}`` route added to ``server.py``'s app) and fetched with::

    await asyncfetch.fetch_all(urls, concurrency=32, parse=parser, executor=...)

The parser is pure-Python CPU work: a byte loop over the page (a stand-in for
an HTML tokenizer) whose length is calibrated at start-up to cost about
``--cost-ms`` of CPU per page, plus reading the page number from ``<title>``.
It is ``functools.partial(parse_page, scan_bytes=K)`` over a module-level
function, so a process pool can pickle it.

Four modes, each run a fresh subprocess, rounds interleaved (A B C D, A B C
D, ...) after one untimed warm-up, medians reported:

* ``fetch-only``: a no-op parser (``page_number``: a ``bytes.find``) on the
  loop -- the fetching alone;
* ``loop``: ``executor=None``, the parser runs on the event loop;
* ``threads``: ``executor=ThreadPoolExecutor(2)``;
* ``processes``: ``executor=ProcessPoolExecutor(2)``.

Nothing is pinned: the point is using both cores, so the client, its pool
workers and the server all share the machine's two cores.

Every result is checked: one per URL, in input order, ``ok``, status 200,
exactly ``--size`` bytes, and the parsed value (page number and tag count) as
expected. A run with any mismatch is a failed run: it is excluded from the
medians, listed under Notes, and makes the exit status 1.

Writes ``OUT/parse.jsonl`` (one record per run, as it happens) and
``OUT/parse.md`` (also printed). The same file is also the server and the
client (internal subcommands ``serve`` and ``client``, started by the driver).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import functools
import json
import multiprocessing
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from _harness import (
    PYTHON,
    Server,
    asyncfetch_status,
    exit_on_sigterm,
    failed_runs,
    json_record,
    notes_section,
    package_version,
)
from clients import import_asyncfetch, peak_rss_mib
from run import loadavg

if TYPE_CHECKING:
    from aiohttp import web

    from asyncfetch import Result

SCRIPT = str(Path(__file__).resolve())
BENCH_DIR = Path(__file__).resolve().parent

MODES = ("fetch-only", "loop", "threads", "processes")
BASELINE = "loop"  # executor=None: what the other modes are compared with
EXECUTOR_LABEL = {
    "fetch-only": "None (no-op parser)",
    "loop": "None",
    "threads": "ThreadPoolExecutor({w})",
    "processes": "ProcessPoolExecutor({w})",
}

TITLE_PREFIX = b"<title>page "
PAGE_DIGITS = 6  # page numbers are zero-padded, so every page has the same size
MAX_PAGES = 10**PAGE_DIGITS
LT = ord("<")


# -- the page and the parser (server, client and calibration share these) --


@functools.lru_cache(maxsize=4)
def make_page(size: int) -> bytes:
    """A deterministic HTML page of exactly ``size`` bytes, for page 0.

    A head with ``<title>page 000000</title>``, then product-list-like
    ``<div>`` blocks, padded with spaces before ``</body></html>``. Pages
    differ only in the six title digits (see `fill_page`), so they all have
    the same size and the same tag count.
    """
    words = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing"]
    words += ["elit", "sed", "do", "eiusmod", "tempor", "incididunt", "ut", "labore"]
    head = (
        b'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        + TITLE_PREFIX
        + b"0" * PAGE_DIGITS
        + b"</title></head>\n<body>\n"
    )
    tail = b"</body></html>\n"
    if size < len(head) + len(tail):
        raise ValueError(f"page size {size} is too small for the HTML skeleton")
    out = bytearray(head)
    i = 0
    while True:
        text = " ".join(words[(i + k) % len(words)] for k in range(10))
        block = (
            f'<div class="item" id="item-{i}"><h2><a href="/p/{i}">Item {i}</a>'
            f'</h2><span class="price">{i % 97}.{i % 100:02d}</span>'
            f"<p>{text}</p></div>\n"
        ).encode()
        if len(out) + len(block) + len(tail) > size:
            break
        out += block
        i += 1
    out += b" " * (size - len(out) - len(tail)) + tail
    return bytes(out)


def fill_page(template: bytes, index: int) -> bytes:
    """``template`` (from `make_page`) with ``index`` as its page number."""
    at = template.index(TITLE_PREFIX) + len(TITLE_PREFIX)
    return b"%s%0*d%s" % (
        template[:at],
        PAGE_DIGITS,
        index,
        template[at + PAGE_DIGITS :],
    )


def _page_number(content: bytes) -> int:
    at = content.find(TITLE_PREFIX)
    if at < 0:
        raise ValueError("no <title>page N</title> in the body")
    at += len(TITLE_PREFIX)
    return int(content[at : at + PAGE_DIGITS])


def count_tags(content: bytes, scan_bytes: int) -> int:
    """Count ``<`` in the first ``scan_bytes`` bytes of ``content`` repeated.

    The pure-Python work of the parser: one interpreted loop iteration per
    byte (cycling over the page when ``scan_bytes`` is larger than it).
    """
    full, rest = divmod(scan_bytes, len(content))
    tags = 0
    for _ in range(full):
        for b in content:
            if b == LT:
                tags += 1
    for b in content[:rest]:
        if b == LT:
            tags += 1
    return tags


def page_number(result: Result) -> int:
    """The no-op parser of ``fetch-only``: the page number from ``<title>``."""
    return _page_number(result.content)


def parse_page(result: Result, scan_bytes: int) -> tuple[int, int, float]:
    """The CPU-heavy parser: (page number, tag count, CPU seconds it took).

    Module-level, so ``functools.partial(parse_page, scan_bytes=K)`` pickles
    for a process pool. The CPU time is the calling thread's
    (``time.thread_time``): the parse cost in situ, without GIL waits.
    """
    t0 = time.thread_time()
    number = _page_number(result.content)
    tags = count_tags(result.content, scan_bytes)
    return number, tags, time.thread_time() - t0


def calibrate(size: int, cost_ms: float) -> tuple[int, float]:
    """Pick ``scan_bytes`` so a parse costs ``cost_ms`` of CPU; measure it.

    Returns (scan_bytes, measured CPU ms per page: the median of 9 parses).
    CPU time (not wall) so other load on the machine does not skew it.
    """
    page = fill_page(make_page(size), 1)

    def cpu_ms(scan_bytes: int, runs: int) -> float:
        times = []
        for _ in range(runs):
            t0 = time.thread_time()
            _page_number(page)
            count_tags(page, scan_bytes)
            times.append(time.thread_time() - t0)
        return 1000 * statistics.median(times)

    cpu_ms(size, 2)  # warm up
    scan_bytes = max(1, round(size * cost_ms / cpu_ms(size, 7)))
    scan_bytes = max(1, round(scan_bytes * cost_ms / cpu_ms(scan_bytes, 7)))
    return scan_bytes, cpu_ms(scan_bytes, 9)


# -- server (subcommand ``serve``) ------------------------------------------


async def _serve(size: int, max_seconds: float) -> None:
    """``server.py``'s app plus ``GET /page/{i}``; stops like ``server.py``."""
    from _serving import serve_app
    from aiohttp import web
    from server import make_app

    template = make_page(size)

    async def handle_page(request: web.Request) -> web.Response:
        try:
            index = int(request.match_info["i"])
        except ValueError:
            raise web.HTTPBadRequest(text="i must be an integer") from None
        if not 0 <= index < MAX_PAGES:
            raise web.HTTPBadRequest(text=f"i must be in [0, {MAX_PAGES})")
        return web.Response(
            body=fill_page(template, index), content_type="text/html", charset="utf-8"
        )

    app = make_app()
    app.router.add_get("/page/{i}", handle_page)
    await serve_app(app, max_seconds)


def serve_main(argv: list[str]) -> int:
    """Entry point of the ``serve`` subcommand."""
    from _serving import run_fast

    p = argparse.ArgumentParser(prog="parse.py serve")
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--max-seconds", type=float, default=2 * 3600.0)
    args = p.parse_args(argv)
    run_fast(_serve(args.size, args.max_seconds))
    return 0


class HtmlServer(Server):
    """``parse.py serve`` as an unpinned subprocess (context manager)."""

    label = (
        "aiohttp.web subprocess (parse.py serve: server.py's app plus "
        "/page/{i}, a generated HTML page), uvloop if importable"
    )

    def __init__(self, size: int, startup_timeout: float = 30.0) -> None:
        super().__init__(pin=False, startup_timeout=startup_timeout)
        self.size = size

    def command(self) -> list[str]:
        """This benchmark's own server."""
        return [PYTHON, SCRIPT, "serve", "--size", str(self.size)]


# -- client (subcommand ``client``) -----------------------------------------


def make_executor(mode: str, workers: int) -> concurrent.futures.Executor | None:
    """The executor of ``mode`` (None for the modes that parse on the loop)."""
    if mode == "threads":
        return concurrent.futures.ThreadPoolExecutor(workers)
    if mode == "processes":
        return concurrent.futures.ProcessPoolExecutor(workers)
    return None


def make_parser(mode: str, scan_bytes: int) -> Callable[[Result], Any]:
    """The parse callable of ``mode``."""
    if mode == "fetch-only":
        return page_number
    return functools.partial(parse_page, scan_bytes=scan_bytes)


def _children_cpu_s() -> float:
    """CPU time of reaped child processes (the process pool's workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _self_cpu_s() -> float:
    """CPU time of this process (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy_s() -> float | None:
    """CPU seconds the whole machine has spent busy (all cores; Linux only)."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal (guest is inside user)
    ticks = [int(x) for x in first[1:9]]
    idle = ticks[3] + ticks[4]
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def check_results(
    results: Sequence[Result], urls: Sequence[str], cfg: dict[str, Any]
) -> dict[str, Any]:
    """Check every result against its input; return counts and samples.

    A result is ok when it is for its URL (input order), ``ok``, status 200,
    exactly ``size`` bytes, and its parsed value is the page number (and, for
    the parsing modes, the expected tag count).
    """
    size, mode = cfg["size"], cfg["mode"]
    expected_tags = (
        None if mode == "fetch-only" else count_tags(make_page(size), cfg["scan_bytes"])
    )
    ok = bad = retries = 0
    samples: list[str] = []
    parse_cpu: list[float] = []
    if len(results) != len(urls):
        bad += abs(len(urls) - len(results))
        samples.append(f"{len(results)} results for {len(urls)} URLs")
    for i, (url, r) in enumerate(zip(urls, results, strict=False)):
        retries += max(0, r.attempts - 1)
        parsed = r.parsed
        if mode == "fetch-only":
            good_parse = parsed == i
        else:
            good_parse = (
                isinstance(parsed, tuple)
                and len(parsed) == 3
                and parsed[:2] == (i, expected_tags)
            )
            if good_parse:
                parse_cpu.append(parsed[2])
        if (
            str(r.url) == url
            and r.ok
            and r.status == 200
            and len(r.content) == size
            and good_parse
        ):
            ok += 1
            continue
        bad += 1
        if len(samples) < 5:
            samples.append(
                f"#{i} url={r.url} status={r.status} len={len(r.content)} "
                f"error={r.error!r} parsed={parsed!r} expected=({i}, {expected_tags})"
            )
    return {
        "ok": ok,
        "bad": bad,
        "bad_samples": samples,
        "retries": retries,
        "parse_cpu_ms_median": (
            round(1000 * statistics.median(parse_cpu), 3) if parse_cpu else None
        ),
    }


async def client_run(cfg: dict[str, Any]) -> dict[str, Any]:
    """One timed ``fetch_all`` in ``cfg['mode']``; return its JSON record.

    The timed window starts before the executor is created and ends after it
    has shut down (a process pool's workers are started and joined inside).
    """
    asyncfetch = import_asyncfetch()
    mode, pages = cfg["mode"], cfg["pages"]
    base = cfg["url_base"].rstrip("/")
    urls = [f"{base}/page/{i}" for i in range(pages)]
    parser = make_parser(mode, cfg["scan_bytes"])
    error: str | None = None
    results: list[Result] = []
    cpu0, children0 = time.process_time(), _children_cpu_s()
    wall0 = time.perf_counter()
    executor = make_executor(mode, cfg["workers"])
    try:
        results = await asyncio.wait_for(
            asyncfetch.fetch_all(
                urls,
                concurrency=cfg["concurrency"],
                parse=parser,
                executor=executor,
            ),
            cfg["timeout"],
        )
    except asyncio.TimeoutError:
        error = f"timed out after {cfg['timeout']} s"
    except Exception as exc:  # a crash is a failed run, reported as data
        error = f"{type(exc).__name__}: {exc}"
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    children = _children_cpu_s() - children0
    checked = check_results(results, urls, cfg)
    return {
        "mode": mode,
        "pages": pages,
        "wall_s": round(wall, 4),
        "pages_per_s": round(checked["ok"] / wall, 2) if wall > 0 else 0.0,
        "cpu_s": round(cpu, 3),
        "children_cpu_s": round(children, 3),
        "rss_peak_mib": round(peak_rss_mib(), 1),
        **checked,
        "error": error,
        "failed": error is not None or checked["ok"] != pages,
        "start_method": multiprocessing.get_start_method(),
    }


def client_main(argv: list[str]) -> int:
    """Entry point of the ``client`` subcommand: one run, one JSON line."""
    if len(argv) != 1:
        print("usage: parse.py client CONFIG_JSON", file=sys.stderr)
        return 2
    cfg = json.loads(argv[0])
    record = asyncio.run(client_run(cfg))
    print(json.dumps(record), flush=True)
    if record["failed"]:
        print(
            f"FAILED: {record['ok']}/{record['pages']} results as expected; "
            f"error={record['error']} samples={record['bad_samples']}",
            file=sys.stderr,
        )
        return 1
    return 0


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """Kill the process group of ``proc`` (our client and its pool workers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.communicate(timeout=10)


def run_client(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run one client subprocess, bounded by ``cfg['timeout']`` + 60 s.

    The client gets its own session (process group), so on a timeout or an
    interrupt it is killed together with any pool workers it started.
    """
    record: dict[str, Any] = {"mode": cfg["mode"], "pages": cfg["pages"], "ok": 0}
    proc = subprocess.Popen(
        [PYTHON, SCRIPT, "client", json.dumps(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=cfg["timeout"] + 60)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        record.update(returncode=None, failed=True, error="subprocess timed out")
        return record
    except BaseException:  # KeyboardInterrupt, SystemExit from SIGTERM
        _kill_group(proc)
        raise
    record = json_record(out, err, record)
    record["returncode"] = proc.returncode
    record["failed"] = bool(record.get("failed", True)) or proc.returncode != 0
    return record


# -- report ------------------------------------------------------------------


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _med(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _good(records: Sequence[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    return [r for r in records if r["mode"] == mode and not r.get("failed")]


def paired_ratios(records: Sequence[dict[str, Any]], mode: str) -> list[float]:
    """Per-round ratio wall(mode) / wall(loop), same round only."""
    by_round: dict[int, dict[str, float]] = {}
    for r in records:
        if not r.get("failed"):
            by_round.setdefault(r["round"], {})[r["mode"]] = r["wall_s"]
    return [
        rnd[mode] / rnd[BASELINE]
        for rnd in by_round.values()
        if mode in rnd and rnd.get(BASELINE)
    ]


def results_table(
    records: Sequence[dict[str, Any]], pages: int, workers: int, parse_ideal_s: float
) -> str:
    """Markdown table of medians per mode.

    'Overhead CPU ms/page' is what a mode's client (main process and pool
    workers) spends per page beyond fetching (the fetch-only client CPU) and
    the parser itself (its in-situ CPU): the cost of running ``parse=`` there.
    """
    lines = [
        "| mode | executor | ok runs | median wall s | min-max wall s "
        "| median pages/s | wall vs executor=None | wall vs parse ideal "
        "| client CPU s (main + pool procs) | parse CPU ms/page in situ "
        "| overhead CPU ms/page | server CPU s | peak RSS MiB (main) "
        "| other load, cores |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    fetch_cpu = _med([r["cpu_s"] for r in _good(records, "fetch-only")])
    for mode in MODES:
        runs = [r for r in records if r["mode"] == mode]
        good = _good(records, mode)
        walls = [r["wall_s"] for r in good]
        rng = f"{min(walls):.2f}-{max(walls):.2f}" if walls else "-"
        if mode == BASELINE:
            ratio = "1.00 (baseline)"
        else:
            rs = paired_ratios(records, mode)
            ratio = (
                f"{statistics.median(rs):.2f} ({min(rs):.2f}-{max(rs):.2f})"
                if rs
                else "-"
            )
        wall = _med(walls)
        vs_ideal = (
            "-"
            if wall is None or mode == "fetch-only"
            else f"{wall / parse_ideal_s:.2f}"
        )
        cpu = _med([r["cpu_s"] for r in good])
        children = _med([r["children_cpu_s"] for r in good])
        cpu_txt = (
            "-"
            if cpu is None or children is None
            else f"{cpu:.2f}" + (f" + {children:.2f}" if mode == "processes" else "")
        )
        in_situ = [
            r["parse_cpu_ms_median"]
            for r in good
            if r.get("parse_cpu_ms_median") is not None
        ]
        server = [r["server_cpu_s"] for r in good if r.get("server_cpu_s") is not None]
        total = _med([r["cpu_s"] + r["children_cpu_s"] for r in good])
        others = [r["other_load"] for r in good if r.get("other_load") is not None]
        other_txt = (
            f"{statistics.median(others):.2f} (max {max(others):.2f})"
            if others
            else "-"
        )
        parse_ms = _med(in_situ)
        overhead = (
            None
            if total is None or fetch_cpu is None or parse_ms is None
            else 1000 * (total - fetch_cpu) / pages - parse_ms
        )
        executor = EXECUTOR_LABEL[mode].format(w=workers)
        lines.append(
            f"| {mode} | `{executor}` | {len(good)}/{len(runs)} | {_fmt(wall)} "
            f"| {rng} | {_fmt(_med([r['pages_per_s'] for r in good]), 0)} "
            f"| {ratio} | {vs_ideal} | {cpu_txt} | {_fmt(parse_ms)} "
            f"| {_fmt(overhead)} | {_fmt(_med(server))} "
            f"| {_fmt(_med([r['rss_peak_mib'] for r in good]), 0)} | {other_txt} |"
        )
    return "\n".join(lines) + "\n"


def ideal_section(
    records: Sequence[dict[str, Any]], args: argparse.Namespace, cost_ms: float
) -> tuple[str, float]:
    """The ideal times, as markdown; also returns the parse-only ideal (s)."""
    cores = args.workers
    parse_ideal = args.pages * cost_ms / 1000 / cores
    fetch = _good(records, "fetch-only")
    f_wall = _med([r["wall_s"] for r in fetch])
    f_cpu = _med([r["cpu_s"] for r in fetch])
    f_srv = _med(
        [r["server_cpu_s"] for r in fetch if r.get("server_cpu_s") is not None]
    )
    lines = [
        f"- parse alone, perfectly spread: pages x cost / {cores} cores = "
        f"{args.pages:,} x {cost_ms:.2f} ms / {cores} = **{parse_ideal:.2f} s** "
        "(the 'wall vs parse ideal' column divides by this)",
        f"- fetch-only (no-op parser, measured): median wall **{_fmt(f_wall)} s**, "
        f"client CPU {_fmt(f_cpu)} s, server CPU {_fmt(f_srv)} s",
    ]
    if f_cpu is not None and f_srv is not None:
        work = (args.pages * cost_ms / 1000 + f_cpu + f_srv) / cores
        lines.append(
            f"- all the CPU work, perfectly spread: (parse {args.pages * cost_ms / 1000:.2f}"
            f" s + fetch client {f_cpu:.2f} s + server {f_srv:.2f} s) / {cores} "
            f"= **{work:.2f} s**: no mode can beat this on {cores} cores"
        )
    if f_wall is not None:
        lines.append(
            f"- parse ideal + fetch-only wall (no overlap at all) = "
            f"{parse_ideal + f_wall:.2f} s"
        )
    return "\n".join(lines) + "\n", parse_ideal


def header(
    args: argparse.Namespace,
    af_note: str,
    loads: Sequence[str],
    scan_bytes: int,
    cost_ms: float,
    start_method: str,
) -> str:
    """Machine, configuration and calibration info for the top of the report."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return "\n".join(
        [
            "# asyncfetch parse benchmark",
            "",
            f"- date: {now}",
            f"- python: {platform.python_version()} ({platform.platform()})",
            f"- aiohttp: {package_version('aiohttp')}, yarl: {package_version('yarl')}"
            f", uvloop: {package_version('uvloop')}",
            f"- asyncfetch: {af_note}",
            f"- cpu count: {os.cpu_count()} (usable by this process: {affinity})",
            "- pinning: **none, deliberately**: the client's event loop, its "
            f"{args.workers} pool workers and the server all share the "
            "machine's cores (the point is to use both)",
            f"- process pool start method: {start_method}",
            f"- load average 1/5/15 min: {loads[0]} at start, {loads[1]} at end",
            f"- server: {HtmlServer.label}",
            f"- workload: `await asyncfetch.fetch_all(urls, concurrency="
            f"{args.concurrency}, parse=parser, executor=...)` over "
            f"{args.pages:,} pages of {args.size:,} bytes of HTML "
            f"(`/page/{{i}}`), {args.reps} interleaved rounds of "
            f"{', '.join(MODES)}, after an untimed {args.warmup}-page warm-up",
            f"- parser: `partial(parse_page, scan_bytes={scan_bytes:,})`: the page "
            "number from `<title>`, then a pure-Python loop counting `<` over "
            f"{scan_bytes:,} bytes ({scan_bytes / args.size:.2f} x the page), "
            f"calibrated at start-up to {args.cost_ms:g} ms of CPU; "
            f"**measured: {cost_ms:.2f} ms CPU per page** (median of 9, "
            "`time.thread_time`)",
            "",
            "",
        ]
    )


# -- driver ------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse and validate the driver's command-line options."""
    p = argparse.ArgumentParser(
        description="Parsing on the loop vs in threads vs in processes."
    )
    p.add_argument("--pages", type=int, default=2000, help="pages per run")
    p.add_argument("--size", type=int, default=204800, help="page size in bytes")
    p.add_argument("--cost-ms", type=float, default=5.0, help="CPU ms per parse")
    p.add_argument("--reps", type=int, default=3, help="interleaved rounds")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="pool size (and cores)")
    p.add_argument("--warmup", type=int, default=200, help="untimed warm-up pages")
    p.add_argument("--timeout", type=float, default=600.0, help="per client run (s)")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    args = p.parse_args(argv)
    if not 1 <= args.pages <= MAX_PAGES:
        p.error(f"--pages must be in [1, {MAX_PAGES}]")
    if args.reps < 1 or args.workers < 1 or args.concurrency < 1:
        p.error("--reps, --workers and --concurrency must be >= 1")
    if args.cost_ms <= 0 or args.warmup < 0:
        p.error("--cost-ms must be > 0 and --warmup >= 0")
    try:
        make_page(args.size)
    except ValueError as exc:
        p.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point of the driver."""
    args = parse_args(argv)
    exit_on_sigterm()
    args.out.mkdir(parents=True, exist_ok=True)
    af_ok, af_note = asyncfetch_status()
    if not af_ok:
        print(f"asyncfetch not importable: {af_note}", file=sys.stderr)
        return 2
    print(f"[calibrate] {args.cost_ms:g} ms CPU per page ...", file=sys.stderr)
    scan_bytes, cost_ms = calibrate(args.size, args.cost_ms)
    print(f"  scan_bytes={scan_bytes:,}: {cost_ms:.2f} ms/page", file=sys.stderr)
    common: dict[str, Any] = {
        "size": args.size,
        "scan_bytes": scan_bytes,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "timeout": args.timeout,
    }
    load_start = loadavg()
    records: list[dict[str, Any]] = []
    start_method = "?"
    with open(args.out / "parse.jsonl", "w") as raw, HtmlServer(args.size) as server:

        def save(rec: dict[str, Any], fh: IO[str] = raw) -> None:
            fh.write(json.dumps(rec) + "\n")
            fh.flush()

        def measured(cfg: dict[str, Any]) -> dict[str, Any]:
            srv0, busy0 = server.cpu_seconds(), machine_busy_s()
            ours0 = _self_cpu_s() + _children_cpu_s()
            t0 = time.monotonic()
            rec = run_client({**common, **cfg, "url_base": server.url_base})
            elapsed = time.monotonic() - t0
            ours = _self_cpu_s() + _children_cpu_s() - ours0
            srv1, busy1 = server.cpu_seconds(), machine_busy_s()
            if srv0 is not None and srv1 is not None:
                rec["server_cpu_s"] = round(srv1 - srv0, 3)
                if busy0 is not None and busy1 is not None:
                    # CPU the rest of the machine used while the client ran
                    other = busy1 - busy0 - ours - (srv1 - srv0)
                    rec["other_cpu_s"] = round(other, 3)
                    rec["other_load"] = round(max(0.0, other) / elapsed, 3)
            return rec

        if args.warmup > 0:
            print(f"[warm-up] fetch-only, {args.warmup} pages", file=sys.stderr)
            warm = measured({"mode": "fetch-only", "pages": args.warmup})
            save({**warm, "kind": "warmup"})
            if warm.get("failed"):
                print(f"  FAILED: {warm.get('error')}", file=sys.stderr)
        for rnd in range(args.reps):
            for mode in MODES:
                print(f"[round {rnd + 1}/{args.reps}] {mode} ...", file=sys.stderr)
                rec = measured({"mode": mode, "pages": args.pages})
                rec.update(kind="timed", round=rnd)
                records.append(rec)
                save(rec)
                start_method = rec.get("start_method", start_method)
                if rec["failed"]:
                    print(
                        f"  FAILED: ok={rec.get('ok')} error={rec.get('error')} "
                        f"samples={rec.get('bad_samples')}",
                        file=sys.stderr,
                    )
                else:
                    print(f"  {rec['wall_s']:.2f} s", file=sys.stderr)

    ideal_md, parse_ideal = ideal_section(records, args, cost_ms)
    md = [
        header(
            args, af_note, (load_start, loadavg()), scan_bytes, cost_ms, start_method
        )
    ]
    md.append("## Wall time by executor\n\n")
    md.append(results_table(records, args.pages, args.workers, parse_ideal))
    md.append(
        "\nMedians over rounds; 'wall vs executor=None' is the median of per-round "
        "ratios (this mode's wall / the `loop` run of the same round), min-max in "
        "brackets: < 1 is faster. 'Client CPU' is the client process's CPU time "
        "(`time.process_time`, all its threads), plus its reaped pool processes "
        "for `processes`. 'Parse CPU ms/page in situ' is the median of the "
        "parser's own `time.thread_time` per page, measured inside the run; "
        "'overhead CPU ms/page' is (client CPU - fetch-only client CPU) / pages "
        "- that: what running the parser there costs beyond the parse itself "
        "(for `processes`: pickling each `Result`, body included, through a "
        "pipe to a worker and back). "
        "Server CPU is the server's CPU time during the client subprocess "
        "(including its start-up). Peak RSS is the client's main process: "
        "`fetch_all` keeps every body. 'Other load' is the CPU the rest of the "
        "machine used while the client subprocess ran (`/proc/stat` busy time "
        "minus this benchmark's processes), in cores: well above 0 means that "
        "run competed for the 2 cores, which hurts `processes` (the only mode "
        "that needs both) the most.\n"
    )
    md.append("\n## Ideal\n\n")
    md.append(ideal_md)
    failed = failed_runs(
        records,
        lambda r: (
            f"{r['mode']} round={r.get('round', '-')} ok={r.get('ok')}/{r.get('pages')}"
        ),
    )
    retried = [
        f"{r['mode']} round={r.get('round')}: {r['retries']} retries"
        for r in records
        if r.get("retries")
    ]
    md.append(notes_section(retried, failed))
    text = "".join(md)
    (args.out / "parse.md").write_text(text)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    commands = {"serve": serve_main, "client": client_main}
    if len(sys.argv) > 1 and sys.argv[1] in commands:
        sys.exit(commands[sys.argv[1]](sys.argv[2:]))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; server stopped", file=sys.stderr)
        sys.exit(130)
