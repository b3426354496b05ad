"""bench.offline_packer: its placements are real (re-checked here without the project's
allocation code), never above the exact optimum nor the LP bound, and optimal where the
optimum is plain (shares that pair to whole GPUs)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from brute_force_packing import brute_force, instances, nodes_of, share, whole
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.bound import lp_bound
from bench.offline_packer import Packing, bfd_pack, lp_pack, main, share_patterns
from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest
from scheduler.contract.units import MILLI_PER_GPU
from topology.presets import preset

Packer = Callable[[Sequence[NodeSpec], Sequence[PodRequest]], Packing]
PACKERS: dict[str, Packer] = {"bfd": bfd_pack, "lp": lp_pack}


def assert_feasible(nodes: Sequence[NodeSpec], pods: Sequence[PodRequest], pk: Packing) -> None:
    """Every assignment is what its pod asked for, on an allowed node, and no node's CPU,
    memory or GPU (1000 thousandths; a whole GPU held by one pod alone) is over-committed."""
    by_key = {p.key: p for p in pods}
    spec = {s.name: s for s in nodes}
    assert len({a.pod for a in pk.assignments}) == len(pk.assignments)
    cpu: Counter[str] = Counter()
    mem: Counter[str] = Counter()
    milli: Counter[tuple[str, int]] = Counter()
    holders: defaultdict[tuple[str, int], list[str]] = defaultdict(list)
    for a in pk.assignments:
        p, s = by_key[a.pod], spec[a.node]
        assert (a.cpu_milli, a.memory_mib) == (p.cpu_milli, p.memory_mib)
        if p.is_share:
            assert len(a.gpus) == 1 and a.gpu_milli == p.gpu_milli
        else:
            assert len(set(a.gpus)) == len(a.gpus) == p.gpus and a.gpu_milli == MILLI_PER_GPU
        assert not p.allowed_models or s.gpu_model in p.allowed_models
        cpu[a.node] += a.cpu_milli
        mem[a.node] += a.memory_mib
        for g in a.gpus:
            assert 0 <= g < s.topology.n
            milli[(a.node, g)] += a.gpu_milli
            holders[(a.node, g)].append(a.pod)
    for name, used in cpu.items():
        assert used <= spec[name].cpu_milli
    for name, used in mem.items():
        assert used <= spec[name].memory_mib
    for gpu, used in milli.items():
        assert used <= MILLI_PER_GPU
        if any(not by_key[k].is_share for k in holders[gpu]):
            assert len(holders[gpu]) == 1  # a whole GPU is not shared
    assert pk.allocated_milli == sum(by_key[a.pod].gpu_demand_milli for a in pk.assignments)
    assert pk.capacity_milli == sum(s.topology.n for s in nodes) * MILLI_PER_GPU


def packed(name: str, nodes: list[NodeSpec], pods: list[PodRequest]) -> Packing:
    """The packing of packer `name`, checked feasible."""
    pk = PACKERS[name](nodes, pods)
    assert_feasible(nodes, pods, pk)
    return pk


@pytest.mark.parametrize("name", sorted(PACKERS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inst=instances(kinds=("share", "whole", "cpu")))
def test_feasible_and_never_above_the_optimum_or_the_bound(
    name: str, inst: tuple[list[NodeSpec], list[PodRequest]]
) -> None:
    nodes, pods = inst
    pk = packed(name, nodes, pods)
    assert pk.allocated_milli <= brute_force(nodes, pods)
    assert pk.allocated_milli <= lp_bound(nodes, pods).max_allocated_milli + 1e-6


@st.composite
def pairs(draw: st.DrawFn) -> tuple[list[NodeSpec], list[PodRequest]]:
    """Shares that pair exactly into whole GPUs, as many pairs as GPUs, in random order."""
    shapes = draw(st.lists(st.sampled_from([1, 2, 4]), min_size=1, max_size=3))
    n = sum(shapes)
    sizes: list[int] = []
    for _ in range(n):
        s = draw(st.sampled_from([190, 230, 300, 350, 400, 450, 500]))
        sizes += [s, MILLI_PER_GPU - s]
    order = draw(st.permutations(sizes))
    return nodes_of([(g, 64000, 65536) for g in shapes]), [share(i, s) for i, s in
                                                           enumerate(order)]


@pytest.mark.parametrize("name", sorted(PACKERS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inst=pairs())
def test_shares_that_pair_exactly_fill_every_gpu(
    name: str, inst: tuple[list[NodeSpec], list[PodRequest]]
) -> None:
    pk = packed(name, *inst)
    assert pk.allocated_milli == pk.capacity_milli
    assert pk.unallocated_pct == 0.0


def test_the_lp_picks_the_pattern_best_fit_misses() -> None:
    # One GPU: best-fit decreasing takes 500 + 400 and has no room for a 300 (900); the LP's
    # only full GPU is 400 + 300 + 300, and the 500 is refused.
    nodes = nodes_of([(1, 64000, 65536)])
    pods = [share(0, 500), share(1, 400), share(2, 300), share(3, 300)]
    assert brute_force(nodes, pods) == 1000
    assert bfd_pack(nodes, pods).allocated_milli == 900
    pk = lp_pack(nodes, pods)
    assert_feasible(nodes, pods, pk)
    assert pk.allocated_milli == 1000


def test_cpu_stays_with_the_gpus_that_need_it() -> None:
    # Two 2-GPU nodes of 8 CPUs: two 6-CPU pods must go to different nodes, each beside a
    # 2-CPU pod; packing by GPUs alone would strand a GPU.
    nodes = nodes_of([(2, 8000, 65536), (2, 8000, 65536)])
    pods = [whole(0, 1, cpu=6000), whole(1, 1, cpu=6000), whole(2, 1, cpu=2000),
            whole(3, 1, cpu=2000)]
    assert brute_force(nodes, pods) == 4000
    pk = lp_pack(nodes, pods)
    assert_feasible(nodes, pods, pk)
    assert pk.allocated_milli == 4000


def test_models_and_cpu_only_pods() -> None:
    t4 = NodeSpec("a", 64000, 65536, preset("single-gpu", model="T4"))
    v100 = NodeSpec("b", 64000, 65536, preset("single-gpu", model="V100"))
    pods = [PodRequest(key="t", gpus=1, allowed_models=frozenset({"T4"})),
            PodRequest(key="t2", gpus=1, allowed_models=frozenset({"T4"})),
            PodRequest(key="c", cpu_milli=1000)]
    for packer in PACKERS.values():
        pk = packer([t4, v100], pods)
        assert_feasible([t4, v100], pods, pk)
        assert [(a.pod, a.node) for a in pk.assignments] in ([("t", "a")], [("t2", "a")])


def test_deterministic() -> None:
    nodes = nodes_of([(4, 32000, 131072), (2, 16000, 65536), (1, 8000, 32768)])
    sizes = [810, 470, 650, 320, 160, 230, 1000, 2000, 110]
    pods = [share(i, s, 2000 * (i % 3), 4096) if s < 1000 else whole(i, s // 1000, 4000)
            for i, s in enumerate(sizes * 2)]
    for packer in PACKERS.values():
        assert packer(nodes, pods) == packer(nodes, list(pods))


def test_share_patterns_decompose_the_flow() -> None:
    # 1.5 GPUs of 600 + 400 and 0.5 of 600 + 300: the 600 arc carries 2.
    arcs = {(0, 600): 2.0, (600, 400): 1.5, (600, 300): 0.5, (0, 300): 0.0}
    assert share_patterns(arcs) == [((600, 400), 1.5), ((600, 300), 0.5)]
    assert share_patterns({}) == []


def test_lp_solution_matches_the_bound() -> None:
    nodes = nodes_of([(2, 16000, 65536), (1, 8000, 32768)])
    pods = [share(0, 600), share(1, 400), whole(2, 1, cpu=4000), whole(3, 2), share(4, 810)]
    b = lp_bound(nodes, pods, solution=True)
    assert b.solution is not None
    got = sum(v * (c[0] * MILLI_PER_GPU or c[1]) for (c, _t), v in b.solution.placed.items())
    assert got == pytest.approx(b.max_allocated_milli)
    assert lp_bound(nodes, pods).solution is None


def test_cli_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path
    (d / "openb_node_list_gpu_node.csv").write_text(
        "sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,2,T4\nn1,32000,131072,1,T4\n")
    (d / "openb_pod_list_tiny.csv").write_text(
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,"
        "deletion_time,scheduled_time\n"
        + "".join(f"p{i},1000,1024,1,{1000 if i % 3 == 0 else 450},,LS,Running,0,100,1\n"
                  for i in range(6)))
    assert main(["--variants", "tiny", "--seeds", "2", "--trace-dir", str(d),
                 "--json", str(d / "out.json")]) == 0
    out = capsys.readouterr().out
    assert "| tiny | 100 % |" in out and "| tiny | 130 % |" in out
    assert (d / "out.json").read_text().count('"variant": "tiny"') == 4
