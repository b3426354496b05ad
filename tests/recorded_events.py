"""An EventSink that keeps every event in memory, so tests can check what was reported."""

from __future__ import annotations

import threading

from scheduler.cluster.events import Event


class RecordedEvents:
    """Keeps events in memory, for tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        """Record the event."""
        with self._lock:
            self.events.append(event)

    def reasons(self) -> list[str]:
        """The reasons recorded so far, in order."""
        with self._lock:
            return [e.reason for e in self.events]
