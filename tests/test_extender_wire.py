"""Extender v1 wire format against real kube-scheduler v1.36.2 traffic (../shared/fixtures)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kube_scheduler_oracle import (
    Rejected,
    check_bind_reply,
    check_filter_reply,
    check_prioritize_reply,
)

from scheduler.extender.wire import (
    BindingArgs,
    HostPriorities,
    WireError,
    bind_reply,
    decode_json,
    encode_json,
    filter_reply,
    parse_binding_args,
    parse_extender_args,
)

MODES = ("ncc-true", "ncc-false")


def _fixtures(shared: Path, mode: str) -> list[tuple[str, dict[str, Any], Any]]:
    """(verb, request, response) of every call captured in one mode, in order."""
    out: list[tuple[str, dict[str, Any], Any]] = []
    for req in sorted((shared / "fixtures/extender" / mode / "all").glob("*.request.json")):
        verb = req.name.split("-")[1]
        resp = req.with_name(req.name.replace(".request.", ".response."))
        out.append((verb, json.loads(req.read_bytes()), json.loads(resp.read_bytes())))
    return out


@pytest.mark.parametrize("mode", MODES)
def test_every_fixture_request_parses_and_its_reply_shape_round_trips(
        shared: Path, mode: str) -> None:
    calls = _fixtures(shared, mode)
    assert {v for v, _, _ in calls} == {"filter", "prioritize", "bind", "preempt"}
    for verb, req, resp in calls:
        if verb in ("filter", "prioritize"):
            args = parse_extender_args(req)
            assert (args.node_names is not None) == (mode == "ncc-true")
            if mode == "ncc-true":
                assert args.names == tuple(req["NodeNames"])
            else:
                assert args.names == tuple(n["metadata"]["name"] for n in req["Nodes"]["items"])
                assert args.nodes == tuple(req["Nodes"]["items"])
            assert args.pod is req["Pod"]
            if verb == "filter":
                # The reply kube-scheduler accepted, rebuilt from its parts by our encoder.
                accepted = check_filter_reply(resp, req)
                pos = [args.names.index(n) for n in accepted]
                ours = filter_reply(args, pos, resp["FailedNodes"],
                                    resp["FailedAndUnresolvableNodes"], resp["Error"])
                assert ours == resp
                assert json.loads(encode_json(ours)) == resp
            else:
                scores = check_prioritize_reply(resp, req)
                hp = HostPriorities(list(scores), list(scores.values()))
                assert hp.as_list() == resp and json.loads(hp.encode()) == resp
        elif verb == "bind":
            b = parse_binding_args(req)
            assert b == BindingArgs(req["PodName"], req["PodNamespace"], req["PodUID"],
                                    req["Node"])
            assert check_bind_reply(resp) == ""
            assert bind_reply("") == resp
        # preempt: captured from a demo extender; this one registers no preemptVerb, so
        # kube-scheduler runs its own preemption and never calls it (test_extender_service).


def test_keys_are_read_like_go_exact_first_then_ignoring_case() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}}
    args = parse_extender_args({"pod": pod, "nodenames": ["a", "b"], "nodes": None})
    assert args.names == ("a", "b") and args.node_names is not None
    exact = parse_extender_args({"Pod": pod, "NodeNames": ["x"], "nodeNames": ["y"]})
    assert exact.names == ("x",)
    b = parse_binding_args({"podName": "p", "podNamespace": "ns", "podUID": "u", "node": "n"})
    assert b.pod_key == "ns/p" and b.node == "n"


def test_replies_use_exact_go_field_names() -> None:
    pod = {"metadata": {"name": "p"}}
    names = parse_extender_args({"Pod": pod, "NodeNames": ["a", "b"]})
    assert list(filter_reply(names, [1], {"a": "busy"}, {})) == [
        "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"]
    nodes = parse_extender_args({"Pod": pod, "Nodes": {"items": [
        {"metadata": {"name": "a"}, "x": 1}, {"metadata": {"name": "b"}}]}})
    r = filter_reply(nodes, [0], {}, {"b": "wrong model"})
    assert r["Nodes"] == {"metadata": {}, "items": [{"metadata": {"name": "a"}, "x": 1}]}
    assert "NodeNames" not in r
    # Unresolvable wins over failed for the same node, as kube-scheduler reads them.
    both = filter_reply(names, [], {"a": "x"}, {"a": "y"})
    assert both["FailedNodes"] == {} and both["FailedAndUnresolvableNodes"] == {"a": "y"}
    assert HostPriorities(["a"], [7]).as_list() == [{"Host": "a", "Score": 7}]


def test_neither_nodes_nor_names_means_no_candidates() -> None:
    args = parse_extender_args({"Pod": {"metadata": {"name": "p"}}, "Nodes": None,
                                "NodeNames": None})
    assert args.names == ()
    assert filter_reply(args, [], {}, {})["NodeNames"] == []


@pytest.mark.parametrize(("doc", "field"), [
    ([], "body"),
    ("filter", "body"),
    ({}, "Pod"),
    ({"Pod": None}, "Pod"),
    ({"Pod": []}, "Pod"),
    ({"Pod": {}}, "Pod.metadata"),
    ({"Pod": {"metadata": {"name": 3}}}, "Pod.metadata.name"),
    ({"Pod": {"metadata": {"name": ""}}}, "Pod.metadata.name"),
    ({"Pod": {"metadata": {"name": "p", "namespace": 1}}}, "Pod.metadata.namespace"),
    ({"Pod": {"metadata": {"name": "p"}}, "NodeNames": "a"}, "NodeNames"),
    ({"Pod": {"metadata": {"name": "p"}}, "NodeNames": ["a", 2]}, "NodeNames[1]"),
    ({"Pod": {"metadata": {"name": "p"}}, "NodeNames": [""]}, "NodeNames[0]"),
    ({"Pod": {"metadata": {"name": "p"}}, "Nodes": []}, "Nodes"),
    ({"Pod": {"metadata": {"name": "p"}}, "Nodes": {"items": {}}}, "Nodes.items"),
    ({"Pod": {"metadata": {"name": "p"}}, "Nodes": {"items": [{"metadata": {}}]}},
     "Nodes.items[0].metadata.name"),
])
def test_wrong_shapes_name_the_field(doc: object, field: str) -> None:
    with pytest.raises(WireError) as e:
        parse_extender_args(doc)
    assert e.value.field == field
    assert field in str(e.value)


@pytest.mark.parametrize(("doc", "field"), [
    ({"PodName": "p", "PodNamespace": "ns", "PodUID": "u"}, "Node"),
    ({"PodName": "", "PodNamespace": "ns", "Node": "n"}, "PodName"),
    ({"PodName": "p", "PodNamespace": 5, "Node": "n"}, "PodNamespace"),
    ({"PodName": "p", "PodNamespace": "ns", "PodUID": 7, "Node": "n"}, "PodUID"),
])
def test_bad_bind_args_name_the_field(doc: object, field: str) -> None:
    with pytest.raises(WireError) as e:
        parse_binding_args(doc)
    assert e.value.field == field


def test_bodies_that_are_not_json_are_named() -> None:
    with pytest.raises(WireError, match="not JSON"):
        decode_json(b"{nope")
    with pytest.raises(WireError, match="not UTF-8"):
        decode_json(b'{"a": "\xff"}')
    with pytest.raises(WireError, match="nested too deeply"):
        decode_json(b"[" * 100_000 + b"]" * 100_000)


def test_reply_checkers_reject_what_kube_scheduler_rejects() -> None:
    args = {"Pod": {"metadata": {"name": "p"}}, "NodeNames": ["a", "b"]}
    with pytest.raises(Rejected, match="not in the input node list"):
        check_filter_reply({"NodeNames": ["c"]}, args)
    with pytest.raises(Rejected, match="both passed and failed"):
        check_filter_reply({"NodeNames": ["a"], "FailedNodes": {"a": "x"}}, args)
    with pytest.raises(Rejected, match=r"0\.\.10"):
        check_prioritize_reply([{"Host": "a", "Score": 11}], args)
    with pytest.raises(Rejected, match="not a candidate"):
        check_prioritize_reply([{"Host": "z", "Score": 1}], args)
    nodes = {"Pod": {"metadata": {"name": "p"}},
             "Nodes": {"items": [{"metadata": {"name": "a"}, "k": 1}]}}
    with pytest.raises(Rejected, match="unchanged"):
        check_filter_reply({"Nodes": {"items": [{"metadata": {"name": "a"}, "k": 2}]}}, nodes)
    with pytest.raises(Rejected):
        check_bind_reply({"error": ""})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(), st.integers(0, 10)), max_size=20))
def test_fast_priority_encoding_is_exactly_the_json_of_the_list(
        entries: list[tuple[str, int]]) -> None:
    hp = HostPriorities([h for h, _ in entries], [s for _, s in entries])
    assert json.loads(hp.encode()) == hp.as_list()
    assert hp.encode() == encode_json(hp.as_list())


def test_priority_encoding_of_names_that_look_like_the_separators() -> None:
    hosts = ['a","b', 'q"', "\\", "", "ü-node", '"', '","', "x\n"]
    hp = HostPriorities(hosts, list(range(len(hosts))))
    assert json.loads(hp.encode()) == hp.as_list()
    assert hp.encode() == encode_json(hp.as_list())
    assert HostPriorities([], []).encode() == b"[]"
    assert json.loads(HostPriorities(["a"], [11]).encode()) == [{"Host": "a", "Score": 11}]
