"""Test configuration: a minimal async test runner and session-wide real servers."""

from __future__ import annotations

import asyncio
import functools
import inspect
import socket
import ssl
from collections.abc import Iterator
from typing import Any, TypeVar

import pytest
import trustme
from servers import AppServer, RawServer, ServerThread

S = TypeVar("S", AppServer, RawServer)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes over a second (-m 'not slow')")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests on a fresh debug-mode loop (Hypothesis-aware)."""
    func = pyfuncitem.obj
    hyp = getattr(func, "hypothesis", None)  # set by Hypothesis' @given
    if not inspect.iscoroutinefunction(hyp.inner_test if hyp else func):
        return None
    kwargs = {
        name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames
    }
    if hyp is None:
        asyncio.run(func(**kwargs), debug=True)
        return True

    async_test = hyp.inner_test

    @functools.wraps(async_test)
    def run_example(*args: Any, **kw: Any) -> None:
        asyncio.run(async_test(*args, **kw), debug=True)

    hyp.inner_test = run_example
    func(**kwargs)
    return True


def _running(srv: S) -> Iterator[S]:
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def server_thread() -> Iterator[ServerThread]:
    """The background thread whose event loop runs every server."""
    thread = ServerThread()
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture(scope="session")
def server(server_thread: ServerThread) -> Iterator[AppServer]:
    """HTTP AppServer on 127.0.0.1."""
    yield from _running(AppServer(server_thread, "127.0.0.1"))


@pytest.fixture(scope="session")
def server2(server_thread: ServerThread) -> Iterator[AppServer]:
    """A second HTTP AppServer on another host, 127.0.0.2."""
    yield from _running(AppServer(server_thread, "127.0.0.2"))


@pytest.fixture(scope="session")
def raw_server(server_thread: ServerThread) -> Iterator[RawServer]:
    """Misbehaving raw-socket server on 127.0.0.1."""
    yield from _running(RawServer(server_thread, "127.0.0.1"))


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """The test certificate authority trusted by ``client_ssl_context``."""
    return trustme.CA()


def _server_ssl_context(issuer: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    issuer.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="session")
def client_ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    """Client-side context that trusts ``ca`` (and nothing else)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture(scope="session")
def tls_server(server_thread: ServerThread, ca: trustme.CA) -> Iterator[AppServer]:
    """HTTPS AppServer on 127.0.0.1, cert for 127.0.0.1/localhost from ``ca``."""
    ctx = _server_ssl_context(ca)
    yield from _running(AppServer(server_thread, "127.0.0.1", ssl_context=ctx))


@pytest.fixture(scope="session")
def untrusted_tls_server(server_thread: ServerThread) -> Iterator[AppServer]:
    """HTTPS AppServer whose cert comes from a CA the client does not trust."""
    ctx = _server_ssl_context(trustme.CA())
    yield from _running(AppServer(server_thread, "127.0.0.1", ssl_context=ctx))


@pytest.fixture(autouse=True)
def _reset_servers(request: pytest.FixtureRequest) -> None:
    """Zero the counters of the servers this test uses (starts no server)."""
    names = ("server", "server2", "raw_server", "tls_server", "untrusted_tls_server")
    for name in names:
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
