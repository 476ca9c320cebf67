"""How every benchmark server process lives and stops.

A server started by the harness prints ``READY <port> ...`` once listening and
stops on SIGTERM/SIGINT, when its parent closes stdin (so it never outlives
the harness) or after ``max_seconds`` (a safety bound). ``server.py``,
``delay_server.py`` and the ``serve`` subcommands of ``crawl.py``,
``parse.py`` and ``resilience.py`` all use these helpers. aiohttp is
imported only by :func:`serve_app`, so ``delay_server.py`` stays free of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Block until stdin hits EOF (parent gone), then set ``stop``."""
    with contextlib.suppress(Exception):
        while sys.stdin.buffer.read(65536):
            pass
    with contextlib.suppress(RuntimeError):  # loop already closed
        loop.call_soon_threadsafe(stop.set)


async def until_stopped(max_seconds: float, stdin_eof: bool = True) -> None:
    """Return on SIGTERM/SIGINT, stdin EOF (if ``stdin_eof``) or ``max_seconds``."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if stdin_eof:
        threading.Thread(target=_watch_stdin, args=(loop, stop), daemon=True).start()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max_seconds)


async def serve_app(
    app: web.Application,
    max_seconds: float,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    stdin_eof: bool = True,
    more: Callable[[web.AppRunner, int], Awaitable[list[asyncio.AbstractServer]]]
    | None = None,
) -> None:
    """Serve ``app`` on ``host:port`` (0: a free port) until stopped.

    ``more(runner, port)`` may open further listeners on the same port
    before ``READY <port>`` is printed (sites of ``runner`` are closed with
    it); the plain asyncio servers it returns are closed at the end.
    """
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    others: list[asyncio.AbstractServer] = []
    try:
        site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
        await site.start()
        bound_port = int(runner.addresses[0][1])
        if more is not None:
            others = await more(runner, bound_port)
        print(f"READY {bound_port}", flush=True)
        await until_stopped(max_seconds, stdin_eof)
    finally:
        for server in others:
            server.close()
        await runner.cleanup()


def run_fast(coro: Coroutine[Any, Any, None]) -> str:
    """Run ``coro`` on uvloop if importable, else asyncio; return the loop's name."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return "asyncio"
    uvloop.run(coro)
    return "uvloop"
