"""``asyncfetch demo``: it runs clean under -X dev -W error, and its table adds up."""

from __future__ import annotations

import errno
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from asyncfetch import ConnectError, Request, Result
from asyncfetch._demo import PLAN, _listen, format_table, tally

ROOT = Path(__file__).resolve().parent.parent


def _result(
    url: str,
    status: int | None = 200,
    *,
    elapsed: float = 0.01,
    final: str | None = None,
    failed: bool = False,
) -> Result:
    request = Request(url)
    error = ConnectError(f"{url}: cannot connect", request=request) if failed else None
    return Result(
        request,
        URL(final or url),
        status,
        error=error,
        attempts=1,
        elapsed=elapsed,
    )


@pytest.mark.slow
def test_demo_runs_clean_and_reports_every_host() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-m", "asyncfetch", "demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.stderr == ""  # a pipe: no progress, and no warning of any kind
    assert proc.returncode == 0
    out = proc.stdout
    assert re.search(
        r"^host +requests +ok +404 +5xx +median +max +peak +done +errors$",
        out,
        re.MULTILINE,
    )
    total = 0
    for name, (_, mix) in PLAN.items():
        planned = sum(int(part.split(":")[1]) for part in mix.split())
        total += planned
        row = re.search(
            rf"^127\.0\.0\.\d+:\d+ \({name}\) +(\d+) +(\d+) .*$", out, re.MULTILINE
        )
        assert row, f"no row for the {name} host:\n{out}"
        assert int(row[1]) == planned  # one result per URL, grouped by its host
        if name == "down":
            assert int(row[2]) == 0
            assert re.search(r"(ConnectError|HostDown):\d+", row[0])
    stats = re.search(
        rf"^{total} done \((\d+) ok, (\d+) failed\), .* 0 in flight, ",
        out,
        re.MULTILINE,
    )
    assert stats, out
    assert "not exceptions" in " ".join(out.split())


def test_tally_groups_results_by_final_host_and_port() -> None:
    a, b = "http://127.0.0.1:8001", "http://127.0.0.1:8002"
    pairs = [
        (_result(f"{a}/1", elapsed=0.010), 0.5),
        (_result(f"{a}/2", 404, elapsed=0.030), 0.7),
        (_result(f"{a}/3", 500, elapsed=0.020), 0.6),
        (_result(f"{b}/r", final=f"{a}/4"), 0.2),  # a redirect counts where it ended
        (_result(f"{b}/1", None, failed=True), 0.9),
    ]
    names = {("127.0.0.1", 8001): "a", ("127.0.0.1", 8002): "b"}
    hosts = tally(pairs, names)
    first, second = hosts[("127.0.0.1", 8001)], hosts[("127.0.0.1", 8002)]
    assert (first.name, first.requests, first.ok) == ("a", 4, 2)
    assert (first.not_found, first.server_errors, dict(first.errors)) == (1, 1, {})
    assert first.median == pytest.approx(0.015)
    assert first.done_at == 0.7
    assert (second.requests, second.ok, dict(second.errors)) == (
        1,
        0,
        {"ConnectError": 1},
    )
    assert first.cells(3) == [
        "a",
        "4",
        "2",
        "1",
        "1",
        "15 ms",
        "30 ms",
        "3",
        "0.7 s",
        "-",
    ]
    assert second.cells(None)[7:] == ["-", "0.9 s", "ConnectError:1"]
    unknown = tally([(_result("http://127.0.0.9:9/x"), 1.0)], names)
    assert unknown["127.0.0.9", 9].name == "127.0.0.9:9"


def test_format_table_aligns_columns() -> None:
    table = format_table(
        "host n errors", [["a", "1", "-"], ["long-host", "123", "X:1 Y:2"]]
    )
    assert table.splitlines() == [
        "host         n  errors",
        "a            1  -",
        "long-host  123  X:1 Y:2",
    ]


def test_listen_falls_back_to_127_0_0_1(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.create_server

    def create_server(address: tuple[str, int], **kwargs: Any) -> socket.socket:
        if address[0] != "127.0.0.1":  # as 127.0.0.2 does on macOS
            raise OSError(errno.EADDRNOTAVAIL, "Can't assign requested address")
        return real(address, **kwargs)

    monkeypatch.setattr(socket, "create_server", create_server)
    with _listen("127.0.0.2") as sock:
        assert sock.getsockname()[0] == "127.0.0.1"
        assert sock.getsockname()[1] > 0


def test_demo_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    from asyncfetch._cli import main

    assert main(["demo"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # captured stderr is not a terminal: no progress
    assert re.search(r"^\d+ done \(\d+ ok, \d+ failed\)", captured.out, re.MULTILINE)
    assert "(down)" in captured.out
