"""An offline lower bound on the unallocated GPUs of a fill run: an LP relaxation.

Question: of the pods that have arrived by X % (a prefix of the fill order), how many GPU
thousandths could *any* placement, knowing them all in advance, allocate at most? Capacity
minus that is a lower bound on the unallocated GPUs of every online policy at X %, and the
distance of a policy to it says how much is left to gain.

Formulation (one linear program, solved with HiGHS through scipy.optimize.linprog):

  Node types t: nodes with equal (GPU count G_t, GPU model, CPU, memory); N_t of them.
  Pod classes c: pods with equal (whole GPUs k_c or share s_c, CPU, memory, allowed models);
  n_c of them. CPU-only pods allocate no GPU, and refusing a pod is always allowed, so they
  are left out (they can only take resources from GPU pods).

  x[c,t] >= 0   pods of class c placed on nodes of type t (only where one node of type t
                could hold one: enough GPUs, an allowed model, CPU and memory)
  f[t,a,s] >= 0 share GPUs, as an arc flow (Valerio de Carvalho, 1999): a GPU of type t used
                for shares is a path 0 -> a -> a+s -> ... of share sizes that ends at some
                position <= 1000; f[t,a,s] counts the GPUs whose path takes a share of size s
                at position a. Positions are the multiples of the gcd of the sizes.
  e[t,a] >= 0   paths (GPUs) that end at position a > 0.

  maximise   sum x[c,t] * demand_c                     (demand = 1000 k_c, or s_c)
  subject to sum_t x[c,t] <= n_c                       every class, at most what arrived
             for each type t:
               sum_c cpu_c x[c,t] <= N_t cpu_t          CPU (pooled over the type's nodes)
               sum_c mem_c x[c,t] <= N_t mem_t          memory (pooled)
               sum_{c: k_c = 1} x[c,t] + sum_q |q| z[t,q] + sum_s f[t,0,s] <= N_t G_t  GPUs
               sum_q z[t,q] <= N_t;  sum_{c: k_c = k} x[c,t] <= sum_q q(k) z[t,q], k >= 2
                      (z[t,q] >= 0: nodes whose pods of 2+ GPUs are the multiset q of sizes,
                      |q| <= G_t GPUs in all: multi-GPU pods are packed per node, exactly)
               sum_{c: cpu_c > cpu_t / j} x[c,t] <= N_t (j - 1), j = 2..4, and the same for
                                                         memory (per node, fewer than j pods
                                                         above 1/j of it)
               flow in = flow out + e[t,a]               every position a > 0
               sum_{c share s} x[c,t] <= sum_a f[t,a,s]   every share size s
  optionally sum_{c share s, t} x[c,t] >= m_s   at least m_s shares of size s placed
                                                (min_placed; bench.bound_split)
  optionally (full_nodes) a pod of k_c = G_t GPUs counts cpu_t and mem_t, not its own, in the
             pooled rows: it takes a whole node, and what CPU and memory it leaves there no
             other GPU pod can use (the pooled rows let the plain LP hand that CPU to 1-GPU
             pods on other nodes; bench.offline_packer rounds both LPs' solutions)

Every real placement gives a feasible point (count each node's pods and each GPU's shares in
the order of its path), so the optimum is at least any policy's allocation: the bound is
valid. It is a relaxation in three places: CPU and memory are pooled per node type (a pod's
CPU may come from several nodes; the size cuts recover the per-node limit for big pods),
1-GPU pods and share GPUs are pooled with the GPUs multi-GPU pods leave, and variables are
fractional (a GPU may be a mix of patterns). GPU memory of shares is not modelled (the
Alibaba trace has none). The arc flow itself loses nothing against listing every share
pattern of a GPU (its LP is the pattern LP), which is where the Alibaba trace's bound comes
from: large shares (810 and similar) leave gaps few small shares fill.

Read-off: the fill report reads allocated % at X % arrived as the mean over the pods whose
arrival rounds to X (bench.metrics.at_arrived); allocation only grows along the order, so the
bound is computed for the prefix that ends at the last such pod, and it bounds that mean.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from bench.fill_replay import fill_order
from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest
from scheduler.contract.units import MILLI_PER_GPU

NodeType = tuple[int, str, int, int]  # (GPUs, model, CPU milli, memory MiB)
PodClass = tuple[int, int, int, int, frozenset[str]]  # (GPUs, share, CPU, memory, models)

# Per node, at most j - 1 pods can each take more than 1/j of its CPU (or memory).
_SIZE_CUTS = (2, 3, 4)


@dataclass(frozen=True, slots=True)
class LpSolution:
    """The LP's primal point (lp_bound(solution=True)), for rounding it into a placement
    (bench.offline_packer): what the bound's optimum places, per class, type and pattern."""

    placed: dict[tuple[PodClass, NodeType], float]  # x[c,t]
    share_arcs: dict[NodeType, dict[tuple[int, int], float]]  # f[t,a,s] by (a, s)
    multi_configs: dict[NodeType, dict[tuple[int, ...], float]]  # z[t,q] by q


