"""Pod JSON -> PodRequest and Assignment: fixture pods, kube-scheduler's arithmetic, errors."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pod_annotation_patch import cleared_assignment_annotations

from scheduler.constants import (
    ALLOWED_MODELS_ANNOTATION,
    ASSIGNED_GPUS_ANNOTATION,
    ASSIGNED_MEMORY_ANNOTATION,
    ASSIGNED_MILLI_ANNOTATION,
    ASSIGNED_NODE_ANNOTATION,
    ASSIGNMENT_SIGNATURE_ANNOTATION,
    GANG_MIN_MEMBER_ANNOTATION,
    GPU_MEMORY_RESOURCE,
    GPU_MILLI_RESOURCE,
    GPU_RESOURCE,
    POD_GROUP_LABEL,
    VOLCANO_GROUP_ANNOTATION,
)
from scheduler.contract.assignment import Assignment
from scheduler.contract.request import RequestError
from scheduler.podcodec.assignment import (
    AssignmentError,
    assignment_annotations,
    assignment_from_pod,
    assignment_signature_ok,
)
from scheduler.podcodec.pod_fields import gang_key_of
from scheduler.podcodec.pod_request import pod_request_from_k8s
from scheduler.podcodec.resources import pod_resources
from scheduler.podcodec.signing import Signer, SigningKeyError, load_signing_key

KEY = b"k" * 32


def fixture_pods(shared: Path) -> list[dict[str, Any]]:
    """Every Pod in the captured requests: the pod being scheduled and preemption victims."""
    out = []
    for f in sorted((shared / "fixtures" / "extender").glob("*/all/*.request.json")):
        body = json.loads(f.read_text())
        if body.get("Pod"):
            out.append(body["Pod"])
        for victims in (body.get("NodeNameToVictims") or {}).values():
            out.extend(victims.get("Pods") or [])
    return out


def pod(containers: list[dict[str, Any]], *, init: list[dict[str, Any]] | None = None,
        overhead: dict[str, str] | None = None, labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"containers": containers, **spec}
    if init is not None:
        s["initContainers"] = init
    if overhead is not None:
        s["overhead"] = overhead
    meta: dict[str, Any] = {"name": "p", "namespace": "ns", "uid": "uid-1",
                            "labels": labels or {}, "annotations": annotations or {}}
    return {"metadata": meta, "spec": s, "status": {"phase": "Pending"}}


def c(requests: dict[str, str] | None = None, limits: dict[str, str] | None = None,
      **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {}
    if requests is not None:
        res["requests"] = requests
    if limits is not None:
        res["limits"] = limits
    return {"name": "c", "image": "x", "resources": res, **extra}


def test_every_fixture_pod_parses(shared: Path) -> None:
    pods = fixture_pods(shared)
    assert len(pods) >= 10
    expected_gpus = {"ext-gpu": 1, "ext-fill": 3, "ext-high": 2}
    for p in pods:
        req = pod_request_from_k8s(p)
        name = p["metadata"]["name"]
        assert req.key == f"default/{name}"
        assert req.uid == p["metadata"]["uid"]
        assert req.cpu_milli == 100
        assert req.gpus == expected_gpus[name.rsplit("-", 1)[0]]
        assert req.priority == p["spec"].get("priority", 0)
        assert req.gang is None and not req.allowed_models
        assert assignment_from_pod(p) is None


def test_fixture_pods_are_not_mutated(shared: Path) -> None:
    for p in fixture_pods(shared):
        before = copy.deepcopy(p)
        pod_request_from_k8s(p)
        assert p == before


def test_sum_of_containers_and_limits_default_requests() -> None:
    p = pod([c({"cpu": "500m", "memory": "1Gi"}, {GPU_RESOURCE: "2"}),
             c({"cpu": "1.5"}, {"memory": "512Mi", GPU_RESOURCE: "1"})])
    req = pod_request_from_k8s(p)
    assert (req.cpu_milli, req.memory_mib, req.gpus) == (2000, 1536, 3)


def test_init_containers_sidecars_and_overhead() -> None:
    # kube-scheduler: max(app + sidecars, each init step with the sidecars before it)
    # plus overhead.
    p = pod([c({"cpu": "1"})],
            init=[c({"cpu": "3", "memory": "1Gi"}),
                  c({"cpu": "500m"}, restartPolicy="Always"),
                  c({"cpu": "2", "memory": "2Gi"})],
            overhead={"cpu": "250m", "memory": "64Mi"})
    res = pod_resources(p)
    # app+sidecar = 1.5 cpu; init steps: 3 cpu/1Gi, sidecar 0.5, 2+0.5 = 2.5 cpu/2Gi.
    assert res.cpu_milli == 3000 + 250
    assert res.memory_mib == 2048 + 64


def test_pod_level_resources_replace_container_cpu_memory() -> None:
    p = pod([c({"cpu": "1", "memory": "1Gi", GPU_RESOURCE: "1"})],
            resources={"requests": {"cpu": "4", "memory": "8Gi"}})
    req = pod_request_from_k8s(p)
    assert (req.cpu_milli, req.memory_mib, req.gpus) == (4000, 8192, 1)


def test_share_request() -> None:
    p = pod([c({GPU_MILLI_RESOURCE: "300", GPU_MEMORY_RESOURCE: "4096"})],
            annotations={ALLOWED_MODELS_ANNOTATION: "A100| H100 ,,"})
    req = pod_request_from_k8s(p)
    assert (req.gpus, req.gpu_milli, req.gpu_memory_mib) == (0, 300, 4096)
    assert req.allowed_models == frozenset({"A100", "H100"})


def test_gang_from_label_known_size_and_annotation() -> None:
    p = pod([c({GPU_RESOURCE: "8"})], labels={POD_GROUP_LABEL: "train"})
    assert gang_key_of(p) == "ns/train"
    req = pod_request_from_k8s(p, known_gang_sizes={"ns/train": 4})
    assert req.gang is not None and (req.gang.key, req.gang.min_member) == ("ns/train", 4)
    p["metadata"]["annotations"][GANG_MIN_MEMBER_ANNOTATION] = "3"
    req = pod_request_from_k8s(p)
    assert req.gang is not None and req.gang.min_member == 3


def test_volcano_group_annotation() -> None:
    p = pod([c({GPU_RESOURCE: "1"})], annotations={VOLCANO_GROUP_ANNOTATION: "vj",
                                                   GANG_MIN_MEMBER_ANNOTATION: "2"})
    req = pod_request_from_k8s(p)
    assert req.gang is not None and (req.gang.key, req.gang.min_member) == ("ns/vj", 2)


@pytest.mark.parametrize(("p", "field"), [
    (pod([c({"cpu": "1"}), c({"cpu": "one"})]), "spec.containers[1].resources.requests.cpu"),
    (pod([c(None, {"memory": "-1Gi"})]), "spec.containers[0].resources.limits.memory"),
    (pod([c({GPU_RESOURCE: "0.5"})]), f"spec.containers[0].resources.requests.{GPU_RESOURCE}"),
    (pod([c({GPU_MILLI_RESOURCE: "250m"})]),
     f"spec.containers[0].resources.requests.{GPU_MILLI_RESOURCE}"),
    (pod([c({GPU_MILLI_RESOURCE: "1500"})]),
     f"spec.containers[*].resources.requests.{GPU_MILLI_RESOURCE}"),
    (pod([c({GPU_RESOURCE: "1", GPU_MILLI_RESOURCE: "500"})]),
     f"spec.containers[*].resources.requests.{GPU_MILLI_RESOURCE}"),
    (pod([c({GPU_MEMORY_RESOURCE: "100"})]),
     f"spec.containers[*].resources.requests.{GPU_MEMORY_RESOURCE}"),
    (pod([c({GPU_RESOURCE: "65"})]), f"spec.containers[*].resources.requests.{GPU_RESOURCE}"),
    (pod([c({"cpu": "1"})], init=[c({"cpu": "x"})]),
     "spec.initContainers[0].resources.requests.cpu"),
    (pod([c({"cpu": "1"})], overhead={"cpu": "?"}), "spec.overhead.cpu"),
    (pod([c({"cpu": "1"})], annotations={ALLOWED_MODELS_ANNOTATION: " | "}),
     f"metadata.annotations.{ALLOWED_MODELS_ANNOTATION}"),
    (pod([c({GPU_RESOURCE: "1"})], labels={POD_GROUP_LABEL: "g"}),
     f"metadata.labels.{POD_GROUP_LABEL}"),
    (pod([c({GPU_RESOURCE: "1"})], labels={POD_GROUP_LABEL: "g"},
         annotations={GANG_MIN_MEMBER_ANNOTATION: "0"}),
     f"metadata.annotations.{GANG_MIN_MEMBER_ANNOTATION}"),
    (pod([c({"cpu": "1"})], priority="high"), "spec.priority"),
    (pod("nope"), "spec.containers"),  # type: ignore[arg-type]
    (pod([c({"cpu": "1"})], annotations={"a": 1}), "metadata.annotations.a"),  # type: ignore[dict-item]
    ({"metadata": {"namespace": "ns"}, "spec": {"containers": []}}, "metadata.name"),
])
def test_invalid_requests_name_the_field(p: dict[str, Any], field: str) -> None:
    with pytest.raises(RequestError) as e:
        pod_request_from_k8s(p)
    assert e.value.field == field
    assert field in str(e.value)


def test_gang_error_says_what_is_missing() -> None:
    p = pod([c({GPU_RESOURCE: "1"})], labels={POD_GROUP_LABEL: "g"})
    with pytest.raises(RequestError, match="no PodGroup ns/g"):
        pod_request_from_k8s(p)


def test_assignment_annotations_round_trip_and_signature() -> None:
    signer = Signer(KEY)
    p = pod([c({"cpu": "2", "memory": "1Gi", GPU_RESOURCE: "2"})])
    a = Assignment(pod="ns/p", node="n1", gpus=(4, 6), cpu_milli=2000, memory_mib=1024)
    p["metadata"]["annotations"].update(assignment_annotations(a, signer, uid="uid-1"))
    assert assignment_from_pod(p) == a
    assert assignment_signature_ok(p, a, signer)
    assert not assignment_signature_ok(p, a, Signer(b"x" * 32))
    # A copied annotation on another pod (another uid) does not verify.
    other = copy.deepcopy(p)
    other["metadata"]["uid"] = "uid-2"
    assert not assignment_signature_ok(other, a, signer)
    # Changing the GPUs by hand breaks the signature.
    p["metadata"]["annotations"][ASSIGNED_GPUS_ANNOTATION] = "0,1"
    b = assignment_from_pod(p)
    assert b is not None and b.gpus == (0, 1)
    assert not assignment_signature_ok(p, b, signer)


def test_share_assignment_round_trip() -> None:
    signer = Signer(KEY)
    p = pod([c({"cpu": "1", GPU_MILLI_RESOURCE: "250", GPU_MEMORY_RESOURCE: "2048"})])
    a = Assignment(pod="ns/p", node="n1", gpus=(3,), gpu_milli=250, gpu_memory_mib=2048,
                   cpu_milli=1000)
    p["metadata"]["annotations"].update(assignment_annotations(a, signer, uid="uid-1"))
    assert assignment_from_pod(p) == a
    cleared = cleared_assignment_annotations()
    assert set(cleared) == {ASSIGNED_NODE_ANNOTATION, ASSIGNED_GPUS_ANNOTATION,
                            ASSIGNED_MILLI_ANNOTATION, ASSIGNED_MEMORY_ANNOTATION,
                            ASSIGNMENT_SIGNATURE_ANNOTATION}
    assert all(v is None for v in cleared.values())


@pytest.mark.parametrize(("ann", "field"), [
    ({ASSIGNED_NODE_ANNOTATION: ""}, ASSIGNED_NODE_ANNOTATION),
    ({ASSIGNED_NODE_ANNOTATION: "n", ASSIGNED_GPUS_ANNOTATION: "0,,1"}, ASSIGNED_GPUS_ANNOTATION),
    ({ASSIGNED_NODE_ANNOTATION: "n", ASSIGNED_GPUS_ANNOTATION: "01"}, ASSIGNED_GPUS_ANNOTATION),
    ({ASSIGNED_NODE_ANNOTATION: "n", ASSIGNED_GPUS_ANNOTATION: "1,1"}, ASSIGNED_GPUS_ANNOTATION),
    ({ASSIGNED_NODE_ANNOTATION: "n", ASSIGNED_GPUS_ANNOTATION: "-1"}, ASSIGNED_GPUS_ANNOTATION),
    ({ASSIGNED_NODE_ANNOTATION: "n", ASSIGNED_GPUS_ANNOTATION: "0",
      ASSIGNED_MILLI_ANNOTATION: "1001"}, ASSIGNED_MILLI_ANNOTATION),
    ({ASSIGNED_NODE_ANNOTATION: "n", ASSIGNED_GPUS_ANNOTATION: "0,1",
      ASSIGNED_MILLI_ANNOTATION: "500"}, ASSIGNED_GPUS_ANNOTATION),
    ({ASSIGNED_NODE_ANNOTATION: "n", ASSIGNED_GPUS_ANNOTATION: "0",
      ASSIGNED_MEMORY_ANNOTATION: "lots"}, ASSIGNED_MEMORY_ANNOTATION),
])
def test_malformed_assignment_names_the_annotation(ann: dict[str, str], field: str) -> None:
    p = pod([c({GPU_RESOURCE: "1"})], annotations=ann)
    with pytest.raises(AssignmentError) as e:
        assignment_from_pod(p)
    assert e.value.field == field


def test_signer_rules() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        Signer(b"short")
    s = Signer(KEY)
    sig = s.sign("u", "n", (0, 1), 1000, 0)
    kid, _, mac = sig.partition(":")
    assert kid == s.key_id and len(mac) == 64 and s.verify(sig, "u", "n", (0, 1), 1000, 0)
    assert s.verify(mac, "u", "n", (0, 1), 1000, 0)  # a signature made before key ids
    for args in (("u", "n", (1, 0), 1000, 0), ("u", "n", (0, 1), 999, 0),
                 ("u", "n", (0, 1), 1000, 1), ("u", "m", (0, 1), 1000, 0),
                 ("v", "n", (0, 1), 1000, 0)):
        assert not s.verify(sig, *args)
    assert not s.verify(None, "u", "n", (0, 1), 1000, 0)  # type: ignore[arg-type]
    assert "kkkk" not in repr(s)
    with pytest.raises(ValueError, match="uid"):
        s.sign("", "n", (0,), 1000, 0)


def test_signing_key_file_is_stripped_and_checked(tmp_path: Path) -> None:
    k = tmp_path / "key"
    k.write_bytes(b"0123456789abcdef0123456789abcdef\n\n")
    assert load_signing_key(str(k)) == b"0123456789abcdef0123456789abcdef"
    k.write_bytes(b"0123456789abcdef0123456789abcde \n")  # 31 bytes without the whitespace
    with pytest.raises(SigningKeyError, match=re.escape(f"{k}: 31 bytes; need at least 32")):
        load_signing_key(str(k))
    with pytest.raises(SigningKeyError, match="missing"):
        load_signing_key(str(tmp_path / "missing"))
