"""The report opens with the verdict; columns are explained; ties, utilisation, sensitivity."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from test_sim_replay import FirstFit  # the tests' one throwaway policy

from bench.cli import main
from bench.clusters import cluster_summary
from bench.dynamic_replay import replay_dynamic
from bench.fill_replay import replay_fill
from bench.report import write_report
from bench.report_verdict import jct_gain_band, utilization_note, verdict
from bench.results_json import results_json
from bench.simulation_run import SimulationRun
from bench.workload_generator import generate_workload
from scheduler.contract.node import NodeSpec
from topology.presets import preset


def _nodes() -> list[NodeSpec]:
    kinds = ["dgx1-v100", "pcie-8gpu-2socket", "pcie-4gpu", "dgx-a100"] * 3
    return [NodeSpec(f"n{i}", 128_000, 1 << 20, preset(k), ("", f"b{i // 4}"))
            for i, k in enumerate(kinds)]


def _run(policies: list[str], seeds: list[int]) -> SimulationRun:
    nodes = _nodes()
    run = SimulationRun(command="test", cluster=cluster_summary(nodes, "test"),
                        workload={"source": "generated"}, seeds=seeds, policies=policies)
    for name in policies:
        for s in seeds:
            wl = generate_workload(s, 250, capacity_gpus=84, load=1.3)
            run.fill.setdefault(name, []).append(replay_fill(FirstFit(), nodes, wl.pods(),
                                                             seed=s))
            run.dynamic.setdefault(name, []).append(
                replay_dynamic(FirstFit(gangs=name == "topology"), nodes, wl.jobs, seed=s))
    return run


def test_report_opens_with_the_verdict_and_explains_columns(tmp_path: Path) -> None:
    run = _run(["topology", "default"], [0, 1])
    text = write_report(run, tmp_path / "r").read_text()
    first = text.split("\n\n")[1]
    assert first.startswith("**Verdict.**")
    for what in ("**GPU requests placed**", "**p95 wait**", "**mean job completion time**",
                 "over 2 seeds"):
        assert what in first
    assert "[" in first  # spreads over seeds
    assert text.index("Columns:") < text.index("| policy |")
    assert "| failed pods % |" in text
    # the two policies are the same throwaway: the report must call the tie out
    assert "`topology` and `default` tie in the fill replay" in text


def test_verdict_uses_the_plan_when_given() -> None:
    run = _run(["topology", "default"], [0])
    doc = results_json(run)
    plan: dict[str, Any] = {"seeds": [0, 1, 2], "policies": {"topology": {"gpus": 6332},
                                                              "default": {"gpus": 7400}}}
    v = verdict(doc, plan)
    assert v is not None and "6,332 with ours against 7,400: 1,068 fewer" in v
    assert verdict({"policies": {"topology": {}}}) is None  # no baseline, no verdict
    plan["policies"]["default"] = {"gpus": None, "best_at_max": [{"gpus": 18636}]}
    plan["policies"]["topology"]["seed_answer_gpus"] = [6332, 6332, 6340]
    v = verdict(doc, plan)
    assert v is not None and "6,332 [each seed: 6,332-6,340] with ours, while the default " \
        "misses it even with 18,636 GPUs" in v and "more than 12,304 fewer" in v


def test_failed_pods_are_a_share() -> None:
    run = _run(["topology", "default"], [0])
    f = results_json(run)["policies"]["topology"]["fill"]  # type: ignore[index]
    seed = f["per_seed"][0]
    assert seed["pods_failed_pct"] == pytest.approx(100 * seed["pods_failed"] /
                                                     seed["pods_submitted"])


def test_utilization_note_explains_with_the_data() -> None:
    def dyn(util: float, slow: float, held: float) -> dict[str, Any]:
        return {"utilization_mean_pct": util, "slowdown_mean": slow,
                "gpus_held_by_incomplete_gangs_max": held, "queued_at_end": 0}

    doc = {"policies": {"topology": {"dynamic": dyn(60.0, 1.0, 0)},
                        "default": {"dynamic": dyn(64.0, 1.08, 36)}}}
    note = utilization_note(doc)
    assert note is not None
    assert "`default` (64.0 % against 60.0 %)" in note
    assert "8.0 % longer" in note and "hold up to 36 GPUs" in note
    doc["policies"]["default"]["dynamic"]["utilization_mean_pct"] = 59.0
    assert utilization_note(doc) is None  # ours is not lower: nothing to explain


def test_jct_gain_band_is_seed_paired() -> None:
    def r(mean: float) -> SimpleNamespace:
        return SimpleNamespace(jct_s=np.array([mean]))

    assumed = {"topology": [r(90), r(80)], "default": [r(100), r(100)]}
    ends = {"low": {"topology": [r(99), r(95)], "default": [r(100), r(100)]},
            "high": {"topology": [r(70), r(60)], "default": [r(100), r(100)]}}
    g = jct_gain_band(assumed, ends)
    assert g["low"]["median"] == pytest.approx(3.0)
    assert g["assumed"] == pytest.approx({"median": 15.0, "min": 10.0, "max": 20.0, "n": 2})
    assert g["high"]["max"] == pytest.approx(40.0)


def test_cli_refuses_jobs_zero_and_a_bad_out_before_running(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--jobs", "0", "--quiet", "--out", str(tmp_path / "o")]) == 2
    assert "--jobs 0: must be at least 1" in capsys.readouterr().err
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    assert main(["--quiet", "--out", str(blocker)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    locked = tmp_path / "locked"
    (locked / "report.md").mkdir(parents=True)  # a folder where the report file goes
    assert main(["--quiet", "--out", str(locked)]) == 2
    assert "report.md exists and cannot be overwritten" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_plan_json_feeds_the_report(tmp_path: Path) -> None:
    run = _run(["topology", "default"], [0])
    run.plan = {"seeds": [0], "target_text": "t", "policies": {
        "topology": {"gpus": 80, "seed_answer_gpus": [80]},
        "default": {"gpus": None, "seed_answer_gpus": [None]}}}
    md = write_report(run, tmp_path / "r")
    assert (md.parent / "plan.png").stat().st_size > 0
    doc = json.loads(md.with_name("results.json").read_text())
    assert doc["plan"]["policies"]["topology"]["gpus"] == 80


def test_html_shows_the_verdict_in_bold_not_asterisks(tmp_path: Path) -> None:
    run = _run(["topology", "default"], [0])
    md = write_report(run, tmp_path / "r")
    html = md.with_name("report.html").read_text()
    assert "<b>Verdict.</b>" in html and "**" not in html
