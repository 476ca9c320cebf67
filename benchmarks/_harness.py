"""Shared plumbing for the benchmark scripts: pinning, servers, client runs."""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
PYTHON = sys.executable
SERVER_CORE = 0
CLIENT_CORE = 1
# The many-hosts scenario's addresses: 127.0.1.1 ... 127.0.1.200, one port.
HOST_ADDRESSES = tuple(f"127.0.1.{i}" for i in range(1, 201))
PR_SET_PDEATHSIG = 1


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


_T = TypeVar("_T")


def rotated(entries: Sequence[_T], rnd: int) -> list[_T]:
    """Round ``rnd``'s order of ``entries``: a balanced Latin square.

    Over ``len(entries)`` rounds (twice that for an odd count) each entry
    runs once in each position *and* right after every other entry as often
    (Williams' design). A plain rotation also moves each entry through every
    position, but keeps its neighbours: the same client would always run
    right after the same one, say a process that just held a GiB of bodies.
    """
    n = len(entries)
    if n < 3:
        k = rnd % n if n else 0
        return [*entries[k:], *entries[:k]]
    first = [0]
    low, high = 1, n - 1
    while low <= high:
        first.append(low)
        low += 1
        if low <= high:
            first.append(high)
            high -= 1
    if n % 2 and (rnd // n) % 2:
        first.reverse()
    return [entries[(i + rnd) % n] for i in first]


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so ``finally``/``with`` cleanup runs."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def pinned(cmd: list[str], core: int, pin: bool) -> list[str]:
    """Prefix ``cmd`` with ``taskset -c core`` when pinning is enabled."""
    return ["taskset", "-c", str(core), *cmd] if pin else cmd


def die_with_parent() -> None:
    """``preexec_fn``: the child gets SIGTERM if the harness dies (Linux).

    A server must never outlive the harness, even one killed with SIGKILL
    (which skips every ``finally``). ``taskset`` execs its command, so the
    setting carries over to the server itself.
    """
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def child_pids(pid: int) -> list[int]:
    """PIDs of the direct children of ``pid`` (Linux /proc; else none)."""
    kids = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def process_cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) of process ``pid`` so far (Linux only)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)"
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port(hosts: Sequence[str] = ("127.0.0.1",)) -> int:
    """A TCP port that is free on every one of ``hosts`` right now."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = int(s.getsockname()[1])
        try:
            for host in hosts[1:]:
                with socket.socket() as s:
                    s.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free on all hosts")


class Server:
    """The aiohttp fallback server as a pinned subprocess (context manager).

    ``extra_hosts`` more addresses (127.0.1.1, ...) are served on the same
    port, for the many-hosts scenario.
    """

    label = "aiohttp fallback (benchmarks/server.py, aiohttp.web)"
    name = "aiohttp fallback"

    def __init__(
        self, pin: bool, startup_timeout: float = 30.0, extra_hosts: int = 0
    ) -> None:
        self.pin = pin
        self.startup_timeout = startup_timeout
        self.extra_hosts = extra_hosts
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.ready_line = ""

    @property
    def url_base(self) -> str:
        """Base URL of the running server."""
        return f"http://127.0.0.1:{self.port}"

    def host_bases(self) -> list[str]:
        """Base URLs of the extra hosts (127.0.1.x), same port."""
        return [f"http://{h}:{self.port}" for h in HOST_ADDRESSES[: self.extra_hosts]]

    def command(self) -> list[str]:
        """The server's command line; subclasses serve other apps."""
        cmd = [PYTHON, str(BENCH_DIR / "server.py"), "--exit-on-stdin-eof"]
        if self.extra_hosts:
            cmd += ["--extra-hosts", str(self.extra_hosts)]
        return pinned(cmd, SERVER_CORE, self.pin)

    def start(self) -> None:
        """Start the server and wait (bounded) for its READY line."""
        cmd = self.command()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            preexec_fn=die_with_parent,
        )
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
        self.ready_line = line
        self.port = int(line.split()[1])

    def cpu_seconds(self) -> float | None:
        """CPU time the server (and its live children) has used so far.

        Linux only; None elsewhere. Children count for nginx, whose worker
        process does the serving.
        """
        if self.proc is None:
            return None
        total = process_cpu_seconds(self.proc.pid)
        if total is None:
            return None
        for kid in child_pids(self.proc.pid):
            total += process_cpu_seconds(kid) or 0.0
        return total

    def stop(self) -> None:
        """Stop the server we started, by its PID (TERM, then KILL).

        Its children (nginx's worker) are looked up first and, if the server
        had to be killed, killed by their PIDs too.
        """
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        kids = child_pids(proc.pid)
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            for kid in kids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(kid, signal.SIGKILL)
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


