"""kube-scheduler's extender v1 messages, parsed once into typed objects and encoded back.

The Go structs (k8s.io/kube-scheduler/extender/v1) carry no json tags, so kube-scheduler
writes the Go field names (`Pod`, `NodeNames`, `PodUID`). Reading follows Go's
encoding/json: an exact key wins, otherwise a case-insensitive match, so a hand-written
request with `nodeNames` works too. Replies always use the exact Go names.

`Pod` and Node objects stay the dicts kube-scheduler sent: a pod is parsed into a
PodRequest by the cache's parser, and Node objects are echoed back unchanged in the
filter reply when nodeCacheCapable is false.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from topology.value_repr import short_repr

JSONDict = dict[str, Any]


class WireError(ValueError):
    """A body that is not the extender message it should be; `field` names where."""

    def __init__(self, field: str, value: object, message: str) -> None:
        super().__init__(f"{field}={short_repr(value)}: {message}")
        self.field = field
        self.value = value


def decode_json(body: bytes) -> object:
    """The JSON value of a request body; WireError when it is not UTF-8 JSON.

    orjson: a 5,000-name filter request decodes in a fraction of the stdlib's time (it is on
    every call); it is also stricter (no NaN, no lone surrogates), which is JSON as specified.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        if "UTF-8" in e.msg:
            raise WireError("body", body[:40], f"not UTF-8: {e.msg}") from None
        if "depth limit" in e.msg or "recursion" in e.msg.lower():
            raise WireError("body", body[:40], "JSON nested too deeply") from None
        raise WireError("body", body[:40], f"not JSON: {e.msg} at line {e.lineno} "
                        f"column {e.colno}") from None


def encode_json(value: object) -> bytes:
    """Compact UTF-8 JSON of a reply (orjson: the same text as the stdlib's compact form).

    Names with lone UTF-16 surrogates cannot be UTF-8: the reply then falls back to ASCII JSON
    with escapes, which every JSON reader (Go's included) accepts.
    """
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode()


MAX_REASON_CHARS = 300


def cap_reason(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """`text` cut to `limit` characters (marked with "..."): every reason in a reply is
    bounded, so a reply grows with the number of nodes, never with a value's size."""
    if len(text) <= limit:
        return text
    return text[: limit - 3] + "..."


def _get(doc: Mapping[str, Any], key: str) -> Any:
    """Go's decoding rule: the exact key, else the first key equal to it ignoring case."""
    if key in doc:
        return doc[key]
    low = key.lower()
    for k, v in doc.items():
        if k.lower() == low:
            return v
    return None


def _object(value: object, field: str) -> JSONDict:
    if not isinstance(value, dict):
        raise WireError(field, value, f"must be a JSON object, not {_kind(value)}")
    return value


def _string(value: object, field: str, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise WireError(field, value, f"must be a string, not {_kind(value)}")
    if required and not value:
        raise WireError(field, value, "must not be empty")
    return value


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), "?")


def _pod(value: object, field: str = "Pod") -> JSONDict:
    pod = _object(value, field)
    meta = _object(pod.get("metadata"), f"{field}.metadata")
    _string(meta.get("name"), f"{field}.metadata.name")
    _string(meta.get("namespace"), f"{field}.metadata.namespace", required=False)
    _string(meta.get("uid"), f"{field}.metadata.uid", required=False)
    return pod


def pod_identity(pod: Mapping[str, Any]) -> tuple[str, str, str]:
    """(namespace, name, uid) of a pod dict that passed parsing; namespace defaults to default."""
    meta = pod["metadata"]
    return str(meta.get("namespace") or "default"), str(meta["name"]), str(meta.get("uid") or "")


def _node_items(value: object, field: str) -> tuple[JSONDict, ...]:
    node_list = _object(value, field)
    items = node_list.get("items")
    if items is None:
        return ()
    if not isinstance(items, list):
        raise WireError(f"{field}.items", items, f"must be an array, not {_kind(items)}")
    for i, item in enumerate(items):
        node = _object(item, f"{field}.items[{i}]")
        meta = _object(node.get("metadata"), f"{field}.items[{i}].metadata")
        _string(meta.get("name"), f"{field}.items[{i}].metadata.name")
    return tuple(items)


