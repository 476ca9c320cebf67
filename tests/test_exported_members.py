"""The public surface: exactly the names API.md lists, each documented."""

from __future__ import annotations

import inspect

import asyncfetch

PUBLIC = {
    "BodyTooLarge",
    "ConnectError",
    "Disallowed",
    "FetchError",
    "FetchTimeout",
    "Fetcher",
    "HTTPStatusError",
    "HostDown",
    "InvalidURL",
    "ParseError",
    "ProtocolError",
    "Request",
    "Result",
    "Retry",
    "SaveError",
    "Stats",
    "SyncFetcher",
    "TLSError",
    "Timeout",
    "TooManyRedirects",
    "__version__",
    "fetch_all",
    "links",
    "run",
}


def test_all_is_the_public_surface() -> None:
    assert set(asyncfetch.__all__) == PUBLIC
    assert asyncfetch.__all__ == sorted(asyncfetch.__all__, key=str)
    public = {name for name in dir(asyncfetch) if not name.startswith("_")}
    assert public == PUBLIC - {"__version__"}


def test_public_names_live_in_asyncfetch_and_have_docstrings() -> None:
    for name in PUBLIC - {"__version__"}:
        obj = getattr(asyncfetch, name)
        assert obj.__module__ == "asyncfetch", name
        assert inspect.getdoc(obj), name


def test_version() -> None:
    from importlib.metadata import version

    assert asyncfetch.__version__ == version("asyncfetch")
