"""`gts bench e2e` options: what --serve and --scheduler change, and how the table says so.

The runs themselves need the control-plane binaries (tests/e2e/ covers those); the options and
the report are checked here without them.
"""

from __future__ import annotations

import argparse

import pytest

from bench import e2e
from bench.controlplane import scheduler_config_from_deploy


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    e2e.add_arguments(ap)
    return ap.parse_args(argv)


def test_scheduler_and_serve_overrides_are_key_value_pairs() -> None:
    args = parse(["--scheduler", "percentageOfNodesToScore=0",
                  "--serve", "best-node-only=false", "--sizes", "10/20"])
    assert args.scheduler == [("percentageOfNodesToScore", "0")]
    assert args.serve == [("best-node-only", "false")]
    assert args.sizes == [(10, 20)]


@pytest.mark.parametrize("bad", ["percentageOfNodesToScore", "=3", ""])
def test_an_override_without_key_and_value_is_refused_by_name(
        bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(["--scheduler", bad])
    assert f"{bad!r} is not KEY=VALUE" in capsys.readouterr().err


def test_deploy_config_scores_every_node_so_the_override_is_a_real_change() -> None:
    # The benchmark's point: deploy/ asks kube-scheduler to filter every node (100 %); the
    # override measures kube-scheduler's adaptive default (0) against it.
    assert scheduler_config_from_deploy()["percentageOfNodesToScore"] == 100


def test_table_names_the_overrides_it_ran_with() -> None:
    res = {"qps": 1000, "repeats": 1, "cpus": 2, "loadavg_before": [0.5, 0, 0],
           "loadavg_after": [1.0, 0, 0], "serve": {"best-node-only": False},
           "scheduler": {"percentageOfNodesToScore": 0},
           "sizes": [{"nodes": 10, "pods": 20, "ours_median_s": 2.0, "default_median_s": 1.0,
                      "ratio": 2.0, "ours_cpu_s": {"extender": 0.1},
                      "default_cpu_s": {"extender": 0.05}}]}
    text = e2e.table(res)
    first = text.splitlines()[0]
    assert "gts serve best-node-only=False" in first
    assert "our kube-scheduler percentageOfNodesToScore=0" in first
    assert "| 10 | 20 | 2.00 | 1.00 | 2.00x | 10 | 20 |" in text
    assert "| 10 | 20 | ours | 5.00 | - | - |" in text


def test_extender_and_profile_options() -> None:
    args = parse([])
    assert (args.extender, args.profile_scheduler, args.profile_out) == ("gts", 0, None)
    args = parse(["--extender", "null", "--profile-scheduler", "3", "--profile-out", "/tmp/p"])
    assert (args.extender, args.profile_scheduler, str(args.profile_out)) == \
        ("null", 3, "/tmp/p")
    with pytest.raises(SystemExit):
        parse(["--extender", "other"])


@pytest.mark.parametrize("seconds", ["-2", str(e2e.MAX_PROFILE_S + 1)])
def test_a_profile_duration_out_of_bounds_is_refused_by_name(
        seconds: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert e2e.run_args(parse(["--profile-scheduler", seconds])) == 2
    assert f"--profile-scheduler={seconds}" in capsys.readouterr().err


def test_table_says_a_null_extender_ran_and_where_kube_scheduler_cpu_went() -> None:
    parts = {p: 0.0 for p, _ in e2e.SCHEDULER_PARTS}
    ours = [{"profile": "ours", "scheduler_parts": {**parts, "filter plugins": s}}
            for s in (0.5, 0.6, 0.7)]
    res = {"qps": 1000, "repeats": 3, "cpus": 2, "loadavg_before": [0.5, 0, 0],
           "loadavg_after": [1.0, 0, 0], "extender": "null", "profile_s": 4,
           "sizes": [{"nodes": 10, "pods": 20, "ours_median_s": 2.0, "default_median_s": 1.0,
                      "ratio": 2.0, "ours_cpu_s": {"kube-scheduler": 0.2},
                      "default_cpu_s": {"kube-scheduler": 0.1},
                      "runs": [*ours, {"profile": "default", "scheduler_parts": {}}]}]}
    text = e2e.table(res)
    assert "bench.null_extender" in text.splitlines()[0]
    assert "a 4 s CPU profile" in text
    # 10 ms of kube-scheduler CPU per pod, median share 0.6 in filter plugins
    assert "| 10 | ours | 6.00 | 0.00 |" in text
    assert "| 10 | default |" not in text  # no profile taken in its runs
