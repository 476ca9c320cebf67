"""The admission decisions, tested as pure code with a fake clock."""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from asyncfetch._scheduler import Scheduler


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def drain(s: Scheduler[str], now: float | None = None) -> list[str]:
    if now is not None:
        s.clock.now = now  # type: ignore[attr-defined]
    started = []
    while (job := s.pop()) is not None:
        started.append(job)
    return started


def test_global_cap_and_fifo_within_a_host() -> None:
    s: Scheduler[str] = Scheduler(concurrency=2, clock=Clock())
    for i in range(5):
        s.push("a", f"a{i}")
    assert drain(s) == ["a0", "a1"]
    assert s.active == 2
    assert s.waiting == 3
    s.release("a")
    assert drain(s) == ["a2"]


def test_held_back_host_takes_no_global_slot() -> None:
    # Slow host first in the input, its cap reached: the other host's jobs
    # still get every free global slot.
    s: Scheduler[str] = Scheduler(concurrency=10, per_host=2, clock=Clock())
    for i in range(40):
        s.push("slow", f"s{i}")
    for i in range(40):
        s.push("fast", f"f{i}")
    started = drain(s)
    assert Counter(j[0] for j in started) == {"s": 2, "f": 2}
    assert s.active < s.concurrency  # 6 free slots...
    assert s.pop() is None  # ...and nothing admissible
    s.release("fast")
    assert drain(s) == ["f2"]


def test_round_robin_across_ready_hosts() -> None:
    s: Scheduler[str] = Scheduler(concurrency=6, clock=Clock())
    for i in range(3):
        s.push("a", f"a{i}")
    for i in range(3):
        s.push("b", f"b{i}")
    assert drain(s) == ["a0", "b0", "a1", "b1", "a2", "b2"]


def test_hold_delays_a_host_until_its_time() -> None:
    s: Scheduler[str] = Scheduler(concurrency=4, clock=Clock())
    s.hold("a", 5.0)
    s.push("a", "a0")
    s.push("b", "b0")
    assert drain(s, 0.0) == ["b0"]
    assert s.next_wakeup() == 5.0
    assert s.held_until("a") == 5.0
    assert drain(s, 4.999) == []
    assert drain(s, 5.0) == ["a0"]
    assert s.next_wakeup() is None


def test_hold_while_in_the_ready_ring() -> None:
    s: Scheduler[str] = Scheduler(concurrency=1, clock=Clock())
    s.push("a", "a0")
    s.push("a", "a1")
    assert drain(s) == ["a0"]
    s.clock.now = 1.0  # type: ignore[attr-defined]
    s.hold("a", 2.0)  # a pause arrives while a1 waits
    s.release("a")
    assert drain(s, 1.5) == []
    assert drain(s, 2.0) == ["a1"]


def test_push_front_puts_a_job_at_the_head_of_its_host() -> None:
    s: Scheduler[str] = Scheduler(concurrency=1, clock=Clock())
    s.push("a", "a0")
    s.push("a", "retry", front=True)
    assert drain(s) == ["retry"]


def test_remove_drops_waiting_jobs_and_idle_hosts() -> None:
    s: Scheduler[str] = Scheduler(concurrency=1, clock=Clock())
    for job in ["x1", "y1", "x2"]:
        s.push(job[0], job)
    assert drain(s) == ["x1"]
    assert sorted(s.remove(lambda j: j.startswith("y"))) == ["y1"]
    assert s.waiting == 1
    assert sorted(s.waiting_jobs()) == ["x2"]
    s.release("x")
    assert drain(s) == ["x2"]
    s.release("x")
    assert s.host_active("x") == 0
    assert "hosts=0" in repr(s)


