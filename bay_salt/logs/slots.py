"""Connection slots for Bay's small TCP servers on a node (the log relay,
the log endpoint): a cap in all and per client address, so one client never
takes a server from the others, and refusals warned of once in a while, so
a flood of connections is not a flood of log lines."""

from __future__ import annotations

import threading


class Slots:
    """Connection slots: at most ``total`` at once and ``per_source`` from one
    address, so one client (idle, slow, or a thousand of them from one
    machine) never takes the endpoint from the others."""

    def __init__(self, total: int, per_source: int, warn_every: float = 10.0):
        self.total, self.per_source, self.warn_every = total, per_source, warn_every
        self.lock = threading.Lock()
        self.open: dict[str, int] = {}
        self.warned: dict[str, float] = {}

    def take(self, source: str) -> str | None:
        """None when ``source`` may have one more; else why not."""
        with self.lock:
            if self.open.get(source, 0) >= self.per_source:
                return f"{self.per_source} connections from {source} already"
            if sum(self.open.values()) >= self.total:
                return f"{self.total} connections already"
            self.open[source] = self.open.get(source, 0) + 1
            return None

    def give(self, source: str) -> None:
        with self.lock:
            left = self.open.get(source, 0) - 1
            if left > 0:
                self.open[source] = left
            else:
                self.open.pop(source, None)

    def warn(self, source: str, now: float) -> bool:
        """Whether to log a refusal from ``source`` now (once per ``warn_every`` seconds)."""
        with self.lock:
            if now - self.warned.get(source, float("-inf")) < self.warn_every:
                return False
            if len(self.warned) > 1000:
                self.warned.clear()
            self.warned[source] = now
            return True
