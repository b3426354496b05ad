"""The podcodec memos: a pod's requests kept per pod while its request fields do not change,
and the signer's MACs kept per message; both bounded, both give what a fresh computation gives,
and a tampered assignment is still refused."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from scheduler.contract.request import RequestError
from scheduler.podcodec import signing
from scheduler.podcodec.resource_memo import ResourceMemo
from scheduler.podcodec.resources import pod_resources
from scheduler.podcodec.signing import Signer

KEY = bytes(range(32))


def pod(cpu: str = "500m", mem: str = "1Gi", gpus: str = "1") -> dict[str, Any]:
    req = {"cpu": cpu, "memory": mem, "nvidia.com/gpu": gpus}
    return {"metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": req}}]}}


def test_the_memo_gives_what_pod_resources_gives_and_follows_changes() -> None:
    memo = ResourceMemo()
    p = pod()
    assert memo.resources("ns/p", p) == pod_resources(p)
    # The next event of the pod: an equal spec decoded again (a new object) is a hit...
    assert memo.resources("ns/p", copy.deepcopy(p)) == pod_resources(p)
    # ...and a resized container is read again (in-place resize changes requests).
    q = pod(cpu="2", mem="3Gi")
    assert memo.resources("ns/p", q) == pod_resources(q)
    assert memo.resources("ns/p", q).cpu_milli == 2000
    # An added init container counts too.
    r = copy.deepcopy(q)
    r["spec"]["initContainers"] = [{"name": "i", "resources": {"requests": {"cpu": "8"}}}]
    assert memo.resources("ns/p", r).cpu_milli == 8000 == pod_resources(r).cpu_milli
    assert len(memo) == 1


def test_a_pod_that_does_not_parse_raises_every_time_and_is_not_kept() -> None:
    memo = ResourceMemo()
    memo.resources("ns/p", pod())
    bad = pod(cpu="lots")
    for _ in range(2):
        with pytest.raises(RequestError, match="cpu"):
            memo.resources("ns/p", bad)
    with pytest.raises(RequestError, match="spec"):
        memo.resources("ns/q", {"metadata": {"name": "q"}, "spec": []})
    assert memo.resources("ns/p", pod()) == pod_resources(pod())


def test_entries_live_as_long_as_their_pod() -> None:
    memo = ResourceMemo()
    for i in range(5):
        memo.resources(f"ns/p{i}", pod())
    memo.drop("ns/p0")
    memo.drop("ns/absent")
    assert len(memo) == 4
    memo.clear()
    assert len(memo) == 0


def sig_args(uid: str = "u1", node: str = "n1", gpus: tuple[int, ...] = (0, 1)) -> tuple[Any, ...]:
    return (uid, node, gpus, 1000, 0)


def test_a_signature_verifies_from_the_memo_and_tampering_is_still_refused() -> None:
    s = Signer(KEY)
    sig = s.sign(*sig_args())
    assert s.memo_size() == 1
    assert s.verify(sig, *sig_args())
    assert s.memo_size() == 1  # checked against the kept MAC, none computed
    kid, mac = sig.split(":")
    flipped = mac[:-1] + ("0" if mac[-1] != "0" else "1")
    assert not s.verify(f"{kid}:{flipped}", *sig_args())  # a tampered signature
    assert not s.verify(sig, *sig_args(gpus=(0, 2)))  # tampered GPUs: another message
    assert not s.verify(sig, *sig_args(node="n2"))
    assert not s.verify(sig, *sig_args(uid="u2"))
    assert not s.verify(f"other:{mac}", *sig_args())  # a key id not in the ring
    assert s.verify(mac, *sig_args())  # a bare signature is tried against every key
    # A signature made with a key of another ring never verifies, memo or not.
    forged = Signer(bytes(range(1, 33)), key_id=kid).sign(*sig_args())
    assert not s.verify(forged, *sig_args())
    assert s.verify(sig, *sig_args())


def test_the_mac_memo_is_bounded_and_stays_correct_after_eviction(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signing, "MAC_MEMO_SIZE", 4)
    s = Signer(KEY)
    sigs = [s.sign(*sig_args(uid=f"u{i}")) for i in range(10)]
    assert s.memo_size() == 4
    for i, sig in enumerate(sigs):  # evicted ones are computed again, and still verify
        assert s.verify(sig, *sig_args(uid=f"u{i}"))
        assert not s.verify(sig, *sig_args(uid=f"u{i}", gpus=(3,)))
    assert s.memo_size() == 4
    # The same MAC as a signer without a memo would give.
    assert Signer(KEY).sign(*sig_args(uid="u0")) == sigs[0]


def test_a_long_message_is_checked_without_the_memo() -> None:
    # A hand-written assignment listing hundreds of GPU indices still verifies or fails as
    # before, but takes no memo room.
    s = Signer(KEY)
    many = tuple(range(300))
    sig = s.sign(*sig_args(gpus=many))
    assert s.memo_size() == 0
    assert s.verify(sig, *sig_args(gpus=many))
    assert not s.verify(sig, *sig_args(gpus=many[:-1]))
    assert s.memo_size() == 0
    assert sig == Signer(KEY).sign(*sig_args(gpus=many))
