"""How much of the LP bound's lead over a policy is admission rather than packing.

At 100 % arrived the fill protocol's demand about equals capacity, so every run refuses some
pods, and the plain bound (bench.bound) chooses which: on the default Alibaba trace it refuses
a quarter of the 810-thousandth shares (each would leave 190 that few shares fill) and places
whole-GPU pods in their place. An online placement policy places every pod that fits when it
arrives, so part of its gap to the bound is a refusal it never makes. This splits the gap: the
bound again, with the LP made to place at least as many shares of each size as both policies
did by the read-off (bench.bound's `min_placed`; a run that placed at least that many is
still bounded by it, so it is a valid lower bound for both), and the gap ratio against it.

    python -m bench.bound_split --variant default --seeds 10
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from bench.baselines import make_policy
from bench.bound import arrived_prefix, fill_bound
from bench.fill_replay import fill_order, replay_fill
from bench.metrics import at_arrived
from bench.variants import TRACE_DIR, VARIANTS, _inputs, gap_ratio
from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.policy import TopologyPolicy


def placed_shares(placed: Sequence[bool], order: Sequence[PodRequest], n: int) -> Counter[int]:
    """Shares placed among the first n pods of the order, counted per size."""
    return Counter(p.gpu_milli for p, ok in zip(order[:n], placed[:n], strict=True)
                   if ok and p.is_share)


def split_seed(nodes: Sequence[NodeSpec], pods: Sequence[PodRequest], seed: int,
               x: float) -> tuple[float, float, float, float]:
    """(ours, fgd, plain bound, bound placing the shares both placed) unallocated % at x."""
    capacity = sum(s.topology.n for s in nodes) * MILLI_PER_GPU
    # The replay's own order (it drops gangs before ordering; fill_bound orders them as given).
    order, _ = fill_order([replace(p, gang=None) if p.gang else p for p in pods], capacity,
                          seed)
    n = arrived_prefix(order, capacity, x)
    got: list[float] = []
    counts: list[Counter[int]] = []
    for pol in (TopologyPolicy(), make_policy("fgd", seed)):
        r = replay_fill(pol, nodes, pods, seed=seed)
        got.append(100.0 - at_arrived(r.arrived_pct, r.allocated_pct, x))
        counts.append(placed_shares(r.placed.tolist(), order, n))
    both = {s: min(counts[0][s], counts[1][s]) for s in counts[0] | counts[1]}
    plain = fill_bound(nodes, pods, seed, x).unallocated_pct
    forced = fill_bound(nodes, pods, seed, x, min_placed=both).unallocated_pct
    return got[0], got[1], plain, forced


def main(argv: Sequence[str] | None = None) -> None:
    """Print per seed and the median ratio against both bounds."""
    ap = argparse.ArgumentParser(prog="python -m bench.bound_split",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", default="default", choices=VARIANTS)
    ap.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    ap.add_argument("--at", type=float, default=100.0, help="read-off, %% arrived")
    args = ap.parse_args(argv)
    if args.seeds < 1:
        ap.error(f"--seeds={args.seeds}: need at least 1")
    if not 0 < args.at <= 1000:
        ap.error(f"--at={args.at}: a read-off in % arrived, above 0 and at most 1000")
    if not TRACE_DIR.is_dir():
        ap.error(f"trace folder {TRACE_DIR} not found (../shared/traces beside the repository)")
    nodes, pods = _inputs(str(TRACE_DIR), args.variant)
    plain_r: list[float] = []
    forced_r: list[float] = []
    for seed in range(args.seeds):
        ours, fgd, plain, forced = split_seed(nodes, pods, seed, args.at)
        plain_r.append(gap_ratio(ours, fgd, plain))
        forced_r.append(gap_ratio(ours, fgd, forced))
        print(f"seed {seed}: ours {ours:.2f} fgd {fgd:.2f} bound {plain:.2f} "
              f"(ratio {plain_r[-1]:.2f}) placing-bound {forced:.2f} "
              f"(ratio {forced_r[-1]:.2f})", flush=True)
    print(f"median ratio: bound {statistics.median(plain_r):.2f}, "
          f"placing-bound {statistics.median(forced_r):.2f}")


if __name__ == "__main__":
    main()
