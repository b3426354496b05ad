"""The cluster as numpy arrays over all nodes, and the only two ways to change it.

`allocate` and `release` keep every array consistent and are exact inverses, so a gang
reservation, a simulator step or a failed bind can always be rolled back bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from scheduler.contract.assignment import Assignment
from scheduler.contract.node import NodeSpec
from scheduler.contract.units import MILLI_PER_GPU
from topology.model import NodeTopology
from topology.network import level_ids
from topology.tables import EXACT_MAX_GPUS, SubsetTables, build_tables


class AllocationError(ValueError):
    """An allocation that would over-commit something or names an unknown node, GPU or pod."""


@dataclass(slots=True)
class TopologyIndex:
    """Distinct topologies (by key) and their tables, built once per topology, not per node."""

    keys: dict[str, int] = field(default_factory=dict)
    topologies: list[NodeTopology] = field(default_factory=list)
    tables: list[SubsetTables | None] = field(default_factory=list)

    def add(self, topo: NodeTopology) -> int:
        """Id of the topology, building its tables the first time it is seen."""
        k = topo.key()
        if k not in self.keys:
            self.keys[k] = len(self.topologies)
            self.topologies.append(topo)
            self.tables.append(build_tables(topo) if 0 < topo.n <= EXACT_MAX_GPUS else None)
        return self.keys[k]


@dataclass(eq=False)
class Snapshot:
    """Arrays over all nodes (N) and their GPUs (padded to G per node).

    Invariants kept by allocate/release: 0 <= milli_free <= 1000 and 0 <= gpu_mem_free <=
    gpu_mem_total per GPU; bit i of free_mask is set iff GPU i is wholly free
    (milli_free == 1000); cpu_free, mem_free never negative; `holdings` lists who holds what.
    """

    names: list[str]
    index: dict[str, int]
    cpu_total: np.ndarray
    cpu_free: np.ndarray
    mem_total: np.ndarray
    mem_free: np.ndarray
    gpu_count: np.ndarray
    milli_free: np.ndarray
    gpu_mem_total: np.ndarray
    gpu_mem_free: np.ndarray
    free_mask: np.ndarray
    model_id: np.ndarray
    models: list[str]
    topo_id: np.ndarray
    topo_index: TopologyIndex
    level_ids: np.ndarray
    specs: list[NodeSpec]
    holdings: dict[str, Assignment] = field(default_factory=dict)
    # Derived data the policy caches per snapshot (flattened tables, per-node fragmentation
    # statistics). Not state: not compared, and copy() starts empty. The caches refresh from
    # node_version, so change the arrays only through allocate/release (or edit a fresh copy
    # before any policy call on it).
    memo: dict[str, object] = field(default_factory=dict, repr=False, compare=False)
    # Change counters kept by allocate/release: `generation` for the whole snapshot and
    # `node_version[i]` per node, so caches refresh only the nodes that changed.
    node_version: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False,
                                     compare=False)
    generation: int = field(default=0, repr=False, compare=False)
    # The node each change touched, in order: change_log[k] is the node of generation
    # log_start + k + 1. A cache valid at generation g then revisits only the nodes logged
    # since g instead of comparing every node's version (the log is trimmed, so old g fall
    # back to the comparison).
    change_log: list[int] = field(default_factory=list, init=False, repr=False, compare=False)
    log_start: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.node_version.shape != (len(self.names),):
            self.node_version = np.zeros(len(self.names), dtype=np.int64)
        self.log_start = self.generation

    @property
    def n_nodes(self) -> int:
        """Number of nodes."""
        return len(self.names)

    @property
    def max_gpus(self) -> int:
        """G, the padded GPU dimension."""
        return int(self.milli_free.shape[1])

    def tables_of(self, node: int) -> SubsetTables | None:
        """Subset tables of a node's topology (None for CPU nodes and > 16 GPUs)."""
        t = int(self.topo_id[node])
        return self.topo_index.tables[t] if t >= 0 else None

    def topology_of(self, node: int) -> NodeTopology:
        """The node's GPU topology (empty for a CPU-only node)."""
        return self.specs[node].topology

    def changed_rows(self, generation: int, versions: np.ndarray) -> np.ndarray:
        """Sorted indices of the nodes changed since a cache was valid at `generation` with
        per-node `versions` (a copy of node_version then)."""
        k = generation - self.log_start
        n = len(self.change_log) - k
        if k >= 0 and n == 1:  # one allocation since: the usual case between two decisions
            return np.array(self.change_log[k:], dtype=np.int64)
        if k >= 0 and n <= max(8, self.n_nodes >> 5):
            return np.array(sorted(set(self.change_log[k:])), dtype=np.int64)
        return np.flatnonzero(self.node_version != versions)

    def allocate(self, a: Assignment) -> None:
        """Record that pod a.pod holds a's resources; raises AllocationError on any overcommit."""
        if a.pod in self.holdings:
            raise AllocationError(f"pod {a.pod!r} already holds resources on "
                                  f"{self.holdings[a.pod].node!r}")
        i = self._node(a.node)
        gpus = self._check_gpus(i, a)
        if a.cpu_milli < 0 or a.cpu_milli > self.cpu_free[i]:
            raise AllocationError(f"node {a.node!r}: cpu_milli={a.cpu_milli} but "
                                  f"{int(self.cpu_free[i])} free")
        if a.memory_mib < 0 or a.memory_mib > self.mem_free[i]:
            raise AllocationError(f"node {a.node!r}: memory_mib={a.memory_mib} but "
                                  f"{int(self.mem_free[i])} free")
        whole = a.gpu_milli == MILLI_PER_GPU
        for g in gpus:
            if whole:
                if self.milli_free[i, g] != MILLI_PER_GPU:
                    raise AllocationError(f"node {a.node!r} GPU {g} is not wholly free")
            else:
                if a.gpu_milli > self.milli_free[i, g]:
                    raise AllocationError(f"node {a.node!r} GPU {g}: gpu_milli={a.gpu_milli} "
                                          f"but {int(self.milli_free[i, g])} free")
                if a.gpu_memory_mib > self.gpu_mem_free[i, g]:
                    raise AllocationError(f"node {a.node!r} GPU {g}: gpu_memory_mib="
                                          f"{a.gpu_memory_mib} but "
                                          f"{int(self.gpu_mem_free[i, g])} free")
        self._apply(i, gpus, a, sign=-1)
        self.holdings[a.pod] = a

    def release(self, pod: str) -> Assignment:
        """Give back everything pod holds; the exact inverse of its allocate."""
        a = self.holdings.pop(pod, None)
        if a is None:
            raise AllocationError(f"pod {pod!r} holds nothing")
        i = self.index[a.node]
        self._apply(i, list(a.gpus), a, sign=+1)
        return a

    def _apply(self, i: int, gpus: list[int], a: Assignment, sign: int) -> None:
        self.node_version[i] += 1
        self.generation += 1
        self.change_log.append(i)
        if len(self.change_log) > max(1024, self.n_nodes):
            half = len(self.change_log) // 2
            del self.change_log[:half]
            self.log_start += half
        self.cpu_free[i] += sign * a.cpu_milli
        self.mem_free[i] += sign * a.memory_mib
        for g in gpus:
            if a.gpu_milli == MILLI_PER_GPU:
                self.milli_free[i, g] += sign * MILLI_PER_GPU
                self.gpu_mem_free[i, g] += sign * self.gpu_mem_total[i, g]
            else:
                self.milli_free[i, g] += sign * a.gpu_milli
                self.gpu_mem_free[i, g] += sign * a.gpu_memory_mib
            bit = np.int64(1) << np.int64(g)
            if self.milli_free[i, g] == MILLI_PER_GPU:
                self.free_mask[i] |= bit
            else:
                self.free_mask[i] &= ~bit

    def _node(self, name: str) -> int:
        i = self.index.get(name)
        if i is None:
            raise AllocationError(f"unknown node {name!r}")
        return i

    def _check_gpus(self, i: int, a: Assignment) -> list[int]:
        gpus = list(a.gpus)
        n = int(self.gpu_count[i])
        if len(set(gpus)) != len(gpus):
            raise AllocationError(f"pod {a.pod!r}: GPU indices repeat: {gpus}")
        bad = [g for g in gpus if not (isinstance(g, int) and 0 <= g < n)]
        if bad:
            raise AllocationError(f"node {a.node!r} has GPUs 0..{n - 1}, not {bad}")
        if not 1 <= a.gpu_milli <= MILLI_PER_GPU:
            raise AllocationError(f"pod {a.pod!r}: gpu_milli={a.gpu_milli} outside 1..1000")
        if a.gpu_milli < MILLI_PER_GPU and len(gpus) != 1:
            raise AllocationError(f"pod {a.pod!r}: a share spans one GPU, not {gpus}")
        if a.gpu_memory_mib < 0:
            raise AllocationError(f"pod {a.pod!r}: gpu_memory_mib={a.gpu_memory_mib} < 0")
        return gpus

    def copy(self) -> Snapshot:
        """A deep copy of the mutable arrays; topologies and tables are shared (read-only)."""
        return Snapshot(
            names=self.names, index=self.index,
            cpu_total=self.cpu_total, cpu_free=self.cpu_free.copy(),
            mem_total=self.mem_total, mem_free=self.mem_free.copy(),
            gpu_count=self.gpu_count, milli_free=self.milli_free.copy(),
            gpu_mem_total=self.gpu_mem_total, gpu_mem_free=self.gpu_mem_free.copy(),
            free_mask=self.free_mask.copy(), model_id=self.model_id, models=self.models,
            topo_id=self.topo_id, topo_index=self.topo_index, level_ids=self.level_ids,
            specs=self.specs, holdings=dict(self.holdings),
            node_version=self.node_version.copy(), generation=self.generation,
        )


