"""The lane: requests driven by their connection, without a task each.

A worker task costs a task wake-up, a chain of coroutines (worker, attempt,
send, read) and a future for every response it waits for. On the fast path
the common request needs none of that: a GET whose response comes whole,
not a redirect, within ``max_bytes``. For such a request the lane writes the
request on a kept-alive connection (or opens one, in a short task of its
own), and the connection tells the lane when the response is in; the lane
builds the result, writes the connection's next request before it hands the
result over, and completes the job as a worker would (breaker, pause,
retry, counters, delivery).

Anything else leaves the lane at once, with no work lost or done twice: the
first attempt of a job that a worker should run (a retry, a breaker probe,
a body to save, a request ClientSession must send) starts a worker as
before; a response that is not simple (a redirect, an interim or 101
response, a body still arriving beyond ``LANE_BODY`` or past ``max_bytes``)
or a failed connection (reset, timeout, garbage) is handed, connection and
all, to a worker, which goes on from the response as if it had sent the
request itself (``Transport.attempt(via=...)``). So every documented
behaviour keeps its one implementation; the lane is only the short way for
the answers that need none of it.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import TYPE_CHECKING, Final

from ._transport import REDIRECTS
from ._transport_errors import CATCH

if TYPE_CHECKING:
    from ._dial import Dialing
    from ._engine import Engine, Job
    from ._h1 import Conn, FastPath
    from ._models import Result

__all__ = ["LANE_BODY", "Lane"]

# A body still arriving is waited for in the lane up to this size; beyond
# it a worker reads the rest (its reads check max_bytes as they go).
LANE_BODY: Final = 64 * 1024


class Lane:
    """Starts and completes the jobs that need no worker, for one Engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._transport = engine.transport
        self._loop = engine.loop
        self._on_response = self._response  # one bound method for every request

    def start(self, job: Job) -> bool:
        """Start ``job``'s first attempt in the lane; False if a worker must."""
        fast = self._transport.fast
        payload = self._payload(job) if fast is not None else None
        if fast is None or payload is None:
            return False
        conn = fast.take(job.key)
        if conn is not None:
            self._begin(fast, conn, job, payload)
            return True
        self._connect(fast, job, payload)
        return True

    def _connect(self, fast: FastPath, job: Job, payload: bytes) -> None:
        """Send ``job`` on a new connection, once it is open."""
        job.attempts = 1
        job.started = time.monotonic()
        deadline = self._deadline(job)
        dialing = fast.dial(job.key, job.timeout, deadline)
        if dialing is None:  # a name to look up, or addresses to try in turn
            self._engine.spawn(job, self._open(fast, job, payload, deadline))
        else:
            dialing.task.add_done_callback(
                functools.partial(self._dialed, fast, dialing, job, payload, deadline)
            )
            self._engine.adopt(job, dialing.task)

    def _payload(self, job: Job) -> bytes | None:
        """The request's bytes if the lane can run this attempt, else None."""
        if job.attempts or job.probe or job.save is not None:
            return None  # a retry, a breaker's probe, a body to save: a worker's
        return self._transport.encode(job.request, job.url)

    def _deadline(self, job: Job) -> float | None:
        total = job.timeout.total
        return None if total is None else self._loop.time() + total

    def _begin(self, fast: FastPath, conn: Conn, job: Job, payload: bytes) -> None:
        """Send ``job`` on the open ``conn`` (taken idle, or just freed by
        the job before: connected, and not to be closed); no task runs it,
        whichever took it from the queue."""
        job.task = None
        job.attempts = 1
        job.started = time.monotonic()
        self._send(fast, conn, job, payload, self._deadline(job))

    async def _open(
        self, fast: FastPath, job: Job, payload: bytes, deadline: float | None
    ) -> None:
        """Open a connection for ``job`` and send it there: a worker task
        that leaves the job to the lane once the request is written."""
        try:
            conn = await fast.open(job.key, job.timeout, deadline)
        except CATCH as exc:
            self._failed(job, exc)
            return
        self._opened(fast, conn, job, payload, deadline)

    def _dialed(
        self,
        fast: FastPath,
        dialing: Dialing[Conn],
        job: Job,
        payload: bytes,
        deadline: float | None,
        task: object,
    ) -> None:
        """What ``_open`` does, for a connection ``FastPath.dial`` opened:
        the task's done callback. A cancelled dial is left to the engine's
        end of the task (``Engine.adopt``), which frees its slot as for any
        worker."""
        try:
            conn = fast.dialed(dialing)
        except asyncio.CancelledError:
            return
        except CATCH as exc:
            self._failed(job, exc)
            return
        self._opened(fast, conn, job, payload, deadline)

    def _opened(
        self,
        fast: FastPath,
        conn: Conn,
        job: Job,
        payload: bytes,
        deadline: float | None,
    ) -> None:
        """Send ``job`` on the connection just opened for it, and leave the
        job to the lane: the opening task ends. A job cancelled as its
        connection opened (too late to cancel the task), or a bug here, stays
        with the task, whose end frees the slot (``Engine.adopt``)."""
        if job.cancelled or job.run.closed or self._engine.stopping:
            conn.drop()
            return
        try:
            self._send(fast, conn, job, payload, deadline)
        except Exception as exc:  # a bug: the run raises it to its caller
            conn.drop()
            job.run.fail(job.index, exc)
            return
        self._engine.unspawn(job)

    def _failed(self, job: Job, exc: BaseException) -> None:
        """The connection for ``job``'s first attempt could not be opened."""
        self._engine.unspawn(job)
        result = self._transport.failed(
            job.request, job.url, exc, job.attempts, job.started
        )
        self._finish(job, result, None)

    def _send(
        self,
        fast: FastPath,
        conn: Conn,
        job: Job,
        payload: bytes,
        deadline: float | None,
    ) -> None:
        fast.write(conn, job.request.method, payload, job.timeout, deadline)
        self._watch(conn, job)

    def _watch(self, conn: Conn, job: Job) -> None:
        """Have ``conn`` tell the lane when ``job``'s response is in."""
        job.conn = conn
        conn.lane_job = job
        conn.lane = self._on_response

    def _response(self, conn: Conn) -> None:
        """``conn`` has its response (or failed): complete the job, or hand
        it to a worker."""
        job: Job = conn.lane_job
        conn.lane_job = None
        job.conn = None
        try:
            self._complete(conn, job)
        except Exception as exc:  # a bug: the run raises it to its caller
            conn.drop()
            job.run.fail(job.index, exc)

    def _complete(self, conn: Conn, job: Job) -> None:
        head = conn.head()
        if head is None:  # the connection failed: the worker's read raises it
            self._engine.resume(job, conn)
            return
        message, body = head
        code = message.code
        limit = self._transport.max_bytes
        if (
            code < 200
            or (code in REDIRECTS and "Location" in message.headers)
            or body.exception() is not None
            or (limit is not None and body.total_bytes > limit)
        ):
            self._engine.resume(job, conn)
            return
        if not body.is_eof():
            if body.total_bytes > LANE_BODY:
                self._engine.resume(job, conn)
            else:  # more of the body to come: wait for it here
                self._watch(conn, job)
            return
        conn.take_head()
        result = self._transport.lane_result(
            job.request, job.url, message, body.read_nowait(), job.attempts, job.started
        )
        conn.deadline = None
        self._finish(job, result, conn)

    def _finish(self, job: Job, result: Result, conn: Conn | None) -> None:
        """What a worker does once its attempt has a result: free the slot,
        judge the host, start the next job (on ``conn`` if it can), then
        retry or deliver this one."""
        engine = self._engine
        engine.release(job)
        engine.judge(job, result)
        next_job = engine.next_job()
        fast = self._transport.fast
        went_on = False
        if (
            conn is not None
            and fast is not None
            and conn.is_connected()
            and not conn.should_close
        ):
            if (
                next_job is not None
                and next_job.key == job.key
                and (payload := self._payload(next_job)) is not None
            ):
                # The next request goes out before this result is handed over.
                self._begin(fast, conn, next_job, payload)
                went_on = True
            else:
                fast.put(job.key, conn)
        elif conn is not None:  # the server closes it (or it failed)
            conn.drop()
        engine.settle(job, result)
        if went_on:
            return
        if next_job is None:
            engine.idle(result)
        elif next_job.cancelled or next_job.run.closed:  # by the delivery
            engine.release(next_job)
            engine.idle(result)
        elif not self.start(next_job):
            engine.spawn(next_job)

    def drop(self, job: Job) -> None:
        """Cancel ``job``, in flight on a lane connection: close the
        connection and free the slot, as a cancelled worker would."""
        conn = job.conn
        job.conn = None
        if conn is not None:
            conn.lane = None
            conn.lane_job = None
            conn.drop()
        engine = self._engine
        engine.release(job)
        engine.dispatch()
