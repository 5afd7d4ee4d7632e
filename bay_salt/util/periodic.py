"""The tick of Bay's periodic loops (the metrics agents, the controller's
metrics round, the alert evaluator): on the interval's whole boundaries, so
each round's timestamp falls in its own Graphite slot and rounds on
different machines line up."""

from __future__ import annotations

import time
from collections.abc import Callable


def next_tick(interval: float, now: float) -> float:
    """The first whole multiple of ``interval`` after ``now`` (epoch seconds)."""
    return (now // interval + 1) * interval


def sleep_to_next(interval: float, clock: Callable[[], float] = time.time,
                  sleep: Callable[[float], None] = time.sleep) -> float:
    """Sleep until the next whole ``interval``; returns that tick."""
    tick = next_tick(interval, clock())
    sleep(max(0.0, tick - clock()))
    return tick
