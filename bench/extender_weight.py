"""What the extender `weight` in kube-scheduler's config does, measured: the shipped default.

kube-scheduler sums its score plugins (0..100 each x plugin weight) and every extender's
0..10 priority x extender weight x 10, then takes a top node at random
(scheduler.extender.scores has the formula). `CombinedPolicy` replays exactly that for one pod:
our filter, our 0..10 priorities (scheduler.extender.scores.extender_scores), the default
profile's NodeResourcesFit (LeastAllocated) + BalancedAllocation scores
(bench.baselines.default.KubeDefaultPolicy.node_scores), random tie-break, and our GPUs on the
node kube-scheduler picked (what our bind verb assigns). Gangs are planned by us and steered to
their reserved nodes (the extender answers 10 there and 0 elsewhere), assumed to land.

    python -m bench.extender_weight [--seeds 2] [--weights 1,2,5,12,20,50]

runs the heterogeneous scenario's tuning split and prints, per weight, how often kube-scheduler
took a node we scored below 10 and the README table's columns.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from bench.baselines.default import KubeDefaultPolicy, free_gpu_counts
from bench.heterogeneous import DEFAULT_JOBS, DEFAULT_LOAD, run, summary
from scheduler.cli import exit_code_of
from scheduler.constants import MAX_EXTENDER_PRIORITY
from scheduler.contract.assignment import Assignment
from scheduler.contract.request import PodRequest
from scheduler.extender.scores import extender_scores
from scheduler.policy.config import DEFAULT_CONFIG, PolicyConfig
from scheduler.policy.interface import PlacementPolicy
from scheduler.policy.node_filter import filter_nodes
from scheduler.policy.score_and_assign import assign, score_nodes
from scheduler.policy.snapshot import Snapshot
from scheduler.policy.topology_policy import TopologyPolicy

# MaxNodeScore / MaxExtenderPriority in kube-scheduler (schedule_one.go prioritizeNodes).
EXTENDER_SCALE = 100 // MAX_EXTENDER_PRIORITY
WEIGHTS = (1, 2, 5, 12, 20, 50)


class CombinedPolicy:
    """kube-scheduler's default scores plus our extender's at `weight` (module docstring)."""

    def __init__(self, weight: int, seed: int, config: PolicyConfig = DEFAULT_CONFIG) -> None:
        self.name = f"topology+kube(weight={weight})"
        self.weight = weight
        self.ours = TopologyPolicy(config)
        self.kube = KubeDefaultPolicy(seed)
        self.rng = np.random.default_rng(seed)
        self.decisions = 0
        self.overridden = 0

    def place(self, req: PodRequest, snap: Snapshot) -> Assignment | None:
        """One pod through filter, both scores, kube-scheduler's sum and our bind."""
        cfg, workload = self.ours.config, self.ours.workload
        fr = filter_nodes(req, snap, None, cfg)
        idx = fr.feasible
        if not idx.size:
            return None
        total = self.kube.node_scores(req, snap, idx, free_gpu_counts(snap)).astype(np.float64)
        if req.wants_gpu:
            ext = extender_scores(score_nodes(req, snap, idx, workload, cfg), idx, cfg)
            total = total + ext * self.weight * EXTENDER_SCALE
        top = np.flatnonzero(total == total.max())
        j = int(top[self.rng.integers(len(top))])
        if req.wants_gpu:
            self.decisions += 1
            self.overridden += int(ext[j] < MAX_EXTENDER_PRIORITY)
        return assign(req, snap, int(idx[j]), cfg, workload)

    def place_gang(self, members: Sequence[PodRequest], snap: Snapshot) -> list[Assignment] | None:
        """Our gang plan (the extender steers each member to its reserved node)."""
        return self.ours.place_gang(members, snap)

    def observe(self, req: PodRequest) -> None:
        """Our typical workload learns from arrivals, as in the extender."""
        self.ours.observe(req)


def measure(weights: Sequence[int], seeds: Sequence[int], n_jobs: int, load: float) -> None:
    """Print, per weight, the override rate and the table's medians (tuning split)."""
    for w in weights:
        made: list[CombinedPolicy] = []

        def factory(name: str, seed: int, w: int = w,
                    made: list[CombinedPolicy] = made) -> PlacementPolicy:
            p = CombinedPolicy(w, seed)
            made.append(p)
            return p

        rows = run(["combined"], seeds, "tune", n_jobs, load, factory=factory)
        s = summary(rows)[rows[0].policy]
        dec = sum(p.decisions for p in made)
        over = sum(p.overridden for p in made)
        print(f"weight={w}: kube-scheduler took a node we scored below 10 in "
              f"{100 * over / max(dec, 1):.1f}% of {dec} GPU pods; placed "
              f"{s['requests_placed']:.0f}, unalloc-waiting {s['unallocated_waiting_pct']:.1f}%, "
              f"GB/s p10 {s['bw_p10_gbps']:.1f}, JCT median {s['jct_median_h']:.2f} h "
              f"mean {s['jct_mean_h']:.2f} h", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (module docstring)."""
    p = argparse.ArgumentParser(prog="python -m bench.extender_weight", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--weights", default=",".join(str(w) for w in WEIGHTS))
    p.add_argument("--jobs", type=int, default=DEFAULT_JOBS)
    p.add_argument("--load", type=float, default=DEFAULT_LOAD)
    a = p.parse_args(argv)
    weights = [int(x) for x in a.weights.split(",") if x.strip()]
    measure(weights, range(100, 100 + a.seeds), a.jobs, a.load)
    return 0


if __name__ == "__main__":
    raise SystemExit(exit_code_of(main))
