"""The first line of a trace file, split as a CSV header: how a file's kind is recognised."""

from __future__ import annotations

from pathlib import Path


def csv_header(path: Path) -> tuple[str, tuple[str, ...]]:
    """(first line, its comma-separated cells stripped); OSError when the file cannot be read."""
    with path.open(encoding="utf-8") as f:
        first = f.readline().strip()
    return first, tuple(c.strip() for c in first.split(","))
