"""A plain one-line progress bar for long runs (gts simulate, gts plan)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


class ProgressBar:
    """A plain one-line bar on stderr; silent when stderr is not a terminal or when quiet."""

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.total = max(total, 1)
        self.done = 0.0
        self.clock = clock
        self.t0 = clock()
        self.last = 0.0

    def update(self, done: float, label: str = "", force: bool = False) -> None:
        """Show `done` of `total` units with a label (redrawn at most 10 times a second)."""
        self.done = done
        if not self.enabled:
            return
        now = self.clock()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        width = 30
        frac = min(1.0, self.done / self.total)
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        el = int(now - self.t0)
        self.stream.write(f"\r[{bar}] {self.done:.0f}/{self.total} {label[:60]:<60} "
                          f"{el // 60:02d}:{el % 60:02d}")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.enabled:
            self.update(self.done, "done", force=True)
            self.stream.write("\n")
            self.stream.flush()
