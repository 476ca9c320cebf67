"""``parse=`` and ``executor=``: CPU work on each ok result, kept off the loop.

A plain callable with ``executor=None`` runs on the event loop, between
results; one that returns an awaitable (an ``async def``) is awaited there.
With a ``concurrent.futures.Executor`` the callable runs in it through
``loop.run_in_executor``: a thread pool for work that releases the GIL, a
process pool (with a picklable, module-level callable) for pure-Python work.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from ._errors import ParseError
from ._models import Result

__all__ = ["ParseStage", "check_parse"]

Parser = Callable[[Result], Any]


def _is_async(parse: object) -> bool:
    return inspect.iscoroutinefunction(parse) or inspect.iscoroutinefunction(
        getattr(parse, "__call__", None)  # noqa: B004 - an object with async __call__
    )


def check_parse(parse: object, executor: object) -> None:
    """Refuse a bad ``parse``/``executor`` pair before any request.

    Raises:
        TypeError: ``parse`` is not callable; ``executor`` is not a
            ``concurrent.futures.Executor``; or an ``async def`` callable was
            given an executor (it can only run on the event loop).
        ValueError: an ``executor`` without a ``parse`` callable.
    """
    if parse is None:
        if executor is not None:
            raise ValueError("executor= needs a parse= callable to run")
        return
    if not callable(parse):
        raise TypeError(f"parse must be a callable, not {parse!r}")
    if executor is None:
        return
    if not isinstance(executor, concurrent.futures.Executor):
        raise TypeError(
            f"executor must be a concurrent.futures.Executor, not {executor!r}"
        )
    if _is_async(parse):
        raise TypeError(
            "an async def parse callable runs on the event loop: "
            "pass it without executor=, or make it a plain function"
        )


def _failed(result: Result, exc: BaseException) -> Result:
    error = ParseError(f"{result.url}: parse raised {exc!r}", request=result.request)
    error.__cause__ = exc
    return dataclasses.replace(result, error=error)


class ParseStage:
    """Runs the ``parse`` callable of one call on its ok results."""

    def __init__(
        self,
        parse: Parser,
        executor: concurrent.futures.Executor | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.parse = parse
        self.executor = executor
        self.loop = loop

    def start(
        self, result: Result, done: Callable[[Result], None]
    ) -> asyncio.Future[Any] | None:
        """Parse ``result``; ``done`` gets the result with ``parsed`` set (or a
        ``ParseError``). Returns the pending future, or None when it is done."""
        if self.executor is not None:
            future: asyncio.Future[Any] = self.loop.run_in_executor(
                self.executor, self.parse, result
            )
        else:
            try:
                value = self.parse(result)
            except Exception as exc:
                done(_failed(result, exc))
                return None
            if not inspect.isawaitable(value):
                done(dataclasses.replace(result, parsed=value))
                return None
            future = asyncio.ensure_future(value, loop=self.loop)
        future.add_done_callback(lambda fut: self._finished(result, fut, done))
        return future

    @staticmethod
    def _finished(
        result: Result, future: asyncio.Future[Any], done: Callable[[Result], None]
    ) -> None:
        # Always answer: if the call itself was cancelled, ``done`` ignores it;
        # otherwise a parser that raised or was cancelled is a ParseError.
        if future.cancelled():
            done(_failed(result, asyncio.CancelledError("the parse was cancelled")))
            return
        exc = future.exception()
        if exc is not None:
            done(_failed(result, exc))
            return
        value = future.result()
        if inspect.isawaitable(value):  # from a thread or process: never awaited
            if inspect.iscoroutine(value):
                value.close()
            done(
                _failed(
                    result,
                    TypeError(
                        "parse returned an awaitable from an executor; "
                        "pass an async callable without executor="
                    ),
                )
            )
            return
        done(dataclasses.replace(result, parsed=value))
