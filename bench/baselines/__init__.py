"""Placement policies the simulator compares, all behind scheduler.policy's PlacementPolicy.

"topology" is ours (scheduler.policy.TopologyPolicy, not a copy); the others model what runs in
clusters today or what the literature reports: "default" (kube-scheduler's default profile and
the NVIDIA device plugin), "default-timeslice" (the same over time-sliced GPU replicas),
"binpack" (MostAllocated), and the FGD paper's artifact baselines
"random", "bestfit" and "fgd". Each factory takes the run's seed.

None of the baselines places a gang whole (`supports_gangs` is False, `place_gang` returns
None): the simulator places their members one at a time, as kube-scheduler does.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.baselines.bestfit import BestFitPolicy
from bench.baselines.binpack import BinpackPolicy
from bench.baselines.default import KubeDefaultPolicy
from bench.baselines.fgd import FGDPolicy
from bench.baselines.random_policy import RandomPolicy
from bench.baselines.timeslice import TimeSliceDefaultPolicy
from scheduler.policy.interface import PlacementPolicy


def _topology(seed: int) -> PlacementPolicy:
    # Ours is deterministic: it has no random choice to seed.
    from scheduler.policy import TopologyPolicy

    return TopologyPolicy()


POLICIES: dict[str, Callable[[int], PlacementPolicy]] = {
    "topology": _topology,
    "default": lambda seed: KubeDefaultPolicy(seed),
    "default-timeslice": lambda seed: TimeSliceDefaultPolicy(seed),
    "binpack": lambda seed: BinpackPolicy(seed),
    "random": lambda seed: RandomPolicy(seed),
    "bestfit": lambda seed: BestFitPolicy(seed),
    "fgd": lambda seed: FGDPolicy(seed),
}


class UnknownPolicyError(KeyError):
    """A policy name that is not in POLICIES; the message lists the valid names."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown policy"


def make_policy(name: str, seed: int = 0) -> PlacementPolicy:
    """A fresh policy `name` seeded with `seed`; raises UnknownPolicyError listing the names."""
    try:
        factory = POLICIES[name]
    except KeyError:
        raise UnknownPolicyError(
            f"unknown policy {name!r}; valid policies: {', '.join(POLICIES)}"
        ) from None
    return factory(seed)


__all__ = [
    "POLICIES",
    "BestFitPolicy",
    "BinpackPolicy",
    "FGDPolicy",
    "KubeDefaultPolicy",
    "RandomPolicy",
    "TimeSliceDefaultPolicy",
    "UnknownPolicyError",
    "make_policy",
]
