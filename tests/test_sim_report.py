"""The report folder (results.json schema, md, self-contained html, PNGs) and the CLI."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_sim_replay import FirstFit  # the tests' one throwaway policy

from bench.cli import main
from bench.clusters import cluster_summary
from bench.dynamic_replay import replay_dynamic
from bench.fill_replay import replay_fill
from bench.paper_check import paper_variant
from bench.progress_bar import ProgressBar
from bench.report import write_report
from bench.results_json import results_json
from bench.simulate import Scenario, simulate
from bench.simulation_run import SimulationRun
from bench.workload_generator import generate_workload
from scheduler.contract.node import NodeSpec
from topology.presets import preset

ALIBABA = "traces/alibaba-gpu-v2023"


def first_fit(name: str, seed: int) -> FirstFit:
    return FirstFit()


def _nodes() -> list[NodeSpec]:
    out = []
    kinds = ["dgx1-v100", "dgx1-v100", "pcie-8gpu-2socket", "pcie-4gpu"] * 4
    for i, name in enumerate(kinds):
        out.append(NodeSpec(f"n{i}", 128_000, 1 << 20, preset(name), ("", f"b{i // 4}")))
    return out


def _run(seeds: Sequence[int]) -> SimulationRun:
    nodes = _nodes()
    run = SimulationRun(command="test", cluster=cluster_summary(nodes, "test"),
                        workload={"source": "generated"}, seeds=list(seeds),
                        policies=["ff", "ff2"])
    for name in run.policies:
        for s in seeds:
            wl = generate_workload(s, 300, capacity_gpus=112, load=1.2)
            run.fill.setdefault(name, []).append(replay_fill(FirstFit(), nodes, wl.pods(),
                                                             seed=s))
            run.dynamic.setdefault(name, []).append(replay_dynamic(FirstFit(), nodes, wl.jobs,
                                                                   seed=s))
    return run


def test_report_writes_every_file_with_the_schema(tmp_path: Path) -> None:
    run = _run([0, 1])
    md = write_report(run, tmp_path / "rep")
    folder = md.parent
    for f in ("report.md", "report.html", "results.json", "fill_unallocated.png",
              "fill_fragmentation.png", "quality.png", "dynamic_time.png", "wait_cdf.png"):
        assert (folder / f).stat().st_size > 0, f
    doc = json.loads((folder / "results.json").read_text())
    assert set(doc) >= {"policies", "cluster", "workload", "seeds"}
    assert doc["seeds"] == [0, 1]
    for name in ("ff", "ff2"):
        fill = doc["policies"][name]["fill"]
        assert set(fill["unallocated_gpu_pct"]) == {"100", "130"}
        assert isinstance(fill["unallocated_gpu_pct"]["100"], float)
        assert isinstance(fill["unallocated_gpu_pct"]["130"], float | None)
        assert [s["seed"] for s in fill["per_seed"]] == [0, 1]
        seeds = [s["unallocated_gpu_pct"]["100"] for s in fill["per_seed"]]
        assert fill["unallocated_gpu_pct"]["100"] == pytest.approx(float(np.median(seeds)))
        dyn = doc["policies"][name]["dynamic"]
        assert dyn["gpus_held_by_incomplete_gangs_max"] == 0
        assert len(dyn["per_seed"]) == 2
    html = (folder / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5 and "src='fill_" not in html
    text = md.read_text()
    assert "![fill_unallocated](fill_unallocated.png)" in text and "| ff |" in text
    assert "Paper check" not in text


def test_paper_check_only_for_the_paper_setting() -> None:
    run = SimulationRun(command="x", cluster={"gpu_nodes": 1213, "gpus": 6212},
                        workload={"source": "/x/openb_pod_list_default.csv"}, seeds=[0],
                        policies=["random"])
    assert paper_variant(run) == "default"
    run.workload["source"] = "/x/openb_pod_list_gpushare40.csv"
    assert paper_variant(run) == "gpushare40"
    run.cluster["gpus"] = 6000
    assert paper_variant(run) is None


def test_paper_check_table_from_real_results(tmp_path: Path) -> None:
    run = _run([0])
    run.policies = ["random", "fgd"]
    run.fill = {"random": run.fill["ff"], "fgd": run.fill["ff2"]}
    run.dynamic = {}
    run.cluster.update({"gpu_nodes": 1213, "gpus": 6212})
    run.workload["source"] = "openb_pod_list_default.csv"
    doc: dict[str, Any] = results_json(run)
    rows = {r["policy"]: r for r in doc["paper_check"]["rows"]}
    assert rows["random"]["100"]["paper"] == 13.75 and rows["fgd"]["130"]["paper"] == 4.60
    ours = doc["policies"]["random"]["fill"]["unallocated_gpu_pct"]["100"]
    assert rows["random"]["100"]["diff"] == pytest.approx(ours - 13.75)
    assert "Paper check" in write_report(run, tmp_path).read_text()


def test_simulate_in_processes_matches_in_process(tmp_path: Path) -> None:
    sc = Scenario(nodes=_nodes(), cluster_source="test", workload=None, generated_jobs=120,
                  load=1.2)
    one = simulate(sc, modes=["fill", "dynamic"], policies=["a"], seeds=[0, 1],
                   out=tmp_path / "one", jobs=1, factory=first_fit, quiet=True)
    two = simulate(sc, modes=["fill", "dynamic"], policies=["a"], seeds=[0, 1],
                   out=tmp_path / "two", jobs=2, factory=first_fit, quiet=True)
    a = json.loads(one.with_name("results.json").read_text())["policies"]["a"]
    b = json.loads(two.with_name("results.json").read_text())["policies"]["a"]
    assert a["fill"]["unallocated_gpu_pct"] == b["fill"]["unallocated_gpu_pct"]
    assert a["dynamic"]["jct_s_median"] == b["dynamic"]["jct_s_median"]


def _tiny_trace(shared: Path, tmp_path: Path) -> tuple[Path, Path]:
    nodes = (shared / ALIBABA / "openb_node_list_gpu_node.csv").read_text().splitlines(True)
    pods = (shared / ALIBABA / "openb_pod_list_default.csv").read_text().splitlines(True)
    (tmp_path / "n.csv").write_text(nodes[0] + "".join(nodes[1::40]))
    (tmp_path / "p.csv").write_text(pods[0] + "".join(pods[1:400]))
    return tmp_path / "n.csv", tmp_path / "p.csv"


def test_cli_smoke(shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    n, p = _tiny_trace(shared, tmp_path)
    out = tmp_path / "out"
    rc = main(["--cluster", str(n), "--workload", str(p), "--mode", "both",
               "--policies", "topology,default,random", "--seeds", "2", "--jobs", "1",
               "--quiet", "--out", str(out)])
    assert rc == 0
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out
    doc = json.loads((out / "results.json").read_text())
    assert set(doc["policies"]) == {"topology", "default", "random"}
    assert doc["policies"]["topology"]["dynamic"]["gpus_held_by_incomplete_gangs_max"] == 0
    assert doc["workload"]["pods"] == 399 and doc["cluster"]["nodes"] == 31
    assert doc["command"].startswith("gts simulate --cluster")


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np0,1000,x,1,1000\n")
    assert main(["--workload", str(bad), "--quiet", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "bad.csv:2: column 'memory_mib'" in err
    assert main(["--seeds", "0", "--quiet"]) == 2
    assert main(["--policies", "nope", "--quiet", "--out", str(tmp_path / "o")]) == 2
    assert "unknown policy 'nope'" in capsys.readouterr().err


def test_progress_bar_only_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    quiet = io.StringIO()
    bar = ProgressBar(4, stream=quiet)
    bar.update(2, "x", force=True)
    bar.close()
    assert quiet.getvalue() == ""
    tty = Tty()
    bar = ProgressBar(4, stream=tty)
    bar.update(2, "fill fgd seed 1", force=True)
    assert "\r[" + "#" * 15 + "." * 15 + "] 2/4 fill fgd seed 1" in tty.getvalue()
    bar.close()
    assert tty.getvalue().endswith("\n")
    off = Tty()
    ProgressBar(4, stream=off, enabled=False).update(1, force=True)
    assert off.getvalue() == ""
