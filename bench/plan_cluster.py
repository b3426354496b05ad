"""Clusters whose pools can grow or shrink: what `gts plan` searches over.

Two sources, both ending as a list of `ScalablePool`s and a `build(counts)` that turns pool
counts into the NodeSpecs the simulator replays:

- A YAML cluster spec (scheduler/cluster/static.py). A pool may carry a `scale` map, read only
  here (`gts serve` and `gts simulate` ignore it):

      pools:
        - name: h100
          count: 12                  # the current size (what-if mode starts from it)
          preset: dgx-h100
          cpu: 224
          memory: 2Ti
          scale: {min: 0, max: 32, step: 2, cost_per_node_hour: 98.3}
                                     # or cost_per_gpu_hour; min/max/step in nodes

  The cluster at other counts is the same spec with those counts (so network blocks and node
  names follow the file's own rules); a pool at count 0 is left out.

- The Alibaba node CSV (or any list of nodes) as ONE pool named `all`: its count is a number of
  nodes taken from the list in a stratified order, so every prefix keeps the list's mix of GPU
  models and sizes (node i of a group of size m gets the key (rank + 0.5) / m, nodes are sorted
  by key). Counts beyond the list repeat it with renamed copies (`<name>-x1`, ...).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.clusters import ClusterError, PresetMap, cluster_kind, load_trace_nodes
from scheduler.cluster.spec_file import read_spec_file
from scheduler.contract.node import NodeSpec

HOURS_PER_MONTH = 730.0  # 365 * 24 / 12
SCALE_KEYS = {"min", "max", "step", "cost_per_node_hour", "cost_per_gpu_hour"}


@dataclass(frozen=True, slots=True)
class ScalablePool:
    """One pool: its current count, the bounds of the search, its price, GPUs per node."""

    name: str
    count: int
    min: int
    max: int
    step: int = 1
    cost_per_node_hour: float = 0.0
    cost_per_gpu_hour: float = 0.0
    gpus_per_node: float = 0.0

    @property
    def scales(self) -> bool:
        """True when the search may change this pool's count."""
        return self.max > self.min

    def grid(self) -> list[int]:
        """Counts the search may choose: min, min + step, ..., up to max (max always in)."""
        out = list(range(self.min, self.max + 1, self.step))
        if out[-1] != self.max:
            out.append(self.max)
        return out


@dataclass(slots=True)
class PlanCluster:
    """The pools and how to build the nodes of any choice of counts (one per pool).

    Plain data (picklable, for worker processes): `ordered` is the stratified node list of a
    one-pool node list, `spec` the parsed YAML spec (its pools without `scale`).
    """

    source: str
    pools: list[ScalablePool]
    ordered: list[NodeSpec] | None = None
    spec: dict[str, Any] | None = None

    def build_nodes(self, counts: Sequence[int]) -> list[NodeSpec]:
        """The nodes of the cluster with `counts` nodes per pool."""
        if self.ordered is not None:
            return repeat_nodes(self.ordered, counts[0])
        from scheduler.cluster.static import cluster_from_dict

        assert self.spec is not None
        kept = [dict(p, count=c) for p, c in zip(self.spec["pools"], counts, strict=True)
                if c > 0]
        if not kept:
            return []
        try:
            return cluster_from_dict({**self.spec, "pools": kept}, self.source)
        except ValueError as e:
            raise ClusterError(str(e)) from None

    def current(self) -> tuple[int, ...]:
        """The counts the file describes."""
        return tuple(p.count for p in self.pools)

    def gpus(self, counts: Sequence[int]) -> int:
        """GPUs of the cluster at `counts`."""
        return sum(n.topology.n for n in self.build_nodes(counts))

    def cost_per_month(self, counts: Sequence[int]) -> float:
        """What the cluster at `counts` costs per month (HOURS_PER_MONTH hours)."""
        nodes = self.build_nodes(counts)
        per_pool = _split_by_pool(nodes, self.pools, counts)
        return HOURS_PER_MONTH * sum(
            p.cost_per_node_hour * len(ns) + p.cost_per_gpu_hour * sum(n.topology.n for n in ns)
            for p, ns in zip(self.pools, per_pool, strict=True))

    def priced(self) -> bool:
        """True when some pool has a price."""
        return any(p.cost_per_node_hour or p.cost_per_gpu_hour for p in self.pools)


def _split_by_pool(nodes: list[NodeSpec], pools: Sequence[ScalablePool],
                   counts: Sequence[int]) -> list[list[NodeSpec]]:
    out: list[list[NodeSpec]] = []
    i = 0
    for c in counts:
        out.append(nodes[i:i + c])
        i += c
    return out


def _number(v: object, where: str, lo: float) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < lo:
        raise ClusterError(f"{where}={v!r}: must be a number >= {lo:g}")
    return float(v)