def nginx_exe() -> str | None:
    """Path of the ``nginx`` binary (PATH, then the usual sbin dirs), or None."""
    found = shutil.which("nginx")
    if found:
        return found
    for path in (
        "/usr/sbin/nginx",
        "/usr/local/sbin/nginx",
        "/usr/local/nginx/sbin/nginx",
    ):
        if os.access(path, os.X_OK):
            return path
    return None


def nginx_status() -> tuple[bool, str]:
    """Return (usable, version): is there a working ``nginx`` binary?"""
    exe = nginx_exe()
    if exe is None:
        return False, "nginx not found (run benchmarks/setup.sh)"
    try:
        proc = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"nginx -v failed: {exc}"
    version = (proc.stderr or proc.stdout).strip().removeprefix("nginx version: ")
    return proc.returncode == 0, version or "nginx (unknown version)"


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
{user}
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    open_file_cache max=64 inactive=3600s;
    open_file_cache_valid 3600s;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
{listens}
        root {tmp}/www;
        location /bytes/ {{ }}
        location / {{ return 404; }}
    }}
}}
"""


class NginxServer(Server):
    """nginx serving static ``/bytes/{size}`` files, as a pinned subprocess.

    The config is generated in a temp dir: ``worker_processes 1``,
    keep-alive with ``keepalive_requests 1000000``, ``access_log off``, the
    error log in the temp dir, ``daemon off`` (the harness owns the master's
    PID), listening on 127.0.0.1 and on the ``extra_hosts`` addresses
    127.0.1.x, all on one port above 1024, so no root is needed. Run as root,
    it keeps its workers as root too (``user root``), so they can read the
    temp dir. The query string is ignored, so ``/bytes/1024?i=7`` is the
    1 KiB file.
    """

    label = "nginx"
    name = "nginx"

    def __init__(
        self,
        pin: bool,
        sizes: Sequence[int],
        extra_hosts: int = 0,
        startup_timeout: float = 30.0,
    ) -> None:
        super().__init__(pin, startup_timeout, extra_hosts)
        self.sizes = sorted(set(sizes))
        self.tmp: Path | None = None
        _, self.version = nginx_status()
        self.exe = nginx_exe() or "nginx"
        self.label = f"{self.version} (worker_processes 1, static files)"

    def _write_files(self) -> Path:
        tmp = Path(tempfile.mkdtemp(prefix="asyncfetch-bench-nginx-"))
        (tmp / "www" / "bytes").mkdir(parents=True)
        for size in self.sizes:
            with open(tmp / "www" / "bytes" / str(size), "wb") as f:
                chunk = b"x" * min(size, 1 << 20)
                left = size
                while left:
                    f.write(chunk[:left])
                    left -= min(left, len(chunk))
        return tmp

    def _config(self, tmp: Path, port: int) -> str:
        hosts = ("127.0.0.1", *HOST_ADDRESSES[: self.extra_hosts])
        listens = "\n".join(f"        listen {h}:{port} backlog=4096;" for h in hosts)
        user = ""
        if os.geteuid() == 0:  # workers would drop to "nobody" and not read tmp
            user = "user root root;" if _group_exists("root") else "user root;"
        return NGINX_CONF.format(tmp=tmp, listens=listens, user=user)

    def start(self) -> None:
        """Write the config and files, start nginx, wait until it serves."""
        self.tmp = self._write_files()
        hosts = ("127.0.0.1", *HOST_ADDRESSES[: self.extra_hosts])
        last_error = ""
        for _ in range(3):  # a port taken between free_port() and nginx: retry
            port = free_port(hosts)
            conf = self.tmp / "nginx.conf"
            conf.write_text(self._config(self.tmp, port))
            cmd = [self.exe, "-p", str(self.tmp), "-e", str(self.tmp / "error.log")]
            cmd += ["-c", str(conf)]
            self.proc = subprocess.Popen(
                pinned(cmd, SERVER_CORE, self.pin),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
            self.port = port
            try:
                ready = self._wait_ready(hosts)
            except BaseException:
                self.stop()
                raise
            if ready:
                self.ready_line = f"READY {port}"
                return
            last_error = self._error_log_tail()
            Server.stop(self)
            if "in use" not in last_error:
                break
        self._cleanup()
        raise RuntimeError(f"nginx did not start: {last_error}")

    def _wait_ready(self, hosts: Sequence[str]) -> bool:
        """Poll (bounded) until every address answers; False if nginx died."""
        deadline = time.monotonic() + self.startup_timeout
        size = self.sizes[0]
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", f"/bytes/{size}")
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
                if resp.status != 200 or len(body) != size:
                    raise RuntimeError(f"nginx answered {resp.status}, {len(body)} B")
                for host in hosts[1:]:
                    socket.create_connection((host, self.port), timeout=2).close()
                return True
            except OSError:
                time.sleep(0.1)
        return False

    def _error_log_tail(self) -> str:
        if self.tmp is None:
            return ""
        try:
            lines = (self.tmp / "error.log").read_text().strip().splitlines()
        except OSError:
            return "no error log"
        return " | ".join(lines[-3:])

    def _cleanup(self) -> None:
        tmp, self.tmp = self.tmp, None
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    def stop(self) -> None:
        """Stop nginx (TERM to the master, which stops its worker); rm temp dir."""
        super().stop()
        self._cleanup()


def _group_exists(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


class DelayServer(Server):
    """``delay_server.py`` (raw asyncio protocols) as a pinned subprocess."""

    label = "delay server (benchmarks/delay_server.py, raw asyncio protocols)"
    name = "delay server"

    def __init__(
        self,
        pin: bool,
        delay_ms: float = 100.0,
        startup_timeout: float = 30.0,
        stamps: Path | None = None,
    ) -> None:
        super().__init__(pin, startup_timeout)
        self.delay_ms = delay_ms
        self.stamps = stamps  # written when the server stops

    def command(self) -> list[str]:
        """The delay server's command line."""
        cmd = [PYTHON, str(BENCH_DIR / "delay_server.py"), "--exit-on-stdin-eof"]
        cmd += ["--delay-ms", str(self.delay_ms)]
        if self.stamps is not None:
            cmd += ["--stamps", str(self.stamps)]
        return pinned(cmd, SERVER_CORE, self.pin)

    @property
    def loop_name(self) -> str:
        """The event loop the server runs on (from its READY line)."""
        parts = self.ready_line.split()
        return parts[2] if len(parts) > 2 else "?"


