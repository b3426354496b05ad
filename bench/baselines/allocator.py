"""Which GPUs of a node the NVIDIA device plugin hands a pod: go-gpuallocator's best-effort policy.

kube-scheduler picks only the node; the GPU ids come from kubelet asking the device plugin's
GetPreferredAllocation with the node's free GPUs. For whole GPUs without time-slicing the plugin
(NVIDIA/k8s-device-plugin internal/rm/nvml_manager.go, getPreferredAllocation -> alignedAlloc)
runs go-gpuallocator's best-effort policy (NVIDIA/go-gpuallocator
gpuallocator/besteffort_policy.go, bestEffortPolicy.Allocate):

- pair score (calculateGPUPairScore): the sum of the points of every link between the two GPUs:
  the PCIe level (internal/links/device.go GetP2PLink: SYS 10, NODE 20, PHB 30, PXB 40, PIX 50,
  same board 60) plus 100 per NVLink (GetNVLink counts the NVLinks whose remote end is the other
  GPU's PCI bus id);
- set score = sum of its pair scores; partition score = sum of its set scores;
- for a request of k GPUs the free list is padded with empty slots to a multiple of k, every
  partition into sets of k is enumerated (iterateGPUPartitions: a set holds all the padding or
  none), the first partition with the highest score is kept, and its highest scoring set is
  returned (first on ties); k = 1 returns the first free GPU of the list.

The free list is in kubelet's order, which is random: kubelet's devicemanager passes
`available.UnsortedList()` (a Go map walk) and Filter keeps that order. Callers pass a seeded
permutation.

What `nvidia-smi topo -m` (our NodeTopology) does not say, and how it is filled in:
- An NVLink pair shows as NV<n>, hiding its PCIe level, which the score also counts. It is
  estimated from the NICs (a NIC at PIX/PXB/... to both GPUs bounds their distance by the worse
  of the two levels) and the NUMA nodes (same node: at most NODE; different: SYS); unknown: SYS.
- Through an NVSwitch, GetNVLink sees the switch's bus id, not the peer GPU's, so the NVLink term
  is 0 and only the PCIe level counts. A topology is taken to be NVSwitch-connected when every
  pair is NV with one count of at least 12 (DGX A100 NV12, H100 NV18). A uniform NV count below
  that (HGX-2's NV6) adds the same constant to every partition, so it cannot change the answer.
- "Same board" (two GPUs on one card, TOPOLOGY_INTERNAL) has no topo -m token and never occurs.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from itertools import combinations

import numpy as np

from topology.links import PCIE_LEVELS, nvlink_count
from topology.model import NodeTopology

# internal/links/device.go GetP2PLink -> besteffort_policy.go calculateGPUPairScore.
PCIE_POINTS: dict[str, int] = {"SYS": 10, "NODE": 20, "PHB": 30, "PXB": 40, "PIX": 50}
NVLINK_POINTS = 100
NVSWITCH_MIN_LINKS = 12
# Partition search is exponential (Go's too): beyond 12 slots, sets of 3 to slots/2 - 1 GPUs
# (16-GPU boards, 3 to 7 GPUs: seconds per call) take the best single set instead.
EXACT_MAX_SLOTS = 12


def is_nvswitch(topo: NodeTopology) -> bool:
    """True when every GPU pair is NV with the same count >= 12 (an NVSwitch board)."""
    n = topo.n
    if n < 2:
        return False
    counts = {nvlink_count(topo.links[i][j]) for i in range(n) for j in range(i + 1, n)}
    return len(counts) == 1 and min(counts) >= NVSWITCH_MIN_LINKS


def _worse(a: str, b: str) -> str:
    return a if PCIE_LEVELS.index(a) >= PCIE_LEVELS.index(b) else b


def hidden_pcie_level(topo: NodeTopology, i: int, j: int) -> str:
    """Estimated PCIe level of an NVLink pair (topo -m prints NV<n> instead)."""
    best = "SYS"
    ni, nj = topo.gpus[i].numa_node, topo.gpus[j].numa_node
    if ni is not None and nj is not None and ni == nj:
        best = "NODE"
    for nic in topo.nics:
        via = _worse(nic.gpu_links[i], nic.gpu_links[j])
        if PCIE_LEVELS.index(via) < PCIE_LEVELS.index(best):
            best = via
    return best


def pair_scores(topo: NodeTopology) -> np.ndarray:
    """n x n int64 matrix of go-gpuallocator pair scores (0 on the diagonal)."""
    n = topo.n
    out = np.zeros((n, n), dtype=np.int64)
    switch = is_nvswitch(topo)
    for i in range(n):
        for j in range(i + 1, n):
            link = topo.links[i][j]
            nv = nvlink_count(link)
            if nv:
                s = PCIE_POINTS[hidden_pcie_level(topo, i, j)]
                s += 0 if switch else NVLINK_POINTS * nv
            else:
                s = PCIE_POINTS[link]
            out[i, j] = out[j, i] = s
    return out


def preferred_allocation(order: Sequence[int], size: int, scores: np.ndarray) -> tuple[int, ...]:
    """bestEffortPolicy.Allocate(available=order, required=[], size) on pair `scores`.

    Exact: the first highest-scoring partition in iterateGPUPartitions' order is found by a
    memoised search over the remaining slots instead of walking every partition, then its best
    set is taken. Sets holding padding are never returned (Go would hand back a nil device).
    Above EXACT_MAX_SLOTS slots, for 3 to slots/2 - 1 GPUs, the best single set is taken.
    """
    devs = [int(d) for d in order]
    if size <= 0 or len(devs) < size:
        return ()
    if size == 1:
        return (devs[0],)
    slots: list[int | None] = list(devs)
    while len(slots) % size:
        slots.append(None)
    n_slots = len(slots)
    padding = n_slots - len(devs)
    sc = np.asarray(scores)
    if n_slots > EXACT_MAX_SLOTS and 2 < size < n_slots // 2:
        return _best_single_set(devs, size, sc)

    def set_score(s: tuple[int, ...]) -> int:
        real = [slots[p] for p in s if slots[p] is not None]
        return int(sum(int(sc[a, b]) for a, b in combinations(real, 2)))

    def n_pad(s: tuple[int, ...]) -> int:
        return sum(1 for p in s if slots[p] is None)

    def candidates(rem: tuple[int, ...]) -> list[tuple[int, ...]]:
        # iterateGPUSets(devices[1:], size-1) in lexicographic order, devices[0] prepended;
        # the last set is whatever remains (the base case takes it without the padding test).
        if len(rem) == size:
            return [rem]
        first, rest = rem[0], rem[1:]
        out = []
        for c in combinations(rest, size - 1):
            s = (first, *c)
            p = n_pad(s)
            if p == 0 or p == padding:
                out.append(s)
        return out

    @cache
    def best(rem: tuple[int, ...]) -> int:
        if not rem:
            return 0
        vals = [set_score(s) + best(tuple(x for x in rem if x not in s))
                for s in candidates(rem)]
        # A remainder with no admissible set cannot be completed (Go never reaches it either).
        return max(vals) if vals else -(1 << 60)

    rem = tuple(range(n_slots))
    target = best(rem)
    partition: list[tuple[int, ...]] = []
    while rem:
        for s in candidates(rem):
            nxt = tuple(x for x in rem if x not in s)
            if set_score(s) + best(nxt) == target:
                partition.append(s)
                target -= set_score(s)
                rem = nxt
                break
        else:  # pragma: no cover - best() guarantees a matching candidate
            raise AssertionError("best-effort partition walk lost its target")
    chosen: tuple[int, ...] | None = None
    chosen_score = -1
    for s in partition:
        if n_pad(s):
            continue
        v = set_score(s)
        if chosen is None or v > chosen_score:
            chosen, chosen_score = s, v
    if chosen is None:
        return ()
    return tuple(int(slots[p]) for p in chosen)  # type: ignore[arg-type]


def _best_single_set(devs: list[int], size: int, sc: np.ndarray) -> tuple[int, ...]:
    """The highest-scoring `size`-set, first in iterateGPUSets order on ties."""
    best: tuple[int, ...] = ()
    best_score = -1
    for s in combinations(devs, size):
        v = int(sum(int(sc[a, b]) for a, b in combinations(s, 2)))
        if v > best_score:
            best, best_score = s, v
    return best


class DevicePluginAllocator:
    """GPU ids on a chosen node as the NVIDIA device plugin prefers them (pair tables cached)."""

    def __init__(self) -> None:
        self._scores: dict[str, np.ndarray] = {}

    def scores_for(self, topo: NodeTopology) -> np.ndarray:
        """Pair scores of a topology, built once per distinct topology."""
        k = topo.key()
        if k not in self._scores:
            self._scores[k] = pair_scores(topo)
        return self._scores[k]

    def choose(
        self, topo: NodeTopology, free: Sequence[int], size: int, rng: np.random.Generator
    ) -> tuple[int, ...]:
        """`size` GPUs out of the `free` ones, the free list shuffled as kubelet hands it over."""
        order = [int(x) for x in rng.permutation(np.asarray(free, dtype=np.int64))]
        if size == 1:
            return (order[0],) if order else ()
        return tuple(sorted(preferred_allocation(order, size, self.scores_for(topo))))
