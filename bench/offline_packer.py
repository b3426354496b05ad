"""An offline packer: a real placement of the arrived pods that knows them all in advance.

bench.bound gives an upper limit on the GPU thousandths any placement of a fill run's arrived
pods allocates; this module builds actual placements to see how much of that limit is
reachable. Like the bound it may refuse pods (CPU-only pods are never placed: they allocate
no GPU and only take CPU and memory from GPU pods).

Two packers, both deterministic:

- `bfd_pack`: best-fit decreasing. The GPU pods sorted by GPU demand, then CPU, then memory
  (largest first); each goes where it leaves the least: a share onto the fullest GPU that
  fits, whole GPUs onto the node with the fewest wholly free GPUs left.
- `lp_pack`: the bound's LP solution rounded down, then best-fit decreasing for the rest. The
  LP says how many pods of each class go to each node type (x[c,t]) and, per type, which share
  patterns its GPUs hold (the arc flow, decomposed into paths); the packer places that many
  pods (rounded down, per request size) on that type's nodes, each of the rounded-down
  pattern counts as one GPU's shares, filling the nodes one at a time with a mix of heavy
  and light items in CPU and memory (the LP pools them per type), and then offers every pod
  still unplaced to `bfd_pack`'s pass over the whole cluster. It rounds two optimal LP
  vertices (plain, and with bench.bound's full_nodes) and keeps the better packing.

Feasibility is the project's: the best-fit passes take their candidate nodes from the FGD
artifact's filter (bench.baselines.fgd_artifact.artifact_feasible: CPU, memory, GPU model, free
GPUs or share room), the per-type fill from the snapshot's free GPUs, CPU and memory, and every
placement is checked and held through bench.policy_answer (check_assignment, then
Snapshot.allocate, which refuses any over-commit), the path the simulator's replays take; a
choice those refuse raises instead of being skipped.

`python -m bench.offline_packer` prints, per trace variant and read-off (100 %, 130 %
arrived, as bench.bound.fill_bound reads them), the median over seeds of the bound's and the
packers' unallocated GPU %.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.baselines.fgd_artifact import (
    artifact_feasible,
    assignment,
    exclusive_gpus,
    gpu_fits,
)
from bench.bound import Bound, LpSolution, NodeType, PodClass, arrived_prefix, lp_bound
from bench.fill_replay import fill_order
from bench.policy_answer import check_assignment, hold
from scheduler.contract.assignment import Assignment
from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.policy.snapshot import Snapshot, build_snapshot

NAME = "offline"
_EPS = 1e-6  # LP values this close to an integer count as it (HiGHS tolerances)


@dataclass(frozen=True, slots=True)
class Packing:
    """One offline placement: what it holds and how much GPU it allocates."""

    capacity_milli: int
    allocated_milli: int
    assignments: tuple[Assignment, ...]

    @property
    def unallocated_pct(self) -> float:
        """Unallocated GPU % of capacity."""
        return 100.0 * (1.0 - self.allocated_milli / self.capacity_milli)


def _class_of(p: PodRequest) -> PodClass:
    """The pod's class, as bench.bound.pod_classes keys it."""
    return (p.gpus, p.gpu_milli if p.is_share else 0, p.cpu_milli, p.memory_mib,
            p.allowed_models)


def _type_of(s: NodeSpec) -> NodeType:
    """The node's type, as bench.bound.node_types keys it."""
    return (s.topology.n, s.gpu_model, s.cpu_milli, s.memory_mib)


def _decreasing(pods: Sequence[PodRequest]) -> list[PodRequest]:
    """Largest GPU demand first, then the most CPU and memory (key breaks ties)."""
    return sorted(pods, key=lambda p: (-p.gpu_demand_milli, -p.cpu_milli, -p.memory_mib, p.key))