def wrk_status() -> tuple[bool, str]:
    """Return (usable, version line): is ``wrk`` on PATH?"""
    if shutil.which("wrk") is None:
        return False, "wrk not found (run benchmarks/setup.sh)"
    try:
        proc = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"wrk -v failed: {exc}"
    first = (proc.stdout + proc.stderr).strip().splitlines()[:1] or ["wrk"]
    return True, first[0].split(" Copyright")[0]


_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def parse_wrk(text: str) -> dict[str, Any]:
    """Pull the totals out of wrk's report (requests, seconds, errors, bytes)."""
    out: dict[str, Any] = {}
    m = re.search(
        r"(\d+) requests in ([\d.]+)(us|ms|s|m), ([\d.]+)([KMGT]?B) read", text
    )
    if m:
        scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
        out["requests"] = int(m.group(1))
        out["wall_s"] = float(m.group(2)) * scale
        out["bytes_read"] = float(m.group(4)) * _SIZE_UNITS[m.group(5)]
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["wrk_req_per_s"] = float(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    out["socket_errors"] = sum(int(g) for g in m.groups()) if m else 0
    return out


def run_wrk(
    url: str, connections: int, duration: float, pin: bool, timeout: float = 10.0
) -> dict[str, Any]:
    """Run ``wrk -t1`` (pinned to the client core) for ``duration`` seconds.

    Returns a record shaped like a client's: requests per second over wrk's
    own timed run, its CPU time (``RUSAGE_CHILDREN`` before/after: wrk is the
    only child waited for in between) per request. wrk checks statuses only
    (non-2xx responses and socket errors fail the run), not body sizes.
    """
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s"]
    cmd += ["--timeout", f"{max(1, round(timeout))}s", url]
    record: dict[str, Any] = {
        "client": "wrk",
        "loop": "-",
        "concurrency": connections,
        "n": None,
        "ok": 0,
    }
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        proc = subprocess.run(
            pinned(cmd, CLIENT_CORE, pin),
            capture_output=True,
            text=True,
            timeout=duration + timeout + 60,
        )
    except subprocess.TimeoutExpired:
        record.update(returncode=None, failed=True, error="wrk timed out")
        return record
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    stats = parse_wrk(proc.stdout)
    requests = stats.get("requests", 0)
    good = requests - stats["non_2xx"]
    wall = stats.get("wall_s") or 0.0
    record.update(stats)
    record.update(
        n=requests,
        ok=good,
        wall_s=round(wall, 4),
        cpu_s=round(cpu, 4),
        req_per_s=round(good / wall, 1) if wall else 0.0,
        mib_per_s=round(stats.get("bytes_read", 0) / wall / 2**20, 2) if wall else 0,
        cpu_ms_per_req=round(1000 * cpu / good, 4) if good else None,
        rss_peak_mib=None,
        returncode=proc.returncode,
        error=None,
    )
    problems = []
    if proc.returncode != 0:
        problems.append(f"exit {proc.returncode}: {proc.stderr.strip()[-200:]}")
    if not requests:
        problems.append("no requests parsed from wrk output")
    if stats["non_2xx"] or stats["socket_errors"]:
        problems.append(
            f"{stats['non_2xx']} non-2xx, {stats['socket_errors']} socket errors"
        )
    record["failed"] = bool(problems)
    if problems:
        record["error"] = "; ".join(problems)
    return record


def run_client(
    client: str,
    url_base: str,
    n: int,
    concurrency: int,
    size: int,
    pin: bool,
    timeout: float,
    loop: str = "asyncio",
    *,
    path: str | None = None,
    per_host: int | None = None,
    asyncfetch_from: Path | None = None,
) -> dict[str, Any]:
    """Run one client subprocess (bounded by ``timeout``); return its record.

    ``url_base`` may be a comma-separated list of bases (round-robin);
    ``path`` defaults to ``/bytes/{size}``. ``asyncfetch_from`` is a
    directory holding another ``asyncfetch/`` package (a past revision, a
    prototype) that the client imports instead of the installed one. The
    record is the client's JSON line plus ``returncode`` and ``failed``; a
    run that crashed, timed out or had ``ok != n`` is marked failed, and so
    is one that imported asyncfetch from elsewhere than ``asyncfetch_from``.
    """
    args = [
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
    ]
    if path is not None:
        args += ["--path", path]
    if per_host is not None:
        args += ["--per-host", str(per_host)]
    cmd = pinned(args, CLIENT_CORE, pin)
    env = None
    if asyncfetch_from is not None:
        # PYTHONPATH comes before site-packages and the editable install's
        # finder, so ``import asyncfetch`` finds this tree's package.
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(asyncfetch_from), env.get("PYTHONPATH")) if p
        )
    record: dict[str, Any] = {"client": client, "n": n, "ok": 0, "loop": loop}
    try:
        # subprocess.run kills the child on timeout and on KeyboardInterrupt.
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout + 60, env=env
        )
    except subprocess.TimeoutExpired:
        record.update(returncode=None, failed=True, error="subprocess timed out")
        return record
    record = json_record(proc.stdout, proc.stderr, record)
    record["returncode"] = proc.returncode
    record["failed"] = proc.returncode != 0 or record.get("ok") != n
    imported = record.get("asyncfetch_path")
    if asyncfetch_from is not None and imported is not None:
        wanted = asyncfetch_from.resolve() / "asyncfetch"
        if Path(imported).resolve() != wanted:
            record["failed"] = True
            record["error"] = f"imported asyncfetch from {imported}, not {wanted}"
    return record


