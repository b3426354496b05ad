"""A spec file read whole: YAML, or JSON when its name ends in .json (the cluster spec of
`gts serve --cluster` and the simulator, the simulator's preset maps and plan pools)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml


def read_spec_file(path: str | Path, error: Callable[[str], Exception] = ValueError) -> Any:
    """The parsed document; `error(message)` naming the file when it cannot be read or parsed."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{p}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    try:
        return json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise error(f"{p}: not valid YAML/JSON: {e}") from None
