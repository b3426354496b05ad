"""CPU the extender's pod watch and cache spend per pod in a scheduling burst, without a
control plane.

`python -m bench.pod_event_burst [--nodes 100] [--pods 400] [--repeats 5]`: a ClusterCache
on N DGX-1 nodes (with a signing key, as `gts serve` runs) receives, for each of P one-GPU pods,
the events of one scheduling cycle as the apiserver sends them: the pod's ADDED line
(unbound), then the bind's assume and confirm, then the MODIFIED line of our own Binding (bound,
with the signed assignment). The lines go through the watch's reader as KubeSource reads them
(chunked framing undone from 64 KiB reads, lines split, each decoded with orjson:
scheduler/cluster/watch_stream.py); what TLS costs to decrypt them is not counted.
Pods are shaped like the apiserver's answer for `bench.e2e`'s pods (defaulted spec, a
projected token volume, managedFields), since decoding cost follows the size. Prints events
per second and microseconds per event (process CPU, best of --repeats): the event path of
`gts serve` that `bench.e2e` measures among everything else.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

from bench.node_burst import node_object
from scheduler.cli import exit_code_of
from scheduler.cluster.cache import ClusterCache
from scheduler.cluster.watch_stream import Dechunker, events_from_body
from scheduler.constants import GPU_RESOURCE
from scheduler.contract.assignment import Assignment
from scheduler.podcodec.assignment import assignment_annotations
from scheduler.podcodec.signing import Signer
from topology.annotation import to_json
from topology.presets import preset

# A fixed, random-looking key: the benchmark signs and verifies, it protects nothing.
_KEY = bytes.fromhex("8f3a1c5e9b7d2f4068a1c3e5f7092b4d6e8f1a3c5e7092b4d6f8a1c3e5f70921")
_FIELDS_V1 = {"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
              "f:spec": {"f:containers": {'k:{"name":"main"}': {
                  ".": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {},
                  "f:resources": {".": {}, "f:limits": {".": {}, "f:memory": {},
                                                        f"f:{GPU_RESOURCE}": {}},
                                  "f:requests": {".": {}, "f:cpu": {}, "f:memory": {},
                                                 f"f:{GPU_RESOURCE}": {}}}}},
                  "f:restartPolicy": {}, "f:schedulerName": {},
                  "f:terminationGracePeriodSeconds": {}}}


def pod_object(i: int, node: str = "", annotations: dict[str, str] | None = None
               ) -> dict[str, Any]:
    """Pod i as the apiserver returns it: unbound, or bound to `node` with `annotations`."""
    req = {"cpu": "100m", "memory": "64Mi", GPU_RESOURCE: "1"}
    meta: dict[str, Any] = {
        "name": f"p{i}", "namespace": "bench", "uid": f"0b0e5f1c-3c1a-4b8e-9d2f-{i:012d}",
        "resourceVersion": str(1000 + i), "creationTimestamp": "2026-12-01T04:00:00Z",
        "labels": {"app": "bench"},
        "managedFields": [{"manager": "python", "operation": "Update", "apiVersion": "v1",
                           "time": "2026-12-01T04:00:00Z", "fieldsType": "FieldsV1",
                           "fieldsV1": _FIELDS_V1}]}
    if annotations:
        meta["annotations"] = annotations
    spec: dict[str, Any] = {
        "volumes": [{"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt",
                           "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}],
        "containers": [{"name": "main", "image": "registry.invalid/none:0",
                        "resources": {"requests": req, "limits": {
                            k: v for k, v in req.items() if k != "cpu"}},
                        "volumeMounts": [{"name": "kube-api-access", "readOnly": True,
                                          "mountPath": "/var/run/secrets/kubernetes.io/"
                                                       "serviceaccount"}],
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 0,
        "dnsPolicy": "ClusterFirst", "serviceAccountName": "default", "securityContext": {},
        "schedulerName": "gpu-topology-scheduler", "priority": 0, "enableServiceLinks": True,
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                         "effect": "NoExecute", "tolerationSeconds": 300}],
        "preemptionPolicy": "PreemptLowerPriority"}
    status: dict[str, Any] = {"phase": "Pending", "qosClass": "Burstable"}
    if node:
        spec["nodeName"] = node
        status["conditions"] = [{"type": "PodScheduled", "status": "True",
                                 "lastProbeTime": None,
                                 "lastTransitionTime": "2026-12-01T04:00:01Z"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec,
            "status": status}


def burst_cpu_s(n_nodes: int, n_pods: int) -> float:
    """CPU seconds for the 2 x n_pods events (and n_pods assume + confirm) of one burst."""
    signer = Signer(_KEY)
    topo = to_json(preset("dgx1-v100"))
    cache = ClusterCache(signer=signer)
    cache.replace_nodes([node_object(f"n{i:04d}", topo) for i in range(n_nodes)])
    cache.replace_pods([])
    added, cycles = [], []
    for i in range(n_pods):
        a = Assignment(pod=f"bench/p{i}", node=f"n{i % n_nodes:04d}", gpus=(i // n_nodes,),
                       cpu_milli=100, memory_mib=64)
        ann = assignment_annotations(a, signer, uid=f"0b0e5f1c-3c1a-4b8e-9d2f-{i:012d}")
        added.append(json.dumps({"type": "ADDED", "object": pod_object(i)}))
        cycles.append((a, json.dumps({"type": "MODIFIED",
                                      "object": pod_object(i, a.node, ann)})))
    # The apiserver writes each event as one chunk; the watch reads what the socket holds.
    wire = b"".join(b"%x\r\n%s\n\r\n" % (len(line) + 1, line.encode())
                    for line in [*added, *(line for _, line in cycles)])
    reads = [wire[i:i + 65_536] for i in range(0, len(wire), 65_536)]
    t0 = time.process_time()
    chunks = Dechunker()
    events = events_from_body(chunks.feed(r) for r in reads)
    for _ in added:
        cache.upsert_pod(next(events)["object"])
    for a, _ in cycles:
        cache.assume(a)
        cache.confirm(a.pod)
        cache.upsert_pod(next(events)["object"])
    spent = time.process_time() - t0
    held = len(cache.snapshot.holdings)
    if held != n_pods or cache.pod_errors:
        raise AssertionError(f"{held} of {n_pods} pods held; errors: {cache.pod_errors}")
    return spent


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.pod_event_burst`."""
    ap = argparse.ArgumentParser(prog="python -m bench.pod_event_burst", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=100, help="8-GPU nodes (default 100)")
    ap.add_argument("--pods", type=int, default=400, help="one-GPU pods (default 400)")
    ap.add_argument("--repeats", type=int, default=5, help="runs; the best is shown (default 5)")
    args = ap.parse_args(argv)
    if args.nodes < 1 or args.repeats < 1 or not 1 <= args.pods <= 8 * args.nodes:
        ap.error(f"--nodes={args.nodes}, --pods={args.pods}, --repeats={args.repeats}: need "
                 "nodes >= 1, 1 <= pods <= 8 x nodes and repeats >= 1")
    best = min(burst_cpu_s(args.nodes, args.pods) for _ in range(args.repeats))
    events = 2 * args.pods
    print(f"{args.pods} pods on {args.nodes} nodes: {events / best:,.0f} pod events/s, "
          f"{1e6 * best / events:.1f} us CPU per event (each pod: ADDED, assume + confirm, "
          f"MODIFIED by our Binding; best of {args.repeats})")
    return 0


if __name__ == "__main__":
    raise SystemExit(exit_code_of(main))
