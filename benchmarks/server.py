"""Benchmark HTTP server -- the *aiohttp fallback server*.

A small, fast aiohttp.web server (on uvloop when importable) used as the
target of the benchmarks when nginx is not installed (``run.py`` prefers
nginx and labels results from this one "server: aiohttp fallback"); it needs
nothing beyond the project's own deps.

Routes:

* ``GET /bytes/{n}``  -> ``n`` bytes of ``b"x"`` (keep-alive, cached payloads)
* ``GET /delay/{ms}`` -> sleeps ``ms`` milliseconds, then a 2-byte body

Usage::

    python benchmarks/server.py [--host 127.0.0.1] [--port 0] [--extra-hosts N]

``--extra-hosts N`` also serves on 127.0.1.1 ... 127.0.1.N, same port (the
many-hosts scenario). Prints ``READY <port>`` on stdout once listening.
Stops on SIGTERM/SIGINT, after ``--max-seconds`` (a safety bound), and --
with ``--exit-on-stdin-eof`` -- when its parent closes stdin (so it never
outlives the harness).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from _serving import run_fast, serve_app
from aiohttp import web

SERVER_LABEL = "aiohttp fallback server (aiohttp.web)"
MAX_BYTES = 64 * 1024 * 1024
MAX_DELAY_MS = 60_000

_payloads: dict[int, bytes] = {}


async def handle_bytes(request: web.Request) -> web.Response:
    """Return exactly ``n`` bytes."""
    try:
        n = int(request.match_info["n"])
    except ValueError:
        raise web.HTTPBadRequest(text="n must be an integer") from None
    if not 0 <= n <= MAX_BYTES:
        raise web.HTTPBadRequest(text=f"n must be in [0, {MAX_BYTES}]")
    body = _payloads.get(n)
    if body is None:
        body = _payloads[n] = b"x" * n
    return web.Response(body=body, content_type="application/octet-stream")


async def handle_delay(request: web.Request) -> web.Response:
    """Sleep ``ms`` milliseconds, then answer ``ok``."""
    try:
        ms = int(request.match_info["ms"])
    except ValueError:
        raise web.HTTPBadRequest(text="ms must be an integer") from None
    if not 0 <= ms <= MAX_DELAY_MS:
        raise web.HTTPBadRequest(text=f"ms must be in [0, {MAX_DELAY_MS}]")
    await asyncio.sleep(ms / 1000)
    return web.Response(body=b"ok", content_type="text/plain")


def make_app() -> web.Application:
    """Build the aiohttp application."""
    app = web.Application()
    app.router.add_get("/bytes/{n}", handle_bytes)
    app.router.add_get("/delay/{ms}", handle_delay)
    return app


async def serve(
    host: str, port: int, max_seconds: float, stdin_eof: bool, extra_hosts: int = 0
) -> None:
    """Serve until a signal, stdin EOF or ``max_seconds`` elapse."""

    async def on_extra_hosts(
        runner: web.AppRunner, bound_port: int
    ) -> list[asyncio.AbstractServer]:
        for i in range(1, extra_hosts + 1):
            extra = web.TCPSite(runner, f"127.0.1.{i}", bound_port, backlog=1024)
            await extra.start()
        return []

    await serve_app(
        make_app(),
        max_seconds,
        host=host,
        port=port,
        stdin_eof=stdin_eof,
        more=on_extra_hosts,
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    p.add_argument("--max-seconds", type=float, default=4 * 3600.0)
    p.add_argument("--exit-on-stdin-eof", action="store_true")
    p.add_argument("--extra-hosts", type=int, default=0, help="127.0.1.1..N too")
    args = p.parse_args(argv)
    if not 0 <= args.extra_hosts <= 254:
        p.error("--extra-hosts must be in [0, 254]")
    run_fast(
        serve(
            args.host,
            args.port,
            args.max_seconds,
            args.exit_on_stdin_eof,
            args.extra_hosts,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
