"""Delay server for the latency scenario: raw asyncio protocols, no framework.

Answers ``GET /delay`` (any query string) after ``--delay-ms`` milliseconds
(default 100) with a 2-byte body ``ok``; ``GET /delay/{ms}`` uses ``ms``
instead. Keep-alive HTTP/1.1 (pipelined requests are answered in order); any
other path gets a 404. Written directly on ``asyncio.Protocol`` with
prebuilt responses and one ``call_later`` per request, on uvloop when
importable, so a single core can hold thousands of waiting requests without
becoming the bottleneck.

Usage::

    python benchmarks/delay_server.py [--host 127.0.0.1] [--port 0]
        [--delay-ms 100] [--exit-on-stdin-eof] [--max-seconds 14400]
        [--stamps FILE]

With ``--stamps``, every ``/delay`` request's arrival and its response's
write are recorded (``time.monotonic()``) and written to FILE on exit, one
JSON line per connection: ``{"requests": [...], "responses": [...]}``
(``benchmarks/anatomy.py`` reads them).

Prints ``READY <port> <loop>`` on stdout once listening. Stops on
SIGTERM/SIGINT, after ``--max-seconds`` (a safety bound) and -- with
``--exit-on-stdin-eof`` -- when its parent closes stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import deque
from typing import Any, cast

from _serving import run_fast, until_stopped

BODY = b"ok"
OK_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
    b"Connection: keep-alive\r\n\r\n%s" % (len(BODY), BODY)
)
OK_CLOSE_RESPONSE = OK_RESPONSE.replace(b"keep-alive", b"close")
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)
MAX_HEAD = 16 * 1024
MAX_DELAY_MS = 60_000


class DelayProtocol(asyncio.Protocol):
    """One connection: parse request heads, answer each after its delay.

    Requests must not have a body (GET). Answers go out in request order:
    each request gets a slot ``[response, close_after]`` in a queue, its
    timer fills the response, and filled slots at the head are written.
    """

    def __init__(
        self, delay_s: float, stamps: list[dict[str, list[float]]] | None = None
    ) -> None:
        self.delay_s = delay_s
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.pending: deque[list[Any]] = deque()
        self.closing = False
        # With --stamps: this connection's request arrivals and response writes.
        self.stamp: dict[str, list[float]] | None = None
        if stamps is not None:
            self.stamp = {"requests": [], "responses": []}
            stamps.append(self.stamp)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        """Split complete request heads off the buffer and schedule answers."""
        self.buf += data
        while not self.closing:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self._queue(BAD_REQUEST, close=True)
                return
            head, self.buf = self.buf[:end], self.buf[end + 4 :]
            self._handle(head)

    def _handle(self, head: bytes) -> None:
        line, _, headers = head.partition(b"\r\n")
        parts = line.split(b" ")
        if len(parts) != 3 or parts[0] != b"GET":
            self._queue(BAD_REQUEST, close=True)
            return
        path = parts[1].split(b"?", 1)[0]
        close = b"connection: close" in headers.lower() or parts[2] == b"HTTP/1.0"
        if path == b"/delay":
            delay = self.delay_s
        elif path.startswith(b"/delay/") and path[7:].isdigit():
            delay = min(int(path[7:]), MAX_DELAY_MS) / 1000
        else:
            self._queue(NOT_FOUND, close=True)
            return
        if self.stamp is not None:
            self.stamp["requests"].append(time.monotonic())
        slot = self._queue(None, close=close)
        response = OK_CLOSE_RESPONSE if close else OK_RESPONSE
        asyncio.get_running_loop().call_later(delay, self._fill, slot, response)

    def _queue(self, response: bytes | None, close: bool) -> list[Any]:
        """Append a slot (``response`` None: filled later by its timer)."""
        slot = [response, close]
        self.pending.append(slot)
        if close:
            self.closing = True  # read no further requests
        if response is not None:
            self._flush()
        return slot

    def _fill(self, slot: list[Any], response: bytes) -> None:
        slot[0] = response
        self._flush()

    def _flush(self) -> None:
        """Write the answered slots at the head of the queue, in order."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        while self.pending and self.pending[0][0] is not None:
            response, close = self.pending.popleft()
            transport.write(response)
            if self.stamp is not None and response in (OK_RESPONSE, OK_CLOSE_RESPONSE):
                self.stamp["responses"].append(time.monotonic())
            if close:
                transport.close()
                return

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the transport; timers still pending then find nothing to do."""
        self.pending.clear()
        self.transport = None


async def serve(
    host: str,
    port: int,
    delay_ms: float,
    max_seconds: float,
    stdin_eof: bool,
    stamps_path: str | None = None,
) -> None:
    """Serve until a signal, stdin EOF or ``max_seconds`` elapse."""
    loop = asyncio.get_running_loop()
    stamps: list[dict[str, list[float]]] | None = [] if stamps_path else None
    server = await loop.create_server(
        lambda: DelayProtocol(delay_ms / 1000, stamps),
        host,
        port,
        backlog=4096,
        reuse_address=True,
    )
    bound_port = server.sockets[0].getsockname()[1]
    loop_name = "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
    print(f"READY {bound_port} {loop_name}", flush=True)
    try:
        await until_stopped(max_seconds, stdin_eof)
    finally:
        server.close()
        if stamps_path and stamps is not None:
            with open(stamps_path, "w") as fh:
                for stamp in stamps:
                    fh.write(json.dumps(stamp) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    p.add_argument("--delay-ms", type=float, default=100.0)
    p.add_argument("--max-seconds", type=float, default=4 * 3600.0)
    p.add_argument("--exit-on-stdin-eof", action="store_true")
    p.add_argument("--stamps", default=None, help="write request/response times")
    args = p.parse_args(argv)
    run_fast(
        serve(
            args.host,
            args.port,
            args.delay_ms,
            args.max_seconds,
            args.exit_on_stdin_eof,
            args.stamps,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
