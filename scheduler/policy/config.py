"""The policy's knobs in one frozen object, with the reason for every default."""

from __future__ import annotations

from dataclasses import dataclass

# Measured, not guessed: docs/tuning.md has the runs behind every default below.
BANDWIDTH_WEIGHT = 4.0
PREMIUM_WEIGHT = 0.0


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Weights and limits of the topology policy; docs/tuning.md explains the score and values."""

    # Lexicographic on quality for multi-GPU pods: 1e4 outweighs every other term (bounded by ~20).
    topology_weight: float = 1.0e4
    # One GPU of expected fragmentation (FGD's unit, milli-GPU / 1000) costs 1.0.
    frag_weight: float = 1.0
    # FGD deltas compared in steps of this many thousandths (0 = exact): FGD's own coarseness,
    # whose ties let the node order concentrate load.
    frag_step: float = 40.0
    # Loss of the node's free-set value (tables.value); off: it beat no tie-break.
    value_weight: float = 0.0
    # Fill partially used nodes first; off: with frag_step ties it spreads shares onto full nodes.
    pack_weight: float = 0.0
    # Ties go to the first node in a fixed hashed order (node_order), so load concentrates.
    order_weight: float = 1.0e-6
    # CPU-only pods prefer CPU nodes; off: the fragmentation measure already prices GPU nodes' CPU.
    cpu_node_weight: float = 0.0
    # Per doubling of the set's ring GB/s (link_bandwidth): PCIe 8-sets must not tie NVSwitch.
    bandwidth_weight: float = BANDWIDTH_WEIGHT
    # Small pods pay to break an intact NVLink node; off: model-restricted pods need PCIe.
    premium_weight: float = PREMIUM_WEIGHT
    # GPU thousandths stranded by CPU (stranding.py), added to the FGD increase; tuned on variants.
    strand_weight: float = 1.0
    # Shares: prefer the node whose chosen GPU the share leaves fullest (share_fit.py), below
    # one frag_step so it orders only FGD's ties; off: its gains were inside the seed spread.
    share_fit_weight: float = 0.0
    # Shares: per GPU of LP-pattern value the placement gives up (share_patterns.py). 10 makes
    # it decide a share's node, FGD's steps only ordering its ties; tuned on the tuning
    # variants (5-20 flat and better in every cell than 0.2-1), docs/tuning.md.
    pattern_weight: float = 10.0
    # Members of a gang prefer nodes that already hold one of them (shared NVLink domain);
    # below the topology term, above fragmentation ties.
    gang_affinity_weight: float = 0.5
    # Shares that would open a free GPU are refused while fewer whole GPUs are free than this
    # times w * N * (1 - v(s)/1000) (admission.py, bid-price control); 0 = off: it leaves pods
    # pending that fit, which only a fill run's metric rewards (docs/tuning.md).
    admission_reserve: float = 0.0
    # Reject placements whose best free set is below this quality (0 = any set will do).
    min_quality: float = 0.0
    # The extender's filter returns only the best node, so kube-scheduler's own scores cannot
    # move the pod to a node where its GPUs would be worse linked.
    best_node_only: bool = False
    # Gang planning: how many candidate domains of one network level are tried in full.
    gang_domains_per_level: int = 8

    def __post_init__(self) -> None:
        for name in ("topology_weight", "frag_weight", "value_weight", "pack_weight",
                     "gang_affinity_weight", "frag_step", "order_weight", "cpu_node_weight",
                     "bandwidth_weight", "premium_weight", "strand_weight",
                     "share_fit_weight", "pattern_weight", "admission_reserve"):
            v = getattr(self, name)
            if not v >= 0:
                raise ValueError(f"PolicyConfig.{name}={v!r}: must be >= 0")
        if not 0.0 <= self.min_quality <= 1.0:
            raise ValueError(f"PolicyConfig.min_quality={self.min_quality!r}: must be in 0..1")
        if self.gang_domains_per_level < 1:
            raise ValueError(
                f"PolicyConfig.gang_domains_per_level={self.gang_domains_per_level!r}: must be >= 1"
            )

    def topology_weight_for(self, gpus: int) -> float:
        """The quality weight for a pod of `gpus` whole GPUs (0 below 2: one GPU is always 1.0)."""
        return self.topology_weight if gpus >= 2 else 0.0


DEFAULT_CONFIG = PolicyConfig()