def _names(value: object, field: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise WireError(field, value, f"must be an array of node names, not {_kind(value)}")
    # Checked with C-level scans: this runs on every call over up to thousands of names
    # ("".join stops with TypeError at the first non-string; a third of set(map(type, ...))).
    try:
        "".join(value)
        ok = all(value)  # all strings now, so: none empty (faster than `"" not in value`)
    except TypeError:
        ok = False
    if not ok:
        bad = next(i for i, n in enumerate(value) if not (type(n) is str and n))
        raise WireError(f"{field}[{bad}]", value[bad], "must be a non-empty string")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class ExtenderArgs:
    """Filter and prioritize request: the pod and its candidate nodes.

    Exactly as kube-scheduler sends it: `node_names` when nodeCacheCapable is true,
    `nodes` (whole Node objects) when false; `names` is the candidate list either way.
    """

    pod: JSONDict
    node_names: tuple[str, ...] | None
    nodes: tuple[JSONDict, ...] | None

    @property
    def names(self) -> tuple[str, ...]:
        """Candidate node names, in the order kube-scheduler sent them."""
        if self.node_names is not None:
            return self.node_names
        if self.nodes is not None:
            return tuple(n["metadata"]["name"] for n in self.nodes)
        return ()


def parse_extender_args(doc: object) -> ExtenderArgs:
    """ExtenderArgs from decoded JSON; WireError naming the field when the shape is wrong."""
    d = _object(doc, "body")
    pod = _pod(_get(d, "Pod"))
    raw_names = _get(d, "NodeNames")
    raw_nodes = _get(d, "Nodes")
    names = None if raw_names is None else _names(raw_names, "NodeNames")
    nodes = None if raw_nodes is None else _node_items(raw_nodes, "Nodes")
    if names is not None and nodes is not None:
        # kube-scheduler sets one of them; with both, names are what it will read back.
        nodes = None
    return ExtenderArgs(pod=pod, node_names=names, nodes=nodes)


def filter_reply(
    args: ExtenderArgs,
    passed: Sequence[int],
    failed: Mapping[str, str],
    unresolvable: Mapping[str, str],
    error: str = "",
    passed_names: list[str] | None = None,
) -> JSONDict:
    """ExtenderFilterResult: `passed` are positions in args.names, in the mode of the request
    (`passed_names`, if given, are their names).

    Names go back as NodeNames (nodeCacheCapable) or the Node objects unchanged in a NodeList.
    A node listed in both maps is reported only as unresolvable, as kube-scheduler would.
    """
    out: JSONDict = {}
    if args.nodes is not None and args.node_names is None:
        out["Nodes"] = {"metadata": {}, "items": [args.nodes[i] for i in passed]}
    else:
        names = args.names
        out["NodeNames"] = passed_names if passed_names is not None else \
            [names[i] for i in passed]
    out["FailedNodes"] = {k: v for k, v in failed.items() if k not in unresolvable}
    out["FailedAndUnresolvableNodes"] = dict(unresolvable)
    out["Error"] = error
    return out


@dataclass(frozen=True, slots=True)
class HostPriorities:
    """A HostPriorityList kept as two columns and written straight to JSON.

    For 5,000 hosts the stdlib's encoder costs ~2 ms, a large part of the latency budget;
    orjson writes the same text in a fraction of that.
    """

    hosts: Sequence[str]
    scores: Sequence[int] | np.ndarray

    def as_list(self) -> list[JSONDict]:
        """The reply as JSON values: one {"Host", "Score"} per host."""
        return [{"Host": h, "Score": int(s)} for h, s in zip(self.hosts, self.scores,
                                                              strict=True)]

    def encode(self) -> bytes:
        """The reply as JSON text, equal to encode_json(self.as_list())."""
        fast = self._encode_plain()
        if fast is not None:
            return fast
        scores = self.scores.tolist() if isinstance(self.scores, np.ndarray) else self.scores
        try:
            return orjson.dumps([{"Host": h, "Score": int(s)}
                                 for h, s in zip(self.hosts, scores, strict=True)])
        except orjson.JSONEncodeError:  # a lone surrogate in a host name: see encode_json
            return encode_json(self.as_list())


    def _encode_plain(self) -> bytes | None:
        """encode() without a dict per host, for integer scores and names that JSON writes
        without an escape (Kubernetes node names always): the names encoded as one list,
        cut at its separators and interleaved with the scores. None when that does not apply.
        """
        hosts = list(self.hosts)
        scores = np.asarray(self.scores)
        if not hosts or scores.shape != (len(hosts),) or scores.dtype.kind not in "iu":
            return None
        try:
            names = orjson.dumps(hosts)
        except orjson.JSONEncodeError:
            return None
        # No backslash means no escape, so no quote inside a name: every '","' in the list
        # is a separator.
        if b"\\" in names:
            return None
        parts = names[2:-2].split(b'","')
        if len(parts) != len(hosts):
            return None
        if scores.min() >= 0 and scores.max() < len(_SCORE_TAILS):
            tails = _SCORE_TAILS[scores].tolist()
        else:
            tails = [b'","Score":%d' % s for s in scores.tolist()]
        return b'[{"Host":"' + b'},{"Host":"'.join(map(operator.add, parts, tails)) + b"}]"


# What follows a host name in a HostPriority, per extender score 0..10.
_SCORE_TAILS = np.array([b'","Score":%d' % s for s in range(11)], dtype=object)


@dataclass(frozen=True, slots=True)
class BindingArgs:
    """Bind request: which pod goes to which node."""

    pod_name: str
    pod_namespace: str
    pod_uid: str
    node: str

    @property
    def pod_key(self) -> str:
        """`namespace/name`, the key the cache and the core use."""
        return f"{self.pod_namespace}/{self.pod_name}"


def parse_binding_args(doc: object) -> BindingArgs:
    """BindingArgs from decoded JSON; every field is a required non-empty string but PodUID."""
    d = _object(doc, "body")
    return BindingArgs(
        pod_name=_string(_get(d, "PodName"), "PodName"),
        pod_namespace=_string(_get(d, "PodNamespace"), "PodNamespace"),
        pod_uid=_string(_get(d, "PodUID"), "PodUID", required=False),
        node=_string(_get(d, "Node"), "Node"),
    )


def bind_reply(error: str = "") -> JSONDict:
    """ExtenderBindingResult: empty Error means bound."""
    return {"Error": error}


def error_body(message: str) -> bytes:
    """Body of a 4xx/5xx reply: {"Error": message}, the one field every reply type shares."""
    return encode_json({"Error": message})
