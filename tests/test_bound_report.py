"""The LP bound in the simulator's report: results.json's "bound" section and report.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.simulate import Scenario, simulate
from bench.workload_generator import generate_workload
from scheduler.contract.node import NodeSpec
from topology.presets import preset


def _nodes() -> list[NodeSpec]:
    kinds = ["dgx1-v100", "pcie-4gpu", "pcie-2gpu", "single-gpu"] * 3
    return [NodeSpec(f"n{i}", 64_000, 1 << 18, preset(k)) for i, k in enumerate(kinds)]


def test_every_policy_gets_its_gap_to_the_bound(tmp_path: Path) -> None:
    nodes = _nodes()
    gpus = sum(s.topology.n for s in nodes)
    scenario = Scenario(nodes=nodes, cluster_source="test",
                        workload=generate_workload(3, 200, capacity_gpus=gpus, load=1.4))
    md = simulate(scenario, modes=["fill"], policies=["fgd", "random", "topology"], seeds=[0, 1],
                  out=tmp_path / "rep", quiet=True)
    doc = json.loads((md.parent / "results.json").read_text())
    sec = doc["bound"]
    assert set(sec["per_seed"]) == {"0", "1"}
    for name in ("fgd", "random", "topology"):
        for x in ("100", "130"):
            assert sec["policies"][name]["gap"][x] >= -1e-9  # never below the bound
    ratio = sec["policies"]["fgd"]["gap_ratio"]
    assert all(v is None or v == pytest.approx(1.0) for v in ratio.values())
    assert "Gap to the LP bound" in md.read_text()


def test_no_bound_when_asked(tmp_path: Path) -> None:
    nodes = _nodes()
    scenario = Scenario(nodes=nodes, cluster_source="test",
                        workload=generate_workload(1, 60, capacity_gpus=40, load=1.4))
    md = simulate(scenario, modes=["fill"], policies=["random"], seeds=[0],
                  out=tmp_path / "rep", quiet=True, bound=False)
    assert "bound" not in json.loads((md.parent / "results.json").read_text())
