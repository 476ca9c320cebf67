"""Where the latency scenario's time goes: the ramp, the cycle, the tail.

The latency scenario (5,000 requests at C=500 against a 100 ms server) is
count-bound: each connection carries N / C requests and none can take one
more before the last connection has sent its last, so a run ends at about
S + (N / C) x c, where S is when the last connection's first request goes
out and c is one connection's cycle (the server's delay plus the latency the
server and the client add). This script runs clients against the delay
server with ``--stamps``, which records when each request arrives and when
each response is written (``time.monotonic()``, the same clock as the
client's window stamps), and splits every run into:

- ``first``: from the start of the client's timed window to the arrival of
  its first request (session set-up, input parsing, the first connection);
- ``S``: from the start of the window to the arrival of the last
  connection's first request;
- ``cycle``: a connection's time from one request's arrival to the next's,
  averaged over all connections;
- ``turnaround``: from a response's write to the arrival of the same
  connection's next request: the client's share of the cycle (loopback
  included);
- ``late``: how much later than asked the server wrote its responses: the
  server's share;
- ``tail``: from the last response's write to the end of the window;
- ``of ideal``: (N x delay / C) / wall, as in ``run.py``.

Usage::

    python benchmarks/anatomy.py [--reps 5] [--n 5000] [--concurrency 500]
        [--clients asyncfetch-stream,asyncio-protocol,aiohttp-hand]
        [--loops uvloop,asyncio] [--against REV ...] [--tree LABEL=PATH ...]
        [--no-pin]

``--against REV`` also runs every asyncfetch client with the package as it
was at git revision REV (exported with ``git archive``), ``--tree
LABEL=PATH`` with the ``asyncfetch/`` package under PATH (a prototype);
their rows are labelled ``client@REV`` and ``client@LABEL``. They run in
the same interleaved rounds as the installed package, which is how a change
worth a few milliseconds is told from the machine's drift.

Each run gets a fresh delay server (pinned to core 0; clients on core 1);
clients run in interleaved rounds. Prints a markdown table of medians (and
min-max of ``of ideal``); writes no files. Every run is bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

from _harness import (
    REPO_ROOT,
    DelayServer,
    exit_on_sigterm,
    pinning_status,
    rotated,
    run_client,
)

DEFAULT_CLIENTS = ("asyncfetch-stream", "asyncio-protocol", "aiohttp-hand")
COLUMNS = (
    ("frac", "of ideal", 3),
    ("first_ms", "first (ms)", 1),
    ("s_ms", "S (ms)", 1),
    ("cycle_ms", "cycle (ms)", 2),
    ("turnaround_ms", "turnaround (ms)", 2),
    ("late_ms", "late (ms)", 2),
    ("tail_ms", "tail (ms)", 1),
    ("wall_ms", "wall (ms)", 0),
)


def analyse(
    conns: Sequence[dict[str, list[float]]],
    record: dict[str, Any],
    delay_s: float,
    ideal_s: float,
) -> dict[str, float]:
    """Split one run: ``conns`` are the server's stamps, one dict per
    connection (``requests``, ``responses``: monotonic times, in order)."""
    conns = [c for c in conns if c["requests"]]
    start = float(record["window_start"])
    wall = float(record["wall_s"])
    firsts = [c["requests"][0] for c in conns]
    cycles: list[float] = []
    turnarounds: list[float] = []
    late: list[float] = []
    last_write = start
    for c in conns:
        requests, responses = c["requests"], c["responses"]
        cycles.extend(b - a for a, b in pairwise(requests))
        # Responses go out in request order: the k-th answers the k-th.
        late.extend(w - r - delay_s for r, w in zip(requests, responses, strict=False))
        turnarounds.extend(r - w for w, r in zip(responses, requests[1:], strict=False))
        if responses:
            last_write = max(last_write, responses[-1])
    mean = statistics.fmean
    return {
        "frac": ideal_s / wall,
        "first_ms": 1000 * (min(firsts) - start),
        "s_ms": 1000 * (max(firsts) - start),
        "cycle_ms": 1000 * mean(cycles) if cycles else float("nan"),
        "turnaround_ms": 1000 * mean(turnarounds) if turnarounds else float("nan"),
        "late_ms": 1000 * mean(late) if late else float("nan"),
        "tail_ms": 1000 * (start + wall - last_write),
        "wall_ms": 1000 * wall,
    }


def one_run(
    client: str,
    loop: str,
    args: argparse.Namespace,
    pin: bool,
    asyncfetch_from: Path | None = None,
) -> dict[str, Any]:
    """Run ``client`` once against a fresh stamping delay server (with the
    asyncfetch package under ``asyncfetch_from``, if given)."""
    with tempfile.TemporaryDirectory(prefix="anatomy-") as tmp:
        stamps = Path(tmp) / "stamps.jsonl"
        server = DelayServer(pin, delay_ms=args.delay_ms, stamps=stamps)
        with server:
            record = run_client(
                client,
                server.url_base,
                args.n,
                args.concurrency,
                2,
                pin,
                args.timeout,
                loop,
                path="/delay",
                asyncfetch_from=asyncfetch_from,
            )
        if record.get("failed"):
            return {"failed": True, "error": record.get("error")}
        if "window_start" not in record:
            return {"failed": True, "error": "the client reported no window_start"}
        conns = [json.loads(line) for line in stamps.read_text().splitlines()]
    ideal = args.n * args.delay_ms / 1000 / args.concurrency
    return analyse(conns, record, args.delay_ms / 1000, ideal)


def export_revision(rev: str, dest: Path) -> None:
    """Write the ``asyncfetch/`` package as of git revision ``rev`` under ``dest``.

    Raises:
        SystemExit: git cannot export it (not a repository, unknown revision).
    """
    try:
        archive = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", rev, "asyncfetch"],
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SystemExit(f"--against {rev}: cannot run git: {exc}") from exc
    if archive.returncode != 0:
        message = archive.stderr.decode(errors="replace").strip()
        raise SystemExit(f"--against {rev}: {message}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")


def variants(
    args: argparse.Namespace, stack: contextlib.ExitStack
) -> list[tuple[str, Path]]:
    """(label, directory holding ``asyncfetch/``) for each --against and --tree.

    Raises:
        SystemExit: a --tree is not LABEL=PATH or has no asyncfetch package.
    """
    found: list[tuple[str, Path]] = []
    for rev in args.against:
        dest = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="anatomy-")))
        export_revision(rev, dest)
        found.append((rev, dest))
    for spec in args.tree:
        label, sep, where = spec.partition("=")
        if not sep or not label or not where:
            raise SystemExit(f"--tree wants LABEL=PATH, not {spec!r}")
        root = Path(where).resolve()
        if not (root / "asyncfetch" / "__init__.py").is_file():
            raise SystemExit(f"--tree {spec}: no asyncfetch package under {root}")
        found.append((label, root))
    return found


def table(rows: dict[tuple[str, str], list[dict[str, Any]]]) -> str:
    """Medians per client and loop as a markdown table."""
    head = ["client", "loop", "runs", *(label for _, label, _ in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for (client, loop), runs in rows.items():
        good = [r for r in runs if not r.get("failed")]
        cells = [client, loop, f"{len(good)}/{len(runs)}"]
        for key, _, digits in COLUMNS:
            values = [r[key] for r in good]
            if not values:
                cells.append("-")
                continue
            text = f"{statistics.median(values):,.{digits}f}"
            if key == "frac":
                text += f" ({min(values):.3f}-{max(values):.3f})"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5, help="interleaved rounds")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=500)
    p.add_argument("--delay-ms", type=float, default=100.0)
    p.add_argument("--clients", default=",".join(DEFAULT_CLIENTS))
    p.add_argument("--loops", default="uvloop,asyncio")
    p.add_argument("--timeout", type=float, default=120.0, help="per-run bound")
    p.add_argument(
        "--against",
        action="append",
        default=[],
        metavar="REV",
        help="also run the asyncfetch clients as of this git revision",
    )
    p.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="also run them with the asyncfetch package under PATH",
    )
    p.add_argument("--no-pin", action="store_true", help="do not use taskset")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the rounds, print the table; exit 1 if a run failed."""
    exit_on_sigterm()
    args = parse_args(argv)
    pin, pin_note = (False, "disabled by --no-pin") if args.no_pin else pinning_status()
    with contextlib.ExitStack() as stack:
        others = variants(args, stack)
        # (row label, client, loop, asyncfetch tree or None for the installed)
        entries: list[tuple[str, str, str, Path | None]] = []
        for client in args.clients.split(","):
            for loop in args.loops.split(","):
                entries.append((client, client, loop, None))
                if client.startswith("asyncfetch"):
                    entries.extend(
                        (f"{client}@{label}", client, loop, tree)
                        for label, tree in others
                    )
        rows: dict[tuple[str, str], list[dict[str, Any]]] = {
            (label, loop): [] for label, _, loop, _ in entries
        }
        for rnd in range(args.reps):
            for label, client, loop, tree in rotated(entries, rnd):
                print(f"[{rnd + 1}/{args.reps}] {label} ({loop}) ...", file=sys.stderr)
                result = one_run(client, loop, args, pin, tree)
                if result.get("failed"):
                    print(f"  FAILED: {result.get('error')}", file=sys.stderr)
                rows[(label, loop)].append(result)
    print(
        f"latency anatomy: {args.n} x /delay ({args.delay_ms:g} ms), "
        f"C={args.concurrency}, {args.reps} interleaved round(s); {pin_note}\n"
    )
    print(table(rows))
    failed = any(r.get("failed") for runs in rows.values() for r in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
