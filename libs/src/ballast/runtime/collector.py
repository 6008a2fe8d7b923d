"""The garbage collector's settings for a service process: what start-up made is frozen out of its way, a service
that allocates much per message collects its youngest generation less often, and a burst of work that makes no
garbage in cycles runs without it (`paused`)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

# Python's default is (700, 10, 10): a young collection after every 700 net allocations. A service that allocates
# much per message or evaluation and keeps much alive (its views, the work in flight) then runs hundreds of
# collections a second under load, the older ones walking everything alive while every request waits. The price of
# this pace is a few MB more garbage between collections.
BUSY_SERVICE = (50_000, 20, 100)


def settle(threshold: tuple[int, int, int] | None = None) -> None:
    """Freezes every object alive now (modules, classes, models, opened resources: they live as long as the process,
    and the collector's full passes need not walk them again), and sets `threshold` when given."""
    gc.freeze()
    if threshold is not None:
        gc.set_threshold(*threshold)


_pauses = 0  # how many `paused` blocks are running (they may overlap: tasks)
_resume = False  # whether the collector was enabled when the first of them started


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """The collector off for a burst of work that makes and drops many objects without reference cycles (the
    slo-engine's evaluation cycle: its passes during a 10,000-SLO cycle found nothing to free, and took 40-70 ms of
    it). Reference counting frees them as ever; garbage in cycles made meanwhile waits for the first pass after.
    Blocks may overlap (tasks): the collector is back on when the last one ends, if it was on before the first."""
    global _pauses, _resume
    if _pauses == 0:
        _resume = gc.isenabled()
        gc.disable()
    _pauses += 1
    try:
        yield
    finally:
        _pauses -= 1
        if _pauses == 0 and _resume:
            gc.enable()
