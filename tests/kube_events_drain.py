"""Post every event a KubeEvents sink has queued, now, in the calling thread (no rate limit):
how tests see what the posting thread would write, without starting it."""

from __future__ import annotations

import queue

from scheduler.cluster.kube_events import KubeEvents


def drain(sink: KubeEvents) -> None:
    """Post everything queued now."""
    while True:
        try:
            ev = sink._queue.get_nowait()
        except queue.Empty:
            return
        sink._post(ev)
