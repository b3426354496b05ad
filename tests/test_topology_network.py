"""Network levels from node labels, with the real Lingjun switch tree as a test case."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest
from conftest import require_shared
from lingjun_topo import LINGJUN_LEVEL_KEYS, load_lingjun_topo

from topology.network import (
    common_level,
    domain_ids,
    level_ids,
    level_names,
)

KEYS = ("accel", "block", "spine")


def coded(labels: list[dict[str, str]], keys: tuple[str, ...] = KEYS) -> np.ndarray:
    return level_ids([level_names(lbl, keys) for lbl in labels])


def lowest_common_level(labels: list[dict[str, str]], keys: tuple[str, ...]) -> int | None:
    return common_level(coded(labels, keys), np.arange(len(labels)))


def groups(dom: np.ndarray) -> list[list[int]]:
    """Node index groups of a domain_ids column, ordered by their first node."""
    out: dict[int, list[int]] = {}
    for i, d in enumerate(dom.tolist()):
        out.setdefault(d, []).append(i)
    return list(out.values())


def _lingjun() -> dict[str, dict[str, str]]:
    return load_lingjun_topo(require_shared("traces", "lingjun", "lingjun_topo.csv"))


def test_lowest_common_level() -> None:
    a = {"accel": "nvl0", "block": "b0", "spine": "s0"}
    b = {"accel": "nvl1", "block": "b0", "spine": "s0"}
    c = {"accel": "nvl2", "block": "b1", "spine": "s0"}
    assert lowest_common_level([a, dict(a)], KEYS) == 0
    assert lowest_common_level([a, b], KEYS) == 1
    assert lowest_common_level([a, b, c], KEYS) == 2
    assert lowest_common_level([a, {"spine": "s1"}], KEYS) is None
    assert lowest_common_level([a], KEYS) == 0
    assert lowest_common_level([], KEYS) is None
    # Missing labels never match, not even each other.
    assert lowest_common_level([{"block": "b0"}, {"block": "b0"}], KEYS) == 1
    assert lowest_common_level([{}, {}], KEYS) is None


def test_level_ids_and_domains() -> None:
    labels = [
        {"accel": "x", "block": "b0"},
        {"block": "b0"},
        {"accel": "x", "block": "b1"},
        {},
    ]
    ids = coded(labels)
    assert ids.dtype == np.int32 and ids.shape == (4, 3)
    assert ids.tolist() == [[0, 0, -1], [-1, 0, -1], [0, 1, -1], [-1, -1, -1]]
    assert groups(domain_ids(ids, 0)) == [[0, 2], [1], [3]]
    assert groups(domain_ids(ids, 1)) == [[0, 1], [2], [3]]
    assert groups(domain_ids(ids, 2)) == [[0], [1], [2], [3]]
    assert groups(domain_ids(ids, None)) == [[0, 1, 2, 3]]
    # Unlabelled nodes get ids above every real domain, never one another's.
    assert domain_ids(ids, 0).tolist() == [0, 2, 0, 4]
    assert common_level(ids, [0, 2]) == 0
    assert common_level(ids, [0, 1]) == 1
    assert common_level(ids, [1, 3]) is None
    assert common_level(ids, []) is None


def test_an_empty_label_or_a_short_tuple_is_no_domain() -> None:
    assert level_names({"accel": "", "block": "b"}, KEYS) == ("", "b", "")
    ids = level_ids([("", "b"), ("x",), ()])
    assert ids.tolist() == [[-1, 0], [0, -1], [-1, -1]]
    assert level_ids([]).shape == (0, 0)
    assert domain_ids(level_ids([("",)]), 0).tolist() == [0]


def test_lingjun_tree() -> None:
    topo = _lingjun()
    assert len(topo) == 847
    hosts = list(topo)
    per_asw = collections.Counter(t["ASW"] for t in topo.values())
    assert max(per_asw.values()) <= 8
    assert len(per_asw) == 119
    assert len({t["PSW"] for t in topo.values()}) == 3
    assert len({t["DSW"] for t in topo.values()}) == 1
    by_asw: dict[str, list[str]] = collections.defaultdict(list)
    for h in hosts:
        by_asw[topo[h]["ASW"]].append(h)
    same_asw = next(v for v in by_asw.values() if len(v) >= 2)[:2]
    assert lowest_common_level([topo[h] for h in same_asw], LINGJUN_LEVEL_KEYS) == 0
    a = hosts[0]
    same_psw = next(h for h in hosts if topo[h]["PSW"] == topo[a]["PSW"]
                    and topo[h]["ASW"] != topo[a]["ASW"])  # fmt: skip
    other_psw = next(h for h in hosts if topo[h]["PSW"] != topo[a]["PSW"])
    assert lowest_common_level([topo[a], topo[same_psw]], LINGJUN_LEVEL_KEYS) == 1
    assert lowest_common_level([topo[a], topo[other_psw]], LINGJUN_LEVEL_KEYS) == 2
    ids = coded([topo[h] for h in hosts], LINGJUN_LEVEL_KEYS)
    assert ids.shape == (847, 3)
    assert [len(set(domain_ids(ids, i).tolist())) for i in range(3)] == [119, 3, 1]
    assert common_level(ids, np.arange(847)) == 2


def test_lingjun_names_need_qualifying() -> None:
    # ASW names repeat under different PSWs; unqualified they would merge distinct switches.
    raw = load_lingjun_topo(require_shared("traces", "lingjun", "lingjun_topo.csv"), qualify=False)
    assert max(collections.Counter(t["ASW"] for t in raw.values()).values()) > 8


def test_lingjun_loader_errors(tmp_path: Path) -> None:
    bad = tmp_path / "t.csv"
    bad.write_text("ip,DSW,PSW\nh1,G1,P1\n")
    with pytest.raises(ValueError, match="missing column"):
        load_lingjun_topo(bad)
    bad.write_text("ip,DSW,PSW,ASW\nh1,G1,P1,S1\nh1,G1,P1,S2\n")
    with pytest.raises(ValueError, match="line 3: duplicate host h1"):
        load_lingjun_topo(bad)
    bad.write_text("ip,DSW,PSW,ASW\nh1,G1,,S1\n")
    with pytest.raises(ValueError, match="line 2: empty PSW"):
        load_lingjun_topo(bad)