def _count(v: object, where: str, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ClusterError(f"{where}={v!r}: must be an integer >= {lo}")
    return v


def parse_scale(raw: object, where: str, count: int) -> tuple[int, int, int, float, float]:
    """(min, max, step, cost per node-hour, cost per GPU-hour) of a pool's `scale` map."""
    if raw is None:
        return count, count, 1, 0.0, 0.0
    if not isinstance(raw, Mapping):
        raise ClusterError(f"{where}={raw!r}: expected a map with min, max, step, "
                           f"cost_per_node_hour, cost_per_gpu_hour")
    bad = sorted(set(raw) - SCALE_KEYS, key=str)
    if bad:
        raise ClusterError(f"{where}.{bad[0]}: unknown key; expected {sorted(SCALE_KEYS)}")
    lo = _count(raw.get("min", count), f"{where}.min", 0)
    hi = _count(raw.get("max", count), f"{where}.max", 0)
    if hi < lo:
        raise ClusterError(f"{where}.max={hi}: below min={lo}")
    step = _count(raw.get("step", 1), f"{where}.step", 1)
    cn = _number(raw.get("cost_per_node_hour", 0.0), f"{where}.cost_per_node_hour", 0.0)
    cg = _number(raw.get("cost_per_gpu_hour", 0.0), f"{where}.cost_per_gpu_hour", 0.0)
    return lo, hi, step, cn, cg


def stratified_order(nodes: Sequence[NodeSpec]) -> list[NodeSpec]:
    """The nodes in an order whose every prefix keeps the mix of (GPU model, GPUs per node)."""
    groups: dict[tuple[str, int], list[int]] = {}
    for i, n in enumerate(nodes):
        groups.setdefault((n.gpu_model, n.topology.n), []).append(i)
    keyed: list[tuple[float, int, int]] = []
    for g, (_, members) in enumerate(sorted(groups.items(), key=lambda kv: -len(kv[1]))):
        m = len(members)
        keyed.extend(((r + 0.5) / m, g, i) for r, i in enumerate(members))
    return [nodes[i] for _, _, i in sorted(keyed)]


def repeat_nodes(ordered: Sequence[NodeSpec], count: int) -> list[NodeSpec]:
    """The first `count` nodes of `ordered`, cycling with renamed copies past its end."""
    n = len(ordered)
    out = list(ordered[:count])
    for k in range(n, count):
        base = ordered[k % n]
        out.append(NodeSpec(name=f"{base.name}-x{k // n}", cpu_milli=base.cpu_milli,
                            memory_mib=base.memory_mib, topology=base.topology,
                            levels=base.levels))
    return out


def node_list_pool(
    nodes: Sequence[NodeSpec], source: str, *, min_count: int, max_count: int, step: int = 1,
    cost_per_node_hour: float = 0.0, cost_per_gpu_hour: float = 0.0,
) -> PlanCluster:
    """A node list scaled as one pool `all` (stratified prefixes, see the module docstring)."""
    if not nodes:
        raise ClusterError(f"{source}: no nodes")
    if not 0 <= min_count <= max_count:
        raise ClusterError(f"scale {min_count}:{max_count}: need 0 <= min <= max")
    if step < 1:
        raise ClusterError(f"scale step {step}: must be >= 1")
    gpn = sum(n.topology.n for n in nodes) / len(nodes)
    pool = ScalablePool("all", len(nodes), min_count, max_count, step, cost_per_node_hour,
                        cost_per_gpu_hour, gpn)
    return PlanCluster(source, [pool], ordered=stratified_order(nodes))


def yaml_pools(data: object, source: str) -> PlanCluster:
    """The pools of a parsed YAML cluster spec with their `scale` maps."""
    from scheduler.cluster.static import cluster_from_dict

    if not isinstance(data, Mapping) or not isinstance(data.get("pools"), list):
        raise ClusterError(f"{source}: expected a map with a list of pools")
    base: dict[str, Any] = copy.deepcopy(dict(data))
    pools: list[ScalablePool] = []
    for i, raw in enumerate(base["pools"]):
        where = f"{source}: pools[{i}]"
        if not isinstance(raw, dict):
            raise ClusterError(f"{where}: expected a map")
        count = _count(raw.get("count"), f"{where}.count", 1)
        lo, hi, step, cn, cg = parse_scale(raw.pop("scale", None), f"{where}.scale", count)
        one = dict(raw, count=1, name=str(raw.get("name", f"pool{i}")))
        try:
            gpn = float(cluster_from_dict({**base, "pools": [one]}, source)[0].topology.n)
        except ValueError as e:
            raise ClusterError(str(e)) from None
        pools.append(ScalablePool(str(raw.get("name")), count, lo, hi, step, cn, cg, gpn))
    out = PlanCluster(source, pools, spec=base)
    out.build_nodes(out.current())  # validate the file as given
    return out


def load_plan_cluster(
    path: str | Path, *, preset_map: PresetMap | None = None,
    scale: tuple[int, int, int] | None = None, cost_per_node_hour: float = 0.0,
    cost_per_gpu_hour: float = 0.0,
) -> PlanCluster:
    """A cluster file as scalable pools. For the node CSV, `scale` = (min, max, step) nodes of
    the one pool `all` (default: fixed at the list's size); YAML pools carry their own."""
    p = Path(path)
    if cluster_kind(p) == "trace":
        nodes = load_trace_nodes(p, preset_map=preset_map)
        lo, hi, step = scale if scale is not None else (len(nodes), len(nodes), 1)
        return node_list_pool(nodes, str(p), min_count=lo, max_count=hi, step=step,
                              cost_per_node_hour=cost_per_node_hour,
                              cost_per_gpu_hour=cost_per_gpu_hour)
    if scale is not None:
        raise ClusterError(f"{p}: --scale is for a node list (CSV); a YAML spec gives each "
                           f"pool a scale map")
    return yaml_pools(read_spec_file(p, ClusterError), str(p))