class _Cluster:
    """The snapshot being filled, and the one way this module changes it."""

    def __init__(self, nodes: Sequence[NodeSpec]) -> None:
        self.snap: Snapshot = build_snapshot(nodes)
        self.capacity = int(self.snap.gpu_count.sum()) * MILLI_PER_GPU
        if self.capacity <= 0:
            raise ValueError("nodes: the cluster has no GPUs; the packer allocates GPUs")
        self.placed: list[Assignment] = []
        self.allocated = 0

    def hold(self, req: PodRequest, node: int, gpus: tuple[int, ...]) -> None:
        """Place `req` on `node`'s `gpus` through the replay's checks (raises on any error:
        a wrong choice here is this module's bug, never a silent over-commit)."""
        a = assignment(req, self.snap, node, gpus)
        check_assignment(req, a, self.snap, NAME)
        hold(self.snap, [a], NAME)
        self.placed.append(a)
        self.allocated += req.gpu_demand_milli

    def best_fit(self, req: PodRequest, within: np.ndarray | None = None) -> bool:
        """Place `req` where it leaves the least (module docstring) among the nodes `within`
        (a bool mask; None: all); False when it fits nowhere there."""
        snap = self.snap
        ok = artifact_feasible(req, snap)
        if within is not None:
            ok &= within
        nodes = np.flatnonzero(ok)
        if not nodes.size:
            return False
        if req.is_share:
            fits = gpu_fits(req, snap)[nodes]
            free = np.where(fits, snap.milli_free[nodes], MILLI_PER_GPU + 1)
            gpu = free.argmin(axis=1)
            tight = free[np.arange(nodes.size), gpu]
            # The fullest fitting GPU; among equals the node with the least GPU left, then the
            # least CPU left, so partly used nodes fill before fresh ones are opened.
            order = np.lexsort((nodes, snap.cpu_free[nodes], snap.milli_free[nodes].sum(axis=1),
                                tight))
            k = int(order[0])
            self.hold(req, int(nodes[k]), (int(gpu[k]),))
            return True
        free_gpus = np.bitwise_count(snap.free_mask[nodes]).astype(np.int64)
        order = np.lexsort((nodes, snap.cpu_free[nodes], free_gpus))
        node = int(nodes[int(order[0])])
        self.hold(req, node, exclusive_gpus(snap, node, req.gpus) if req.wants_gpu else ())
        return True

    def one_gpu(self, items: Sequence[Sequence[PodRequest]], within: np.ndarray) -> None:
        """Place items (a 1-GPU pod, or shares summing to at most one GPU) on wholly free GPUs
        of the nodes `within` (one node type), one item per GPU; items that find no GPU are
        left out.

        The LP pools CPU and memory per node type, so what it places there fits in aggregate,
        often exactly; GPUs strand where a node's CPU or memory runs out before its GPUs. So
        the nodes fill one at a time, each free GPU taking the heaviest item (in CPU or memory
        per GPU of the type) that still leaves the node enough for the lightest items left on
        each of its other free GPUs, or else the lightest item that fits."""
        snap = self.snap
        rows = np.flatnonzero(within)
        if not rows.size or not items:
            return
        g = float(snap.gpu_count[rows[0]])
        cpu = np.array([sum(p.cpu_milli for p in it) for it in items], dtype=np.int64)
        mem = np.array([sum(p.memory_mib for p in it) for it in items], dtype=np.int64)
        weight = np.maximum(cpu * g / max(float(snap.cpu_total[rows[0]]), 1.0),
                            mem * g / max(float(snap.mem_total[rows[0]]), 1.0))
        order = np.lexsort((np.arange(len(items)), -weight))  # heaviest first, stable
        cpu, mem, weight = cpu[order], mem[order], weight[order]
        # Per node: items placed and their summed weight, to keep every node near the mix of
        # the items left (heaviest while at or below the average, lightest while above).
        load = np.zeros(snap.n_nodes)
        used = np.zeros(snap.n_nodes)
        items = [items[int(k)] for k in order]
        alive = np.ones(len(items), dtype=bool)
        for row in rows:
            node = int(row)
            while alive.any():
                free = int(np.bitwise_count(snap.free_mask[node]))
                if free == 0:
                    break
                room_c, room_m = int(snap.cpu_free[node]), int(snap.mem_free[node])
                fits = alive & (cpu <= room_c) & (mem <= room_m)
                if not fits.any():
                    break
                rest = free - 1
                keep = fits & (cpu <= room_c - rest * int(cpu[alive].min())) \
                    & (mem <= room_m - rest * int(mem[alive].min()))
                if not keep.any():  # no item leaves room for the others: the lightest that fits
                    k = int(np.flatnonzero(fits)[-1])
                elif rest == 0 or load[node] <= float(weight[alive].mean()) * used[node]:
                    # The node's last free GPU, or its items so far at or below the average of
                    # those left: the heaviest that fits (best fit).
                    k = int(np.argmax(keep))
                else:
                    k = int(np.flatnonzero(keep)[-1])  # above it: the lightest
                alive[k] = False
                load[node] += float(weight[k])
                used[node] += 1
                gpu = exclusive_gpus(snap, node, 1)
                for p in items[k]:
                    self.hold(p, node, gpu)

    def packing(self) -> Packing:
        """What has been placed so far."""
        return Packing(self.capacity, self.allocated, tuple(self.placed))