def test_hosts_are_forgotten_when_idle() -> None:
    s: Scheduler[str] = Scheduler(concurrency=10, clock=Clock())
    for i in range(1000):
        s.push(f"h{i}", f"h{i}")
    done = 0
    while started := drain(s):
        for job_host in started:
            s.release(job_host)
            done += 1
    assert done == 1000
    assert "hosts=0" in repr(s)
    s.hold("h", 1.0)
    assert drain(s, 2.0) == []
    assert "hosts=0" in repr(s)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(0, 4)),
        st.tuples(st.just("pop"), st.just(0)),
        st.tuples(st.just("release"), st.integers(0, 50)),
        st.tuples(st.just("hold"), st.integers(0, 4)),
        st.tuples(st.just("tick"), st.integers(1, 3)),
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(concurrency=st.integers(1, 5), per_host=st.none() | st.integers(1, 3), ops=ops)
def test_invariants(concurrency: int, per_host: int | None, ops: list) -> None:
    """Caps hold, FIFO per host, nothing lost, and the scheduler is work-conserving."""
    clock = Clock()
    s: Scheduler[tuple[int, int]] = Scheduler(concurrency, per_host, clock=clock)
    now = 0.0
    seq = 0
    running: list[tuple[int, int]] = []
    queued: dict[int, list[int]] = defaultdict(list)
    held: dict[int, float] = {}
    for op, arg in ops:
        if op == "push":
            s.push(arg, (arg, seq))
            queued[arg].append(seq)
            seq += 1
        elif op == "pop":
            job = s.pop()
            if job is not None:
                host, n = job
                assert queued[host][0] == n  # FIFO within a host
                queued[host].pop(0)
                assert held.get(host, 0.0) <= now  # never before its hold
                running.append(job)
            else:  # work-conserving: nothing could have started
                free = len(running) < concurrency
                for host, jobs in queued.items():
                    busy = sum(1 for h, _ in running if h == host)
                    capped = per_host is not None and busy >= per_host
                    assert not (
                        free and jobs and not capped and held.get(host, 0) <= now
                    )
        elif op == "release" and running:
            host, _ = running.pop(arg % len(running))
            s.release(host)
        elif op == "hold":
            until = now + 2
            s.hold(arg, until)
            held[arg] = max(held.get(arg, 0.0), until)
        elif op == "tick":
            now += arg
            clock.now = now
        assert s.active == len(running) <= concurrency
        if per_host is not None:
            assert max(Counter(h for h, _ in running).values(), default=0) <= per_host
        assert s.waiting == sum(len(v) for v in queued.values())


def test_the_clock_is_read_only_while_a_host_is_held() -> None:
    clock = Clock()
    s: Scheduler[str] = Scheduler(concurrency=2, per_host=1, clock=clock)
    for i in range(50):
        s.push(f"h{i % 3}", f"h{i % 3}")
        for host in drain(s):
            s.release(host)
    assert clock.reads == 0
    s.hold("h0", 1.0)
    assert clock.reads > 0


# -- the least gap between starts to a host (a crawl delay) --------------------


def test_a_gap_spaces_the_starts_of_one_host_only() -> None:
    clock = Clock()
    s: Scheduler[str] = Scheduler(concurrency=10, clock=clock)
    s.set_gap("slow", 2.0)
    for i in range(3):
        s.push("slow", f"s{i}")
        s.push("fast", f"f{i}")
    assert sorted(drain(s)) == ["f0", "f1", "f2", "s0"]  # the others wait
    assert s.next_wakeup() == 2.0
    assert drain(s, now=1.9) == []
    assert drain(s, now=2.0) == ["s1"]
    assert drain(s, now=3.0) == []
    assert drain(s, now=4.5) == ["s2"]
    s.set_gap("slow", 0)  # removed: no more waiting after a start
    s.push("slow", "s3")
    s.push("slow", "s4")
    assert drain(s, now=6.5) == ["s3", "s4"]


def test_a_redirect_hop_keeps_the_gap() -> None:
    clock = Clock()
    s: Scheduler[str] = Scheduler(concurrency=10, clock=clock)
    s.set_gap("h", 1.0)
    s.push("h", "a")
    s.push("h", "b")
    assert drain(s) == ["a"]
    clock.now = 0.25
    assert s.reserve("h") == 0.75  # the hop waits for the gap after "a"
    assert drain(s, now=1.0) == []  # and "b" for a gap after the hop
    assert drain(s, now=2.0) == ["b"]
    assert s.reserve("other") == 0.0


gap_ops = st.lists(
    st.tuples(
        st.sampled_from(["push", "pop", "release", "tick"]), st.sampled_from("ab")
    ),
    max_size=60,
)


@settings(deadline=None)
@given(gap=st.floats(0.1, 3.0), rate=st.none() | st.floats(0.5, 20), ops=gap_ops)
def test_starts_of_a_gapped_host_are_never_closer_than_the_gap(
    gap: float, rate: float | None, ops: list[tuple[str, str]]
) -> None:
    clock = Clock()
    s: Scheduler[str] = Scheduler(concurrency=3, clock=clock, rate=rate)
    s.set_gap("a", gap)
    starts: dict[str, list[float]] = defaultdict(list)
    active: Counter[str] = Counter()
    for op, host in ops:
        if op == "push":
            s.push(host, host)
        elif op == "pop":
            job = s.pop()
            if job is not None:
                starts[job].append(clock.now)
                active[job] += 1
        elif op == "release" and active[host]:
            s.release(host)
            active[host] -= 1
        elif op == "tick":
            clock.now += 0.37
    times = starts["a"]
    assert all(b - a >= gap - 1e-9 for a, b in pairwise(times))