def core_times(core: int) -> tuple[float, float] | None:
    """(busy, steal) seconds of CPU ``core`` so far, from /proc/stat (Linux).

    busy is user + nice + system time of every process on that core; steal
    is time the hypervisor gave to someone else.
    """
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith(f"cpu{core} "):
                    v = [int(x) for x in line.split()[1:]]
                    tick = os.sysconf("SC_CLK_TCK")
                    steal = v[7] if len(v) > 7 else 0
                    return (v[0] + v[1] + v[2]) / tick, steal / tick
    except (OSError, ValueError):
        return None
    return None


class CoreMeter:
    """How much of the client core others took while one client ran.

    Brackets a client (or wrk) subprocess: the core's busy time minus the
    CPU time of the children reaped in between (``RUSAGE_CHILDREN``: the
    client, start-up included) is what other processes used there; steal is
    what the hypervisor took. Both as a fraction of the elapsed time, so 0.3
    means others had 30% of the client's core. Meaningful only when the
    client is pinned (elsewhere ``stop`` returns None).
    """

    def __init__(self, core: int, enabled: bool) -> None:
        self.core = core
        self.enabled = enabled
        self._start: tuple[tuple[float, float] | None, float, float] | None = None

    @staticmethod
    def _children_cpu() -> float:
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ru.ru_utime + ru.ru_stime

    def start(self) -> None:
        """Take the starting readings."""
        if self.enabled:
            self._start = (
                core_times(self.core),
                self._children_cpu(),
                time.monotonic(),
            )

    def stop(self) -> dict[str, float] | None:
        """Readings since ``start``: ``other_load`` and ``steal`` fractions."""
        if self._start is None or self._start[0] is None:
            return None
        times0, cpu0, t0 = self._start
        times1 = core_times(self.core)
        elapsed = time.monotonic() - t0
        if times1 is None or elapsed <= 0:
            return None
        busy = times1[0] - times0[0]
        other = max(0.0, busy - (self._children_cpu() - cpu0))
        return {
            "other_load": round(other / elapsed, 3),
            "steal": round((times1[1] - times0[1]) / elapsed, 3),
        }


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


