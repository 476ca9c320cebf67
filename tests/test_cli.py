"""The command line against the real loopback servers.

Most cases call ``main([...])`` in-process (plain ``def`` tests: ``main`` runs
its own event loop); the rest run ``python -m asyncfetch`` as a subprocess for
what only a real process shows: stdin, SIGINT, a closed pipe, exit statuses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from servers import AppServer

import asyncfetch
from asyncfetch import _cli
from asyncfetch._cli import main

ROOT = Path(__file__).resolve().parent.parent
FIELDS = {"url", "final_url", "status", "ok", "bytes", "elapsed", "attempts", "error"}
# SIGINT is ignored in a child started in the background by a shell without
# job control; this launcher restores the default before running the command.
WITH_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, '-m', 'asyncfetch', *sys.argv[1:]])"
)

Report = list[dict[str, Any]]


def parse(text: str) -> Report:
    """The report: one JSON object a line, every line complete."""
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Report, str]:
    """``main(args)`` in-process: exit status, report, stderr."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, parse(out), err


def command(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m asyncfetch ARGS`` from the repository root."""
    return subprocess.run(
        [sys.executable, "-W", "error", "-m", "asyncfetch", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` from a thread (not a loop) until true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition still false"
        time.sleep(0.01)


# -- input and report ----------------------------------------------------------


def test_urls_from_arguments_and_the_report_fields(
    server: AppServer, capsys: pytest.CaptureFixture[str]
) -> None:
    ok, missing, hops = (
        server.url("/ok"),
        server.url("/status/404"),
        server.url("/redirect/2"),
    )
    code, report, err = run(capsys, ok, missing, " not a url ", hops, "--ordered")
    assert code == 1  # one result is not ok
    assert [line["url"] for line in report] == [ok, missing, "not a url", hops]
    assert all(set(line) >= FIELDS for line in report)
    first, not_found, invalid, redirected = report
    assert first["final_url"] == ok
    assert (first["status"], first["ok"], first["bytes"]) == (200, True, 2)
    assert (first["attempts"], first["error"]) == (1, None)
    assert first["elapsed"] > 0
    assert (not_found["status"], not_found["ok"], not_found["error"]) == (
        404,
        False,
        None,
    )
    assert (invalid["status"], invalid["ok"], invalid["attempts"]) == (None, False, 0)
    assert invalid["error"].startswith("InvalidURL: ")
    assert redirected["final_url"] == server.url("/redirect/0")
    assert redirected["bytes"] == len("done")
    assert err.splitlines() == [err.strip()]  # the summary, one line, no bar
    assert "4 done (2 ok, 1 failed)" in err


def test_input_file_is_stripped_and_skips_comments_and_blank_lines(
    server: AppServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_bytes(
        "\ufeff# a comment first, after a BOM\r\n"
        f"  {server.url('/ok')}  \r\n"
        "\n   \n"
        f"# {server.url('/status/500')}\n"
        f"\t{server.url('/bytes/7?name=café')}".encode()  # no newline at the end
    )
    code, report, _ = run(capsys, "--ordered", server.url("/json"), "-i", str(urls))
    assert code == 0
    assert [line["url"] for line in report] == [
        server.url("/json"),  # arguments come first
        server.url("/ok"),
        server.url("/bytes/7?name=café"),  # as given, not re-encoded
    ]
    assert report[2]["bytes"] == 7
    assert server.total_hits() == 3


def test_report_is_utf8_without_escapes(
    server: AppServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = server.url("/ok?q=ünïcode")
    assert run(capsys, url, "-o", str(tmp_path / "out.jsonl"))[0] == 0
    text = (tmp_path / "out.jsonl").read_bytes().decode("utf-8")
    assert "ünïcode" in text
    assert "\\u" not in text
    assert parse(text)[0]["url"] == url


def test_output_file(
    server: AppServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.jsonl"
    code, report, err = run(
        capsys, server.url("/ok"), server.url("/json"), "-o", str(out)
    )
    assert (code, report) == (0, [])  # nothing on stdout
    assert {line["url"] for line in parse(out.read_text("utf-8"))} == {
        server.url("/ok"),
        server.url("/json"),
    }
    assert "2 done" in err


def test_empty_input_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("# nothing but comments\n\n")
    code, report, err = run(capsys, "-i", str(urls))
    assert (code, report) == (0, [])
    assert "0 done" in err


def test_quiet_prints_no_summary(
    server: AppServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report, err = run(capsys, "-q", server.url("/ok"))
    assert (code, len(report), err) == (0, 1, "")


def test_progress_flag_draws_the_bar_even_on_a_pipe(
    server: AppServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "--progress", server.url("/ok"), server.url("/json"))
    assert code == 0
    assert "results" in err  # tqdm's unit
    assert err.rstrip().splitlines()[-1].startswith("2 done")
    code, _, err = run(capsys, "-q", "--progress", server.url("/ok"))
    assert "results" in err
    assert "done" not in err
    code, _, err = run(capsys, "--no-progress", server.url("/ok"))
    assert "results" not in err


# -- options reach the library ----------------------------------------------------


def test_every_flag_becomes_its_option(
    server: AppServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[dict[str, object]] = []

    class Spy(asyncfetch.Fetcher):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            seen.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(_cli, "Fetcher", Spy)
    assert run(capsys, server.url("/ok"))[0] == 0
    assert seen.pop() == {"headers": None, "verify": True, "progress": False}
    flags = [
        "--concurrency=7",
        "--per-host=3",
        "--rate=50",
        "--timeout=9.5",
        "--retries=1",
        "--max-bytes=1000",
        "--max-redirects=4",
        "--max-host-failures=none",
        "-H",
        "X-A: 1",
        "--header=x-a: 2",
        "-H",
        "X-B:three four ",
        "--insecure",
        "--proxy",
        server.origin,
        "--progress",
    ]
    assert run(capsys, *flags, server.url("/ok"))[0] == 0
    assert seen.pop() == {
        "concurrency": 7,
        "per_host": 3,
        "rate": 50.0,
        "timeout": 9.5,
        "retries": 1,
        "max_bytes": 1000,
        "max_redirects": 4,
        "max_host_failures": None,
        "headers": {"x-a": "2", "X-B": "three four"},  # the later x-a wins
        "verify": False,
        "proxy": server.origin,
        "progress": True,
    }
    assert run(capsys, "--timeout=none", "--max-bytes=None", server.url("/ok"))[0] == 0
    assert seen.pop()["timeout"] is None


def test_headers_are_sent(
    server: AppServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # /echo answers with the request headers as JSON; an added header makes
    # it longer by '"name": "value", ' (exactly the length of the dict's JSON).
    echo = server.url("/echo")
    plain = run(capsys, echo)[1][0]["bytes"]
    more = run(capsys, "-H", "X-Cli-Test: 0123456789", echo)[1][0]["bytes"]
    assert more - plain == len(json.dumps({"X-Cli-Test": "0123456789"}))
    agent = run(capsys, "-H", "User-Agent: t", echo)[1][0]["bytes"]
    assert plain - agent == len(f"asyncfetch/{asyncfetch.__version__}") - 1


def test_max_redirects_0_reports_the_redirect(
    server: AppServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, [line], _ = run(capsys, "--max-redirects", "0", server.url("/redirect/2"))
    assert (code, line["status"], line["ok"]) == (0, 302, True)
    assert line["final_url"] == server.url("/redirect/2")


def test_retries(server: AppServer, capsys: pytest.CaptureFixture[str]) -> None:
    url = server.url("/status/503")
    code, [line], _ = run(capsys, "--retries", "0", url)
    assert (code, line["attempts"], line["status"]) == (1, 1, 503)
    assert run(capsys, "--retries", "1", url)[1][0]["attempts"] == 2


def test_timeout(server: AppServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, [line], _ = run(
        capsys, "--timeout", "0.2", "--retries", "0", server.url("/hang")
    )
    assert code == 1
    assert line["error"].startswith("FetchTimeout: ")
    assert line["status"] is None


def test_max_bytes(server: AppServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, [line], _ = run(capsys, "--max-bytes", "10", server.url("/bytes/11"))
    assert code == 1
    assert line["error"].startswith("BodyTooLarge: ")


def test_per_host_and_concurrency(
    server: AppServer, capsys: pytest.CaptureFixture[str]
) -> None:
    urls = [server.url(f"/track/cli-a?delay_ms=50&n={i}") for i in range(6)]
    assert run(capsys, "--per-host", "2", *urls)[0] == 0
    assert server.max_in_flight("cli-a") == 2
    urls = [server.url(f"/track/cli-b?delay_ms=30&n={i}") for i in range(4)]
    assert run(capsys, "--concurrency", "1", *urls)[0] == 0
    assert server.max_in_flight("cli-b") == 1


def test_max_host_failures(
    closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    # 25 refusals in a row: more than the default 20, so only 'none' lets
    # every one of them be tried.
    urls = [f"http://127.0.0.1:{closed_port}/{i}" for i in range(25)]
    base = ["--retries", "0", "--concurrency", "1", "--ordered"]
    code, report, _ = run(capsys, *base, "--max-host-failures", "none", *urls)
    assert code == 1
    assert {line["error"].split(":")[0] for line in report} == {"ConnectError"}
    code, report, _ = run(capsys, *base, "--max-host-failures", "1", *urls)
    errors = [line["error"].split(":")[0] for line in report]
    assert errors[0] == "ConnectError"
    assert set(errors[1:]) == {"HostDown"}
    assert all(line["attempts"] == 0 for line in report[1:])


def test_insecure(
    untrusted_tls_server: AppServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = untrusted_tls_server.url("/ok")
    code, [line], _ = run(capsys, "--retries", "0", url)
    assert code == 1
    assert line["error"].startswith("TLSError: ")
    code, [line], _ = run(capsys, "--insecure", url)
    assert (code, line["status"]) == (0, 200)


def test_proxy(
    server: AppServer, server2: AppServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # server2 plays a forward proxy, as in test_transport.py
    code, [line], _ = run(capsys, "--proxy", server2.origin, server.url("/echo"))
    assert (code, line["url"]) == (0, server.url("/echo"))
    assert server2.total_hits() == 1
    assert server.total_hits() == 0


def test_ordered(server: AppServer, capsys: pytest.CaptureFixture[str]) -> None:
    urls = [server.url("/delay/400"), server.url("/ok"), server.url("/delay/150")]
    code, report, _ = run(capsys, "--ordered", *urls)
    assert (code, [line["url"] for line in report]) == (0, urls)
    code, report, _ = run(capsys, *urls)  # completion order
    assert [line["url"] for line in report] == [urls[1], urls[2], urls[0]]


# -- usage errors: exit 2, a message, nothing fetched --------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "0"], "concurrency"),
        (["--per-host", "0"], "per_host"),
        (["--rate", "0"], "rate"),
        (["--rate", "fast"], "--rate"),
        (["--timeout", "abc"], "--timeout"),
        (["--timeout", "-1"], "timeout"),
        (["--retries", "-1"], "retries"),
        (["--retries", "1.5"], "--retries"),
        (["--max-bytes", "-1"], "max_bytes"),
        (["--max-redirects", "-1"], "max_redirects"),
        (["--max-host-failures", "0"], "max_host_failures"),
        (["--max-host-failures", "never"], "--max-host-failures"),
        (["-H", "no colon"], "--header"),
        (["-H", "Bad Name: x"], "--header"),
        (["--proxy", "ftp://proxy.example"], "proxy"),
        (["--no-such-flag"], "--no-such-flag"),
        (["--concurrency"], "--concurrency"),
        (["-q", "demo"], "demo"),
    ],
)
def test_bad_values_are_usage_errors(
    server: AppServer, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, report, err = run(capsys, *args, server.url("/ok"))
    assert (code, report) == (2, [])
    assert "usage:" in err
    assert message in err.splitlines()[-1]
    assert server.total_hits() == 0


def test_missing_urls_and_files_are_usage_errors(
    server: AppServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report, err = run(capsys)
    assert (code, report) == (2, [])
    assert "no URLs" in err
    missing = tmp_path / "missing.txt"
    code, report, err = run(capsys, server.url("/ok"), "-i", str(missing))
    assert (code, report) == (2, [])
    assert str(missing) in err
    assert "done" not in err  # no summary: nothing was started
    bad_output = tmp_path / "no" / "such" / "dir.jsonl"
    code, report, err = run(capsys, server.url("/ok"), "-o", str(bad_output))
    assert (code, report) == (2, [])
    assert str(bad_output) in err
    assert server.total_hits() == 0


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert asyncfetch.__version__ in capsys.readouterr().out
    assert main(["--help"]) == 0
    assert "asyncfetch demo" in capsys.readouterr().out
    assert main(["demo", "--help"]) == 0  # the demo itself runs in test_demo.py
    assert "demo" in capsys.readouterr().out
    assert main(["demo", "extra"]) == 2


# -- pipes and write errors --------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_input_from_a_pipe_is_read_as_it_comes(
    server: AppServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "urls"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "w") as pipe:
            pipe.write(f"{server.url('/ok')}\n# later:\n")
            pipe.flush()
            wait_for(lambda: server.total_hits() == 1)  # fetched before the rest came
            pipe.write(f"{server.url('/json')}\n{server.url('/bytes/3')}")

    writer = threading.Thread(target=write)
    writer.start()
    try:
        code, report, _ = run(capsys, "--ordered", "-i", str(fifo))
    finally:
        writer.join(10)
    assert code == 0
    assert [line["url"] for line in report] == [
        server.url("/ok"),
        server.url("/json"),
        server.url("/bytes/3"),
    ]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_output_pipe_closed_early(
    server: AppServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "report"
    os.mkfifo(fifo)
    first: list[bytes] = []

    def read_one_line() -> None:
        with open(fifo, "rb") as pipe:
            first.append(pipe.readline())

    reader = threading.Thread(target=read_one_line)
    reader.start()
    slow = [server.url(f"/delay/{ms}") for ms in (200, 300)]
    try:
        code, report, err = run(
            capsys, "--ordered", "-o", str(fifo), server.url("/ok"), *slow
        )
    finally:
        reader.join(10)
    assert (code, report) == (1, [])
    assert json.loads(first[0])["url"] == server.url("/ok")
    assert "Traceback" not in err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_write_error(server: AppServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, report, err = run(capsys, "-o", "/dev/full", server.url("/ok"))
    assert (code, report) == (1, [])
    assert "No space left on device" in err
    assert "Traceback" not in err


# -- interruption ------------------------------------------------------------------


def test_keyboard_interrupt_exits_130(
    server: AppServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    record, written = _cli._record, list[asyncfetch.Result]()

    def interrupted_on_the_second(result: asyncfetch.Result, saving: bool) -> bytes:
        if written:  # Ctrl-C, once the hanging requests are under way
            wait_for(lambda: server.in_flight("cli-kbd") == 3)
            raise KeyboardInterrupt
        written.append(result)
        return record(result, saving)

    monkeypatch.setattr(_cli, "_record", interrupted_on_the_second)
    hangs = [server.url(f"/track/cli-kbd?delay_ms=60000&n={i}") for i in range(3)]
    code, report, err = run(capsys, *hangs, server.url("/ok"), server.url("/json"))
    assert code == 130
    assert [line["url"] for line in report] == [written[0].meta]
    assert "done (" in err  # the summary, after Ctrl-C too
    wait_for(lambda: server.in_flight("cli-kbd") == 0)  # cancelled, not left hanging


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_sigint_mid_batch(server: AppServer) -> None:
    hangs = [server.url(f"/track/cli-int?delay_ms=60000&n={i}") for i in range(3)]
    oks = [server.url("/ok"), server.url("/json")]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-X",
            "dev",
            "-W",
            "error",
            "-c",
            WITH_SIGINT,
            *hangs,
            *oks,
            "-i",
            "-",
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    with proc:
        try:
            proc.stdin.write(
                f"# from stdin, which stays open\n{server.url('/bytes/3')}\n"
            )
            proc.stdin.flush()
            first = [proc.stdout.readline() for _ in range(3)]  # the ok ones
            wait_for(lambda: server.in_flight("cli-int") == 3)
            proc.send_signal(signal.SIGINT)
            rest, err = proc.communicate(timeout=15)
        finally:
            proc.kill()
    assert proc.returncode == 130
    report = parse("".join(first) + rest)
    assert {line["url"] for line in report} == {*oks, server.url("/bytes/3")}
    assert "Traceback" not in err
    assert "3 done (3 ok, 0 failed)" in err
    wait_for(lambda: server.in_flight("cli-int") == 0)


# -- the command itself ----------------------------------------------------------


def test_command_reads_stdin_and_draws_no_bar_on_a_pipe(server: AppServer) -> None:
    stdin = f"# a comment\n\n {server.url('/ok')}\n{server.url('/status/201')}\n"
    proc = command(server.url("/json"), "-i", "-", stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    report = parse(proc.stdout)
    assert {line["url"] for line in report} == {
        server.url("/json"),
        server.url("/ok"),
        server.url("/status/201"),
    }
    assert proc.stderr.splitlines() == [proc.stderr.strip()]  # the summary alone
    assert proc.stderr.startswith("3 done (3 ok, 0 failed)")


@pytest.mark.skipif(os.name != "posix", reason="POSIX terminals")
def test_bar_on_a_terminal_unless_quiet(server: AppServer) -> None:
    import fcntl
    import pty
    import struct
    import termios

    def stderr_on_a_terminal(*args: str) -> str:
        parent, child = pty.openpty()
        size = struct.pack("HHHH", 24, 100, 0, 0)  # rows, columns: room for the bar
        fcntl.ioctl(child, termios.TIOCSWINSZ, size)
        try:
            proc = subprocess.run(
                [sys.executable, "-W", "error", "-m", "asyncfetch", *args],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=child,
                timeout=30,
                check=True,
            )
            os.close(child)
            chunks = []
            with suppress(OSError):  # EIO: the terminal's other end is closed
                while chunk := os.read(parent, 65536):
                    chunks.append(chunk)
        finally:
            os.close(parent)
        assert proc.returncode == 0
        return b"".join(chunks).decode()

    drawn = stderr_on_a_terminal(server.url("/ok"), server.url("/json"))
    assert "2/2" in drawn  # the bar, with its total
    assert "2 done (2 ok" in drawn  # and the summary
    assert stderr_on_a_terminal("-q", server.url("/ok")) == ""


def test_command_exit_statuses(server: AppServer) -> None:
    assert command(server.url("/status/404")).returncode == 1
    usage = command("--concurrency", "0", server.url("/ok"))
    assert (usage.returncode, usage.stdout) == (2, "")
    assert "concurrency" in usage.stderr
    assert command().returncode == 2
    assert server.total_hits() == 1


@pytest.mark.skipif(os.name != "posix", reason="POSIX pipes")
def test_closed_stdout_ends_quietly(server: AppServer) -> None:
    slow = [server.url(f"/delay/{ms}") for ms in (200, 300, 400)]
    args = ["-W", "error", "-m", "asyncfetch", "--ordered", server.url("/ok"), *slow]
    with subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        try:
            assert json.loads(proc.stdout.readline())["url"] == server.url("/ok")
            proc.stdout.close()  # like '| head -1'
            err = proc.stderr.read()
            proc.wait(timeout=15)
        finally:
            proc.kill()
    assert proc.returncode == 1
    assert "Traceback" not in err
    assert "Exception ignored" not in err


def test_save_writes_files_and_reports_their_paths(
    server: AppServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "pages"
    ok, missing = server.url("/bytes/5"), server.url("/status/404")
    code, report, _ = run(capsys, ok, missing, "--save", str(folder), "--ordered")
    assert code == 1
    saved, not_found = report
    assert saved["bytes"] == 0  # the body is on disk, not in the report's count
    assert Path(saved["path"]).read_bytes() == b"xxxxx"
    assert Path(saved["path"]).is_relative_to(folder.resolve())
    assert not_found["path"] is None
    code, report, _ = run(capsys, ok)
    assert "path" not in report[0]


def test_save_to_a_file_is_a_usage_error(
    server: AppServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, report, err = run(capsys, server.url("/ok"), "--save", str(blocker))
    assert (code, report) == (2, [])
    assert "save_to" in err
    assert server.total_hits() == 0
