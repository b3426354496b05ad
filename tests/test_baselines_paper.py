"""The FGD paper check on the real Alibaba trace, one seed (the report runs the 10-seed median).

Published (Weng et al., ATC'23, artifact median of 10 seeds, default trace, 1,213 GPU nodes),
unallocated GPU % at 100 % arrived: Random 13.75, BestFit 7.09, FGD 4.77. One seed of ours
must land within one percentage point (seed-to-seed spread is about 0.3 points).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.baselines import make_policy
from bench.clusters import load_cluster
from bench.fill_replay import replay_fill
from bench.metrics import at_arrived
from bench.workloads import load_workload

PUBLISHED_AT_100 = {"random": 13.75, "bestfit": 7.09, "fgd": 4.77}


@pytest.mark.slow
def test_one_seed_lands_near_the_published_numbers(shared: Path) -> None:
    trace = shared / "traces" / "alibaba-gpu-v2023"
    nodes = load_cluster(trace / "openb_node_list_gpu_node.csv")
    pods = load_workload(trace / "openb_pod_list_default.csv").pods()
    got = {}
    for name, want in PUBLISHED_AT_100.items():
        r = replay_fill(make_policy(name, 42), nodes, pods, seed=42)
        got[name] = 100.0 - at_arrived(r.arrived_pct, r.allocated_pct, 100)
        assert abs(got[name] - want) < 1.0, (name, got[name], want)
    assert got["fgd"] < got["bestfit"] < got["random"]
