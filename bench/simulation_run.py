"""What a simulator run hands to its report: the scenario and every policy's per-seed results."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bench.dynamic_replay import DynamicResult
from bench.fill_replay import FillResult


@dataclass(slots=True)
class SimulationRun:
    """Everything a report shows: the scenario and the per-policy, per-seed results."""

    command: str
    cluster: dict[str, object]
    workload: dict[str, object]
    seeds: list[int]
    policies: list[str]
    fill: dict[str, list[FillResult]] = field(default_factory=dict)
    dynamic: dict[str, list[DynamicResult]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    # Dynamic reruns at the ends of the speed model's range: end ("low"/"high") -> policy ->
    # per-seed results (bench.speed.SPEED_RANGE).
    sensitivity: dict[str, dict[str, list[DynamicResult]]] = field(default_factory=dict)
    plan: dict[str, Any] | None = None  # plan.json of `gts plan`, shown in the verdict
    # LP bound per seed of the fill runs ({seed: {"100": %, "130": %}}; bench.bound_report).
    bound: dict[int, dict[str, float]] = field(default_factory=dict)


V = TypeVar("V")


def in_policy_order(policies: list[str], by_policy: Mapping[str, V]) -> Iterator[tuple[str, V]]:
    """(policy, what it has) in the run's policy order, for the policies that have something
    (a non-empty list of results, a results.json entry)."""
    for name in policies:
        got = by_policy.get(name)
        if got:
            yield name, got