class BoundError(RuntimeError):
    """The LP solver did not reach an optimum (it always should: x = 0 is feasible)."""


@dataclass(frozen=True, slots=True)
class Bound:
    """The LP's answer for one set of arrived pods on one cluster."""

    capacity_milli: int
    max_allocated_milli: float
    demand_milli: int
    classes: int
    node_types: int
    variables: int
    solution: LpSolution | None = None  # only when asked for (lp_bound(solution=True))

    @property
    def unallocated_pct(self) -> float:
        """Lower bound on unallocated GPU % of capacity (never below 0)."""
        return max(0.0, 100.0 * (1.0 - self.max_allocated_milli / self.capacity_milli))


def node_types(nodes: Sequence[NodeSpec]) -> Counter[NodeType]:
    """GPU nodes by type (CPU-only nodes take no GPU pod)."""
    return Counter((s.topology.n, s.gpu_model, s.cpu_milli, s.memory_mib)
                   for s in nodes if s.topology.n > 0)


def pod_classes(pods: Sequence[PodRequest]) -> Counter[PodClass]:
    """GPU pods by class; CPU-only pods are left out (see the module docstring)."""
    return Counter((p.gpus, p.gpu_milli if p.is_share else 0, p.cpu_milli, p.memory_mib,
                    p.allowed_models) for p in pods if p.wants_gpu)


def _compatible(c: PodClass, t: NodeType) -> bool:
    gpus, _share, cpu, mem, models = c
    g, model, tcpu, tmem = t
    return g >= max(gpus, 1) and cpu <= tcpu and mem <= tmem and (not models or model in models)


class _Lp:
    """Sparse rows built one at a time: A_ub x <= b_ub, A_eq x = 0."""

    def __init__(self) -> None:
        self.n = 0
        self.obj: list[float] = []
        self.ub: tuple[list[int], list[int], list[float]] = ([], [], [])
        self.b_ub: list[float] = []
        self.eq: tuple[list[int], list[int], list[float]] = ([], [], [])
        self.n_eq = 0
        self.x: np.ndarray = np.zeros(0)  # the primal optimum, once maximise has run

    def var(self, obj: float = 0.0) -> int:
        self.obj.append(obj)
        self.n += 1
        return self.n - 1

    def le(self, terms: Sequence[tuple[int, float]], rhs: float) -> None:
        if not terms:
            return
        r = len(self.b_ub)
        for v, a in terms:
            self.ub[0].append(r)
            self.ub[1].append(v)
            self.ub[2].append(a)
        self.b_ub.append(rhs)

    def zero(self, terms: Sequence[tuple[int, float]]) -> None:
        for v, a in terms:
            self.eq[0].append(self.n_eq)
            self.eq[1].append(v)
            self.eq[2].append(a)
        self.n_eq += 1

    def maximise(self) -> float:
        c = -np.asarray(self.obj, dtype=np.float64)
        a_ub = coo_matrix((self.ub[2], (self.ub[0], self.ub[1])),
                          shape=(len(self.b_ub), self.n)).tocsr()
        kw: dict[str, object] = {}
        if self.n_eq:
            kw["A_eq"] = coo_matrix((self.eq[2], (self.eq[0], self.eq[1])),
                                    shape=(self.n_eq, self.n)).tocsr()
            kw["b_eq"] = np.zeros(self.n_eq)
        res = linprog(c, A_ub=a_ub, b_ub=np.asarray(self.b_ub), bounds=(0, None),
                      method="highs", **kw)
        if res.status != 0:
            raise BoundError(f"HiGHS: {res.message}")
        self.x = np.asarray(res.x, dtype=np.float64)
        return float(-res.fun)


