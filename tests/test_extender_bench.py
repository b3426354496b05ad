"""The extender load benchmark runs end to end on a tiny cluster (its harness, not its speed)."""

from __future__ import annotations

import argparse
import json

import pytest

from bench import extender_load


def test_benchmark_harness_runs_and_checks_every_reply(capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    args = argparse.Namespace(nodes="24", pods=6, object_pods=2, binds=10, seed=3, check=True,
                              json=True)
    assert extender_load.main(args) == 0
    res = json.loads(capsys.readouterr().out)
    r = res["sizes"]["24"]
    assert r["binds"]["bound"] == 10 and r["binds"]["failed"] == 0
    assert r["names"]["pods"] == 6 and r["names"]["filter_ms"]["n"] == 6
    assert r["objects"]["filter_ms"]["n"] == 2
    assert "binds at 24 nodes" in extender_load.table(res)
