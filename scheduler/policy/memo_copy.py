"""What a fresh copy of a snapshot may take over from the original's cached derived data, so
planning on the copy (a gang plan) does not rebuild it."""

from __future__ import annotations

from scheduler.policy.fragmentation import ClassStats
from scheduler.policy.snapshot import Snapshot


def copy_memo(src: Snapshot, dst: Snapshot) -> None:
    """Give a fresh copy of `src` its cached derived data, so planning on the copy does not
    rebuild it (the tables are read-only and shared; the statistics are copied)."""
    for key, value in src.memo.items():
        if isinstance(value, ClassStats):
            dst.memo[key] = value.copy()
        elif key == "flat_tables":
            dst.memo[key] = value
