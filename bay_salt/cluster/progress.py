"""Progress display for long steps (rich), and subprocess runs that show it."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections import deque
from collections.abc import Iterator

from rich.console import Console
from rich.status import Status


class StepFailed(RuntimeError):
    pass


class Progress:
    """Each long step shows a spinner with its elapsed time and the latest
    output line; when it ends a line with its duration stays on screen."""

    def __init__(self, console: Console | None = None, quiet: bool = False):
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self._status: Status | None = None
        self._label = ""
        self._started = 0.0
        self.timings: dict[str, float] = {}

    def note(self, text: str) -> None:
        if not self.quiet:
            self.console.print(f"[green]✓[/] {text}")

    def detail(self, text: str) -> None:
        if self._status is not None:
            elapsed = time.monotonic() - self._started
            self._status.update(f"{self._label} [dim]({elapsed:.0f}s) {text[:90]}[/]")

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[None]:
        self._label, self._started = label, time.monotonic()
        status = None if self.quiet else self.console.status(label)
        self._status = status
        if status:
            status.start()
        try:
            yield
        finally:
            if status:
                status.stop()
            self._status = None
        took = time.monotonic() - self._started
        self.timings[label] = took
        self.note(f"{label} [dim]{took:.1f}s[/]")

    def run(self, cmd: list[str], label: str, **kwargs) -> None:
        """Run ``cmd``; its output feeds the spinner; on failure the last lines are shown."""
        tail: deque[str] = deque(maxlen=30)
        with self.step(label):
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)
            assert proc.stdout is not None
            for line in proc.stdout:
                tail.append(line.rstrip())
                self.detail(line.strip())
            if proc.wait() != 0:
                raise StepFailed(f"{label} failed ({' '.join(cmd[:3])} ... exit {proc.returncode}):\n" + "\n".join(tail))
