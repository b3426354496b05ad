"""Bad input never crashes the server or corrupts the cache (hypothesis, over real HTTP).

Random JSON and bytes, and real kube-scheduler requests with one field mutated, are posted to
every verb of one running server. After each: the reply is a 200 of the right shape or a 400
naming the problem, /healthz still answers, and the snapshot invariants hold.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from extender_fakes import (
    KEY,
    ExtenderClient,
    FakeBinder,
    check_invariants,
    gpu_owners,
    pod_obj,
    spec,
    static_cache,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kube_scheduler_oracle import check_bind_reply, check_filter_reply, check_prioritize_reply

from scheduler.extender.runtime import Extender, build
from scheduler.extender.service import ServiceOptions
from scheduler.extender.wire import WireError, parse_extender_args
from scheduler.podcodec.signing import Signer

FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)

quantities = st.sampled_from(["-1", "0", "1", "2", "8", "9", "64", "65", "1500", "999", "0.5",
                              "1e30", "1Ki", "100m", "abc", "", " 1", "1.0", "99999999999999"])


def _extender() -> Extender:
    # gpu-node-1..3 as in the captured traffic, plus a node for gangs to land on.
    cache = static_cache([spec("gpu-node-1"), spec("gpu-node-2"), spec("gpu-node-3", "pcie-4gpu"),
                          spec("cpu-node-1", "")])
    return build(cache, FakeBinder(), Signer(KEY), ServiceOptions(gang_timeout_s=0.2,
                                                                  gang_bind_grace_s=0.2)).start()


@pytest.fixture(scope="module")
def ext() -> Iterator[Extender]:
    e = _extender()
    yield e
    e.stop()


@pytest.fixture(scope="module")
def client(ext: Extender) -> Iterator[ExtenderClient]:
    c = ExtenderClient(ext.url, timeout=30)
    yield c
    c.close()


def _requests(shared: Path) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for mode in ("ncc-true", "ncc-false"):
        for f in sorted((shared / "fixtures/extender" / mode / "all").glob("*.request.json")):
            verb = f.name.split("-")[1]
            if verb != "preempt":
                out.append((verb, json.loads(f.read_bytes())))
    gang = pod_obj("g0", gpus=2, gang="fz", min_member=2)
    out.append(("filter", {"Pod": gang, "NodeNames": ["gpu-node-1", "gpu-node-2"]}))
    out.append(("bind", {"PodName": "g0", "PodNamespace": "default",
                         "PodUID": gang["metadata"]["uid"], "Node": "gpu-node-1"}))
    return out


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


def _mutate(doc: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    if not path:
        return value
    out = copy.deepcopy(doc)
    parent = out
    for k in path[:-1]:
        parent = parent[k]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return out


def _check(ext: Extender, client: ExtenderClient, verb: str, body: bytes) -> None:
    status, raw = client.raw("POST", f"/{verb}", body)
    assert status in (200, 400), (status, raw[:300])
    reply = json.loads(raw)
    if status == 400:
        assert isinstance(reply.get("Error"), str) and reply["Error"]
    elif verb == "bind":
        check_bind_reply(reply)
    else:
        try:
            args = parse_extender_args(json.loads(body))
        except WireError:  # the server read it, the checker need not agree on junk
            args = None
        if args is not None:
            # The oracle reads kube-scheduler's exact keys; the fuzzer may have sent others.
            request = {"NodeNames": list(args.node_names)} if args.node_names is not None \
                else {"Nodes": {"items": list(args.nodes or ())}}
            if verb == "filter":
                check_filter_reply(reply, request)
            else:
                check_prioritize_reply(reply, request)
    assert client.raw("GET", "/healthz") == (200, b"ok\n")
    with ext.cache.lock:
        check_invariants(ext.cache.snapshot)
        assert all(len(v) == 1 for v in gpu_owners(ext.cache.snapshot).values())


@FUZZ
@given(verb=st.sampled_from(["filter", "prioritize", "bind"]), value=json_values)
def test_random_json_to_every_verb(ext: Extender, client: ExtenderClient, verb: str,
                                   value: Any) -> None:
    _check(ext, client, verb, json.dumps(value).encode())


@FUZZ
@given(verb=st.sampled_from(["filter", "prioritize", "bind"]), body=st.binary(max_size=64))
def test_random_bytes_to_every_verb(ext: Extender, client: ExtenderClient, verb: str,
                                    body: bytes) -> None:
    _check(ext, client, verb, body)


@FUZZ
@given(data=st.data())
def test_mutated_kube_scheduler_requests(ext: Extender, client: ExtenderClient, shared: Path,
                                         data: st.DataObject) -> None:
    verb, doc = data.draw(st.sampled_from(_requests(shared)))
    paths = list(_paths(doc))
    path = data.draw(st.sampled_from(paths))
    value = data.draw(st.one_of(json_values, quantities))
    mutated = _mutate(doc, path, value, delete=data.draw(st.booleans()))
    _check(ext, client, verb, json.dumps(mutated).encode())


@FUZZ
@given(data=st.data())
def test_absurd_quantities_in_pod_resources(ext: Extender, client: ExtenderClient,
                                            data: st.DataObject) -> None:
    resources = data.draw(st.dictionaries(
        st.sampled_from(["nvidia.com/gpu", "gts.dev/gpu-milli", "gts.dev/gpu-memory", "cpu",
                         "memory", "example.com/other"]), quantities, max_size=4))
    pod = pod_obj(f"q{data.draw(st.integers(0, 5))}", gpus=0, resources=resources)
    names = ["gpu-node-1", "gpu-node-2", "gpu-node-3", "cpu-node-1", "ghost"]
    for verb in ("filter", "prioritize"):
        _check(ext, client, verb, json.dumps({"Pod": pod, "NodeNames": names}).encode())
    m = pod["metadata"]
    node = data.draw(st.sampled_from(names))
    _check(ext, client, "bind", json.dumps({"PodName": m["name"], "PodNamespace": "default",
                                            "PodUID": m["uid"], "Node": node}).encode())


def test_the_fuzzing_reaches_deep_paths() -> None:
    """The fuzz inputs do bind pods and reject bad ones (not only bounce off the JSON parser):
    two of the fuzzers above, run on a server of its own, then that server's metrics. (A
    check of the shared server's metrics would depend on the other tests running first.)"""
    e = _extender()
    c = ExtenderClient(e.url, timeout=30)
    try:
        test_absurd_quantities_in_pod_resources(ext=e, client=c)
        test_random_bytes_to_every_verb(ext=e, client=c)
        text = e.service.metrics.render().decode()
    finally:
        c.close()
        e.stop()
    for needle in ('outcome="bound"', 'reason="bad_request"', 'code="400"', 'verb="prioritize"',
                   'outcome="passed"'):
        assert needle in text, needle
