"""The JSON form of a node topology, as the node agent publishes it in a Node annotation.

Version 1, compact (annotations are size-limited and read on every cache rebuild):

    {"v": 1, "name": "...",
     "gpus": [{"model": "...", "memory_mib": 81920, "numa": 0, "cpu": "0-55", "uuid": "...",
               "pci": "..."}, ...],                         # index = position in the list
     "links": ["NV18", ...],                                 # upper triangle, row by row
     "nics": [{"name": "mlx5_0", "links": ["PIX", ...], "numa": 0}, ...]}

Optional keys (name, numa, cpu, uuid, pci, nics) are left out when empty. On read, "links" may
also be the full n x n matrix (X on the diagonal), which is then checked for symmetry. Every
problem raises TopologyJSONError naming the field and the value.
"""

from __future__ import annotations

import json
from typing import Any

from topology.links import LinkError, normalize_link
from topology.model import GPU, NIC, NodeTopology, TopologyError
from topology.value_repr import short_repr

VERSION = 1
_TOP_KEYS = {"v", "name", "gpus", "links", "nics"}
_GPU_KEYS = {"model", "memory_mib", "numa", "cpu", "uuid", "pci"}
_NIC_KEYS = {"name", "links", "numa"}


class TopologyJSONError(ValueError):
    """An invalid topology annotation; `field` is a JSON path such as `gpus[2].numa`."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(f"topology JSON: {field}: {reason} (value {short_repr(value)})")
        self.field = field
        self.value = value
        self.reason = reason


def to_dict(topo: NodeTopology) -> dict[str, Any]:
    """The versioned, compact JSON-ready dict of a topology."""
    gpus: list[dict[str, Any]] = []
    for g in topo.gpus:
        d: dict[str, Any] = {"model": g.model, "memory_mib": g.memory_mib}
        if g.numa_node is not None:
            d["numa"] = g.numa_node
        if g.cpu_affinity:
            d["cpu"] = g.cpu_affinity
        if g.uuid:
            d["uuid"] = g.uuid
        if g.pci_bus_id:
            d["pci"] = g.pci_bus_id
        gpus.append(d)
    out: dict[str, Any] = {"v": VERSION}
    if topo.name:
        out["name"] = topo.name
    out["gpus"] = gpus
    out["links"] = [topo.links[i][j] for i in range(topo.n) for j in range(i + 1, topo.n)]
    if topo.nics:
        nics: list[dict[str, Any]] = []
        for nic in topo.nics:
            nd: dict[str, Any] = {"name": nic.name, "links": list(nic.gpu_links)}
            if nic.numa_node is not None:
                nd["numa"] = nic.numa_node
            nics.append(nd)
        out["nics"] = nics
    return out


def to_json(topo: NodeTopology) -> str:
    """The topology as compact versioned JSON (see the module docstring for the schema)."""
    return json.dumps(to_dict(topo), separators=(",", ":"))


def _obj(value: object, field: str, keys: set[str], required: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TopologyJSONError(field, value, "expected an object")
    for k in value:
        if k not in keys:
            raise TopologyJSONError(f"{field}.{k}" if field else k, value[k], "unknown field")
    for k in required:
        if k not in value:
            raise TopologyJSONError(f"{field}.{k}" if field else k, None, "missing field")
    return value


def _int(value: object, field: str, *, minimum: int = 0, nullable: bool = False) -> int | None:
    if value is None and nullable:
        return None
    # bool is an int in Python; JSON true is not a count.
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise TopologyJSONError(field, value, f"expected an integer >= {minimum}")
    return value


def _str(value: object, field: str, *, nonempty: bool = False, no_space: bool = False) -> str:
    if not isinstance(value, str):
        raise TopologyJSONError(field, value, "expected a string")
    if nonempty and not value:
        raise TopologyJSONError(field, value, "must not be empty")
    if no_space and any(c.isspace() for c in value):
        raise TopologyJSONError(field, value, "must not contain whitespace")
    return value


def _link(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise TopologyJSONError(field, value, "expected a link kind string")
    try:
        return normalize_link(value)
    except LinkError:
        raise TopologyJSONError(
            field, value, "unknown link kind (expected NV<n>, PIX, PXB, PHB, NODE or SYS)"
        ) from None


def _links(value: object, n: int) -> list[list[str]]:
    """The full matrix from the upper-triangle list or from a full n x n matrix."""
    if not isinstance(value, list):
        raise TopologyJSONError("links", value, "expected a list")
    full = [["X"] * n for _ in range(n)]
    if value and all(isinstance(r, list) for r in value):
        if len(value) != n:
            raise TopologyJSONError(
                "links", f"{len(value)} rows", f"expected {n} rows for {n} GPUs"
            )
        for i, row in enumerate(value):
            if len(row) != n:
                raise TopologyJSONError(
                    f"links[{i}]", f"{len(row)} entries", f"expected {n} entries"
                )
            for j, cell in enumerate(row):
                kind = _link(cell, f"links[{i}][{j}]")
                if (kind == "X") != (i == j):
                    raise TopologyJSONError(
                        f"links[{i}][{j}]", cell, "X belongs on the diagonal only"
                    )
                full[i][j] = kind
        for i in range(n):
            for j in range(i + 1, n):
                if full[i][j] != full[j][i]:
                    raise TopologyJSONError(
                        f"links[{j}][{i}]",
                        value[j][i],
                        f"asymmetric: links[{i}][{j}] is {value[i][j]!r}",
                    )
        return full
    want = n * (n - 1) // 2
    if len(value) != want:
        raise TopologyJSONError(
            "links",
            f"{len(value)} entries",
            f"expected {want} (upper triangle of {n} GPUs)",
        )
    pos = 0
    for i in range(n):
        for j in range(i + 1, n):
            kind = _link(value[pos], f"links[{pos}]")
            if kind == "X":
                raise TopologyJSONError(f"links[{pos}]", value[pos], "X between two GPUs")
            full[i][j] = full[j][i] = kind
            pos += 1
    return full


def from_dict(data: object) -> NodeTopology:
    """A NodeTopology from the decoded JSON form, validating every field."""
    top = _obj(data, "", _TOP_KEYS, ("v", "gpus", "links"))
    if top["v"] != VERSION or isinstance(top["v"], bool):
        raise TopologyJSONError("v", top["v"], f"unsupported version (this reader knows {VERSION})")
    name = _str(top.get("name", ""), "name")
    raw_gpus = top["gpus"]
    if not isinstance(raw_gpus, list) or not raw_gpus:
        raise TopologyJSONError("gpus", raw_gpus, "expected a non-empty list")
    gpus: list[GPU] = []
    for i, rg in enumerate(raw_gpus):
        f = f"gpus[{i}]"
        g = _obj(rg, f, _GPU_KEYS, ("model", "memory_mib"))
        gpus.append(
            GPU(
                index=i,
                model=_str(g["model"], f"{f}.model", nonempty=True),
                memory_mib=_int(g["memory_mib"], f"{f}.memory_mib") or 0,
                numa_node=_int(g.get("numa"), f"{f}.numa", nullable=True),
                cpu_affinity=_str(g.get("cpu", ""), f"{f}.cpu"),
                uuid=_str(g.get("uuid", ""), f"{f}.uuid"),
                pci_bus_id=_str(g.get("pci", ""), f"{f}.pci"),
            )
        )
    n = len(gpus)
    full = _links(top["links"], n)
    raw_nics = top.get("nics", [])
    if not isinstance(raw_nics, list):
        raise TopologyJSONError("nics", raw_nics, "expected a list")
    nics: list[NIC] = []
    seen: set[str] = set()
    for k, rn in enumerate(raw_nics):
        f = f"nics[{k}]"
        nd = _obj(rn, f, _NIC_KEYS, ("name", "links"))
        nic_name = _str(nd["name"], f"{f}.name", nonempty=True, no_space=True)
        if nic_name in seen:
            raise TopologyJSONError(f"{f}.name", nic_name, "duplicate NIC name")
        seen.add(nic_name)
        nl = nd["links"]
        if not isinstance(nl, list) or len(nl) != n:
            raise TopologyJSONError(f"{f}.links", nl, f"expected a list of {n} link kinds")
        kinds = tuple(_link(x, f"{f}.links[{j}]") for j, x in enumerate(nl))
        if "X" in kinds:
            raise TopologyJSONError(f"{f}.links", nl, "X is not a link to a GPU")
        nics.append(NIC(nic_name, kinds, _int(nd.get("numa"), f"{f}.numa", nullable=True)))
    try:
        return NodeTopology(
            gpus=tuple(gpus),
            links=tuple(tuple(r) for r in full),
            nics=tuple(nics),
            name=name,
        )
    except TopologyError as e:  # pragma: no cover - every case is checked above
        raise TopologyJSONError("links", None, str(e)) from None


def from_json(text: str | bytes) -> NodeTopology:
    """Parse and validate the JSON form; raises TopologyJSONError naming the field and value."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TopologyJSONError("(document)", str(text)[:40], f"not JSON: {e}") from None
    return from_dict(data)
