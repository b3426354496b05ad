"""The cluster spec file of `gts serve --cluster FILE` and of the simulator (one schema, here).

YAML (or JSON), a list of node pools:

    levels: [accelerator, block, spine, datacenter]   # optional: network level names,
                                                      # narrowest first (this is the default,
                                                      # matching DEFAULT_NETWORK_LEVEL_LABELS)
    network: {block: 8, spine: 32, datacenter: dc-0}  # optional, for every pool (see below)
    pools:
      - name: h100              # required; nodes are named h100-00, h100-01, ...
        count: 12               # required, >= 1
        preset: dgx-h100        # a topology preset (`gts topo presets`), or leave it out and
        gpus: 8                 #   give gpus: a generic all-PHB topology of that many GPUs
                                #   (0 = a CPU-only node)
        gpu_model: H100-SXM5-80GB   # optional with a preset (the preset's own), else required
                                    #   when gpus > 0
        gpu_memory: 80Gi        # optional per-GPU memory (a quantity; or gpu_memory_mib: 81920)
        cpu: 224                # required: a CPU quantity ("224", "3500m")
        memory: 2Ti             # required: a memory quantity ("2Ti", "512Gi")
        network: {block: rack-7}    # optional, overrides the top-level map for this pool
        scale: {min: 0, max: 32, step: 2, cost_per_node_hour: 98.3}
                                # optional, read only by `gts plan` (bench/plan_cluster.py)

`network` maps a level name to either a string (every node of the pool is in that domain) or
a positive integer k (nodes are grouped k at a time into domains named `<level>-<j>`; at the top
level the count runs across all pools in file order, in a pool's own map it runs within the
pool and the names are `<pool>-<level>-<j>`). Levels without an entry are unknown (""). Every
error names the file and the key path, e.g. `cluster.yaml: pools[2].cpu`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scheduler.cluster.nodes import MAX_GPUS_PER_NODE, generic_topology
from scheduler.cluster.spec_file import read_spec_file
from scheduler.contract.node import NodeSpec
from scheduler.podcodec.quantity import QuantityError, parse_bytes_mib, parse_cpu_milli
from topology.model import NodeTopology
from topology.presets import UnknownPresetError, preset
from topology.value_repr import short_repr

DEFAULT_LEVELS = ("accelerator", "block", "spine", "datacenter")
MAX_NODES = 200_000
_TOP_KEYS = {"levels", "network", "pools"}
_POOL_KEYS = {"name", "count", "preset", "gpus", "gpu_model", "gpu_memory", "gpu_memory_mib",
              "cpu", "memory", "network", "scale"}
_EMPTY = NodeTopology(gpus=(), links=())


class StaticClusterError(ValueError):
    """An invalid cluster spec; the message names the source and the key path."""


def _fail(source: str, where: str, value: object, message: str) -> StaticClusterError:
    return StaticClusterError(f"{source}: {where}={short_repr(value)}: {message}")


def _int(value: object, source: str, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _fail(source, where, value, f"expected an integer {lo}..{hi}")
    return value


def _name(value: object, source: str, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 200 or any(
            c.isspace() or c == "/" for c in value):
        raise _fail(source, where, value, "expected a non-empty name without spaces or '/'")
    return value


def _network(
    value: object, levels: Sequence[str], source: str, where: str
) -> dict[str, str | int]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(source, where, value, "expected a map of level -> domain name or group size")
    out: dict[str, str | int] = {}
    for lv, v in value.items():
        if lv not in levels:
            raise _fail(source, f"{where}.{lv}", v, f"unknown level; levels are {list(levels)}")
        if isinstance(v, str):
            out[lv] = _name(v, source, f"{where}.{lv}")
        else:
            out[lv] = _int(v, source, f"{where}.{lv}", 1, MAX_NODES)
    return out


def _domain(rule: str | int, prefix: str, level: str, position: int) -> str:
    return rule if isinstance(rule, str) else f"{prefix}{level}-{position // rule}"


def _pool_topology(pool: Mapping[str, Any], source: str, where: str) -> NodeTopology:
    model = pool.get("gpu_model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise _fail(source, f"{where}.gpu_model", model, "expected a non-empty string")
    memory: int | None = None
    if "gpu_memory" in pool and "gpu_memory_mib" in pool:
        raise _fail(source, f"{where}.gpu_memory", pool["gpu_memory"],
                    "give gpu_memory or gpu_memory_mib, not both")
    if "gpu_memory" in pool:
        try:
            memory = parse_bytes_mib(pool["gpu_memory"], round_up=False)
        except QuantityError as e:
            raise _fail(source, f"{where}.gpu_memory", pool["gpu_memory"], str(e)) from None
    elif "gpu_memory_mib" in pool:
        memory = _int(pool["gpu_memory_mib"], source, f"{where}.gpu_memory_mib", 0, 1 << 30)
    if "preset" in pool:
        name = pool["preset"]
        if "gpus" in pool:
            raise _fail(source, f"{where}.gpus", pool["gpus"],
                        "a preset fixes the GPU count; give preset or gpus, not both")
        try:
            return preset(str(name), model=model, memory_mib=memory)
        except (UnknownPresetError, ValueError) as e:
            raise _fail(source, f"{where}.preset", name, str(e)) from None
    if "gpus" not in pool:
        raise _fail(source, where, dict(pool), "needs preset or gpus")
    n = _int(pool["gpus"], source, f"{where}.gpus", 0, MAX_GPUS_PER_NODE)
    if n == 0:
        return _EMPTY
    if model is None:
        raise _fail(source, f"{where}.gpu_model", None, "required when gpus is given")
    return generic_topology(n, model, memory or 0)


def cluster_from_dict(data: object, source: str = "cluster") -> list[NodeSpec]:
    """NodeSpecs of a parsed cluster spec (see the module docstring for the schema)."""
    if not isinstance(data, Mapping):
        raise _fail(source, "(document)", type(data).__name__, "expected a map with 'pools'")
    unknown = sorted(set(data) - _TOP_KEYS, key=str)
    if unknown:
        raise _fail(source, str(unknown[0]), data[unknown[0]],
                    f"unknown key; expected {sorted(_TOP_KEYS)}")
    raw_levels = data.get("levels", list(DEFAULT_LEVELS))
    if not isinstance(raw_levels, list) or not raw_levels:
        raise _fail(source, "levels", raw_levels, "expected a non-empty list of level names")
    levels = tuple(_name(v, source, f"levels[{i}]") for i, v in enumerate(raw_levels))
    if len(set(levels)) != len(levels):
        raise _fail(source, "levels", raw_levels, "level names repeat")
    top_net = _network(data.get("network"), levels, source, "network")
    pools = data.get("pools")
    if not isinstance(pools, list) or not pools:
        raise _fail(source, "pools", pools, "expected a non-empty list of node pools")
    nodes: list[NodeSpec] = []
    seen: set[str] = set()
    for p, pool in enumerate(pools):
        where = f"pools[{p}]"
        if not isinstance(pool, Mapping):
            raise _fail(source, where, pool, "expected a map")
        bad = sorted(set(pool) - _POOL_KEYS, key=str)
        if bad:
            raise _fail(source, f"{where}.{bad[0]}", pool[bad[0]],
                        f"unknown key; expected {sorted(_POOL_KEYS)}")
        name = _name(pool.get("name"), source, f"{where}.name")
        count = _int(pool.get("count"), source, f"{where}.count", 1, MAX_NODES)
        if len(nodes) + count > MAX_NODES:
            raise _fail(source, f"{where}.count", count, f"more than {MAX_NODES} nodes in all")
        topo = _pool_topology(pool, source, where)
        try:
            cpu = parse_cpu_milli(pool.get("cpu"), round_up=False)
        except QuantityError as e:
            raise _fail(source, f"{where}.cpu", pool.get("cpu"), str(e)) from None
        try:
            memory = parse_bytes_mib(pool.get("memory"), round_up=False)
        except QuantityError as e:
            raise _fail(source, f"{where}.memory", pool.get("memory"), str(e)) from None
        own_net = _network(pool.get("network"), levels, source, f"{where}.network")
        width = max(2, len(str(count - 1)))
        for k in range(count):
            node = f"{name}-{k:0{width}d}"
            if node in seen:
                raise _fail(source, f"{where}.name", name, f"node name {node} repeats")
            seen.add(node)
            position = len(nodes)
            doms = tuple(
                _domain(own_net[lv], f"{name}-", lv, k) if lv in own_net
                else _domain(top_net[lv], "", lv, position) if lv in top_net else ""
                for lv in levels
            )
            nodes.append(NodeSpec(name=node, cpu_milli=cpu, memory_mib=memory, topology=topo,
                                  levels=doms))
    return nodes


def load_cluster_file(path: str | Path) -> list[NodeSpec]:
    """Read a cluster spec file (YAML, or JSON by a .json suffix) into NodeSpecs."""
    return cluster_from_dict(read_spec_file(path, StaticClusterError), str(Path(path)))