def git_commit() -> str:
    """``HEAD``'s short hash, '+ uncommitted changes' if the tree is dirty.

    Read-only: ``--no-optional-locks`` keeps ``git status`` from refreshing
    (writing) the index while someone else works in the repo.
    """
    git = ["git", "--no-optional-locks", "-C", str(REPO_ROOT)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (git unavailable)"
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    suffix = " + uncommitted changes" if dirty.stdout.strip() else ""
    return head.stdout.strip() + suffix


# -- client records and reports --------------------------------------------


def json_record(out: str, err: str, record: dict[str, Any]) -> dict[str, Any]:
    """The last JSON line a client printed on ``out``; else ``record``, with
    an ``error`` quoting the end of ``err``."""
    for line in reversed(out.splitlines()):
        with contextlib.suppress(ValueError):
            parsed: dict[str, Any] = json.loads(line)
            return parsed
    tail = err.strip().splitlines()[-3:]
    record["error"] = "no JSON output; stderr: " + " | ".join(tail)
    return record


def load_jsonl(
    path: Path, kinds: Sequence[str] = ("run",), writer: str = "the benchmark"
) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """Read a run's JSON lines back: (meta, records of ``kinds``, notes).

    Raises:
        SystemExit: the file has no meta record (``writer`` did not write it).
    """
    meta: dict[str, Any] = {}
    records = []
    notes: list[str] = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        kind = rec.get("kind")
        if kind == "meta":
            meta.update(rec)
        elif kind == "meta-end":
            notes = rec.pop("notes", [])
            meta.update(rec)
        elif kind in kinds:
            records.append(rec)
    if not meta:
        raise SystemExit(f"{path}: no meta record (not written by {writer}?)")
    return meta, records, notes


def failed_runs(
    records: Iterable[Mapping[str, Any]], describe: Callable[[Mapping[str, Any]], str]
) -> list[str]:
    """A line per failed record: ``describe(record)``, then its error and the
    samples of what was wrong, for :func:`notes_section`."""
    return [
        f"{describe(r)} error={r.get('error')} samples={r.get('bad_samples')}"
        for r in records
        if r.get("failed")
    ]


def notes_section(notes: Sequence[str], failed: Sequence[str]) -> str:
    """The report's ``## Notes``: each note, then a line per failed run."""
    if not notes and not failed:
        return ""
    lines = [f"- {n}\n" for n in notes]
    lines += [f"- FAILED run: {f}\n" for f in failed]
    return "\n## Notes\n\n" + "".join(lines)


def publish(text: str, md_path: Path, jsonl_path: Path, latest: str) -> None:
    """Write the report to ``md_path``, copy it and ``jsonl_path`` beside them
    as ``{latest}.md`` and ``{latest}.jsonl``, and print it."""
    md_path.write_text(text)
    shutil.copyfile(md_path, md_path.with_name(f"{latest}.md"))
    shutil.copyfile(jsonl_path, jsonl_path.with_name(f"{latest}.jsonl"))
    print(text)
    print(f"written: {md_path}, {jsonl_path} (and {latest}.*)", file=sys.stderr)
