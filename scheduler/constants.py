"""Every name shared with Kubernetes objects: scheduler name, resources, labels, annotations.

One module so that the extender, the cache, the node agent and the simulator agree.
"""

from __future__ import annotations

SCHEDULER_NAME = "gpu-topology-scheduler"
PREFIX = "gts.dev"

# Resources a pod asks for.
GPU_RESOURCE = "nvidia.com/gpu"
GPU_MILLI_RESOURCE = f"{PREFIX}/gpu-milli"  # a share of one GPU, thousandths, 1..999
GPU_MEMORY_RESOURCE = f"{PREFIX}/gpu-memory"  # MiB of that GPU's memory, with a share

# Pod annotations.
ALLOWED_MODELS_ANNOTATION = f"{PREFIX}/gpu-models"  # allowed GPU models, separated by "|" or ","
ASSIGNED_NODE_ANNOTATION = f"{PREFIX}/node"
ASSIGNED_GPUS_ANNOTATION = f"{PREFIX}/gpus"  # comma-separated GPU indices on the node
ASSIGNED_MILLI_ANNOTATION = f"{PREFIX}/gpu-milli"  # share held on the single assigned GPU
ASSIGNED_MEMORY_ANNOTATION = f"{PREFIX}/gpu-memory"
ASSIGNMENT_SIGNATURE_ANNOTATION = f"{PREFIX}/signature"  # HMAC over uid, node, gpus, share
GANG_MIN_MEMBER_ANNOTATION = f"{PREFIX}/gang-min-member"

# Node annotation and labels.
TOPOLOGY_ANNOTATION = f"{PREFIX}/topology"  # JSON form of topology.model.NodeTopology
TOPOLOGY_PRESET_LABEL = f"{PREFIX}/topology-preset"
GPU_MODEL_LABELS = ("nvidia.com/gpu.product", f"{PREFIX}/gpu-model")
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"  # MiB per GPU, as GPU feature discovery labels it

# Gangs: scheduler-plugins Coscheduling label, its PodGroup CRD, and Volcano's annotation.
POD_GROUP_LABEL = "scheduling.x-k8s.io/pod-group"
POD_GROUP_API = ("scheduling.x-k8s.io", "v1alpha1", "podgroups")
VOLCANO_GROUP_ANNOTATION = "scheduling.k8s.io/group-name"

# Network levels from narrowest to widest, as NVIDIA topograph labels nodes.
DEFAULT_NETWORK_LEVEL_LABELS = (
    "network.topology.nvidia.com/accelerator",
    "network.topology.nvidia.com/block",
    "network.topology.nvidia.com/spine",
    "network.topology.nvidia.com/datacenter",
)

# kube-scheduler extender score range (MinExtenderPriority, MaxExtenderPriority).
MIN_EXTENDER_PRIORITY = 0
MAX_EXTENDER_PRIORITY = 10
