"""GPU bin-packing as a kube-scheduler user configures it: NodeResourcesFit with MostAllocated.

The scheduler configuration this models (the Kubernetes "Resource Bin Packing" page's
MostAllocated example, kubernetes.io/docs/concepts/configuration/resource-bin-packing/, with its
extended resource replaced by the GPU):

    pluginConfig:
    - name: NodeResourcesFit
      args:
        scoringStrategy:
          type: MostAllocated
          resources: [{name: cpu, weight: 1}, {name: memory, weight: 1},
                      {name: nvidia.com/gpu, weight: 3}]

Score per resource: min(requested, allocatable) * 100 // allocatable
(pkg/scheduler/framework/plugins/noderesources/most_allocated.go, mostRequestedScore), integer
weighted mean; `nvidia.com/gpu` only counts for pods that request GPUs. Everything else (filter,
percentageOfNodesToScore, BalancedAllocation, which stays enabled, ties, the device plugin's
GPU choice, no gangs, no sharing) is the default profile of default.py.
"""

from __future__ import annotations

from bench.baselines.default import KubeDefaultPolicy, ScoringStrategy

BINPACK_STRATEGY = ScoringStrategy(type="MostAllocated", cpu=1, memory=1, gpu=3)


class BinpackPolicy(KubeDefaultPolicy):
    """kube-scheduler with the MostAllocated scoring strategy over cpu, memory and GPUs."""

    def __init__(self, seed: int = 0, *, percentage_of_nodes_to_score: int = 0) -> None:
        super().__init__(seed, strategy=BINPACK_STRATEGY,
                         percentage_of_nodes_to_score=percentage_of_nodes_to_score,
                         name="binpack")
