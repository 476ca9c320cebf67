"""Runs: one call's share of a Fetcher (a stream, a fetch_all, the submissions).

A run reads its input lazily, at most ``read_ahead`` items ahead of what it
has delivered, turns items into jobs (or straight into ``InvalidURL``
results), and receives its jobs' results. Plain iterables are read inline,
as soon as there is room; async iterables are read by one feeder task.

An item that is not a str, URL or Request, and an exception from the input
iterator itself, stop the reading: the results of the items read before it
are delivered first, then the error is raised to the caller. A bug in
asyncfetch (an unexpected exception in a worker) is raised at once.
"""

from __future__ import annotations

import abc
import asyncio
import functools
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from yarl import URL

from ._engine import Engine, Job
from ._errors import FetchError, InvalidURL
from ._input import as_request, check_url, is_async
from ._models import Request, Result
from ._parse import ParseStage

# The first fill of a plain iterable reads what the first workers take and a
# batch more, or this many if the window allows: reading the whole window
# first holds back every first request (at concurrency=500, 1,100 URLs take
# 15-20 ms to parse). The rest is read as the first results are taken.
FIRST_FILL = 256

__all__ = ["ListRun", "Run", "StreamRun", "SubmitRun"]


class Run(abc.ABC):
    """The input, jobs and results of one call."""

    keeps_order = False  # True: placeholder() is called for each item read
    counted = True  # False: results stay out of completed/ok/failed/by_status
    max_redirects: int | None = None  # over the Fetcher's, for this run's jobs
    # Called with each valid request and its URL before it is queued; an
    # error it returns completes the item at once (a crawl's Disallowed).
    gate: Callable[[Request, URL], FetchError | None] | None = None
    # The same for a redirect's target, awaited before it is followed.
    hop_gate: Callable[[Request, URL], Awaitable[FetchError | None]] | None = None
    # Input that never ends while the Fetcher is open (submissions): each
    # item is a new call, not the rest of this one.
    endless = False

    def __init__(self, engine: Engine, urls: Any = None) -> None:
        self.engine = engine
        self.active: set[Job] = set()  # started jobs
        self.delayed: set[Job] = set()  # jobs waiting to be retried
        self.parse_stage: ParseStage | None = None
        self.save: Callable[[URL], Path] | None = None  # save_to: a path per URL
        self.parsing: dict[int, asyncio.Future[Any]] = {}  # parses under way
        self.read = 0  # items taken from the input
        self.completed = 0  # results produced
        self.delivered = 0  # results handed to the caller
        self.bound = engine.options.read_ahead
        self.batch = max(1, min(64, self.bound // 8))
        self.exhausted = urls is None
        self.error: BaseException | None = None  # raise once the rest is delivered
        self.fatal: BaseException | None = None  # raise now
        self.closed = False
        self._it: Iterator[Any] | None = None
        self._ait: AsyncIterator[Any] | None = None
        self._feeder: asyncio.Task[None] | None = None
        self._room: asyncio.Future[None] | None = None
        self._filling = False
        if urls is not None:
            if is_async(urls):
                self._ait = aiter(urls)
            else:
                self._it = iter(urls)

    # -- input -----------------------------------------------------------

    def start(self, urls: object = None) -> None:
        """Begin reading the input and fetching."""
        self.engine.runs.add(self)
        if self.engine.bar is not None:
            self.engine.bar.add_input(urls)
        if self._ait is not None:
            self._feeder = self.engine.loop.create_task(self._feed())
        else:
            self.fill()
        self.engine.dispatch()
        self._check_done()

    def fill(self) -> None:
        """Read a plain iterable until the read-ahead window is full (the
        first time, only what the first workers take: see ``FIRST_FILL``)."""
        it = self._it
        if it is None or self._filling:
            return  # re-entered through an InvalidURL result: the loop goes on
        self._filling = True
        try:
            bound = self.bound
            if not self.read:
                concurrency = self.engine.options.concurrency
                bound = min(bound, max(concurrency + self.batch, FIRST_FILL))
            while not self.exhausted and self.read - self.delivered < bound:
                try:
                    item = next(it)
                except StopIteration:
                    self.exhausted = True
                    break
                except Exception as exc:
                    self._stop_input(exc)
                    break
                self.take(item)
        finally:
            self._filling = False

    async def _feed(self) -> None:
        ait = self._ait
        if ait is None:  # pragma: no cover - only started for async input
            return
        loop = self.engine.loop
        while not self.exhausted and not self.closed:
            if self.read - self.delivered >= self.bound:
                self._room = loop.create_future()
                await self._room
                continue
            try:
                item = await anext(ait)
            except StopAsyncIteration:
                self.exhausted = True
                break
            except Exception as exc:
                self._stop_input(exc)
                break
            try:
                self.take(item)
            except Exception as exc:  # from the caller's progress callable
                self.fail(self.read, exc)
                break
            self.engine.dispatch()
        self._check_done()

    def _stop_input(self, exc: BaseException) -> None:
        self.exhausted = True
        self.error = exc

    def take(self, item: object) -> None:
        """Accept one input item; a wrong type stops the input (raised later)."""
        try:
            request = as_request(item)
        except TypeError as exc:
            self._stop_input(exc)
            return
        self.accept(request)

    def accept(self, request: Request) -> Job | None:
        """Queue a job for ``request``, or complete it at once as ``InvalidURL``."""
        index = self.read
        self.read = index + 1
        if self.keeps_order:
            self.placeholder()
        checked = check_url(request)
        engine = self.engine
        if isinstance(checked, InvalidURL):
            engine.complete(self, index, Result(request, request.url, error=checked))
            return None
        url, key = checked
        if self.gate is not None:
            refused = self.gate(request, url)
            if refused is not None:
                engine.complete(self, index, Result(request, url, error=refused))
                return None
        timeout = request.timeout
        job = Job(request, url, key, self, index, timeout or engine.options.timeout)
        engine.sched.push(key, job)
        return job

    def placeholder(self) -> None:
        """Make room for the result of the item just read (ListRun keeps order)."""

    def progressed(self) -> None:
        """The caller took results: read more if there is room."""
        if self.closed:
            return
        if self._it is not None:
            # Read in batches, not one item per result; but at once when a
            # slot is free, as everything queued may be held back by its host.
            room = self.bound - (self.read - self.delivered)
            sched = self.engine.sched
            if not self.exhausted and (
                room >= self.batch or (room > 0 and sched.active < sched.concurrency)
            ):
                self.fill()
                self.engine.dispatch()
        elif self._room is not None and not self._room.done():
            self._room.set_result(None)
        self._check_done()

    # -- results ---------------------------------------------------------

    @abc.abstractmethod
    def deliver(self, index: int, result: Result) -> None:
        """Receive the result of item ``index``."""

    def fail(self, index: int, exc: BaseException) -> None:
        """A worker hit a bug while running item ``index``."""
        if self.fatal is None:
            self.fatal = exc
        self.wake()

    def wake(self) -> None:
        """Let the caller look at the run again."""

    @property
    def finished(self) -> bool:
        """Every item read has a result and no more will be read."""
        return self.exhausted and self.completed == self.read

    def _check_done(self) -> None:
        if self.finished or self.fatal is not None:
            self.wake()

    # -- cancellation ----------------------------------------------------

    def cancel(self) -> None:
        """Stop reading, drop waiting jobs, cancel the ones in flight."""
        if self.closed:
            return
        self.closed = True
        engine = self.engine
        engine.runs.discard(self)
        engine.sched.remove(lambda job: job.run is self)
        for job in list(self.active):
            if job.task is not None:
                job.task.cancel()
            elif job.conn is not None:  # in the lane: close its connection
                engine.lane.drop(job)
        for job in self.delayed:
            job.drop_timer()
        self.delayed.clear()
        for pending in self.parsing.values():
            pending.cancel()
        if self._feeder is not None:
            self._feeder.cancel()
        self.wake()

    async def aclose(self) -> None:
        """Cancel, then wait until every task of this run has ended."""
        tasks: list[asyncio.Future[Any]] = [
            job.task for job in self.active if job.task is not None
        ]
        tasks.extend(self.parsing.values())
        if self._feeder is not None:
            tasks.append(self._feeder)
        self.cancel()
        self.parsing.clear()
        await self.engine.wait_tasks(tasks)


class StreamRun(Run):
    """Results for an async iterator, in completion or input order."""

    def __init__(self, engine: Engine, urls: Any, ordered: bool) -> None:
        super().__init__(engine, urls)
        self.ordered = ordered
        self.buffer: deque[Result] = deque()
        self._pending: dict[int, Result] = {}
        self._next = 0
        self._waiter: asyncio.Future[None] | None = None

    def deliver(self, index: int, result: Result) -> None:
        self.completed += 1
        if self.ordered and index != self._next:
            self._pending[index] = result
            return
        self.buffer.append(result)
        if self.ordered:
            self._next += 1
            pending = self._pending
            while pending and self._next in pending:
                self.buffer.append(pending.pop(self._next))
                self._next += 1
        self.wake()

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Sleep until a result arrives or the run ends."""
        self._waiter = self.engine.loop.create_future()
        await self._waiter

    async def results(self) -> AsyncIterator[Result]:
        """Yield results as the caller asks for them."""
        buffer = self.buffer
        while True:
            if self.fatal is not None:
                raise self.fatal
            if self.closed:
                raise RuntimeError("the Fetcher was closed while this stream was open")
            if buffer:
                result = buffer.popleft()
                self.delivered += 1
                self.progressed()
                yield result
            elif self.finished:
                self.engine.report_progress()
                if self.error is not None:
                    raise self.error
                return
            else:
                await self.wait()


class ListRun(Run):
    """Every result, in input order, as one list (``fetch_all``)."""

    keeps_order = True

    def __init__(self, engine: Engine, urls: Any) -> None:
        super().__init__(engine, urls)
        self.results: list[Result | None] = []
        self.done: asyncio.Future[None] = engine.loop.create_future()

    def placeholder(self) -> None:
        self.results.append(None)

    def deliver(self, index: int, result: Result) -> None:
        self.results[index] = result
        self.completed += 1
        self.delivered += 1
        if not self.exhausted:
            self.progressed()  # reads more when the window has room for it
        elif self.completed == self.read:
            self.wake()

    def wake(self) -> None:
        if not self.done.done() and (self.finished or self.fatal or self.closed):
            self.done.set_result(None)

    async def collect(self) -> list[Result]:
        """Wait for every result."""
        await self.done
        if self.fatal is not None:
            raise self.fatal
        if self.closed and not self.finished:
            raise RuntimeError("the Fetcher was closed while fetch_all was running")
        self.engine.report_progress()
        if self.error is not None:
            raise self.error
        return self.results  # type: ignore[return-value] # every slot is filled


class SubmitRun(Run):
    """The Fetcher's submissions: each result goes to its own future."""

    endless = True

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.exhausted = False  # open for submissions until the Fetcher closes
        self.futures: dict[int, asyncio.Future[Result]] = {}
        self.jobs: dict[int, Job] = {}
        self._drained: asyncio.Future[None] | None = None
        engine.runs.add(self)

    def submit(
        self, item: object, save: Callable[[URL], Path] | None = None
    ) -> asyncio.Future[Result]:
        """Queue one item; its future is already scheduled. ``save`` names
        the file its body goes to (``download``).

        Raises:
            TypeError: the item is not a str, a yarl.URL or a Request.
        """
        request = as_request(item)
        index = self.read
        future: asyncio.Future[Result] = self.engine.loop.create_future()
        self.futures[index] = future
        job = self.accept(request)
        if job is not None:
            job.save = save
            self.jobs[index] = job
            future.add_done_callback(functools.partial(self._forget, index))
            self.engine.dispatch()
        return future

    def _forget(self, index: int, future: asyncio.Future[Result]) -> None:
        if not future.cancelled() or self.futures.pop(index, None) is None:
            return
        job = self.jobs.pop(index, None)
        if job is None:
            return
        job.cancelled = True  # a waiting job is skipped when its turn comes
        if job in self.active:
            if job.task is not None:
                job.task.cancel()
            elif job.conn is not None:  # in the lane: close its connection
                self.engine.lane.drop(job)
        elif job in self.delayed:  # waiting to be retried
            job.drop_timer()
            self.delayed.discard(job)
        self._check_drained()

    def deliver(self, index: int, result: Result) -> None:
        self.completed += 1
        self.delivered += 1
        self.jobs.pop(index, None)
        future = self.futures.pop(index, None)
        if future is not None and not future.done():
            future.set_result(result)
        self._check_drained()

    def fail(self, index: int, exc: BaseException) -> None:
        self.jobs.pop(index, None)
        future = self.futures.pop(index, None)
        if future is not None and not future.done():
            future.set_exception(exc)
        self._check_drained()

    def _check_drained(self) -> None:
        if not self.futures and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    async def drain(self) -> None:
        """Wait until every submitted future is done."""
        if self.futures:
            self._drained = self.engine.loop.create_future()
            await self._drained

    def cancel(self) -> None:
        super().cancel()
        for future in list(self.futures.values()):
            future.cancel()
