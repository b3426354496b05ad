"""Which shares end up together on a GPU: the patterns a fill run leaves, against the LP's.

The gap between an online policy and the bound on share-heavy traces is made of GPUs whose
shares leave room no later share fills (810 alone leaves 190; 470+320 leaves 210 where the LP
pairs 650+320 and 470+470). This replays the fill run of one variant and seed up to a read-off
with ours and FGD, groups every GPU by the sizes of the shares on it, and prints the patterns
that leave the most free capacity; then the same for the placing bound's LP (bench.bound with
`min_placed`, the shares both policies placed: see bench.bound_split), whose arc flow is cut
into patterns by bench.offline_packer.share_patterns. An LP pattern may carry sizes the LP did
not place (its arcs may exceed the shares placed: those arcs are room left, not pods).

    python -m bench.share_mix [--variant default] [--seed 0] [--at 100] [--top 12]
                              [--set pattern_weight=0.5]

It is how the LP-pattern weight's problem was found (docs/tuning.md, "pattern_weight 10").
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from bench.baselines import make_policy
from bench.bound import arrived_prefix, lp_bound
from bench.bound_split import placed_shares
from bench.fill_replay import fill_order, replay_fill
from bench.offline_packer import share_patterns
from bench.variants import TRACE_DIR, VARIANTS, _inputs, parse_overrides
from scheduler.cli import exit_code_of
from scheduler.contract.assignment import Assignment
from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.policy import TopologyPolicy
from scheduler.policy.config import DEFAULT_CONFIG
from scheduler.policy.interface import PlacementPolicy
from scheduler.policy.snapshot import Snapshot

Pattern = tuple[int, ...]  # share sizes on one GPU, largest first


class _Recording:
    """A policy that notes where the shares among the first `limit` pods it places went."""

    def __init__(self, inner: PlacementPolicy, limit: int) -> None:
        self.inner = inner
        self.name = inner.name
        self.limit = limit
        self.calls = 0
        self.on_gpu: dict[tuple[str, int], list[int]] = defaultdict(list)

    def place(self, req: PodRequest, snap: Snapshot) -> Assignment | None:
        a = self.inner.place(req, snap)
        if a is not None and req.is_share and self.calls < self.limit:
            self.on_gpu[(a.node, a.gpus[0])].append(req.gpu_milli)
        self.calls += 1
        return a

    def place_gang(self, members: Sequence[PodRequest], snap: Snapshot
                   ) -> list[Assignment] | None:
        return self.inner.place_gang(members, snap)

    def observe(self, req: PodRequest) -> None:
        self.inner.observe(req)


def policy_patterns(policy: PlacementPolicy, nodes: Sequence[NodeSpec],
                    pods: Sequence[PodRequest], seed: int, n: int
                    ) -> tuple[Counter[Pattern], list[bool]]:
    """(GPUs per share pattern after the first n pods of the fill order, placed per pod): the
    fill replay itself (bench.fill_replay), with the policy's answers noted on the way."""
    rec = _Recording(policy, n)
    r = replay_fill(rec, nodes, pods, seed=seed)
    return (Counter(tuple(sorted(v, reverse=True)) for v in rec.on_gpu.values()),
            r.placed.tolist())


def free_share(patterns: Counter[Pattern] | dict[Pattern, float], capacity_milli: int
               ) -> list[tuple[Pattern, float, float]]:
    """(pattern, GPUs, free capacity % it leaves), most free first."""
    rows = [(p, float(n), 100.0 * n * (MILLI_PER_GPU - sum(p)) / capacity_milli)
            for p, n in patterns.items()]
    return sorted(rows, key=lambda r: (-r[2], r[0]))


def lines(title: str, rows: list[tuple[Pattern, float, float]], top: int,
          total: bool = True) -> list[str]:
    """The table of one policy (or the LP): the `top` patterns, and the total free room."""
    head = f"{title}: {sum(r[1] for r in rows):,.0f} GPUs hold shares"
    if total:
        head += f", their free room is {sum(r[2] for r in rows):.2f} % of capacity"
    out = [head]
    for p, n, pct in rows[:top]:
        out.append(f"  {'+'.join(map(str, p)):<22} {n:8.1f} GPUs  {MILLI_PER_GPU - sum(p):4d} "
                   f"free  {pct:6.3f} %")
    return out


def report(variant: str, seed: int, at: float, top: int,
           overrides: tuple[tuple[str, float], ...] = ()) -> list[str]:
    """The three tables (ours, fgd, the placing LP) for one fill run; `overrides` replace
    PolicyConfig weights of ours."""
    nodes, pods = _inputs(str(TRACE_DIR), variant)
    pods = [replace(p, gang=None) if p.gang else p for p in pods]
    capacity = sum(s.topology.n for s in nodes) * MILLI_PER_GPU
    order, _ = fill_order(pods, capacity, seed)
    n = arrived_prefix(order, capacity, at)
    out = [f"{variant}, seed {seed}, {at:g} % arrived ({n:,} pods)"]
    counts: list[Counter[int]] = []
    change: dict[str, Any] = dict(overrides)
    ours = TopologyPolicy(replace(DEFAULT_CONFIG, **change))
    label = "topology (ours" + "".join(f", {k}={v:g}" for k, v in overrides) + ")"
    for name, pol in ((label, ours), ("fgd", make_policy("fgd", seed))):
        pats, placed = policy_patterns(pol, nodes, pods, seed, n)
        counts.append(placed_shares(placed, order, n))
        out += lines(name, free_share(pats, capacity), top)
    both = {s: min(counts[0][s], counts[1][s]) for s in counts[0] | counts[1]}
    b = lp_bound(nodes, order[:n], both, solution=True)
    assert b.solution is not None
    lp: dict[Pattern, float] = defaultdict(float)
    for arcs in b.solution.share_arcs.values():
        for path, width in share_patterns(arcs):
            lp[tuple(sorted(path, reverse=True))] += width
    bound = 100.0 - 100.0 * b.max_allocated_milli / capacity
    # No total for the LP: an arc it does not fill with a placed share still counts as a size.
    out += lines(f"placing bound's LP (bound {bound:.2f} %; some sizes on its patterns are room, "
                 "not placed shares)", free_share(lp, capacity), top, total=False)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m bench.share_mix",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", default="default", choices=VARIANTS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--at", type=float, default=100.0, help="read-off, %% arrived")
    ap.add_argument("--top", type=int, default=12, help="patterns shown per table")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="override a PolicyConfig weight of ours, e.g. pattern_weight=0.5")
    a = ap.parse_args(argv)
    try:
        overrides = parse_overrides(a.set)
    except ValueError as e:
        ap.error(f"--set: {e}")
    if a.seed < 0:
        ap.error(f"--seed={a.seed}: a fill order's seed is 0 or more")
    if not 0 < a.at <= 1000:
        ap.error(f"--at={a.at}: a read-off in % arrived, above 0 and at most 1000")
    if a.top < 1:
        ap.error(f"--top={a.top}: at least 1")
    if not TRACE_DIR.is_dir():
        ap.error(f"trace folder {TRACE_DIR} not found (../shared/traces beside the repository)")
    print("\n".join(report(a.variant, a.seed, a.at, a.top, overrides)))
    return 0


if __name__ == "__main__":
    raise SystemExit(exit_code_of(main))
