"""One timer for many deadlines, tested as pure code on a fake loop clock."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from asyncfetch._watchdog import Deadlines, Watchdog


class FakeLoop:
    """The two things a Watchdog asks of a loop: the time and ``call_at``.
    ``advance`` runs the timers that are due, each at its own time."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, FakeTimer]] = []
        self._order = itertools.count()
        self.armed = 0  # call_at calls

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> FakeTimer:
        self.armed += 1
        timer = FakeTimer(callback)
        heapq.heappush(self._timers, (when, next(self._order), timer))
        return timer

    def pending(self) -> int:
        return sum(1 for *_, t in self._timers if not t.cancelled)

    def advance(self, to: float) -> None:
        while self._timers and self._timers[0][0] <= to:
            when, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                self.now = max(self.now, when)
                timer.callback()
        self.now = max(self.now, to)


class FakeTimer:
    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def watchdog(loop: FakeLoop, expire: Callable[[str], None]) -> Watchdog[str]:
    return Watchdog(cast(asyncio.AbstractEventLoop, loop), expire)


def test_an_item_is_told_at_the_earliest_time_it_was_given() -> None:
    loop = FakeLoop()
    told: list[tuple[str, float]] = []
    dog = watchdog(loop, lambda item: told.append((item, loop.now)))
    dog.watch("a", 5.0)
    dog.watch("a", 9.0)  # later: nothing changes
    dog.watch("b", 3.0)
    assert loop.armed == 2  # for 5, then moved to 3
    loop.advance(4.0)
    assert told == [("b", 3.0)]
    loop.advance(10.0)
    assert told == [("b", 3.0), ("a", 5.0)]
    assert len(dog) == 0
    assert loop.pending() == 0  # nothing left, no timer left


def test_a_moved_deadline_costs_no_timer() -> None:
    # A kept-alive connection moves its deadline with every request; only
    # when the first time comes does it ask again, for what is left.
    loop = FakeLoop()
    told: list[float] = []

    def expire(item: str) -> None:
        told.append(loop.now)
        if deadline[0] > loop.now:
            dog.watch(item, deadline[0])

    dog = watchdog(loop, expire)
    deadline = [30.0]
    dog.watch("conn", 30.0)
    for t in range(1, 100):  # one request a second, 30 s each
        loop.advance(float(t))
        deadline[0] = t + 30.0
        dog.watch("conn", deadline[0])
    # Told at 30 (the deadline then 59), at 59 (then 88), at 88; armed for
    # 117 now: four timers for 99 requests.
    assert told == [30.0, 59.0, 88.0]
    assert loop.armed == 4


def test_items_watched_again_while_the_timer_fires_keep_the_earliest() -> None:
    # While the timer fires, one item asks again for a time later than an
    # item not yet due: the timer must be armed for the earlier one.
    loop = FakeLoop()
    told: list[tuple[str, float]] = []

    def expire(item: str) -> None:
        told.append((item, loop.now))
        if item == "a" and loop.now < 10:
            dog.watch("a", 20.0)

    dog = watchdog(loop, expire)
    dog.watch("a", 1.0)
    dog.watch("b", 5.0)
    loop.advance(30.0)
    assert told == [("a", 1.0), ("b", 5.0), ("a", 20.0)]


def test_one_round_of_the_timer_arms_it_once() -> None:
    # Three items due together each ask again, every one earlier than the
    # last: the timer is armed once, for the earliest, after the round.
    loop = FakeLoop()
    again = {"a": 10.0, "b": 9.0, "c": 8.0}
    dog = watchdog(loop, lambda item: dog.watch(item, again.pop(item, 99.0)))
    for item in "abc":
        dog.watch(item, 1.0)
    armed = loop.armed
    loop.advance(1.0)
    assert loop.armed == armed + 1
    assert loop.pending() == 1
    loop.advance(8.0)
    assert "c" in dog  # told at 8 and watched again, for 99
    assert len(dog) == 3


def test_unwatched_items_are_not_told_and_their_entries_go() -> None:
    d: Deadlines[int] = Deadlines()
    for i in range(200):
        d.watch(i, float(i))
    for i in range(150):
        d.unwatch(i)
    assert len(d) == 50
    assert len(d._heap) < 200  # rebuilt without the stale entries
    assert 0 not in d
    assert 199 in d
    assert d.next_at() == 150.0
    assert d.due(1000.0) == list(range(150, 200))
    assert d.next_at() is None
    d.unwatch(7)  # not watched: nothing happens


ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("watch"),
            st.sampled_from("abcde"),
            st.floats(0, 100, allow_nan=False),
        ),
        st.tuples(st.just("unwatch"), st.sampled_from("abcde"), st.just(0.0)),
        st.tuples(st.just("advance"), st.just(""), st.floats(0, 30, allow_nan=False)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_no_deadline_is_missed_or_told_early(steps: list[Any]) -> None:
    loop = FakeLoop()
    # The reference: each item's earliest time given since it was last told
    # or unwatched.
    earliest: dict[str, float] = {}

    def expire(item: str) -> None:
        assert item in earliest
        assert earliest.pop(item) <= loop.now  # never early

    dog = watchdog(loop, expire)
    for op, item, value in steps:
        if op == "watch":
            at = loop.now + value
            earliest[item] = min(at, earliest.get(item, at))
            dog.watch(item, at)
        elif op == "unwatch":
            earliest.pop(item, None)
            dog.unwatch(item)
        else:
            loop.advance(loop.now + value)
            # never late: nothing that is due is still waiting
            assert all(at > loop.now for at in earliest.values())
        assert len(dog) == len(earliest)
        assert sorted(earliest) == sorted(i for i in "abcde" if i in dog)
    loop.advance(loop.now + 1000)
    assert earliest == {}
    assert len(dog) == 0
