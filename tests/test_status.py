"""`gts status` against the Kubernetes API double: why a pod is pending (the reasons the
extender gave, the gang's state), and a node's GPUs with the pods holding them."""

from __future__ import annotations

import argparse
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubeapi_double import KubeAPIDouble
from kubernetes import client as k8s

from scheduler import cli
from scheduler.constants import (
    ASSIGNED_GPUS_ANNOTATION,
    ASSIGNED_MILLI_ANNOTATION,
    ASSIGNED_NODE_ANNOTATION,
    ASSIGNMENT_SIGNATURE_ANNOTATION,
    GPU_MILLI_RESOURCE,
    GPU_RESOURCE,
    POD_GROUP_LABEL,
    SCHEDULER_NAME,
    TOPOLOGY_PRESET_LABEL,
)
from scheduler.extender.config import ServeConfig
from scheduler.extender.runtime import static_extender
from scheduler.status import cli as status_cli
from scheduler.status.probe import ProbeError, probe

CLUSTER = str(Path(__file__).resolve().parents[1] / "deploy" / "examples" / "cluster.yaml")
EXTENDER_REASON = "node gpu-1: needs 4 GPUs connected by NVLink, 2 free on this node"


def pod(name: str, *, gpus: int = 0, milli: int = 0, node: str = "", phase: str = "Pending",
        labels: dict[str, str] | None = None, assigned: tuple[str, str, int] | None = None,
        scheduler: str = SCHEDULER_NAME) -> dict[str, Any]:
    req: dict[str, str] = {"cpu": "1"}
    if gpus:
        req[GPU_RESOURCE] = str(gpus)
    if milli:
        req[GPU_MILLI_RESOURCE] = str(milli)
    ann: dict[str, str] = {}
    if assigned:
        anode, agpus, amilli = assigned
        ann = {ASSIGNED_NODE_ANNOTATION: anode, ASSIGNED_GPUS_ANNOTATION: agpus,
               ASSIGNED_MILLI_ANNOTATION: str(amilli), ASSIGNMENT_SIGNATURE_ANNOTATION: "ab12"}
    spec: dict[str, Any] = {"schedulerName": scheduler,
                            "containers": [{"name": "c", "resources": {"requests": req}}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "namespace": "ml", "labels": labels or {},
                         "annotations": ann}, "spec": spec, "status": {"phase": phase}}


def event(obj: dict[str, Any], reason: str, message: str, type_: str = "Warning",
          component: str = "gpu-topology-scheduler", when: str = "2026-11-30T10:00:00Z"
          ) -> dict[str, Any]:
    meta = obj["metadata"]
    return {"metadata": {"name": f"{meta['name']}.{reason}", "namespace": meta["namespace"]},
            "involvedObject": {"kind": "Pod", "name": meta["name"], "uid": meta["uid"],
                               "namespace": meta["namespace"]},
            "reason": reason, "message": message, "type": type_, "count": 1,
            "source": {"component": component}, "lastTimestamp": when}


@pytest.fixture
def api() -> Iterator[KubeAPIDouble]:
    with KubeAPIDouble() as a:
        yield a


def reader(api: KubeAPIDouble) -> status_cli.KubeReader:
    cfg = k8s.Configuration()
    cfg.host = api.url
    return status_cli.KubeReader(k8s.ApiClient(cfg))


