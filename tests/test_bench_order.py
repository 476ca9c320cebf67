"""The benchmark's order of clients in a round: a balanced Latin square."""

from __future__ import annotations

import sys
from collections import Counter
from itertools import pairwise
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from _harness import rotated


@given(st.integers(min_value=0, max_value=12))
def test_every_client_in_every_place_after_every_other_as_often(n: int) -> None:
    clients = [f"c{i}" for i in range(n)]
    rounds = n if n % 2 == 0 else 2 * n
    places: Counter[tuple[str, int]] = Counter()
    after: Counter[tuple[str, str]] = Counter()
    for r in range(rounds):
        order = rotated(clients, r)
        assert sorted(order) == sorted(clients)
        places.update((c, i) for i, c in enumerate(order))
        after.update(pairwise(order))
    assert len(set(places.values())) <= 1  # each place equally often
    if n >= 3:  # a rotation cannot vary the neighbours of 2 or fewer
        assert len(after) == n * (n - 1)  # every ordered pair occurs
        assert len(set(after.values())) == 1  # and as often


def test_four_clients_change_neighbours_every_round() -> None:
    orders = ["".join(rotated("ABCD", r)) for r in range(4)]
    assert orders == ["ABDC", "BCAD", "CDBA", "DACB"]
