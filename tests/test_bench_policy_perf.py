"""bench.policy_perf's decision fingerprint: the same decisions give the same fingerprint (on
both paths, and run again), different decisions a different one."""

from __future__ import annotations

from bench.policy_perf import PODS, big_cluster, measure, step_extender, step_place
from scheduler.policy import TypicalWorkload, build_snapshot


def test_both_paths_make_the_same_decisions_and_the_fingerprint_says_so() -> None:
    base = build_snapshot(big_cluster(40))
    for _, req in PODS:
        place = measure(base, req, step_place, 1000)
        again = measure(base, req, step_place, 1000)
        extender = measure(base, req, step_extender, 1000)
        assert place["fingerprint"] == again["fingerprint"] == extender["fingerprint"]
        # 320 GPUs fill up: refills are hashed too.
        assert place["refills"] == extender["refills"]
        assert isinstance(place["refills"], int) and place["refills"] >= 1
    prints = {measure(base, req, step_place, 400)["fingerprint"] for _, req in PODS}
    assert len(prints) == len(PODS)


def test_a_different_decision_changes_the_fingerprint() -> None:
    # The GPU the first decision took is taken beforehand: the first decision must differ.
    base = build_snapshot(big_cluster(40))
    _, req = PODS[0]
    taken = base.copy()
    assert step_place(req, taken, TypicalWorkload()) is not None
    assert measure(taken, req, step_place, 1)["fingerprint"] != \
        measure(base, req, step_place, 1)["fingerprint"]
