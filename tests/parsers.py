"""Module-level parse callables: a process pool must be able to pickle them."""

from __future__ import annotations

import os
import threading
import time

from asyncfetch import Result


def pid_and_size(result: Result) -> tuple[int, int]:
    """Where it ran, and what it saw."""
    return os.getpid(), len(result.content)


def thread_name(result: Result) -> str:
    return threading.current_thread().name


def slow(result: Result) -> int:
    time.sleep(0.02)
    return len(result.content)


def explode(result: Result) -> None:
    raise ValueError(f"cannot parse {result.url}")
