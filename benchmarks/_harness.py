"""Shared plumbing for the benchmark scripts: pinning, server, client runs."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
PYTHON = sys.executable
SERVER_CORE = 0
CLIENT_CORE = 1


def pinning_status() -> tuple[bool, str]:
    """Return (usable, note): can we pin server/client to separate cores?"""
    if shutil.which("taskset") is None:
        return False, "taskset not found: processes NOT pinned"
    try:
        cores = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        cores = set(range(os.cpu_count() or 1))
    if not {SERVER_CORE, CLIENT_CORE} <= cores:
        return (
            False,
            f"cores {SERVER_CORE},{CLIENT_CORE} not both available: NOT pinned",
        )
    probe = subprocess.run(
        ["taskset", "-c", str(CLIENT_CORE), "true"], capture_output=True, timeout=10
    )
    if probe.returncode != 0:
        return False, "taskset failed: processes NOT pinned"
    return True, f"server on core {SERVER_CORE}, clients on core {CLIENT_CORE}"


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so ``finally``/``with`` cleanup runs."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def pinned(cmd: list[str], core: int, pin: bool) -> list[str]:
    """Prefix ``cmd`` with ``taskset -c core`` when pinning is enabled."""
    return ["taskset", "-c", str(core), *cmd] if pin else cmd


class Server:
    """The aiohttp fallback server as a pinned subprocess (context manager)."""

    label = "aiohttp fallback server (benchmarks/server.py, aiohttp.web)"

    def __init__(self, pin: bool, startup_timeout: float = 30.0) -> None:
        self.pin = pin
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    @property
    def url_base(self) -> str:
        """Base URL of the running server."""
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The server's command line; subclasses serve other apps."""
        return pinned(
            [PYTHON, str(BENCH_DIR / "server.py"), "--exit-on-stdin-eof"],
            SERVER_CORE,
            self.pin,
        )

    def start(self) -> None:
        """Start the server and wait (bounded) for its READY line."""
        cmd = self.command()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + self.startup_timeout
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"{self.label} did not become READY")
                if sel.select(timeout=min(left, 0.5)):
                    chunk = os.read(self.proc.stdout.fileno(), 4096)
                    if not chunk:
                        continue  # EOF: poll() above will notice the exit
                    buf += chunk
        line = buf.split(b"\n", 1)[0].decode()
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"unexpected server output: {line!r}")
        self.port = int(line.split()[1])

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the server has used so far (Linux only)."""
        if self.proc is None:
            return None
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)"
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """Stop the server we started, by its PID (TERM, then KILL)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def run_client(
    client: str,
    url_base: str,
    n: int,
    concurrency: int,
    size: int,
    pin: bool,
    timeout: float,
    loop: str = "asyncio",
) -> dict[str, Any]:
    """Run one client subprocess (bounded by ``timeout``); return its record.

    The record is the client's JSON line plus ``returncode`` and ``failed``;
    a run that crashed, timed out or had ``ok != n`` is marked failed.
    """
    cmd = pinned(
        [
            PYTHON,
            str(BENCH_DIR / "clients.py"),
            client,
            "--url-base",
            url_base,
            "--n",
            str(n),
            "--concurrency",
            str(concurrency),
            "--size",
            str(size),
            "--timeout",
            str(timeout),
            "--loop",
            loop,
        ],
        CLIENT_CORE,
        pin,
    )
    record: dict[str, Any] = {"client": client, "n": n, "ok": 0}
    try:
        # subprocess.run kills the child on timeout and on KeyboardInterrupt.
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        record.update(returncode=None, failed=True, error="subprocess timed out")
        return record
    for line in reversed(proc.stdout.splitlines()):
        try:
            record = json.loads(line)
            break
        except ValueError:
            continue
    else:
        tail = proc.stderr.strip().splitlines()[-3:]
        record["error"] = "no JSON output; stderr: " + " | ".join(tail)
    record["returncode"] = proc.returncode
    record["failed"] = proc.returncode != 0 or record.get("ok") != n
    return record


def asyncfetch_status() -> tuple[bool, str]:
    """Check (in a subprocess) that asyncfetch exposes the benchmarked API."""
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(BENCH_DIR)!r})\n"
        "from clients import import_asyncfetch\n"
        "m = import_asyncfetch()\n"
        "m.fetch_all, m.Fetcher\n"
        "print(getattr(m, '__version__', '?'), m.__file__)\n"
    )
    proc = subprocess.run(
        [PYTHON, "-c", code], capture_output=True, text=True, timeout=60
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["unknown error"]
        return False, tail[0]
    return True, proc.stdout.strip()


def package_version(name: str) -> str:
    """Installed version of ``name`` (or 'not installed')."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"