def run(api: KubeAPIDouble, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str,
                                                                                     str]:
    p = argparse.ArgumentParser()
    status_cli.add_parser(p.add_subparsers())
    args = p.parse_args(["status", *argv])
    args.reader = reader(api)
    rc = args.func(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_pending_pod_shows_the_reasons_the_extender_gave(
        api: KubeAPIDouble, capsys: pytest.CaptureFixture[str]) -> None:
    p = pod("train-0", gpus=4)
    p["status"]["conditions"] = [{"type": "PodScheduled", "status": "False",
                                  "reason": "Unschedulable",
                                  "message": f"0/3 nodes are available: 1 {EXTENDER_REASON}."}]
    stored = api.put_pod(p)
    api.put_event(event(stored, "FailedScheduling", f"0/3 nodes are available: "
                        f"{EXTENDER_REASON}", component="gpu-topology-scheduler"))
    api.put_event(event(stored, "Scheduled", "routine", type_="Normal"))  # not a reason
    other = api.put_pod(pod("other", gpus=1))
    api.put_event(event(other, "FailedScheduling", "about another pod"))
    rc, out, err = run(api, capsys, "pod", "ml/train-0")
    assert rc == 0 and err == ""
    assert out.splitlines()[0] == "pod ml/train-0: Pending"
    assert "asks for: 4 whole GPU(s)" in out
    assert out.count(EXTENDER_REASON) == 2  # the condition and the event
    assert "about another pod" not in out and "routine" not in out
    assert "gang" not in out


def test_gang_member_shows_the_gang_state(api: KubeAPIDouble,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    labels = {POD_GROUP_LABEL: "job-a"}
    api.put_podgroup("ml", "job-a", 3)
    a = api.put_pod(pod("a", gpus=2, labels=labels))
    b = api.put_pod(pod("b", gpus=2, labels=labels))
    api.put_pod(pod("done", gpus=2, labels=labels, phase="Succeeded"))  # not a member any more
    api.put_pod(pod("c", gpus=2))  # another pod, no gang
    api.put_event(event(b, "GangWaiting", "waiting for 1 more member (2 of 3 exist)",
                        type_="Normal", when="2026-11-30T10:00:05Z"))
    api.put_event(event(a, "GangTimedOut", "released after 30s", when="2026-11-30T09:00:00Z"))
    pg = reader(api).podgroup("ml", "job-a")
    assert pg is not None
    api.put_event({"metadata": {"name": "job-a.1", "namespace": "ml"},
                   "involvedObject": {"kind": "PodGroup", "name": "job-a",
                                      "uid": pg["metadata"]["uid"], "namespace": "ml"},
                   "reason": "GangBackoff", "message": "backing off 4s after a timeout",
                   "type": "Warning", "lastTimestamp": "2026-11-30T09:30:00Z"})
    rc, out, _ = run(api, capsys, "pod", "ml/a")
    assert rc == 0
    assert "GangBackoff [" not in out and "GangBackoff: backing off 4s" in out
    gang_line = next(ln for ln in out.splitlines() if "gang ml/job-a" in ln)
    assert "2 member pod(s), 0 bound, 2 pending" in gang_line
    assert "needs 3 (PodGroup minMember)" in gang_line
    assert "waiting for 1 more member pod(s)" in gang_line
    assert gang_line.endswith("last: GangWaiting: waiting for 1 more member (2 of 3 exist)")
    rc, out, _ = run(api, capsys, "pod", "ml/a", "--json")
    doc = json.loads(out)
    assert doc["gang"]["min_member"] == 3 and doc["gang"]["members"] == 2


def test_node_shows_gpus_with_their_holders_and_shares(
        api: KubeAPIDouble, capsys: pytest.CaptureFixture[str]) -> None:
    api.put_node({"metadata": {"name": "gpu-1", "labels": {TOPOLOGY_PRESET_LABEL: "dgx1-v100"}},
                  "spec": {}, "status": {"allocatable": {"cpu": "64", "memory": "512Gi",
                                                         GPU_RESOURCE: "8"}}})
    api.put_pod(pod("whole", gpus=2, node="gpu-1", phase="Running",
                    assigned=("gpu-1", "0,1", 1000)))
    api.put_pod(pod("s1", milli=300, node="gpu-1", phase="Running",
                    assigned=("gpu-1", "3", 300)))
    api.put_pod(pod("s2", milli=500, node="gpu-1", phase="Running",
                    assigned=("gpu-1", "3", 500)))
    api.put_pod(pod("old", gpus=1, node="gpu-1", phase="Succeeded",
                    assigned=("gpu-1", "5", 1000)))
    api.put_pod(pod("foreign", gpus=1, node="gpu-1", phase="Running",
                    scheduler="default-scheduler"))
    api.put_pod(pod("elsewhere", gpus=1, node="gpu-2", assigned=("gpu-2", "5", 1000)))
    rc, out, _ = run(api, capsys, "node", "gpu-1")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith("node gpu-1: 8 x ")
    gpu = {ln.split(":")[0].strip(): ln for ln in lines if ln.strip().startswith("GPU")}
    assert gpu["GPU0"].endswith("ml/whole whole") and gpu["GPU1"].endswith("ml/whole whole")
    assert "200/1000 free" in gpu["GPU3"] and "ml/s1 300/1000" in gpu["GPU3"]
    assert "ml/s2 500/1000" in gpu["GPU3"]
    assert gpu["GPU5"].strip() == "GPU5: free"  # the finished pod holds nothing
    assert any("ml/foreign" in ln and "another scheduler" in ln for ln in lines)
    assert "elsewhere" not in out


def test_overcommitted_gpu_is_shown(api: KubeAPIDouble,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    api.put_node({"metadata": {"name": "n"}, "spec": {},
                  "status": {"allocatable": {"cpu": "8", "memory": "64Gi", GPU_RESOURCE: "1"}}})
    for name, m in (("x", 600), ("y", 600)):
        api.put_pod(pod(name, milli=m, node="n", phase="Running", assigned=("n", "0", m)))
    rc, out, _ = run(api, capsys, "node", "n")
    assert rc == 0 and "GPU0: OVER-COMMITTED" in out


def test_missing_objects_are_one_line_errors(api: KubeAPIDouble,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(api, capsys, "pod", "ml/nosuch")
    assert (rc, out, err) == (1, "", "gts status: pod ml/nosuch not found\n")
    rc, out, err = run(api, capsys, "node", "nosuch")
    assert (rc, err) == (1, "gts status: node nosuch not found\n")
    rc, out, err = run(api, capsys, "pod", "no-namespace")
    assert rc == 2 and "expected NAMESPACE/NAME" in err


def test_status_is_a_gts_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status"]) == 2
    assert "pod" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_probe_passes_on_a_ready_extender_and_names_what_fails() -> None:
    # Probes go to the plain metrics port where `gts serve` has one (contracts.md), else to
    # the extender port, which serves /healthz, /readyz and /metrics itself.
    if "metrics_port" in ServeConfig.__dataclass_fields__:
        port = free_port()
        ext = static_extender(ServeConfig(cluster=CLUSTER, port=0, metrics_port=port)).start()
        url = f"http://127.0.0.1:{port}"
    else:
        ext = static_extender(ServeConfig(cluster=CLUSTER, port=0)).start()
        url = ext.url
    try:
        assert "cache synced" in probe(url)
        ext.cache.synced = False
        with pytest.raises(ProbeError, match="readyz answered 503"):
            probe(url)
    finally:
        ext.stop()
    with pytest.raises(ProbeError, match="cannot connect"):
        probe(url, timeout_s=2)
    with pytest.raises(ProbeError, match="expected an http"):
        probe("gts-extender:9090")
