"""Shared test fixtures: the read-only data in ../shared (next to the repository)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_MISSING = "../shared not found: real traces/samples absent"


def shared_dir() -> Path:
    """The `shared` folder beside the repository (real traces, topology samples, fixtures)."""
    return SHARED


def require_shared(*parts: str) -> Path:
    """`shared_dir()/parts...`, or skip the calling test when it (or ../shared) is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED_MISSING} ({SHARED})")
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found in ../shared")
    return path


@pytest.fixture(scope="session")
def shared() -> Path:
    """Path of ../shared; skips the test when it is absent."""
    return require_shared()
