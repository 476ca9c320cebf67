"""``asyncfetch demo``: it runs clean under -X dev -W error, and its table adds up."""

from __future__ import annotations

import dataclasses
import errno
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from asyncfetch import ConnectError, HostDown, Request, Result
from asyncfetch._demo import LIMITED, PLAN, DemoServer, _listen, format_table, tally

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
        r"^host +requests +ok +404 +5xx +retried +paused +HostDown +median +max +done"
        r" +errors$",
        out,
        re.MULTILINE,
    )
    total = 0
    for name, (_, mix) in PLAN.items():
        planned = sum(int(part.split(":")[1]) for part in mix.split())
        total += planned
        row = re.search(
            rf"^127\.0\.0\.\d+:\d+ \({name}\)" + r" +(\d+)" * 7 + " .*$",
            out,
            re.MULTILINE,
        )
        assert row, f"no row for the {name} host:\n{out}"
        requests, ok, _, _, retried, paused, down = map(int, row.groups())
        assert requests == planned  # one result per URL, grouped by its host
        if name == "down":
            assert ok == 0
            assert down > 0  # the breaker opened: the rest failed with HostDown
            assert re.search(r" ConnectError:\d+", row[0])
        if name == "limited":  # 429 + Retry-After on the first few, then 200
            assert (ok, retried, paused) == (planned, LIMITED, LIMITED)
        else:
            assert paused == 0
    stats = re.search(
        rf"^{total} done \((\d+) ok, (\d+) failed\), .* 0 in flight, ",
        out,
        re.MULTILINE,
    )
    assert stats, out
    text = " ".join(out.split())
    assert "not exceptions" in text
    assert re.search(r"cost \d+ attempts instead of \d+: its breaker opened", text)
    assert f"answered {LIMITED} requests with 429" in text


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
        "0",
        "3",
        "0",
        "15 ms",
        "30 ms",
        "0.7 s",
        "-",
    ]
    assert second.cells(0)[5:8] == ["0", "0", "0"]
    assert second.cells(0)[10:] == ["0.9 s", "ConnectError:1"]
    unknown = tally([(_result("http://127.0.0.9:9/x"), 1.0)], names)
    assert unknown["127.0.0.9", 9].name == "127.0.0.9:9"


def test_tally_counts_retries_and_host_down() -> None:
    url = "http://127.0.0.1:8001/x"
    retried = dataclasses.replace(_result(url), attempts=3)
    down = dataclasses.replace(
        _result(url, None),
        error=HostDown(f"{url}: down", request=Request(url)),
        attempts=0,
        elapsed=0.0,
    )
    (host,) = tally([(retried, 0.1), (down, 0.2)], {}).values()
    assert (host.requests, host.ok, host.attempts) == (2, 1, 3)
    assert (host.retried, host.recovered, host.down) == (2, 1, 1)
    assert dict(host.errors) == {}  # HostDown has its own column
    assert host.elapsed == [0.01]  # nothing was sent for the HostDown one


def test_quietest_finds_the_longest_silence() -> None:
    server = DemoServer()
    server.arrivals = {"a": [0.0, 0.1, 1.2, 1.3], "b": [0.5, 0.9, 1.25, 2.0]}
    gap, others = server.quietest("a")
    assert gap == pytest.approx(1.1)
    assert others == 2  # b's at 0.5 and 0.9
    assert server.quietest("nobody") == (0.0, 0)


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
