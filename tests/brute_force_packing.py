"""The exact optimum of small packing instances, by exhaustive search: the most GPU
thousandths any placement of a subset of the pods allocates (tests/test_bound.py checks the LP
bound against it, tests/test_offline_packer.py the offline packers), and the small clusters
and pods those tests build."""

from __future__ import annotations

from functools import cache

from hypothesis import strategies as st

from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest
from scheduler.contract.units import MILLI_PER_GPU
from topology.presets import preset

TOPO = {1: "single-gpu", 2: "pcie-2gpu", 4: "pcie-4gpu"}


def nodes_of(shapes: list[tuple[int, int, int]]) -> list[NodeSpec]:
    """Nodes n0, n1, ... of (GPUs, CPU milli, memory MiB), GPUs in TOPO's presets."""
    return [NodeSpec(f"n{i}", cpu, mem, preset(TOPO[g])) for i, (g, cpu, mem) in
            enumerate(shapes)]


def share(i: int, milli: int, cpu: int = 0, mem: int = 0) -> PodRequest:
    """Pod p<i> asking for `milli` thousandths of one GPU."""
    return PodRequest(key=f"p{i}", cpu_milli=cpu, memory_mib=mem, gpu_milli=milli)


def whole(i: int, gpus: int, cpu: int = 0, mem: int = 0) -> PodRequest:
    """Pod p<i> asking for `gpus` whole GPUs."""
    return PodRequest(key=f"p{i}", cpu_milli=cpu, memory_mib=mem, gpus=gpus)


def brute_force(nodes: list[NodeSpec], pods: list[PodRequest]) -> int:
    """The most GPU thousandths any placement of a subset of `pods` allocates (exhaustive)."""
    gpus = [[0] * s.topology.n for s in nodes]
    cpu = [s.cpu_milli for s in nodes]
    mem = [s.memory_mib for s in nodes]
    models = [s.gpu_model for s in nodes]

    @cache
    def best(i: int, state: tuple[tuple[tuple[int, ...], int, int], ...]) -> int:
        if i == len(pods):
            return 0
        p = pods[i]
        out = best(i + 1, state)  # refuse it
        for n, (used, c, m) in enumerate(state):
            if c < p.cpu_milli or m < p.memory_mib:
                continue
            if p.allowed_models and models[n] not in p.allowed_models:
                continue
            options: list[tuple[int, ...]] = []
            if p.is_share:
                for g in sorted(set(range(len(used))), key=lambda g: used[g]):
                    if used[g] + p.gpu_milli <= MILLI_PER_GPU:
                        new = list(used)
                        new[g] += p.gpu_milli
                        options.append(tuple(sorted(new)))
            elif p.gpus:
                if sum(1 for u in used if u == 0) >= p.gpus:
                    new = sorted(used)
                    for g in range(p.gpus):
                        new[g] = MILLI_PER_GPU
                    options.append(tuple(sorted(new)))
            else:
                options.append(used)
            for new_used in set(options):
                nxt = list(state)
                nxt[n] = (new_used, c - p.cpu_milli, m - p.memory_mib)
                out = max(out, p.gpu_demand_milli + best(i + 1, tuple(nxt)))
        return out

    return best(0, tuple((tuple(g), c, m) for g, c, m in zip(gpus, cpu, mem, strict=True)))


@st.composite
def instances(draw: st.DrawFn, kinds: tuple[str, ...] = ("share", "whole")
              ) -> tuple[list[NodeSpec], list[PodRequest]]:
    """A small cluster (1-2 nodes of 1-2 GPUs, small or large CPU and memory) and 1-6 pods of
    `kinds` ("share", "whole", "cpu"), each with some CPU and memory or none."""
    shapes = draw(st.lists(st.tuples(st.sampled_from([1, 2]), st.sampled_from([4000, 16000]),
                                     st.sampled_from([8192, 65536])), min_size=1, max_size=2))
    pods: list[PodRequest] = []
    for i in range(draw(st.integers(1, 6))):
        cpu = draw(st.sampled_from([0, 1000, 3000, 9000]))
        mem = draw(st.sampled_from([0, 4096, 40000]))
        kind = draw(st.sampled_from(kinds))
        if kind == "share":
            pods.append(share(i, draw(st.sampled_from([50, 160, 300, 470, 650, 810])), cpu, mem))
        elif kind == "whole":
            pods.append(whole(i, draw(st.sampled_from([1, 2])), cpu, mem))
        else:
            pods.append(PodRequest(key=f"p{i}", cpu_milli=cpu, memory_mib=mem))
    return nodes_of(shapes), pods
