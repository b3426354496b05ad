"""A monotonic clock that a test moves by hand."""

from __future__ import annotations


class HandClock:
    """Callable like time.monotonic; reads `t`, which only the test moves."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt
