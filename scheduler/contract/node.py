"""A node's capacity as every part sees it: parsed from a Node object or a cluster file, read
by the policy and the simulator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Only for the annotation: the contract stays importable without numpy (topology.model
    # needs it); a NodeSpec is only ever built by code that already holds a NodeTopology.
    from topology.model import NodeTopology


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A node's capacity: CPU, memory, GPU topology (0 GPUs for CPU nodes), network domains.

    `levels` are the node's network domain names, narrowest first (rack, block, ...);
    an empty string means unknown.
    """

    name: str
    cpu_milli: int
    memory_mib: int
    topology: NodeTopology
    levels: tuple[str, ...] = ()

    @property
    def gpu_model(self) -> str:
        """GPU model of the node, "" for a CPU-only node."""
        return self.topology.model if self.topology.n else ""
