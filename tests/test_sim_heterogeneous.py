"""The heterogeneous scenario (bench/heterogeneous.py): its cluster, its workload, and a short
replay through the command line."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from bench.heterogeneous import (
    HETERO_POOLS,
    TRACES,
    heterogeneous_cluster,
    heterogeneous_workload,
    run,
)
from scheduler.policy import build_snapshot
from scheduler.policy.gpu_models import matching_model_ids

needs_traces = pytest.mark.skipif(
    not (TRACES / "philly" / "philly_trace.csv").is_file(),
    reason=f"{TRACES} (../shared/traces) is absent: the scenario draws its jobs from it")


def test_cluster_has_the_four_generations_in_blocks() -> None:
    nodes = heterogeneous_cluster()
    assert len(nodes) == sum(c for c, *_ in HETERO_POOLS) == 96
    kinds = Counter(n.topology.name for n in nodes)
    assert kinds == {"dgx-h100": 5, "dgx-a100": 68, "dgx1-v100": 6, "pcie-8gpu-2socket": 17}
    assert all(n.levels[1].startswith("block-") for n in nodes)
    assert len({n.levels[1] for n in nodes}) == 12


@needs_traces
def test_workload_mixes_shares_multi_gpu_jobs_and_gangs_with_user_model_names() -> None:
    wl = heterogeneous_workload(0, "report", n_jobs=400)
    pods = wl.pods()
    assert any(p.is_share for p in pods)
    assert any(p.gpus >= 2 for p in pods)
    assert any(j.is_gang for j in wl.jobs)
    arrivals = [j.arrival_s for j in wl.jobs]
    assert arrivals == sorted(arrivals)
    snap = build_snapshot(heterogeneous_cluster())
    names = {m for p in pods for m in p.allowed_models}
    assert names and not names & set(snap.models)  # written as users do, not product strings
    for p in pods:
        if p.allowed_models:  # every written name reaches some node
            assert matching_model_ids(p.allowed_models, snap.models).size


@needs_traces
def test_tune_and_report_draw_disjoint_trace_rows() -> None:
    def sources(split: str) -> set[tuple[object, ...]]:
        wl = heterogeneous_workload(7, split, n_jobs=300)
        return {(j.duration_s, tuple((p.gpus, p.gpu_milli, p.cpu_milli) for p in j.pods))
                for j in wl.jobs if sum(p.gpus for p in j.pods) >= 2}

    # Same seed, other half of the traces: the multi-GPU jobs differ.
    assert sources("tune") != sources("report")
    with pytest.raises(ValueError, match="split"):
        heterogeneous_workload(0, "all")


@needs_traces
def test_short_replay_keeps_gangs_whole_for_ours(tmp_path: Path) -> None:
    rows = run(["topology", "default"], [3], "report", n_jobs=150)
    ours, default = rows
    assert ours.policy == "topology" and default.policy == "default"
    assert ours.max_incomplete_gang_gpus == 0
    assert ours.requests == default.requests > 0
    assert ours.multi_gpu_jobs == len(ours.bandwidths_gbps) > 0


@needs_traces
def test_command_line_writes_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    from bench.cli import main

    rc = main(["--scenario", "heterogeneous", "--seeds", "1", "--generated-jobs", "120",
               "--policies", "topology", "--out", str(tmp_path), "--quiet"])
    assert rc == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    assert set(doc["policies"]) == {"topology"} and doc["split"] == "report"
    assert "| ours (topology) |" in capsys.readouterr().out
