"""The Lingjun trace's switch tree (`lingjun/lingjun_topo.csv`, 847 hosts): a real test case
for the network levels (DESIGN.md section 2)."""

from __future__ import annotations

import csv
from pathlib import Path

# Lingjun (Alibaba, 2023) switch tree: host -> ASW (top of rack) -> PSW (aggregation) -> DSW.
LINGJUN_LEVEL_KEYS: tuple[str, ...] = ("ASW", "PSW", "DSW")


def load_lingjun_topo(path: str | Path, *, qualify: bool = True) -> dict[str, dict[str, str]]:
    """Host -> {"ASW": ..., "PSW": ..., "DSW": ...} from the Lingjun `lingjun_topo.csv`.

    Switch names in that file are only unique under their parent (ASW `S14` exists under
    several PSWs), so by default each value is qualified by its ancestors (`G6/P10/S14`) and
    equal values mean the same physical switch. Raises ValueError naming a bad line.
    """
    out: dict[str, dict[str, str]] = {}
    with Path(path).open(newline="") as fh:
        reader = csv.DictReader(fh)
        want = ("ip", "DSW", "PSW", "ASW")
        missing = [c for c in want if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: line 1: missing column(s) {', '.join(missing)}")
        for row in reader:
            line = reader.line_num
            vals = {c: (row.get(c) or "").strip() for c in want}
            empty = [c for c in want if not vals[c]]
            if empty:
                raise ValueError(f"{path}: line {line}: empty {', '.join(empty)}")
            host = vals["ip"]
            if host in out:
                raise ValueError(f"{path}: line {line}: duplicate host {host}")
            dsw, psw, asw = vals["DSW"], vals["PSW"], vals["ASW"]
            if qualify:
                psw = f"{dsw}/{psw}"
                asw = f"{psw}/{asw}"
            out[host] = {"ASW": asw, "PSW": psw, "DSW": dsw}
    return out
