"""The cluster cache: nodes and GPU holdings, fed by a Kubernetes watch or a static file.

Node JSON is parsed here, once, at the edge (nodes.py; Pod JSON in scheduler.podcodec);
cache.py keeps the Snapshot the policy reads; the kube_* modules talk to the Kubernetes API
(kube_watch: list+watch into the cache; kube_binder: Bindings and patches; kube_expiry:
expired assumptions; kube_events: Events; kube_errors: their failures); static.py reads the
cluster spec of `gts serve --cluster` and the simulator (spec_file.py: the YAML/JSON file).
"""

from scheduler.cluster.cache import DEFAULT_ASSUME_TTL_S, ClusterCache, PodHolding
from scheduler.cluster.nodes import NodeParseError, generic_topology, node_spec_from_k8s
from scheduler.cluster.static import StaticClusterError, cluster_from_dict, load_cluster_file

__all__ = [
    "DEFAULT_ASSUME_TTL_S",
    "ClusterCache",
    "NodeParseError",
    "PodHolding",
    "StaticClusterError",
    "cluster_from_dict",
    "generic_topology",
    "load_cluster_file",
    "node_spec_from_k8s",
]