def _share_flow(lp: _Lp, sizes: list[int], share_x: dict[int, list[int]],
                arc_vars: dict[tuple[int, int], int]) -> list[int]:
    """The arc flow of one node type; returns the variables leaving position 0 and records
    every arc's variable in `arc_vars` by (position, size)."""
    step = 0
    for s in sizes:
        step = math.gcd(step, s)
    positions = range(0, MILLI_PER_GPU + 1, step)
    into: dict[int, list[int]] = {a: [] for a in positions}
    out: dict[int, list[int]] = {a: [] for a in positions}
    arcs: dict[int, list[int]] = {s: [] for s in sizes}
    for a in positions:
        for s in sizes:
            if a + s <= MILLI_PER_GPU:
                v = lp.var()
                arc_vars[(a, s)] = v
                out[a].append(v)
                into[a + s].append(v)
                arcs[s].append(v)
    for a in positions:
        if a == 0:
            continue
        end = lp.var()
        lp.zero([(v, 1.0) for v in into[a]] + [(v, -1.0) for v in out[a]] + [(end, -1.0)])
    for s in sizes:
        lp.le([(v, 1.0) for v in share_x[s]] + [(v, -1.0) for v in arcs[s]], 0.0)
    return out[0]


def _configs(sizes: list[int], room: int) -> list[tuple[int, ...]]:
    """Every non-empty multiset of `sizes` (ascending tuples) that sums to at most `room`."""
    out: list[tuple[int, ...]] = []

    def grow(prefix: tuple[int, ...], start: int, left: int) -> None:
        for i in range(start, len(sizes)):
            if sizes[i] <= left:
                conf = (*prefix, sizes[i])
                out.append(conf)
                grow(conf, i, left - sizes[i])

    grow((), 0, room)
    return out


def _multi_gpu_configs(
    lp: _Lp, nt: int, g: int, whole: dict[PodClass, int],
    conf_vars: dict[tuple[int, ...], int],
) -> list[tuple[int, float]]:
    """Pods of 2+ GPUs on one node type, per node: z[conf] nodes hold the multi-GPU pods of
    `conf` (a multiset of sizes fitting G); returns the GPU-count terms of those nodes and
    records each z's variable in `conf_vars`."""
    sizes = sorted({c[0] for c in whole if c[0] >= 2})
    if not sizes:
        return []
    confs = _configs(sizes, g)
    z = [lp.var() for _ in confs]
    conf_vars.update(zip(confs, z, strict=True))
    lp.le([(v, 1.0) for v in z], float(nt))
    for k in sizes:
        lp.le([(v, 1.0) for c, v in whole.items() if c[0] == k]
              + [(zv, -float(conf.count(k))) for zv, conf in zip(z, confs, strict=True)
                 if k in conf], 0.0)
    return [(zv, float(sum(conf))) for zv, conf in zip(z, confs, strict=True)]


