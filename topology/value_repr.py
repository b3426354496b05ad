"""A value as an error message shows it: its repr, cut short so one bad field cannot flood a log.

Here at the bottom of the import graph so that every parser (topology JSON, Node objects, the
cluster spec, extender messages) shows bad values the same way.
"""

from __future__ import annotations


def short_repr(value: object, limit: int = 80) -> str:
    """repr(value), ending in "..." at `limit` characters when longer."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."
