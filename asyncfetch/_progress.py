"""``progress=True``: a tqdm bar on stderr, fed with Stats snapshots."""

from __future__ import annotations

import sys
from collections.abc import Sized

from tqdm import tqdm

from ._models import Stats

__all__ = ["ProgressBar"]


class ProgressBar:
    """A progress bar on stderr: results done, their rate, ok and failed counts.

    The total is known when every call's input has a length (a list, a
    range); otherwise the bar counts up without one.
    """

    def __init__(self) -> None:
        self._bar = tqdm(
            total=0,
            unit=" results",
            file=sys.stderr,
            dynamic_ncols=True,
            leave=True,
            mininterval=0.1,
        )
        self._sized = True

    def add_input(self, urls: object) -> None:
        """A call started on ``urls``: grow the total, or drop it if unknown."""
        bar = self._bar
        if self._sized and isinstance(urls, Sized):
            bar.total = (bar.total or 0) + len(urls)
        else:
            self._sized = False
            bar.total = None
        bar.refresh()

    def __call__(self, stats: Stats) -> None:
        bar = self._bar
        bar.n = stats.completed
        bar.set_postfix(ok=stats.ok, failed=stats.failed, refresh=False)
        bar.refresh()

    def close(self) -> None:
        """Draw the final state and leave the bar on its line."""
        self._bar.close()