def bfd_pack(nodes: Sequence[NodeSpec], pods: Sequence[PodRequest]) -> Packing:
    """Best-fit decreasing over the whole cluster (module docstring)."""
    cluster = _Cluster(nodes)
    for p in _decreasing([p for p in pods if p.wants_gpu]):
        cluster.best_fit(p)
    return cluster.packing()


def share_patterns(arcs: dict[tuple[int, int], float]) -> list[tuple[tuple[int, ...], float]]:
    """One node type's share arc flow {(position, size): flow} as paths from position 0:
    (share sizes in order, GPUs), the widest arc first at every step (deterministic)."""
    left = {k: v for k, v in arcs.items() if v > _EPS}
    out: dict[int, list[int]] = defaultdict(list)
    for a, s in left:
        out[a].append(s)
    paths: list[tuple[tuple[int, ...], float]] = []
    while True:
        starts = [s for s in out.get(0, []) if left.get((0, s), 0.0) > _EPS]
        if not starts:
            return paths
        path: list[int] = []
        a, width = 0, math.inf
        while True:
            nxt = [s for s in out.get(a, []) if left.get((a, s), 0.0) > _EPS]
            if not nxt:
                break
            s = max(nxt, key=lambda s: (left[(a, s)], s))
            width = min(width, left[(a, s)])
            path.append(s)
            a += s
        pos = 0
        for s in path:  # every arc on the path loses the path's width; one reaches ~0
            left[(pos, s)] -= width
            pos += s
        paths.append((tuple(path), width))


def lp_pack(nodes: Sequence[NodeSpec], pods: Sequence[PodRequest],
            bounds: Sequence[Bound] = ()) -> Packing:
    """The LP's solution rounded down, then best-fit decreasing (module docstring), for each
    of `bounds` (lp_bound(..., solution=True) of these nodes and pods); the packing that
    allocates most (the first among equals). Without `bounds` it solves the LP twice, plain
    and with full_nodes: the LP has many optima, and the vertex HiGHS returns decides how
    well the rounding goes (neither is always better)."""
    if not bounds:
        bounds = [lp_bound(nodes, pods, solution=True),
                  lp_bound(nodes, pods, solution=True, full_nodes=True)]
    best: Packing | None = None
    for b in bounds:
        if b.solution is None:
            raise ValueError("lp_pack: a bound without its solution (lp_bound(solution=True))")
        pk = _round(nodes, pods, b.solution)
        if best is None or pk.allocated_milli > best.allocated_milli:
            best = pk
    assert best is not None
    return best


