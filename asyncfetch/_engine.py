"""The engine of a Fetcher: admission, workers, counters.

Jobs wait in the ``Scheduler`` until a slot and
their host allow them to start. On the fast path the common request needs
no task at all: the lane (``_lane.py``) writes it on a kept-alive connection
and completes it when the connection has the response, then sends that
connection's next job. Everything else runs in a worker task, which runs
one job at a time and, when it ends, takes the next admissible job itself
(or leaves it to the lane), so no task is created per request; workers are
created only when a slot is free and nobody is there to take it, and never
more than ``concurrency``.

Each job belongs to a *run* (one ``stream``, one ``fetch_all``, or the
Fetcher's submissions, see ``_runs.py``), which decides where its result
goes and how much input to read.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

from . import _breaker
from ._breaker import Breaker, Gate
from ._config import Options, Timeout
from ._errors import FetchError, FetchTimeout, HostDown
from ._input import HostKey, host_key
from ._lane import LANE_BODY, Lane
from ._models import Request, Result, Stats
from ._retry import PAUSE_STATUSES, is_retryable, pause_for, resendable, retry_delay
from ._scheduler import Scheduler
from ._transport import Transport

if TYPE_CHECKING:
    from pathlib import Path

    from yarl import URL

    from ._h1 import Conn
    from ._progress import ProgressBar
    from ._runs import Run

__all__ = ["Engine", "Job"]

logger = logging.getLogger("asyncfetch")

PROGRESS_INTERVAL = 0.1
# Workers started per turn of the event loop. Starting all of a large
# ``concurrency`` at once opens every connection before any request is sent
# (the loop runs each stage for all of them in turn: connect, then transport,
# then write); in turns of 32 the first requests go out while later
# connections are still being opened, so the server's time overlaps ours.
STARTS_PER_TURN = 32


class Job:
    """One request on its way: where it goes, whose it is, who runs it."""

    __slots__ = (
        "attempts",
        "cancelled",
        "conn",
        "index",
        "key",
        "probe",
        "request",
        "run",
        "save",
        "started",
        "task",
        "timeout",
        "timer",
        "url",
    )

    def __init__(
        self,
        request: Request,
        url: URL,
        key: HostKey,
        run: Run,
        index: int,
        timeout: Timeout,
    ) -> None:
        self.request = request
        self.url = url
        self.key = key
        self.run = run
        self.index = index
        self.timeout = timeout
        self.task: asyncio.Task[None] | None = None  # the worker running it
        self.conn: Conn | None = None  # the lane connection carrying it
        self.cancelled = False
        self.attempts = 0  # attempts started so far
        self.started = 0.0  # when the first one started (time.monotonic)
        self.probe = False  # the one request let through an open breaker
        self.timer: asyncio.TimerHandle | None = None  # waiting to be retried
        self.save: Callable[[URL], Path] | None = run.save  # where the body goes

    def drop_timer(self) -> None:
        """Cancel a pending retry (the job's run or future was cancelled)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Engine:
    """Scheduler, worker tasks, transport and counters of one open Fetcher."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.loop = asyncio.get_running_loop()
        self.sched: Scheduler[Job] = Scheduler(
            options.concurrency,
            options.per_host,
            clock=self.loop.time,
            rate=options.rate,
        )
        self.breaker = Breaker(options.max_host_failures, cooldown=_breaker.COOLDOWN)
        self.retry = options.retry
        self._down: list[Job] = []  # popped while their host's breaker was open
        self._failing_down = False
        self.transport = Transport(options)
        self.lane = Lane(self)
        self.workers: dict[asyncio.Task[None], Job | None] = {}
        self.runs: set[Run] = set()
        self.started = time.monotonic()
        self.stopping = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._next_turn: asyncio.Handle | None = None  # dispatch's ramp
        # counters behind Stats
        self.completed = 0
        self.ok = 0
        self.failed = 0
        self.retries = 0
        self.by_status: dict[int, int] = {}
        progress = options.progress
        self.bar: ProgressBar | None = None
        self._progress: Callable[[Stats], object] | None
        if progress is True:
            from ._progress import ProgressBar  # tqdm is imported only when asked for

            self.bar = ProgressBar()
            self._progress = self.bar
        else:
            self._progress = progress or None
        self._progress_at = 0.0

    # -- admission -------------------------------------------------------

    def next_job(self) -> Job | None:
        """Take the next admissible job.

        Jobs cancelled while waiting are skipped; jobs whose host's breaker is
        open are set aside for :meth:`fail_down` (they fail with HostDown).
        """
        sched = self.sched
        breaker = self.breaker
        while True:
            job = sched.pop()
            if job is None:
                return None
            if job.cancelled:
                sched.release(job.key)
                continue
            if breaker.hosts:  # some host has failures on record
                gate = breaker.gate(job.key, self.loop.time())
                if gate is Gate.DOWN:
                    sched.release(job.key)
                    self._down.append(job)
                    continue
                job.probe = gate is Gate.PROBE
            job.run.active.add(job)
            return job

    def fail_down(self) -> None:
        """Complete the jobs set aside by an open breaker with HostDown."""
        if self._failing_down:
            return  # re-entered through a delivery: the loop below goes on
        self._failing_down = True
        try:
            down = self._down
            while down:
                self._host_down(down.pop())
        finally:
            self._failing_down = False

    def _host_down(self, job: Job) -> None:
        host = f"{job.url.scheme}://{job.url.host}:{job.url.port}"
        message = self.breaker.down_message(job.key, host)
        self._fail(job, HostDown(f"{job.url}: {message}", request=job.request))

    def _fail(self, job: Job, error: FetchError) -> None:
        """Complete a job that ends without an attempt of its own."""
        elapsed = time.monotonic() - job.started if job.attempts else 0.0
        result = Result(
            job.request, job.url, error=error, attempts=job.attempts, elapsed=elapsed
        )
        self.complete(job.run, job.index, result)

    def dispatch(self) -> None:
        """Start a worker for each free slot that a waiting job can take."""
        if self.stopping:
            return
        sched = self.sched
        loop = self.loop
        starts = STARTS_PER_TURN
        while sched.active < sched.concurrency:
            if not starts:  # the rest next turn, after what these started
                if self._next_turn is None:
                    self._next_turn = loop.call_soon(self._on_next_turn)
                break
            job = self.next_job()
            if job is None:
                break
            starts -= 1
            if not self.lane.start(job):
                self.spawn(job)
        if self._down:
            self.fail_down()
        wake = sched.next_wakeup()
        if wake is not None and (self._timer is None or wake < self._timer_at):
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = wake
            self._timer = loop.call_at(wake, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.dispatch()

    def _on_next_turn(self) -> None:
        self._next_turn = None
        self.dispatch()

    def release(self, job: Job) -> None:
        """Free the slot ``job`` held."""
        self.sched.release(job.key)
        job.run.active.discard(job)

    def spawn(self, job: Job, work: Coroutine[Any, Any, None] | None = None) -> None:
        """Start a worker task for ``job`` (running ``work``, by default the
        worker loop)."""
        self.adopt(
            job, self.loop.create_task(self._work(job) if work is None else work)
        )

    def adopt(self, job: Job, task: asyncio.Task[Any]) -> None:
        """Count ``task`` as ``job``'s worker: cancelled with its run, and
        its slot freed if it ends without handing the job on (``unspawn``).
        Callbacks the task already has run before that check."""
        job.task = task
        self.workers[task] = job
        task.add_done_callback(self._worker_done)

    def unspawn(self, job: Job) -> None:
        """``job``'s task leaves it (to the lane) and ends."""
        task = job.task
        job.task = None
        if task is not None:
            self.workers.pop(task, None)

    def resume(self, job: Job, conn: Conn) -> None:
        """A worker goes on with ``job``'s attempt from the response (or the
        failure) on ``conn``, where the lane sent it."""
        self.spawn(job, self._work(job, conn))

    def settle(self, job: Job, result: Result) -> None:
        """Retry ``job`` later if the policy says so, else complete it."""
        run = job.run
        try:
            if not self._retry_later(job, result):
                self.complete(run, job.index, result)
            if self._down:
                self.fail_down()
        except Exception as exc:  # from the caller's progress callable
            run.fail(job.index, exc)

    def idle(self, result: Result) -> None:
        """A slot was freed and nobody took it over: fill it, or, with no
        work left, let the surplus of idle connections go."""
        self.dispatch()
        if self._drained():
            self.transport.shed(result.url)

    # -- workers ---------------------------------------------------------

    async def _work(self, job: Job, via: Conn | None = None) -> None:
        """Run ``job`` and the jobs that follow it on this slot; ``via`` is a
        lane connection on which the first attempt was already sent."""
        me = cast("asyncio.Task[None]", asyncio.current_task())
        workers = self.workers
        attempt = self.transport.attempt
        while True:
            run = job.run
            failure: Exception | None = None
            if via is None:
                if job.attempts:
                    self.retries += 1
                else:
                    job.started = time.monotonic()
                job.attempts += 1
            try:
                result = await attempt(
                    job.request,
                    job.url,
                    job.timeout,
                    attempts=job.attempts,
                    started=job.started,
                    hop=self.hop,
                    save=job.save,
                    max_redirects=run.max_redirects,
                    gate=run.hop_gate,
                    via=via,
                )
            except Exception as exc:  # a bug: the run raises it to its caller
                failure = exc
            via = None
            self.release(job)
            if failure is None:
                self.judge(job, result)  # breaker and pause, before the next start
            # Take the next job before delivering: delivering may read more
            # input and dispatch, which must find this worker's slot taken
            # (otherwise every request would start a new task).
            next_job = self.next_job()
            if next_job is not None:
                next_job.task = me
            workers[me] = next_job
            if failure is not None:
                run.fail(job.index, failure)
            else:
                self.settle(job, result)
            if (
                next_job is not None
                and failure is None
                and len(result.content) <= LANE_BODY
                and self.lane.start(next_job)
            ):
                # The lane runs it: this worker is not needed. After a large
                # body the worker goes on itself: such a connection's next
                # answer will most likely need a worker too.
                next_job = None
            if next_job is None:
                workers.pop(me, None)
                if failure is None:
                    self.idle(result)
                else:
                    self.dispatch()
                return
            job = next_job

    def _drained(self) -> bool:
        """Whether no work is left that a kept connection could serve: nothing
        waits to start or to be retried, and no run has input left to read."""
        if self.sched.waiting:
            return False
        for run in self.runs:
            if run.delayed or not (run.exhausted or run.endless):
                return False
        return True

    def hop(self, url: URL) -> float:
        """Seconds a redirect hop to ``url`` waits for its host (rate, pause)."""
        return self.sched.reserve(host_key(url))

    def judge(self, job: Job, result: Result) -> None:
        """What the attempt says about its host: the breaker and a pause."""
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s -> %s in %.3fs (attempt %d)",
                job.request.method,
                job.url,
                result.status if result.error is None else result.error,
                result.elapsed,
                job.attempts,
            )
        error = result.error
        status = result.status
        # After redirects, the host that answered (or failed) is the last one.
        key = job.key
        if result.history:
            url = result.url
            key = host_key(url)
        breaker = self.breaker
        if error is not None or job.probe or breaker.hosts:
            now = self.loop.time()
            if key != job.key:  # the first host answered with a redirect
                breaker.record(job.key, None, True, now, probe=job.probe)
                job.probe = False
            if breaker.record(key, error, status is not None, now, probe=job.probe):
                self._trip(key, result.url, error)
            job.probe = False
        if status is not None and status in PAUSE_STATUSES:
            pause = pause_for(result, self.retry, time.time())
            if pause:
                logger.info(
                    "pausing %s for %.1fs (%s with Retry-After)",
                    result.url.origin(),
                    pause,
                    status,
                )
                self.sched.hold(key, self.loop.time() + pause)

    def retry_wait(
        self, request: Request, key: HostKey, attempts: int, result: Result
    ) -> float | None:
        """Seconds before another attempt of ``request`` after ``result`` (its
        ``attempts``-th), or ``None`` if the retry policy says no more."""
        retry = self.retry
        if not (
            (result.error is not None or result.status in retry.statuses)
            and attempts < retry.attempts
            and is_retryable(result, retry, request.method)
            and resendable(request)
            and not self.stopping
            and not self.breaker.is_open(key)  # it would only meet HostDown
        ):
            return None
        return retry_delay(
            retry, attempts - 1, result.headers, random.random, time.time()
        )

    def _retry_later(self, job: Job, result: Result) -> bool:
        """Schedule another attempt if the policy allows; True if it does."""
        if job.cancelled or job.run.closed:
            return False
        delay = self.retry_wait(job.request, job.key, job.attempts, result)
        if delay is None:
            return False
        error = result.error
        status = result.status
        retry = self.retry
        logger.info(
            "retrying %s %s in %.2fs after %s (attempt %d of %d)",
            job.request.method,
            job.url,
            delay,
            status if error is None else type(error).__name__,
            job.attempts,
            retry.attempts,
        )
        job.run.delayed.add(job)
        job.timer = self.loop.call_later(delay, self._requeue, job)
        return True

    def _requeue(self, job: Job) -> None:
        """A retry's wait is over: back to the head of its host's queue."""
        job.timer = None
        job.run.delayed.discard(job)
        if job.cancelled or job.run.closed or self.stopping:
            return
        self.sched.push(job.key, job, front=True)
        self.dispatch()

    def _trip(self, key: HostKey, url: URL, error: object) -> None:
        """The host's breaker opened: every request waiting for it fails now."""
        logger.info(
            "host %s is down after %s failures in a row (last: %s); "
            "failing its requests for %.0fs",
            url.origin(),
            self.options.max_host_failures,
            error,
            self.breaker.cooldown,
        )
        waiting = self.sched.remove(lambda j: j.key == key)
        self._down.extend(waiting)
        for run in list(self.runs):  # retries waiting for this host fail too
            for delayed in [j for j in run.delayed if j.key == key]:
                delayed.drop_timer()
                run.delayed.discard(delayed)
                self._down.append(delayed)

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        job = self.workers.pop(task, None)
        if job is None:
            return  # ended normally, its last job released
        # Cancelled (perhaps before it ever ran) or killed by a bug: free the slot.
        self.release(job)
        if job.probe:
            self.breaker.abandon(job.key)  # cancelled: let another probe go
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:  # pragma: no cover - _work catches Exception
                job.run.fail(job.index, exc)
        elif not (job.cancelled or job.run.closed or self.stopping):
            # Nobody here asked for this cancellation: it came from inside the
            # attempt (aiohttp's timer can surface as CancelledError). The job
            # must still get its one result, or its call would wait forever.
            self._lost(job)
        self.dispatch()

    def _lost(self, job: Job) -> None:
        error = FetchTimeout(
            f"{job.url}: the attempt was cancelled from inside aiohttp; "
            "taken as a timeout",
            request=job.request,
        )
        try:
            self._fail(job, error)
        except Exception as exc:  # from the caller's progress callable
            job.run.fail(job.index, exc)

    # -- results ---------------------------------------------------------

    def complete(self, run: Run, index: int, result: Result) -> None:
        """A fetch is over: parse it if the run asks for that, then finish it."""
        stage = run.parse_stage
        if stage is None or not result.ok:
            self.finish(run, index, result)
            return
        pending = stage.start(result, lambda parsed: self._parsed(run, index, parsed))
        if pending is not None:
            run.parsing[index] = pending

    def _parsed(self, run: Run, index: int, result: Result) -> None:
        run.parsing.pop(index, None)
        if run.closed:
            return
        try:
            self.finish(run, index, result)
        except Exception as exc:  # from the caller's progress callable
            run.fail(index, exc)

    def finish(self, run: Run, index: int, result: Result) -> None:
        """Count a result and hand it to its run."""
        if not run.counted:  # a crawl's robots.txt: bytes and retries only
            run.deliver(index, result)
            return
        self.completed += 1
        if result.error is not None:
            self.failed += 1
        elif result.status is not None and result.status < 400:
            self.ok += 1
        status = result.status
        if status is not None:
            by_status = self.by_status
            by_status[status] = by_status.get(status, 0) + 1
        if self._progress is not None:
            now = self.loop.time()
            if now >= self._progress_at:
                self._progress_at = now + PROGRESS_INTERVAL
                self._progress(self.stats())
        run.deliver(index, result)

    def report_progress(self) -> None:
        """Call the progress callable now (at the end of a run)."""
        if self._progress is not None:
            self._progress(self.stats())

    def stats(self) -> Stats:
        """A snapshot of the counters."""
        return Stats(
            completed=self.completed,
            ok=self.ok,
            failed=self.failed,
            retries=self.retries,
            bytes=self.transport.bytes_received,
            in_flight=self.sched.active,
            by_status=dict(self.by_status),
            elapsed=time.monotonic() - self.started,
        )

    # -- shutdown --------------------------------------------------------

    async def wait_tasks(self, tasks: Any) -> None:
        """Wait until the given tasks have ended (they were cancelled)."""
        pending = [t for t in tasks if not t.done()]
        if pending:
            await asyncio.wait(pending)

    async def stop(self) -> None:
        """Cancel every worker and wait for them; no new work starts."""
        self.stopping = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._next_turn is not None:
            self._next_turn.cancel()
            self._next_turn = None
        for run in list(self.runs):
            run.cancel()
        tasks = list(self.workers)
        for task in tasks:
            task.cancel()
        await self.wait_tasks(tasks)
        if self.bar is not None:
            self.bar(self.stats())
            self.bar.close()
