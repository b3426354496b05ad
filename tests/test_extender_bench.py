"""The extender load benchmark runs end to end on a tiny cluster (its harness, not its speed)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kube_scheduler_oracle import check_reply

from bench import extender_load


def test_benchmark_harness_runs_and_checks_every_reply() -> None:
    seen: list[str] = []

    def check(verb: str, reply: object, request: Mapping[str, Any]) -> object:
        seen.append(verb)
        return check_reply(verb, reply, request)

    res = extender_load.run([24], pods=6, object_pods=2, binds=10, seed=3, check=check)
    assert {"filter", "prioritize", "bind"} <= set(seen)
    r = res["sizes"]["24"]
    assert r["binds"]["bound"] == 10 and r["binds"]["failed"] == 0
    assert r["names"]["pods"] == 6 and r["names"]["filter_ms"]["n"] == 6
    assert r["objects"]["filter_ms"]["n"] == 2
    assert "binds at 24 nodes" in extender_load.table(res)