def _round(nodes: Sequence[NodeSpec], pods: Sequence[PodRequest], sol: LpSolution) -> Packing:
    """One LP solution rounded down, then best-fit decreasing for what is left."""
    cluster = _Cluster(nodes)
    gpu_pods = [p for p in pods if p.wants_gpu]
    by_class: dict[PodClass, list[PodRequest]] = defaultdict(list)
    for p in _decreasing(gpu_pods):
        by_class[_class_of(p)].append(p)
    types = sorted({_type_of(s) for s in nodes if s.topology.n > 0}, key=repr)
    type_ids = np.array([types.index(_type_of(s)) if s.topology.n > 0 else -1 for s in nodes])
    for k, t in enumerate(types):
        _pack_type(cluster, t, type_ids == k, sol, by_class)
    # The rest (fractional parts, and pods whose rounded place was taken) anywhere they fit.
    done = {a.pod for a in cluster.placed}
    for p in _decreasing([p for p in gpu_pods if p.key not in done]):
        cluster.best_fit(p)
    return cluster.packing()


def _round_down(values: Sequence[float]) -> list[int]:
    """Integers near `values` summing to floor(sum): the floors, plus one for the largest
    fractional parts (ties: the first), so rounding loses less than one in all."""
    floors = [math.floor(v + _EPS) for v in values]
    extra = math.floor(sum(values) + _EPS) - sum(floors)
    by_part = sorted(range(len(values)), key=lambda i: (-(values[i] - floors[i]), i))
    for i in by_part[:max(extra, 0)]:
        floors[i] += 1
    return floors


def _pack_type(cluster: _Cluster, t: NodeType, within: np.ndarray, sol: LpSolution,
               by_class: dict[PodClass, list[PodRequest]]) -> None:
    """Place on the nodes of type `t` the pods the LP puts there, rounded down: whole-GPU
    pods largest first, then the type's share patterns one GPU at a time."""
    mine: list[PodRequest] = []
    here = sorted(((c, v) for (c, tt), v in sol.placed.items() if tt == t), key=repr)
    # Rounded per request size, not per class: a size spread over many classes (CPU, memory)
    # would otherwise lose up to one pod per class, and a share pattern then misses its part.
    sizes: dict[tuple[int, int], list[tuple[PodClass, float]]] = defaultdict(list)
    for c, v in here:
        sizes[(c[0], c[1])].append((c, v))
    for group in sizes.values():
        for (c, _v), n in zip(group, _round_down([v for _c, v in group]), strict=True):
            n = min(n, len(by_class.get(c, [])))
            mine.extend(by_class[c][:n])
            del by_class[c][:n]  # taken by this type: no other type gets them
    shares: dict[int, list[PodRequest]] = defaultdict(list)
    for p in _decreasing([p for p in mine if p.is_share]):
        shares[p.gpu_milli].append(p)
    # Multi-GPU pods first, best fit by GPUs, as the LP's per-node configs pack them.
    for p in _decreasing([p for p in mine if p.gpus >= 2]):
        cluster.best_fit(p, within)
    items: list[list[PodRequest]] = [[p] for p in mine if p.gpus == 1]
    patterns = share_patterns(sol.share_arcs.get(t, {}))
    for (pattern, _gpus), count in zip(patterns, _round_down([g for _p, g in patterns]),
                                       strict=True):
        for _ in range(count):
            # A GPU's pattern keeps its shares together even when some sizes ran out (the
            # LP's arcs may exceed the shares it places).
            pick = [shares[s].pop(0) for s in pattern if shares[s]]
            if pick:
                items.append(pick)
    cluster.one_gpu(items, within)
    # Shares of this type that no whole pattern took: back to the common pass.
    for left in shares.values():
        for p in left:
            by_class[_class_of(p)].append(p)


@dataclass(frozen=True, slots=True)
class Cell:
    """One variant, seed and read-off: the bounds' and packers' unallocated GPU %."""

    variant: str
    seed: int
    arrived: int
    bound: float  # bench.bound's, as the README's tables report it
    full_bound: float  # with full_nodes (never below `bound`; lp_pack rounds both)
    bfd: float
    lp: float
    seconds: float


