"""`gts plan`: the search (pure, on synthetic predicates) and the command on small clusters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.plan import main as plan_main
from bench.plan_cluster import load_plan_cluster, node_list_pool, stratified_order
from bench.plan_search import CachedPredicate, one_step_below, smallest_counts, smallest_on_grid
from scheduler.contract.node import NodeSpec
from topology.presets import preset

HEADER = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time," \
         "deletion_time,scheduled_time\n"


@given(st.integers(0, 200), st.integers(1, 7), st.one_of(st.none(), st.integers(0, 220)))
@settings(max_examples=60, deadline=None)
def test_bisection_finds_the_threshold(threshold: int, step: int, hint: int | None) -> None:
    grid = list(range(0, 201, step))
    calls: list[int] = []

    def passes(v: int) -> bool:
        calls.append(v)
        return v >= threshold

    got = smallest_on_grid(passes, grid, hint)
    want = next((v for v in grid if v >= threshold), None)
    assert got == want
    assert len(set(calls)) <= 2 * len(grid).bit_length() + 4


def test_a_good_hint_costs_two_steps() -> None:
    pred = CachedPredicate(lambda c: c[0] >= 57)
    assert smallest_counts(pred, [list(range(0, 101))], [0], hint=(57,)) == (57,)
    assert len(pred.order) == 2  # the hint passes, one step below misses


def test_nothing_within_bounds_is_none() -> None:
    assert smallest_on_grid(lambda v: v >= 500, list(range(0, 100))) is None
    assert smallest_counts(lambda c: sum(c) >= 500, [[0, 5, 10], [1, 2]], [0, 1]) is None


def test_coordinate_descent_shrinks_expensive_pools_first() -> None:
    gpus = (8, 4, 1)

    def passes(c: tuple[int, ...]) -> bool:
        return sum(n * g for n, g in zip(c, gpus, strict=True)) >= 100

    grids = [list(range(0, 21)), list(range(0, 21)), list(range(0, 21))]
    got = smallest_counts(passes, grids, order=[0, 1, 2])
    assert got is not None and passes(got)
    # A local minimum: no single pool can give up one more node.
    assert not any(passes(b) for b in one_step_below(got, grids))
    assert got[0] == 0  # the first pool in the order was cut to its minimum


def _nodes(n: int) -> list[NodeSpec]:
    kinds = ["dgx-a100", "pcie-4gpu"]
    return [NodeSpec(f"n{i}", 64_000, 256_000, preset(kinds[i % 5 == 4])) for i in range(n)]


def test_stratified_prefixes_keep_the_mix() -> None:
    nodes = _nodes(50)  # 40 x 8 GPUs, 10 x 4 GPUs
    order = stratified_order(nodes)
    assert sorted(n.name for n in order) == sorted(n.name for n in nodes)
    for k in (5, 10, 25):
        small = sum(1 for n in order[:k] if n.topology.n == 4)
        assert abs(small - k / 5) <= 1
    cl = node_list_pool(nodes, "test", min_count=1, max_count=120)
    big = cl.build_nodes((120,))
    assert len({n.name for n in big}) == 120  # copies past the end are renamed


def _workload(path: Path, eight: int, ones: int) -> Path:
    rows = [f"p{i},4000,16000,8,1000,,LS,Running,{i},{i + 100},{i}" for i in range(eight)]
    rows += [f"q{i},1000,4000,1,1000,,LS,Running,{i},{i + 100},{i}" for i in range(ones)]
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _spec(path: Path, count: int, lo: int, hi: int, cost: float = 2.0) -> Path:
    path.write_text(
        "pools:\n"
        f"  - {{name: a100, count: {count}, preset: dgx-a100, cpu: 128, memory: 1Ti,\n"
        f"     scale: {{min: {lo}, max: {hi}, step: 1, cost_per_gpu_hour: {cost}}}}}\n",
        encoding="utf-8")
    return path


def test_a_cluster_twice_as_large_as_needed_is_cut_down(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 10 pods of 8 GPUs and 16 of 1 GPU: 96 GPUs, 12 DGX A100 nodes when packed well.
    wl = _workload(tmp_path / "w.csv", 10, 16)
    spec = _spec(tmp_path / "c.yaml", 24, 1, 24)
    out = tmp_path / "plan"
    rc = plan_main(["--cluster", str(spec), "--workload", str(wl), "--policies",
                    "topology,default", "--seeds", "2", "--placed", "100", "--jobs", "1",
                    "--quiet", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    doc = json.loads((out / "plan.json").read_text())
    ours = doc["policies"]["topology"]
    assert ours["counts"] == [12] and ours["gpus"] == 96
    assert ours["seed_answer_gpus"] == [96, 96]
    assert all(o["passed"] for o in ours["at_answer"])
    assert not all(o["passed"] for o in ours["below"])  # one node fewer misses
    assert ours["cost_per_month"] == pytest.approx(96 * 2.0 * 730)
    assert "With topology this workload needs 96 GPUs" in text
    assert (out / "plan.png").stat().st_size > 0


def test_a_target_no_cluster_meets_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wl = _workload(tmp_path / "w.csv", 10, 16)
    spec = _spec(tmp_path / "c.yaml", 6, 1, 8)  # at most 64 GPUs for 96 requested
    rc = plan_main(["--cluster", str(spec), "--workload", str(wl), "--policies", "topology",
                    "--seeds", "1", "--jobs", "1", "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "no cluster within the bounds meets the target" in text
    assert "not within bounds" in text
    assert "largest cluster:" in text  # what the largest allowed cluster reaches


def test_what_if_compares_the_current_cluster_with_one_pool_changed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wl = _workload(tmp_path / "w.csv", 10, 16)
    spec = _spec(tmp_path / "c.yaml", 12, 1, 24)
    rc = plan_main(["--cluster", str(spec), "--workload", str(wl), "--policies", "topology",
                    "--seeds", "1", "--placed", "100", "--what-if", "a100-2", "--quiet"])
    assert rc == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines()
                if ln.startswith("| topology"))
    assert "| yes |" in line and "| no (0/1 seeds) |" in line


def test_dynamic_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # All pods arrive at once and run 100 s: with fewer nodes they queue.
    wl = _workload(tmp_path / "w.csv", 4, 0)
    spec = _spec(tmp_path / "c.yaml", 8, 1, 8)
    rc = plan_main(["--cluster", str(spec), "--workload", str(wl), "--policies", "topology",
                    "--mode", "dynamic", "--p95-wait-min", "0", "--seeds", "1", "--quiet",
                    "--out", str(tmp_path / "o")])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads((tmp_path / "o" / "plan.json").read_text())
    assert doc["policies"]["topology"]["counts"] == [4]


@pytest.mark.parametrize("args, msg", [
    (["--jobs", "0"], "--jobs 0: must be at least 1"),
    (["--seeds", "0"], "--seeds 0"),
    (["--policies", "nope"], "unknown 'nope'"),
    (["--what-if", "gpu+2"], "no pool 'gpu'"),
    (["--scale", "1:4"], "--scale is for a node list"),
])
def test_cli_refuses_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               args: list[str], msg: str) -> None:
    wl = _workload(tmp_path / "w.csv", 1, 1)
    spec = _spec(tmp_path / "c.yaml", 2, 1, 4)
    rc = plan_main(["--cluster", str(spec), "--workload", str(wl), "--quiet", *args])
    assert rc == 2
    assert msg in capsys.readouterr().err


def test_out_is_checked_before_any_replay(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    wl = _workload(tmp_path / "w.csv", 1, 1)
    spec = _spec(tmp_path / "c.yaml", 2, 1, 4)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = plan_main(["--cluster", str(spec), "--workload", str(wl), "--quiet",
                    "--out", str(blocker)])
    assert rc == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_scale_map_errors_name_the_key(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("pools:\n  - {name: a, count: 2, preset: dgx-a100, cpu: 8, memory: 1Ti,\n"
                 "     scale: {min: 3, max: 1}}\n")
    with pytest.raises(ValueError, match=r"pools\[0\]\.scale\.max=1: below min=3"):
        load_plan_cluster(p)


def test_readme_table_is_replaced_between_markers(tmp_path: Path) -> None:
    wl = _workload(tmp_path / "w.csv", 2, 2)
    spec = _spec(tmp_path / "c.yaml", 4, 1, 4)
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- gts plan: begin -->\nold table\n<!-- gts plan: end -->\n"
                      "after\n")
    assert plan_main(["--cluster", str(spec), "--workload", str(wl), "--policies", "topology",
                      "--seeds", "1", "--quiet", "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text and text.endswith("<!-- gts plan: end -->\nafter\n")
    assert "| topology | 24 |" in text
    readme.write_text("no markers")
    assert plan_main(["--cluster", str(spec), "--workload", str(wl), "--quiet",
                      "--readme", str(readme)]) == 2


def test_progress_names_policy_step_and_seed(tmp_path: Path) -> None:
    from bench.baselines.typical_pods import typical_pods_of
    from bench.capacity_plan import PlanInputs, Target, plan_policy
    from bench.workloads import load_workload

    wl = load_workload(_workload(tmp_path / "w.csv", 4, 4))
    cl = load_plan_cluster(_spec(tmp_path / "c.yaml", 8, 1, 8))
    inp = PlanInputs(cl, wl, Target(placed_pct=100.0), [0, 1],
                     demand_milli=sum(p.gpu_demand_milli for p in wl.pods()),
                     typical=typical_pods_of(wl.pods()))
    labels: list[str] = []
    plan = plan_policy(inp, "topology", labels.append)
    assert plan.counts == (5,)
    assert labels[0].startswith("topology step 1 (a100 ") and labels[0].endswith("seed 0")
    assert any(lb.endswith("seed 1") for lb in labels)
    # Every step is announced once (steps with too few GPUs need no replay); the second seed
    # starts at the first seed's answer.
    assert len(labels) == len(set(labels)) >= plan.replays
    assert sum(lb.endswith("seed 1") for lb in labels) <= 3


def test_the_readme_plan_command_parses() -> None:
    import argparse
    import shlex

    from bench.plan import README_BEGIN, README_END, add_parser

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert README_BEGIN in text and README_END in text
    block = text.split("nice gts plan", 1)[1].split("```", 1)[0]
    argv = shlex.split(block.replace("\\\n", " ").replace("$S", "S"))
    parser = argparse.ArgumentParser(prog="gts")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["plan", *argv])
    assert args.scale == (607, 3639, 1) and args.seeds == 3 and args.readme == "README.md"


def test_a_baseline_that_misses_everywhere_gives_a_lower_bound(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # kube-scheduler's LeastAllocated spreads the 1-GPU pods over every node, so no node keeps
    # 8 GPUs free for the 8-GPU pod (seed 0 submits it after them); ours packs them.
    rows = [f"q{i},1000,4000,1,1000,,LS,Running,0,100,0" for i in range(8)]
    wl = tmp_path / "w.csv"
    wl.write_text(HEADER + "\n".join([*rows, "p0,1000,4000,8,1000,,LS,Running,0,100,0"]) + "\n")
    spec = _spec(tmp_path / "c.yaml", 3, 1, 3)
    rc = plan_main(["--cluster", str(spec), "--workload", str(wl), "--policies",
                    "topology,default", "--seeds", "1", "--placed", "100", "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "with default even the largest cluster allowed (24 GPUs) misses the target, so " \
           "ours needs more than 8 fewer GPUs" in text
    assert "> 8 fewer (default misses at 24)" in text


@pytest.mark.parametrize("policy", ["topology", "binpack", "default"])
def test_the_search_agrees_with_an_exhaustive_scan(tmp_path: Path, policy: str) -> None:
    # A mixed workload (8-, 4-, 2-, 1-GPU and fractional pods) on a node list scaled as one
    # pool: replay every count of the grid for every seed, and the search must name, for each
    # seed, the smallest count that passes, and for the policy the smallest where all do.
    from bench.baselines.typical_pods import typical_pods_of
    from bench.capacity_plan import PlanInputs, Target, evaluate, plan_policy
    from bench.workloads import load_workload

    shapes = [(8, 1000)] * 3 + [(4, 1000)] * 4 + [(2, 1000)] * 6 + [(1, 1000)] * 10 + \
        [(1, 500)] * 8 + [(1, 250)] * 6
    rows = [f"p{i},{2000 + 500 * (i % 3)},8000,{g},{m},,LS,Running,{i},{i + 100},{i}"
            for i, (g, m) in enumerate(shapes)]
    path = tmp_path / "w.csv"
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    wl = load_workload(path)
    pods = wl.pods()
    cl = node_list_pool(_nodes(10), "test", min_count=1, max_count=14)
    inp = PlanInputs(cl, wl, Target(placed_pct=95.0), [0, 1, 2],
                     demand_milli=sum(p.gpu_demand_milli for p in pods),
                     typical=typical_pods_of(pods))
    grid = cl.pools[0].grid()
    scan = {s: [evaluate(inp, policy, s, (c,)).passed for c in grid] for s in inp.seeds}
    for s, row in scan.items():  # the comparison assumes what the search assumes
        assert row == sorted(row), f"{policy} seed {s} is not monotone on this case: {row}"
    want_seed = {s: next(((c,) for c, ok in zip(grid, row, strict=True) if ok), None)
                 for s, row in scan.items()}
    want = next(((c,) for k, c in enumerate(grid) if all(scan[s][k] for s in inp.seeds)),
                None)
    labels: list[str] = []
    plan = plan_policy(inp, policy, labels.append)
    assert plan.counts == want
    at_top = [lb for lb in labels if f"(all {grid[-1]})" in lb]
    if want is not None:
        assert plan.seed_answers == want_seed
        assert plan.replays < len(grid) * len(inp.seeds)
        # Only the first seed replays the largest cluster (the others never climb there).
        assert [lb.rsplit(" ", 1)[-1] for lb in at_top] == ["0"]
    else:
        assert plan.best_at_max and not any(o.passed for o in plan.best_at_max)
        # The first seed's up-front replay is whole and reused: one per seed in all.
        assert plan.replays == len(inp.seeds) and len(at_top) == 1
