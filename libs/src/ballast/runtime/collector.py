"""The garbage collector's settings for a service process: what start-up made is frozen out of its way, and a
service that allocates much per message collects its youngest generation less often."""

from __future__ import annotations

import gc

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
