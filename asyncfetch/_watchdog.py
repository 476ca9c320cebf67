"""One loop timer for many deadlines.

A timer per connection (or per connection being opened) costs a
``TimerHandle``, a copied ``contextvars.Context`` and a bound method each,
four objects the collector then tracks, and a ``call_at`` per connection;
hundreds of connections opened at once pay that hundreds of times. Here one
timer serves them all: :class:`Deadlines` is the decision, pure and fed the
time (a heap of the earliest time asked for each item), and
:class:`Watchdog` binds it to the loop's timer.

The contract is *no later than*: after ``watch(item, at)``, ``expire(item)``
is called once at or after the earliest ``at`` given since the item was
last expired or unwatched. A later ``at`` for an item already watched
changes nothing (no heap entry, no timer: the common case of a kept-alive
connection sending its next request); when the earlier time comes, the
caller checks the item's real deadline and watches it again if that is
still ahead. So a deadline is never missed, and moving one later is free.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["Deadlines", "Watchdog"]

T = TypeVar("T", bound=Hashable)

# Entries of unwatched items are left in the heap (a heap cannot remove one
# cheaply) and skipped when they come up; the heap is rebuilt without them
# once they are this many and outnumber the live ones.
_COMPACT_AT = 64


class Deadlines(Generic[T]):
    """The earliest time asked for each watched item. Pure; no clock of its own.

    Example:
        >>> d: Deadlines[str] = Deadlines()
        >>> d.watch("a", 5.0), d.watch("a", 9.0), d.next_at()
        (True, False, 5.0)
        >>> d.due(4.0), d.due(5.0), d.next_at()
        ([], ['a'], None)
    """

    def __init__(self) -> None:
        # [at, order, item]; the item is None once the entry is stale.
        self._heap: list[list[Any]] = []
        self._entries: dict[T, list[Any]] = {}
        self._order = itertools.count()
        self._stale = 0

    def __len__(self) -> int:
        """How many items are watched."""
        return len(self._entries)

    def __contains__(self, item: object) -> bool:
        return item in self._entries

    def watch(self, item: T, at: float) -> bool:
        """Be told about ``item`` no later than ``at``; True if that is now
        the earliest time of any item (the timer must move)."""
        entry = self._entries.get(item)
        if entry is not None:
            if entry[0] <= at:
                return False  # told earlier anyway
            entry[2] = None
            self._stale += 1
        entry = [at, next(self._order), item]
        self._entries[item] = entry
        heapq.heappush(self._heap, entry)
        return self._heap[0] is entry

    def unwatch(self, item: T) -> None:
        """Forget ``item`` (nothing is due for it any more)."""
        entry = self._entries.pop(item, None)
        if entry is None:
            return
        entry[2] = None
        self._stale += 1
        if self._stale >= _COMPACT_AT and self._stale > len(self._entries):
            self._heap = [e for e in self._heap if e[2] is not None]
            heapq.heapify(self._heap)
            self._stale = 0

    def due(self, now: float) -> list[T]:
        """The items whose time has come by ``now``, earliest first; they
        are no longer watched."""
        heap = self._heap
        items: list[T] = []
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            item = entry[2]
            if item is None:
                self._stale -= 1
                continue
            del self._entries[item]
            items.append(item)
        return items

    def next_at(self) -> float | None:
        """The earliest time of a watched item, if any."""
        heap = self._heap
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
            self._stale -= 1
        return float(heap[0][0]) if heap else None


class Watchdog(Generic[T]):
    """Calls ``expire(item)`` once an item's time comes, on one loop timer."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, expire: Callable[[T], None]
    ) -> None:
        self._loop = loop
        self._expire = expire
        self._deadlines: Deadlines[T] = Deadlines()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._firing = False

    def __len__(self) -> int:
        """How many items are watched."""
        return len(self._deadlines)

    def __contains__(self, item: object) -> bool:
        return item in self._deadlines

    def watch(self, item: T, at: float) -> None:
        """Call ``expire(item)`` no later than ``at`` (loop time)."""
        if (
            self._deadlines.watch(item, at)
            and not self._firing  # the timer is armed once the round is over
            and (self._timer is None or at < self._timer_at)
        ):
            self._arm(at)

    def unwatch(self, item: T) -> None:
        """Forget ``item``; the timer stays (it finds nothing due, and re-arms)."""
        self._deadlines.unwatch(item)

    def close(self) -> None:
        """Stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._firing = True
        try:
            for item in self._deadlines.due(self._loop.time()):
                self._expire(item)  # may watch it again, for a later time
        finally:
            self._firing = False
            at = self._deadlines.next_at()
            if at is not None:
                self._arm(at)