def row_selector(rows: np.ndarray) -> np.ndarray | slice:
    """`rows` (from changed_rows) as an index; one row as a slice, whose basic indexing is
    several times cheaper than a fancy index (one node changed is the common case)."""
    if rows.size == 1:
        r = int(rows[0])
        return slice(r, r + 1)
    return rows


def build_snapshot(
    nodes: Sequence[NodeSpec],
    placed: Iterable[Assignment] = (),
    topo_index: TopologyIndex | None = None,
) -> Snapshot:
    """A snapshot of `nodes` with `placed` already allocated (the restart and simulator path).

    Pass a `topo_index` to reuse tables already built for the same topologies.
    """
    index: dict[str, int] = {}
    for i, s in enumerate(nodes):
        if s.name in index:
            raise AllocationError(f"node name {s.name!r} appears twice")
        if s.cpu_milli < 0 or s.memory_mib < 0:
            raise AllocationError(f"node {s.name!r}: negative capacity")
        if s.topology.n > 63:
            raise AllocationError(f"node {s.name!r}: {s.topology.n} GPUs; at most 63 per node")
        index[s.name] = i
    n = len(nodes)
    g_max = max((s.topology.n for s in nodes), default=0)
    tix = topo_index if topo_index is not None else TopologyIndex()
    models = sorted({s.gpu_model for s in nodes if s.gpu_model})
    model_ids = {m: k for k, m in enumerate(models)}
    gpu_count = np.array([s.topology.n for s in nodes], dtype=np.int64)
    gpu_mem_total = np.zeros((n, g_max), dtype=np.int64)
    milli_free = np.zeros((n, g_max), dtype=np.int64)
    for i, s in enumerate(nodes):
        for g in s.topology.gpus:
            gpu_mem_total[i, g.index] = g.memory_mib
            milli_free[i, g.index] = MILLI_PER_GPU
    free_mask = np.array([(1 << int(c)) - 1 for c in gpu_count], dtype=np.int64)
    snap = Snapshot(
        names=[s.name for s in nodes],
        index=index,
        cpu_total=np.array([s.cpu_milli for s in nodes], dtype=np.int64),
        cpu_free=np.array([s.cpu_milli for s in nodes], dtype=np.int64),
        mem_total=np.array([s.memory_mib for s in nodes], dtype=np.int64),
        mem_free=np.array([s.memory_mib for s in nodes], dtype=np.int64),
        gpu_count=gpu_count,
        milli_free=milli_free,
        gpu_mem_total=gpu_mem_total,
        gpu_mem_free=gpu_mem_total.copy(),
        free_mask=free_mask,
        model_id=np.array([model_ids.get(s.gpu_model, -1) for s in nodes], dtype=np.int32),
        models=models,
        topo_id=np.array([tix.add(s.topology) if s.topology.n else -1 for s in nodes],
                         dtype=np.int32),
        topo_index=tix,
        level_ids=level_ids([s.levels for s in nodes]),
        specs=list(nodes),
    )
    for a in placed:
        snap.allocate(a)
    return snap
