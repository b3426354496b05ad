"""How the shipped bandwidth_weight and premium_weight were chosen: a sweep of our policy on
the heterogeneous scenario's *tuning* half of the traces (bench.heterogeneous, split="tune",
seeds 100+), never on the rows the README reports.

    python -m bench.weight_sweep [--seeds 2] [--jobs 3000] [--load 1.2]
    python -m bench.weight_sweep --alibaba [--seeds 10]
    python -m bench.weight_sweep --compare pattern_weight=0.5,10 [--seeds 9]

The first prints one line per (bandwidth_weight, premium_weight): medians over the seeds of the
README table's columns. The second checks that a candidate does not cost packing where FGD is
the peer: the Alibaba trace's fill protocol (README "The Alibaba trace"), unallocated GPU % at
100 % arrived, median of seeds 0..N-1, per candidate. The third is a paired A/B of one
PolicyConfig weight on the dynamic scenario, for a weight tuned elsewhere (on fill runs): the
same seeds of both halves (report 0..N-1, tuning 100..) with each value, one line per seed
and value, then how requests placed and mean JCT moved from the first value to the second.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from bench.heterogeneous import DEFAULT_JOBS, DEFAULT_LOAD, run, summary
from bench.variants import parse_overrides
from scheduler.cli import exit_code_of
from scheduler.policy.config import DEFAULT_CONFIG, PolicyConfig
from scheduler.policy.interface import PlacementPolicy
from scheduler.policy.topology_policy import TopologyPolicy

BANDWIDTH_WEIGHTS = (0.0, 1.0, 4.0, 16.0, 1.0e4)
PREMIUM_WEIGHTS = (0.0, 0.01, 0.04)
TUNING_SEEDS_FROM = 100


def sweep(seeds: Sequence[int], n_jobs: int, load: float,
          bandwidth: Sequence[float] = BANDWIDTH_WEIGHTS,
          premium: Sequence[float] = PREMIUM_WEIGHTS
          ) -> list[tuple[float, float, dict[str, float]]]:
    """Medians per (bandwidth_weight, premium_weight) on the tuning split."""
    out = []
    for bw in bandwidth:
        for pw in premium:
            cfg = dataclasses.replace(DEFAULT_CONFIG, bandwidth_weight=bw, premium_weight=pw)

            def factory(name: str, seed: int, cfg: object = cfg) -> PlacementPolicy:
                assert isinstance(cfg, type(DEFAULT_CONFIG))
                return TopologyPolicy(cfg)

            rows = run(["topology"], seeds, "tune", n_jobs, load, factory=factory)
            out.append((bw, pw, summary(rows)["topology"]))
            s = out[-1][2]
            print(f"bandwidth_weight={bw:g} premium_weight={pw:g}: placed "
                  f"{s['requests_placed']:.0f}, unalloc-waiting "
                  f"{s['unallocated_waiting_pct']:.1f}%,"
                  f" GB/s median {s['bw_median_gbps']:.1f} p10 {s['bw_p10_gbps']:.1f}, JCT median "
                  f"{s['jct_median_h']:.2f} h mean {s['jct_mean_h']:.2f} h", flush=True)
    return out


ALIBABA_CANDIDATES = ((0.0, 0.0), (4.0, 0.0), (4.0, 0.01), (4.0, 0.04))


def alibaba_check(seeds: Sequence[int],
                  candidates: Sequence[tuple[float, float]] = ALIBABA_CANDIDATES) -> None:
    """Fill-protocol unallocated GPU % (100 % arrived, median over seeds) per candidate."""
    import numpy as np

    from bench.baselines.typical_pods import typical_pods_of
    from bench.clusters import load_cluster
    from bench.fill_replay import replay_fill
    from bench.heterogeneous import TRACES
    from bench.seed_summary import fill_seed
    from bench.workloads import load_workload

    base = TRACES / "alibaba-gpu-v2023"
    nodes = load_cluster(base / "openb_node_list_gpu_node.csv")
    pods = load_workload(base / "openb_pod_list_default.csv").pods()
    typical = typical_pods_of(pods)
    for bw, pw in candidates:
        cfg = dataclasses.replace(DEFAULT_CONFIG, bandwidth_weight=bw, premium_weight=pw)
        vals = []
        for seed in seeds:
            r = replay_fill(TopologyPolicy(cfg), nodes, pods, seed=seed, typical=typical)
            un = fill_seed(r)["unallocated_gpu_pct"]
            assert isinstance(un, dict)
            vals.append(float(un["100"]))
        print(f"bandwidth_weight={bw:g} premium_weight={pw:g}: Alibaba fill unallocated % at "
              f"100 % arrived, median of {len(vals)} seeds: {float(np.median(vals)):.2f}",
              flush=True)


def compare(name: str, values: tuple[float, float], seeds: int, n_jobs: int, load: float,
            out: TextIO = sys.stdout) -> list[tuple[str, int, float, float]]:
    """Paired A/B of PolicyConfig.`name` on both halves of the heterogeneous scenario; returns
    (split, seed, placed difference, mean-JCT difference in hours), second value minus first."""
    diffs = []
    for split, first in (("report", 0), ("tune", TUNING_SEEDS_FROM)):
        for seed in range(first, first + seeds):
            got = []
            for v in values:
                change: dict[str, Any] = {name: v}
                cfg = dataclasses.replace(DEFAULT_CONFIG, **change)

                def factory(_name: str, _seed: int, cfg: PolicyConfig = cfg) -> PlacementPolicy:
                    return TopologyPolicy(cfg)

                rows = run(["topology"], [seed], split, n_jobs, load, factory=factory)
                s = summary(rows)["topology"]
                got.append(s)
                print(f"{split} seed {seed} {name}={v:g}: placed {s['requests_placed']:.0f}, "
                      f"unalloc-waiting {s['unallocated_waiting_pct']:.1f}%, GB/s p10 "
                      f"{s['bw_p10_gbps']:.1f}, JCT median {s['jct_median_h']:.2f} h mean "
                      f"{s['jct_mean_h']:.2f} h", file=out, flush=True)
            diffs.append((split, seed, got[1]["requests_placed"] - got[0]["requests_placed"],
                          got[1]["jct_mean_h"] - got[0]["jct_mean_h"]))
    placed = [d[2] for d in diffs]
    jct = [d[3] for d in diffs]
    print(f"{name} {values[0]:g} -> {values[1]:g}, {len(diffs)} paired seeds: requests placed "
          f"{sum(p > 0 for p in placed)} up, {sum(p < 0 for p in placed)} down, "
          f"{sum(p == 0 for p in placed)} equal (change {min(placed):+.0f} to {max(placed):+.0f}, "
          f"median {statistics.median(placed):+.1f}); mean JCT change {min(jct):+.2f} to "
          f"{max(jct):+.2f} h", file=out, flush=True)
    return diffs


def parse_compare(text: str) -> tuple[str, tuple[float, float]]:
    """NAME=A,B: a PolicyConfig weight and the two values to compare (ValueError naming it)."""
    name, eq, rest = text.partition("=")
    parts = rest.split(",")
    if not eq or len(parts) != 2:
        raise ValueError(f"{text!r}: expected NAME=A,B (two values of one PolicyConfig weight)")
    # One at a time: PolicyConfig's range check sees each value (a dict of both keeps one).
    a, b = (parse_overrides([f"{name}={v}"])[0][1] for v in parts)
    return name, (a, b)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: the sweep on seeds TUNING_SEEDS_FROM.. of the tuning split."""
    p = argparse.ArgumentParser(prog="python -m bench.weight_sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--jobs", type=int, default=DEFAULT_JOBS)
    p.add_argument("--load", type=float, default=DEFAULT_LOAD)
    p.add_argument("--alibaba", action="store_true",
                   help="the Alibaba fill check of ALIBABA_CANDIDATES instead of the sweep")
    p.add_argument("--compare", metavar="NAME=A,B",
                   help="paired A/B of one PolicyConfig weight on both halves of the scenario")
    a = p.parse_args(argv)
    if a.seeds < 1:
        p.error(f"--seeds={a.seeds}: need at least 1")
    if a.compare:
        try:
            name, values = parse_compare(a.compare)
        except ValueError as e:
            p.error(f"--compare: {e}")
        compare(name, values, a.seeds, a.jobs, a.load)
        return 0
    if a.alibaba:
        alibaba_check(range(a.seeds))
        return 0
    sweep(range(TUNING_SEEDS_FROM, TUNING_SEEDS_FROM + a.seeds), a.jobs, a.load)
    return 0


if __name__ == "__main__":
    raise SystemExit(exit_code_of(main))
