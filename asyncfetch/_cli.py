"""The command line: ``asyncfetch [OPTIONS] [URL ...]`` and ``asyncfetch demo``.

URLs come from the arguments, then from each ``-i FILE`` (``-``: stdin), read
lazily a chunk at a time; pipes and terminals in a helper thread, so waiting
for input blocks neither the event loop nor Ctrl-C. One JSON line per result
goes to stdout (or ``-o``), whole and flushed as it arrives; the ``Stats`` line
to stderr at the end. Ctrl-C cancels what is in flight and exits with 130;
every result delivered by then has been written (with ``--ordered``, results
held back behind an unfinished earlier one are not delivered).

A first argument ``demo`` is the demo command, never a URL (a URL list never
starts with that bare word in practice).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import stat
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import ExitStack, aclosing, suppress
from typing import IO, Any, TypeVar

from ._fetcher import Fetcher
from ._loop import run_coroutine
from ._models import Request, Result
from ._save import SaveDir
from ._version import __version__

__all__ = ["main"]

T = TypeVar("T")
CHUNK = 1 << 20  # the most bytes one read of an input takes
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP field name (RFC 9110)
EPILOG = """\
Each result is one JSON line: url (as given), final_url, status, ok, bytes,
elapsed, attempts and error ("ClassName: message" or null). The summary goes
to stderr. Exit status: 0 all ok, 1 some not ok, 2 usage error, 130 Ctrl-C.
'asyncfetch demo' fetches a few thousand URLs from a server in this process.
"""


def _or_none(kind: Callable[[str], T]) -> Callable[[str], T | None]:
    """An argparse type that also takes ``none`` (no limit)."""

    def convert(text: str) -> T | None:
        return None if text.strip().lower() == "none" else kind(text)

    convert.__name__ = f"{kind.__name__} (or none)"  # argparse's error names it
    return convert


def _header(text: str) -> tuple[str, str]:
    """Parse ``-H "Name: value"`` into a (name, value) pair."""
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not _TOKEN.fullmatch(name) or re.search(r"[\r\n\0]", value):
        raise argparse.ArgumentTypeError(f'expected "Name: value", not {text!r}')
    return name, value


# Flags whose value goes to Fetcher(...) under the same name: when not given,
# they are not passed, so the library's defaults apply.
PASSED_THROUGH: tuple[tuple[str, Callable[[str], object], str], ...] = (
    ("--concurrency", int, "requests in flight, all hosts together (100)"),
    ("--per-host", int, "requests in flight to one host (no cap)"),
    ("--rate", float, "request starts per second to one host (no limit)"),
    ("--timeout", _or_none(float), "seconds per attempt, or none (30)"),
    ("--retries", int, "retries after the first attempt (2)"),
    ("--max-bytes", _or_none(int), "largest body kept, or none (64 MiB)"),
    ("--max-redirects", int, "redirects followed (10)"),
    ("--max-host-failures", _or_none(int), "failures in a row that stop a host (20)"),
    ("--proxy", str, "an http(s) proxy URL"),
)


def _parser() -> argparse.ArgumentParser:
    """The argument parser; option flags are spelled like the library's options."""
    parser = argparse.ArgumentParser(
        prog="asyncfetch",
        usage="%(prog)s [OPTIONS] [URL ...]\n       %(prog)s demo",
        description="Fetch many URLs concurrently; print one JSON line per result.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("urls", nargs="*", metavar="URL", help="URLs to fetch (before -i's)")
    add(
        "-i",
        "--input",
        action="append",
        default=[],
        metavar="FILE",
        help="read URLs from FILE, one a line ('-': stdin); repeatable",
    )
    add("-o", "--output", metavar="FILE", help="write the report to FILE, not stdout")
    for flag, kind, text in PASSED_THROUGH:
        add(flag, type=kind, default=argparse.SUPPRESS, help=text)
    add(
        "-H",
        "--header",
        type=_header,
        action="append",
        default=[],
        metavar='"NAME: VALUE"',
        help="send this header; repeatable",
    )
    add("--insecure", action="store_true", help="do not verify TLS certificates")
    add("--ordered", action="store_true", help="report in input order")
    add(
        "--save",
        metavar="DIR",
        help="stream each ok body to a file in DIR (created if needed); "
        "the report gets its 'path'",
    )
    add(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="draw a progress bar on stderr (default: if a terminal and no -q)",
    )
    add("-q", "--quiet", action="store_true", help="no summary on stderr")
    add("--version", action="version", version=f"asyncfetch {__version__}")
    return parser


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments for ``Fetcher`` that the flags ask for."""
    names = (flag[2:].replace("-", "_") for flag, _, _ in PASSED_THROUGH)
    options = {name: getattr(args, name) for name in names if name in args}
    # a later -H replaces an earlier one of the same name, whatever its case
    headers = dict({name.lower(): (name, v) for name, v in args.header}.values())
    progress = args.progress
    if progress is None:
        progress = not args.quiet and sys.stderr.isatty()
    options.update(headers=headers or None, verify=not args.insecure)
    return {**options, "progress": progress}


def _read_in_thread(fd: int) -> asyncio.Future[bytes]:
    """Read up to CHUNK bytes of ``fd`` in a daemon thread, without blocking the loop.

    A daemon thread, not an executor: if the read is abandoned (Ctrl-C), nothing
    waits for input that may never come, at loop close or at exit.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[bytes] = loop.create_future()

    def deliver(chunk: bytes, error: OSError | None) -> None:
        if future.done():  # cancelled meanwhile
            pass
        elif error is None:
            future.set_result(chunk)
        else:
            future.set_exception(error)

    def read() -> None:
        chunk, error = b"", None
        try:
            chunk = os.read(fd, CHUNK)
        except OSError as exc:
            error = exc
        with suppress(RuntimeError):  # the loop closed while this thread waited
            loop.call_soon_threadsafe(deliver, chunk, error)

    threading.Thread(target=read, name="asyncfetch-input", daemon=True).start()
    return future


async def _lines(file: IO[bytes]) -> AsyncIterator[str]:
    """The lines of ``file``, decoded as UTF-8, read lazily.

    A regular file is read here; anything else (a pipe, a terminal) in a helper
    thread, since its next line may take any time to come.
    """
    fd = file.fileno()
    regular = stat.S_ISREG(os.fstat(fd).st_mode)
    pending = b""
    while chunk := file.read(CHUNK) if regular else await _read_in_thread(fd):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            yield line.decode("utf-8", "replace")
    if pending:
        yield pending.decode("utf-8", "replace")


def _request(url: str) -> Request:
    """A GET for ``url`` (stripped), which comes back as ``result.meta``."""
    url = url.strip()
    return Request(url, meta=url)


async def _requests(urls: list[str], files: list[IO[bytes]]) -> AsyncIterator[Request]:
    """Requests for the URL arguments, then for the lines of each input file."""
    for url in urls:
        yield _request(url)
    for file in files:
        async for line in _lines(file):
            url = line.lstrip("\ufeff").strip()  # a BOM may start a file
            if url and not url.startswith("#"):
                yield _request(url)


def _record(result: Result, saving: bool) -> bytes:
    """One report line: a JSON object and its newline, UTF-8 encoded."""
    error = result.error
    record: dict[str, Any] = {
        "url": result.meta,
        "final_url": str(result.url),
        "status": result.status,
        "ok": result.ok,
        "bytes": len(result.content),
        "elapsed": round(result.elapsed, 6),
        "attempts": result.attempts,
        "error": None if error is None else f"{type(error).__name__}: {error}",
    }
    if saving:
        record["path"] = None if result.path is None else str(result.path)
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8", "replace")


async def _fetch(
    fetcher: Fetcher,
    requests: Iterable[Request] | AsyncIterator[Request],
    out: IO[bytes],
    ordered: bool,
    save_to: str | None,
) -> bool:
    """Fetch and report every request; return whether every result was ``ok``."""
    all_ok = True
    saving = save_to is not None
    async with (
        fetcher,
        aclosing(fetcher.stream(requests, ordered=ordered, save_to=save_to)) as results,
    ):
        async for result in results:
            out.write(_record(result, saving))  # one write: a line is whole or absent
            out.flush()
            all_ok = all_ok and result.ok
    return all_ok


def _close_quietly(file: IO[bytes]) -> None:
    """Close ``file``; what a failed write left in its buffer is dropped."""
    with suppress(OSError):
        file.close()


def _usage_error(parser: argparse.ArgumentParser, message: str) -> int:
    """Print the usage and ``message`` on stderr, like argparse; return 2."""
    parser.print_usage(sys.stderr)
    sys.stderr.write(f"{parser.prog}: error: {message}\n")
    return EXIT_USAGE


def _demo(argv: list[str]) -> int:
    """``asyncfetch demo``: run the demo (it takes no options but ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="asyncfetch demo",
        description="Fetch a few thousand URLs from a demo server in this process.",
    )
    try:
        parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    from ._demo import main as demo

    return demo()


def _run(
    parser: argparse.ArgumentParser, args: argparse.Namespace, fetcher: Fetcher
) -> int:
    """Open the input and output files, fetch, and return the exit status."""
    with ExitStack() as stack:
        try:
            files = [
                sys.stdin.buffer
                if name == "-"
                else stack.enter_context(open(name, "rb"))
                for name in args.input
            ]
            out: IO[bytes] = sys.stdout.buffer
            if args.output is not None:
                out = open(args.output, "wb")  # noqa: SIM115 - closed by the stack
                stack.callback(_close_quietly, out)
            sys.stdout.flush()  # text written before goes first
        except OSError as exc:
            return _usage_error(parser, f"{exc.filename}: {exc.strerror}")
        requests: Iterable[Request] | AsyncIterator[Request]
        if files:
            requests = _requests(args.urls, files)
        else:  # a list: the progress bar knows the total
            requests = [_request(url) for url in args.urls]
        try:
            all_ok = run_coroutine(
                _fetch(fetcher, requests, out, args.ordered, args.save)
            )
        except OSError as exc:  # reading an input or writing the report failed
            if not isinstance(exc, BrokenPipeError):  # the reader left (| head): fine
                sys.stderr.write(f"{parser.prog}: error: {exc}\n")
            if args.output is None:  # keep the flush of stdout at exit quiet
                with suppress(OSError, ValueError):
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_FAILED
    return EXIT_OK if all_ok else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 when every result is ok, 1 when one is not, 2 for
        a usage error, 130 after Ctrl-C.

    Example:
        ```console
        $ asyncfetch --per-host 4 -i urls.txt -o report.jsonl
        ```
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["demo"]:
        return _demo(argv[1:])
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not args.urls and not args.input:
        return _usage_error(parser, "no URLs: give URLs or -i FILE ('-': stdin)")
    if args.urls[:1] == ["demo"]:
        return _usage_error(parser, "'demo' takes no options: run 'asyncfetch demo'")
    try:
        fetcher = Fetcher(**_options(args))  # every option is checked here
        if args.save is not None:
            SaveDir(args.save)  # a folder that cannot be used: before anything
    except ValueError as exc:
        return _usage_error(parser, str(exc))
    try:
        status = _run(parser, args, fetcher)
    except KeyboardInterrupt:  # also while opening a FIFO, before the loop runs
        status = EXIT_INTERRUPTED
    if status != EXIT_USAGE and not args.quiet:
        sys.stderr.write(f"{fetcher.stats}\n")
    return status
