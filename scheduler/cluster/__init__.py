"""The cluster cache: nodes and GPU holdings, fed by a Kubernetes watch or a static file.

Parsing of Node and Pod JSON happens here, once, at the edge (nodes.py, pods.py, quantity.py);
cache.py keeps the Snapshot the policy reads; kube.py is the only module that talks to the
Kubernetes API; static.py reads the cluster spec of `gts serve --cluster` and the simulator.
"""

from scheduler.cluster.cache import DEFAULT_ASSUME_TTL_S, ClusterCache, PodHolding
from scheduler.cluster.nodes import NodeParseError, generic_topology, node_spec_from_k8s
from scheduler.cluster.pods import (
    AssignmentError,
    assignment_annotations,
    assignment_from_pod,
    cleared_assignment_annotations,
    gang_key_of,
    pod_key,
    pod_request_from_k8s,
)
from scheduler.cluster.quantity import QuantityError, parse_bytes_mib, parse_count, parse_cpu_milli
from scheduler.cluster.signing import Signer
from scheduler.cluster.static import StaticClusterError, cluster_from_dict, load_cluster_file

__all__ = [
    "DEFAULT_ASSUME_TTL_S",
    "AssignmentError",
    "ClusterCache",
    "NodeParseError",
    "PodHolding",
    "QuantityError",
    "Signer",
    "StaticClusterError",
    "assignment_annotations",
    "assignment_from_pod",
    "cleared_assignment_annotations",
    "cluster_from_dict",
    "gang_key_of",
    "generic_topology",
    "load_cluster_file",
    "node_spec_from_k8s",
    "parse_bytes_mib",
    "parse_count",
    "parse_cpu_milli",
    "pod_key",
    "pod_request_from_k8s",
]
