"""The command line: ``asyncfetch demo`` (the URL-fetching front end comes next)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._version import __version__

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="asyncfetch", description="Fetch many URLs concurrently."
    )
    parser.add_argument(
        "--version", action="version", version=f"asyncfetch {__version__}"
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("demo", help="fetch a few thousand URLs from a local demo server")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import main as demo

        return demo()
    parser.print_usage(sys.stderr)
    return 2
