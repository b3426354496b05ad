"""Issue 8, root 3: signing keys, unverifiable assignments, foreign pods, Events."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from cluster_cache_probes import durable_snapshot, replace_all
from kube_events_drain import drain
from recorded_events import RecordedEvents
from snapshot_equality import same_state
from test_cluster_cache import node_obj, pod_obj

from scheduler.cluster.cache import ClusterCache
from scheduler.cluster.events import Event, ObjectRef
from scheduler.cluster.kube_events import KubeEvents
from scheduler.constants import TOPOLOGY_ANNOTATION
from scheduler.contract.assignment import Assignment
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.podcodec.assignment import assignment_annotations
from scheduler.podcodec.signing import (
    Signer,
    SigningKeyError,
    derived_key_id,
    load_key_dir,
    load_signing_key,
)

OLD = b"old-key-0123456789abcdefghijklmnopqrstuv"
NEW = b"new-key-ZYXWVUTSRQPONMLKJIHGFEDCBA987654"


def signed(p: dict[str, Any], a: Assignment, signer: Signer) -> dict[str, Any]:
    q = copy.deepcopy(p)
    q["metadata"]["annotations"].update(assignment_annotations(a, signer,
                                                               uid=q["metadata"]["uid"]))
    return q


def share_pods(signer: Signer) -> list[dict[str, Any]]:
    """Eight bound share pods of 500 milli on node a's four GPUs (4.0 GPUs in use)."""
    out = []
    for i in range(8):
        a = Assignment(pod=f"ns/s{i}", node="a", gpus=(i // 2,), gpu_milli=500,
                       cpu_milli=1000, memory_mib=1024)
        out.append(signed(pod_obj(f"s{i}", milli=500, node="a"), a, signer))
    return out


def used_milli(cache: ClusterCache) -> int:
    snap = cache.snapshot
    return int(4 * MILLI_PER_GPU - snap.milli_free[snap.index["a"], :4].sum())


# ---- a restart with a new key ----------------------------------------------------------

def test_a_restart_with_a_new_key_keeps_running_pods_counted() -> None:
    pods = share_pods(Signer(OLD))
    before = ClusterCache(signer=Signer(OLD))
    replace_all(before, [node_obj("a", 4)], pods)
    assert used_milli(before) == 4000
    after = ClusterCache(signer=Signer(NEW))  # restarted with only the new key
    replace_all(after, [node_obj("a", 4)], pods)
    assert used_milli(after) == 4000  # held, never free
    assert same_state(after.snapshot, before.snapshot)


def test_unverifiable_assignments_are_reported_once_each() -> None:
    pods = share_pods(Signer(OLD))
    events = RecordedEvents()
    cache = ClusterCache(signer=Signer(NEW), events=events)
    replace_all(cache, [node_obj("a", 4)], pods)
    assert sorted(cache.unverified) == [f"ns/s{i}" for i in range(8)]
    cache.upsert_pod(pods[0])  # seen again: no second event
    assert events.reasons() == ["AssignmentUnverifiable"] * 8
    e = events.events[0]
    assert e.type == "Warning" and e.about.kind == "Pod" and "counted as held" in e.message
    cache.delete_pod(pods[0])
    assert "ns/s0" not in cache.unverified


def test_the_metric_counts_unverified_assignments() -> None:
    from extender_fakes import FakeBinder

    from scheduler.extender.metrics import ExtenderMetrics
    from scheduler.extender.service import ExtenderService

    cache = ClusterCache(signer=Signer(NEW))
    replace_all(cache, [node_obj("a", 4)], share_pods(Signer(OLD)))
    cache.synced = True
    metrics = ExtenderMetrics()
    svc = ExtenderService(cache, FakeBinder(), Signer(NEW), metrics=metrics)
    metrics.track(cache, svc.gangs, None)
    assert "gts_unverified_assignments 8.0" in metrics.render().decode()


def test_a_key_ring_rotates_without_dropping_anyone() -> None:
    ring = Signer(keys={"k-old": OLD, "k-new": NEW}, key_id="k-new")
    old = Signer(keys={"k-old": OLD})
    cache = ClusterCache(signer=ring)
    replace_all(cache, [node_obj("a", 4)], share_pods(old))
    assert cache.unverified == {} and used_milli(cache) == 4000
    sig = ring.sign("u", "a", (0,), 1000, 0)
    assert sig.startswith("k-new:") and old.verify(
        Signer(keys={"k-old": OLD}).sign("u", "a", (0,), 1000, 0), "u", "a", (0,), 1000, 0)
    assert not Signer(keys={"k-new": NEW}).verify(
        old.sign("u", "a", (0,), 1000, 0), "u", "a", (0,), 1000, 0)
    with pytest.raises(ValueError, match="signing-key-id"):
        Signer(keys={"k-old": OLD, "k-new": NEW})


# ---- key quality ---------------------------------------------------------------------------

@pytest.mark.parametrize("key", [
    b"\x00" * 16, b"a" * 32, b"ab" * 32, b"0123" * 16,
    b"0123456789abcde",  # 15 bytes
])
def test_weak_keys_are_refused_naming_the_file(tmp_path: Path, key: bytes) -> None:
    f = tmp_path / "key"
    f.write_bytes(key)
    with pytest.raises(SigningKeyError, match=str(f)):
        load_signing_key(str(f))


def test_random_looking_keys_are_accepted(tmp_path: Path) -> None:
    f = tmp_path / "key"
    f.write_bytes(b"3f9c1a7e5b20d84c6e1f0a9b7d3c5e28" + b"\n")  # openssl rand -hex 16
    assert load_signing_key(str(f)).startswith(b"3f9c")
    assert derived_key_id(b"x" * 32).startswith("k") and len(derived_key_id(b"x" * 32)) == 13


def test_key_dir_reads_every_key_and_skips_the_secret_mount_internals(tmp_path: Path) -> None:
    (tmp_path / "..data").mkdir()
    (tmp_path / "k2026-10").write_bytes(OLD)
    (tmp_path / "k2026-11").write_bytes(NEW + b"\n")
    assert load_key_dir(str(tmp_path)) == {"k2026-10": OLD, "k2026-11": NEW}
    (tmp_path / "Bad_Name").write_bytes(NEW)
    with pytest.raises(SigningKeyError, match="Bad_Name"):
        load_key_dir(str(tmp_path))


def test_serve_config_builds_the_ring(tmp_path: Path) -> None:
    from scheduler.extender.config import ConfigError, ServeConfig, load_signer

    (tmp_path / "k1").write_bytes(OLD)
    (tmp_path / "k2").write_bytes(NEW)
    with pytest.raises(ConfigError, match="signing-key-id"):
        load_signer(ServeConfig(signing_key_dir=str(tmp_path)))
    s = load_signer(ServeConfig(signing_key_dir=str(tmp_path), signing_key_id="k2"))
    assert s is not None and s.key_id == "k2" and s.key_ids == ("k1", "k2")
    (tmp_path / "k3").write_bytes(b"z" * 40)
    with pytest.raises(ConfigError, match=r"k3.*low entropy"):
        load_signer(ServeConfig(signing_key_dir=str(tmp_path), signing_key_id="k2"))


# ---- foreign pods -------------------------------------------------------------------------

def test_a_foreign_pod_on_shared_gpus_is_counted_conservatively_and_reported() -> None:
    signer = Signer(OLD)
    events = RecordedEvents()
    cache = ClusterCache(signer=signer, events=events)
    pods = share_pods(signer)[::2]  # a 500 share on every GPU of node a: none wholly free
    foreign = pod_obj("default-sched", gpus=2, node="a")
    replace_all(cache, [node_obj("a", 4)], [*pods, foreign])
    snap = cache.snapshot
    i = snap.index["a"]
    # The two partly used GPUs it is counted on have nothing left for anyone.
    assert sorted(snap.milli_free[i, :4].tolist()) == [0, 0, 500, 500]
    assert "a" in cache.overcommitted
    assert "overcommitted" in cache.pod_errors["ns/default-sched"]
    assert events.reasons() == ["NodeOvercommitted"]
    assert events.events[0].about == ObjectRef("Node", "a")
    assert same_state(durable_snapshot(cache), snap)  # a restart rebuilds the same
    cache.delete_pod(foreign)
    assert "a" not in cache.overcommitted
    assert int(cache.snapshot.milli_free[i, :4].sum()) == 2000


def test_a_foreign_pod_without_any_capacity_left_is_reported_on_the_pod() -> None:
    signer = Signer(OLD)
    events = RecordedEvents()
    cache = ClusterCache(signer=signer, events=events)
    full = [signed(pod_obj(f"w{g}", gpus=1, node="a"),
                   Assignment(pod=f"ns/w{g}", node="a", gpus=(g,), cpu_milli=1000,
                              memory_mib=1024), signer) for g in range(4)]
    replace_all(cache, [node_obj("a", 4)], [*full, pod_obj("f", gpus=2, node="a")])
    assert sorted(events.reasons()) == ["ForeignPodNotCounted", "NodeOvercommitted"]
    assert "not counted" in cache.overcommitted["a"]


def test_an_invalid_topology_is_an_event_on_the_node() -> None:
    events = RecordedEvents()
    cache = ClusterCache(events=events)
    bad = node_obj("b", 8)
    bad["metadata"]["annotations"] = {TOPOLOGY_ANNOTATION: '{"v": 1, "gpus": []}'}
    replace_all(cache, [node_obj("a", 4), bad], [])
    cache.upsert_node(bad)
    assert events.reasons() == ["InvalidTopology"]
    assert events.events[0].about == ObjectRef("Node", "b")


# ---- the Kubernetes sink ---------------------------------------------------------------------

class FakeCore:
    def __init__(self) -> None:
        self.created: list[tuple[str, dict[str, Any]]] = []
        self.patched: list[tuple[str, str, dict[str, Any]]] = []

    def create_namespaced_event(self, ns: str, body: dict[str, Any], **_: Any) -> None:
        self.created.append((ns, body))

    def patch_namespaced_event(self, name: str, ns: str, body: dict[str, Any],
                               **_: Any) -> None:
        self.patched.append((name, ns, body))


def test_kube_events_create_then_aggregate_and_never_block() -> None:
    core = FakeCore()
    sink = KubeEvents(core=core, queue_size=3, wall=lambda: 0.0)
    pod = ObjectRef("Pod", "p", "ns", "uid-p")
    for _ in range(5):
        sink.emit(Event(pod, "AssignmentUnverifiable", "cannot verify", "Warning"))
    assert sink.stats["dropped"] == 2  # the queue was full: dropped, not waited on
    drain(sink)
    assert len(core.created) == 1 and len(core.patched) == 2
    ns, body = core.created[0]
    assert ns == "ns" and body["involvedObject"]["uid"] == "uid-p"
    assert body["reason"] == "AssignmentUnverifiable" and body["type"] == "Warning"
    assert core.patched[-1][2]["count"] == 3
    sink.emit(Event(ObjectRef("Node", "n1"), "NodeOvercommitted", "x", "Warning"))
    drain(sink)
    assert core.created[-1][0] == "default"  # nodes' events live in default, like kubelet's


def test_kube_events_are_rate_limited() -> None:
    t = [0.0]
    sink = KubeEvents(core=FakeCore(), rate_per_s=1.0, burst=2, clock=lambda: t[0])
    assert sink._take_token() == 0 and sink._take_token() == 0
    assert sink._take_token() == pytest.approx(1.0)
    t[0] += 1.0
    assert sink._take_token() == 0