def lp_bound(nodes: Sequence[NodeSpec], pods: Sequence[PodRequest],
             min_placed: Mapping[int, int] | None = None, solution: bool = False,
             full_nodes: bool = False) -> Bound:
    """The LP bound (module docstring) for `pods` all arrived on the cluster `nodes`.

    `min_placed` {share size in thousandths: n} makes the LP place at least n of the shares of
    that size instead of choosing freely which pods to refuse: an online policy places every
    pod that fits when it arrives, so the plain bound's lead splits into what it gains by
    refusing (admission) and what by packing (docs/tuning.md uses it that way).
    With `solution` the Bound carries the LP's primal point (LpSolution). `full_nodes`
    tightens the pooled CPU and memory: a pod of all of a node's G GPUs is charged the node's
    whole CPU and memory, which no other GPU pod can use (valid for every real placement; off
    by default, so the bound stays the one the README's tables report)."""
    types = node_types(nodes)
    capacity = sum(g * n for (g, _m, _c, _mem), n in types.items()) * MILLI_PER_GPU
    if capacity <= 0:
        raise ValueError("nodes: the cluster has no GPUs; the bound is on GPU allocation")
    classes = pod_classes(pods)
    floors = dict(min_placed or {})
    for size, n in floors.items():
        have = sum(k for c, k in classes.items() if c[0] == 0 and c[1] == size)
        if not 0 <= n <= have:
            raise ValueError(f"min_placed[{size}]={n!r}: must be in 0..{have} "
                             f"(the shares of {size} that arrived)")
    demand = sum((c[0] * MILLI_PER_GPU or c[1]) * n for c, n in classes.items())
    lp = _Lp()
    by_class: dict[PodClass, list[int]] = {c: [] for c in classes}
    x_vars: dict[tuple[PodClass, NodeType], int] = {}
    arc_vars: dict[NodeType, dict[tuple[int, int], int]] = {}
    conf_vars: dict[NodeType, dict[tuple[int, ...], int]] = {}
    for t, nt in sorted(types.items(), key=lambda kv: repr(kv[0])):
        g, _model, tcpu, tmem = t
        here = [c for c in classes if _compatible(c, t)]
        if not here:
            continue
        xs = {c: lp.var(float(c[0] * MILLI_PER_GPU or c[1])) for c in here}
        for c, v in xs.items():
            by_class[c].append(v)
            x_vars[(c, t)] = v
        # With full_nodes, a pod of all G GPUs counts its node's whole CPU and memory: no
        # other GPU pod can use what it leaves there.
        full = {c: full_nodes and c[0] == g for c in xs}
        lp.le([(v, float(tcpu if full[c] else c[2])) for c, v in xs.items() if c[2] or full[c]],
              float(nt * tcpu))
        lp.le([(v, float(tmem if full[c] else c[3])) for c, v in xs.items() if c[3] or full[c]],
              float(nt * tmem))
        for j in _SIZE_CUTS:
            lp.le([(v, 1.0) for c, v in xs.items() if c[2] * j > tcpu], float(nt * (j - 1)))
            lp.le([(v, 1.0) for c, v in xs.items() if c[3] * j > tmem], float(nt * (j - 1)))
        whole = {c: v for c, v in xs.items() if c[0] > 0}
        multi = _multi_gpu_configs(lp, nt, g, whole, conf_vars.setdefault(t, {}))
        share_x: dict[int, list[int]] = {}
        for c, v in xs.items():
            if c[0] == 0:
                share_x.setdefault(c[1], []).append(v)
        starts = (_share_flow(lp, sorted(share_x), share_x, arc_vars.setdefault(t, {}))
                  if share_x else [])
        lp.le([(v, 1.0) for c, v in whole.items() if c[0] == 1] + multi
              + [(v, 1.0) for v in starts], float(nt * g))
    for c, vs in by_class.items():
        lp.le([(v, 1.0) for v in vs], float(classes[c]))
    for size, n in floors.items():
        if n:  # -sum x >= ... as an upper row: at least n of this size placed
            lp.le([(v, -1.0) for c, vs in by_class.items() if c[0] == 0 and c[1] == size
                   for v in vs], -float(n))
    best = lp.maximise() if lp.n else 0.0
    sol = None
    if solution:
        val = lp.x if lp.n else np.zeros(0)
        sol = LpSolution(
            placed={k: float(val[v]) for k, v in x_vars.items()},
            share_arcs={t: {k: float(val[v]) for k, v in vs.items()} for t, vs in arc_vars.items()},
            multi_configs={t: {k: float(val[v]) for k, v in vs.items()}
                           for t, vs in conf_vars.items()},
        )
    return Bound(capacity_milli=capacity, max_allocated_milli=min(best, float(capacity)),
                 demand_milli=demand, classes=len(classes), node_types=len(types),
                 variables=lp.n, solution=sol)


def arrived_prefix(order: Sequence[PodRequest], capacity_milli: int, x: float) -> int:
    """How many pods of the fill order the read-off at x % arrived covers (see the module
    docstring): up to the last pod whose arrival rounds to x (within x +- 1 if none does);
    where none does, the report interpolates between pods, so up to the first pod that
    arrives at or after x (all of them if the run ends before x)."""
    arrived = 100.0 * np.cumsum([p.gpu_demand_milli for p in order]) / capacity_milli
    ar = np.round(arrived)
    sel = np.flatnonzero(ar == round(x))
    if not sel.size:
        sel = np.flatnonzero((ar >= round(x) - 1) & (ar <= round(x) + 1))
    if sel.size:
        return int(sel[-1]) + 1
    after = np.flatnonzero(arrived >= x)
    return int(after[0]) + 1 if after.size else len(order)


def fill_bound(
    nodes: Sequence[NodeSpec], pods: Sequence[PodRequest], seed: int, x: float,
    target_ratio: float = 1.3, min_placed: Mapping[int, int] | None = None,
) -> Bound:
    """The bound for the fill run of `seed` (bench.fill_replay.fill_order) read at x % arrived
    (`min_placed` as in lp_bound)."""
    capacity = sum(s.topology.n for s in nodes) * MILLI_PER_GPU
    if capacity <= 0:
        raise ValueError("nodes: the cluster has no GPUs; the bound is on GPU allocation")
    order, _ = fill_order(list(pods), capacity, seed, target_ratio)
    return lp_bound(nodes, order[: arrived_prefix(order, capacity, x)], min_placed)