def fill_cells(nodes: Sequence[NodeSpec], pods: Sequence[PodRequest], variant: str, seed: int,
               read_off: Sequence[int] = (100, 130)) -> list[Cell]:
    """The bound and both packers on the fill order of `seed`, at each read-off."""
    capacity = sum(s.topology.n for s in nodes) * MILLI_PER_GPU
    order, _ = fill_order(list(pods), capacity, seed)
    cells = []
    for x in read_off:
        t0 = time.perf_counter()
        arrived = order[: arrived_prefix(order, capacity, x)]
        plain = lp_bound(nodes, arrived, solution=True)
        full = lp_bound(nodes, arrived, solution=True, full_nodes=True)
        lp = lp_pack(nodes, arrived, (plain, full))
        bfd = bfd_pack(nodes, arrived)
        cells.append(Cell(variant, seed, x, plain.unallocated_pct, full.unallocated_pct,
                          bfd.unallocated_pct, lp.unallocated_pct, time.perf_counter() - t0))
    return cells


def _table(cells: Sequence[Cell]) -> str:
    head = ("| variant | arrived | bound | bound, full nodes | offline LP-rounded | offline BFD "
            "| LP-rounded - bound | seeds |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = [head]
    keys = sorted({(c.variant, c.arrived) for c in cells},
                  key=lambda k: ([c.variant for c in cells].index(k[0]), k[1]))
    for v, x in keys:
        cs = [c for c in cells if (c.variant, c.arrived) == (v, x)]
        med = {f: statistics.median(getattr(c, f) for c in cs)
               for f in ("bound", "full_bound", "lp", "bfd")}
        gap = statistics.median(c.lp - c.bound for c in cs)  # per seed, then the median
        rows.append(f"| {v} | {x} % | {med['bound']:.2f} | {med['full_bound']:.2f} "
                    f"| {med['lp']:.2f} | {med['bfd']:.2f} | {gap:.2f} | {len(cs)} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: the bound and the offline packers per trace variant (module docstring)."""
    from bench.clusters import load_cluster
    from bench.variants import TRACE_DIR, VARIANTS, parse_variants
    from bench.workloads import load_workload

    ap = argparse.ArgumentParser(prog="python -m bench.offline_packer",
                                 description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="comma-separated pod-list variants, or tuning, held-out, all "
                         "(default: all ten)")
    ap.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    ap.add_argument("--trace-dir", type=Path, default=TRACE_DIR)
    ap.add_argument("--json", type=Path, default=None, help="write every cell to this file")
    args = ap.parse_args(argv)
    if not args.trace_dir.is_dir():
        ap.error(f"--trace-dir: {args.trace_dir} is not a directory")
    # Any pod list in the trace folder is a variant (a planner's own trace too).
    lists = sorted(f.name[len("openb_pod_list_"):-len(".csv")]
                   for f in args.trace_dir.glob("openb_pod_list_*.csv"))
    try:
        variants = parse_variants(args.variants, lists)
    except ValueError as e:
        ap.error(f"--variants: {e} (pod lists in {args.trace_dir})")
    if args.seeds < 1:
        ap.error(f"--seeds={args.seeds}: expected at least 1")
    nodes = load_cluster(args.trace_dir / "openb_node_list_gpu_node.csv")
    cells: list[Cell] = []
    for v in variants:
        pods = load_workload(args.trace_dir / f"openb_pod_list_{v}.csv").pods()
        for seed in range(args.seeds):
            for c in fill_cells(nodes, pods, v, seed):
                cells.append(c)
                print(f"{v} seed {seed} at {c.arrived} %: bound {c.bound:.2f} (full nodes "
                      f"{c.full_bound:.2f}), LP-rounded {c.lp:.2f}, BFD {c.bfd:.2f} "
                      f"({c.seconds:.1f} s)", file=sys.stderr, flush=True)
            if args.json is not None:  # after every seed, so an interrupted run keeps them
                args.json.write_text(json.dumps([asdict(c) for c in cells], indent=1))
    print(_table(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
