"""Absolute all-reduce bandwidth (GB/s) a placed multi-GPU job gets: a simulator metric.

A ring all-reduce over the job's GPUs runs at its slowest hop. On each node the job's GPUs
(all its members there together) form a segment whose bottleneck is at best that set's ring
bandwidth (scheduler.policy.link_bandwidth, from the topology's link table); between nodes
the hop is the network: `inter_node_gbps` per GPU rail, reduced by speed.network_factor's
`level_factor` for every network level the job spans above the narrowest one its nodes share.

    bandwidth = min(min over nodes of ring(job's GPUs on that node),
                    inter_node_gbps * level_factor ** levels   if the job spans nodes)

inter_node_gbps = 25 GB/s: one 200 Gb/s HDR InfiniBand port per GPU (DGX A100's compute
fabric: 8 x ConnectX-6 200 Gb/s, NVIDIA DGX A100 user guide). The same figure is used for every
node kind, so the metric ranks placements by their intra-node links and by how many switch
levels they cross, never by NIC generation, which no policy here can change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from bench.speed import network_factor
from scheduler.contract.assignment import Assignment
from scheduler.policy.link_bandwidth import set_bandwidth
from scheduler.policy.snapshot import Snapshot

INTER_NODE_GBPS = 25.0


def job_bandwidth(snap: Snapshot, assignments: Sequence[Assignment], level_factor: float,
                  inter_node_gbps: float = INTER_NODE_GBPS) -> float:
    """The job's all-reduce bandwidth in GB/s (module docstring); inf for one GPU."""
    masks: dict[int, int] = {}
    for a in assignments:
        i = snap.index[a.node]
        for g in a.gpus:
            masks[i] = masks.get(i, 0) | (1 << g)
    best = math.inf
    multi = [(i, m) for i, m in masks.items() if m & (m - 1)]
    if multi:
        idx = np.array([i for i, _ in multi], dtype=np.int64)
        sets = np.array([m for _, m in multi], dtype=np.int64)
        best = float(set_bandwidth(snap, idx, sets).min())
    if len(masks) > 1:
        best = min(best, inter_node_gbps * network_factor(snap, list(masks), level_factor))
    return best
