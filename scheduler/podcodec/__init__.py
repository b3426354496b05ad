"""Kubernetes Pod JSON to the scheduler's types and back, parsed once at the edge.

pod_fields: typed reads of a pod's metadata, spec and status fields;
resources: a pod's effective requests, computed as kube-scheduler does;
resource_memo: those requests kept per pod while the fields they come from do not change;
pod_request: a pod -> PodRequest (resources, allowed GPU models, gang);
assignment: an Assignment <-> the pod's signed annotations;
quantity: Kubernetes quantity strings as exact numbers;
signing: the HMAC key ring that signs assignments for the node agent.
Used by the cache, the extender and the node agent; imports no placement code.
"""
