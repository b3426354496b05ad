"""What kube-scheduler accepts back from an extender: the test oracle for every reply.

Mirrors pkg/scheduler/extender.go (v1.36): a filter reply with nodeCacheCapable must list
only candidates in NodeNames; without it, Nodes.items are taken as the passing Node objects;
a HostPriorityList is {Host, Score} per candidate with Score in 0..10 (MaxExtenderPriority);
a binding result is {Error}. Written on its own, not with the extender's codec
(scheduler/extender/wire.py), so a codec bug cannot hide from it. Requests are the JSON the
tests sent (a dict with `NodeNames` or `Nodes`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_EXTENDER_PRIORITY = 10
_FILTER_KEYS = frozenset({"Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes",
                          "Error"})


class Rejected(ValueError):
    """kube-scheduler would not accept this reply; the message says where."""


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Rejected(f"{where}: must be a JSON object, not {type(value).__name__}")
    return value


def _candidates(request: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]] | None]:
    """(candidate names, Node objects or None when names only) of a filter/prioritize request."""
    names = request.get("NodeNames")
    if names is not None:
        return list(names), None
    items = list((request.get("Nodes") or {}).get("items") or [])
    return [n["metadata"]["name"] for n in items], items


def _reasons(value: object, where: str, names: frozenset[str]) -> dict[str, str]:
    m = _object(value, where)
    for k, v in m.items():
        if k not in names:
            raise Rejected(f"{where}.{k}: names a node that was not a candidate")
        if not isinstance(v, str) or not v:
            raise Rejected(f"{where}.{k}: must be a non-empty string")
    return m


def check_filter_reply(reply: object, request: Mapping[str, Any]) -> list[str]:
    """Raise Rejected unless kube-scheduler would accept `reply` to `request`; passing names."""
    d = _object(reply, "reply")
    extra = set(d) - _FILTER_KEYS
    if extra:
        raise Rejected(f"reply: unknown keys {sorted(extra)}")
    if not isinstance(d.get("Error", ""), str):
        raise Rejected("reply.Error: must be a string")
    names, objects = _candidates(request)
    known = frozenset(names)
    failed = _reasons(d.get("FailedNodes") or {}, "reply.FailedNodes", known)
    unres = _reasons(d.get("FailedAndUnresolvableNodes") or {},
                     "reply.FailedAndUnresolvableNodes", known)
    if objects is None:
        passed = d.get("NodeNames") or []
        if not isinstance(passed, list):
            raise Rejected("reply.NodeNames: must be an array")
        for n in passed:
            if n not in known:
                raise Rejected(f"reply.NodeNames: {n!r} not in the input node list")
    else:
        by_name = {n["metadata"]["name"]: n for n in objects}
        items = _object(d.get("Nodes") or {}, "reply.Nodes").get("items") or []
        if not isinstance(items, list):
            raise Rejected("reply.Nodes.items: must be an array")
        passed = []
        for i, item in enumerate(items):
            name = _object(_object(item, f"reply.Nodes.items[{i}]").get("metadata"),
                           f"reply.Nodes.items[{i}].metadata").get("name")
            if by_name.get(name) != item:
                raise Rejected(f"reply.Nodes: {name!r} is not the Node object sent, unchanged")
            passed.append(name)
    both = set(passed) & (set(failed) | set(unres))
    if both:
        raise Rejected(f"reply: nodes both passed and failed: {sorted(both)}")
    if len(set(passed)) != len(passed):
        raise Rejected(f"reply: a node passes twice: {passed}")
    return passed


def check_prioritize_reply(reply: object, request: Mapping[str, Any]) -> dict[str, int]:
    """Raise Rejected unless `reply` is a HostPriorityList over the candidates in 0..10."""
    if not isinstance(reply, list):
        raise Rejected("reply: must be a JSON array of {Host, Score}")
    known = frozenset(_candidates(request)[0])
    out: dict[str, int] = {}
    for i, e in enumerate(reply):
        d = _object(e, f"reply[{i}]")
        if set(d) != {"Host", "Score"}:
            raise Rejected(f"reply[{i}]: must have exactly Host and Score, not {sorted(d)}")
        host, score = d["Host"], d["Score"]
        if host not in known:
            raise Rejected(f"reply[{i}].Host: {host!r} not a candidate")
        if type(score) is not int or not 0 <= score <= MAX_EXTENDER_PRIORITY:
            raise Rejected(f"reply[{i}].Score: {score!r} must be an integer 0..10")
        out[host] = score
    return out


def check_bind_reply(reply: object) -> str:
    """Raise Rejected unless `reply` is {"Error": string}; the error ("" = bound)."""
    d = _object(reply, "reply")
    if set(d) != {"Error"}:
        raise Rejected(f"reply: must be exactly {{Error}}, not {sorted(d)}")
    if not isinstance(d["Error"], str):
        raise Rejected("reply.Error: must be a string")
    return d["Error"]


def check_reply(verb: str, reply: object, request: Mapping[str, Any]) -> object:
    """The checker of `verb` ("filter", "prioritize", "bind") applied to one exchange."""
    if verb == "filter":
        return check_filter_reply(reply, request)
    if verb == "prioritize":
        return check_prioritize_reply(reply, request)
    return check_bind_reply(reply)
