"""Clusters for the simulator: the Alibaba trace's node CSV, the YAML cluster spec shared with
`gts serve --cluster`, and the embedded default cluster.

The trace hides each node's GPU topology; DEFAULT_PRESET_MAP chooses a topology preset from the
GPU model and count (first matching rule wins), and a preset-map file can put its own rules in
front and set GPU memory per model:

    presets:                       # list of rules; model is a glob, case-insensitive
      - {model: "G2", gpus: 8, preset: "pcie-8gpu-2socket"}
    gpu_memory_mib: {G2: 24576}    # overrides GPU_MEMORY_MIB
"""

from __future__ import annotations

import csv
import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.csv_header import csv_header
from scheduler.cluster.spec_file import read_spec_file
from scheduler.contract.node import NodeSpec
from topology.model import NodeTopology
from topology.presets import UnknownPresetError, preset

NODE_CSV_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")


class ClusterError(ValueError):
    """A cluster file that cannot be read; names the file, line and column where known."""


@dataclass(frozen=True, slots=True)
class PresetRule:
    """GPU model glob (case-insensitive) and GPU count -> topology preset name."""

    model: str
    gpus: int
    preset: str

    def matches(self, model: str, gpus: int) -> bool:
        """True if this rule applies to a node with `gpus` GPUs of `model`."""
        return gpus == self.gpus and fnmatch.fnmatchcase(model.upper(), self.model.upper())


# 8 x V100 is a DGX-1's hybrid cube-mesh; other 8-GPU servers of the A100 class and Alibaba's
# undisclosed G2/G3 (8 per node, the cluster's large training machines) are taken to be
# NVSwitch boards; any other 8-GPU model is a dual-socket PCIe box. Smaller nodes are PCIe.
DEFAULT_PRESET_MAP: tuple[PresetRule, ...] = (
    PresetRule("V100*", 8, "dgx1-v100"),
    PresetRule("V100*", 16, "hgx-2-v100-16"),
    PresetRule("H100*", 8, "dgx-h100"),
    PresetRule("H800*", 8, "dgx-h100"),
    PresetRule("H200*", 8, "dgx-h100"),
    PresetRule("A100*", 8, "dgx-a100"),
    PresetRule("A800*", 8, "dgx-a100"),
    PresetRule("G2", 8, "dgx-a100"),
    PresetRule("G3", 8, "dgx-a100"),
    PresetRule("*", 8, "pcie-8gpu-2socket"),
    PresetRule("*", 4, "pcie-4gpu"),
    PresetRule("*", 2, "pcie-2gpu"),
    PresetRule("*", 1, "single-gpu"),
)

# GPU memory per model in MiB (vendor datasheets: V100 16/32 GB, P100 16 GB, T4 16 GB with
# 15,360 MiB usable as nvidia-smi reports it, A10 24 GB). G1/G2/G3 are undisclosed; the values
# are guesses (G3 nodes are the cluster's largest, taken as 80 GB A100-class). No pod of the
# trace asks for GPU memory, so these only matter to GPU-memory-aware policies.
GPU_MEMORY_MIB: dict[str, int] = {
    "V100M16": 16384,
    "V100M32": 32768,
    "P100": 16384,
    "T4": 15360,
    "A10": 24576,
    "G1": 16384,
    "G2": 32768,
    "G3": 81920,
}


@dataclass(frozen=True, slots=True)
class PresetMap:
    """Rules (file rules first, then the defaults) and GPU memory per model."""

    rules: tuple[PresetRule, ...] = DEFAULT_PRESET_MAP
    gpu_memory_mib: Mapping[str, int] | None = None

    def preset_for(self, model: str, gpus: int) -> str | None:
        """The preset of a node with `gpus` GPUs of `model`; None when no rule matches."""
        for r in self.rules:
            if r.matches(model, gpus):
                return r.preset
        return None

    def memory_for(self, model: str) -> int | None:
        """GPU memory of `model` in MiB, or None to keep the preset's own."""
        table = {**GPU_MEMORY_MIB, **(self.gpu_memory_mib or {})}
        return table.get(model)


def preset_map_from(data: Mapping[str, object] | None, source: str = "preset map") -> PresetMap:
    """Validate a parsed preset-map document ({presets: [...], gpu_memory_mib: {...}})."""
    if data is None:
        return PresetMap()
    if not isinstance(data, Mapping):
        raise ClusterError(f"{source}: expected a mapping with 'presets' and/or "
                           f"'gpu_memory_mib', got {type(data).__name__}")
    unknown = sorted(set(data) - {"presets", "gpu_memory_mib"})
    if unknown:
        raise ClusterError(f"{source}: unknown key {unknown[0]!r}; "
                           f"expected 'presets' and/or 'gpu_memory_mib'")
    rules: list[PresetRule] = []
    raw_rules = data.get("presets", []) or []
    if not isinstance(raw_rules, list):
        raise ClusterError(f"{source}: presets must be a list of {{model, gpus, preset}}")
    for i, r in enumerate(raw_rules):
        where = f"{source}: presets[{i}]"
        if not isinstance(r, Mapping) or set(r) != {"model", "gpus", "preset"}:
            raise ClusterError(f"{where}: expected exactly the keys model, gpus, preset; got {r!r}")
        model, gpus, name = r["model"], r["gpus"], r["preset"]
        if not isinstance(model, str) or not model:
            raise ClusterError(f"{where}.model: {model!r} must be a non-empty string")
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
            raise ClusterError(f"{where}.gpus: {gpus!r} must be a positive integer")
        if not isinstance(name, str):
            raise ClusterError(f"{where}.preset: {name!r} must be a string")
        try:
            preset(name)
        except UnknownPresetError as e:
            raise ClusterError(f"{where}.preset: {e}") from None
        rules.append(PresetRule(model, gpus, name))
    mem = data.get("gpu_memory_mib", {}) or {}
    if not isinstance(mem, Mapping):
        raise ClusterError(f"{source}: gpu_memory_mib must map model -> MiB")
    for k, v in mem.items():
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ClusterError(f"{source}: gpu_memory_mib.{k}: {v!r} must be a positive integer")
    return PresetMap(rules=(*rules, *DEFAULT_PRESET_MAP),
                     gpu_memory_mib={str(k): int(v) for k, v in mem.items()})


def load_preset_map(path: str | Path) -> PresetMap:
    """Read a preset-map file (YAML or JSON)."""
    return preset_map_from(read_spec_file(path, ClusterError), str(Path(path)))


def _resolve(preset_map: PresetMap | Mapping[str, object] | None) -> PresetMap:
    if isinstance(preset_map, PresetMap):
        return preset_map
    return preset_map_from(preset_map)


def _topology_builder(
    pm: PresetMap, presets: Callable[..., NodeTopology]
) -> Callable[[str, int], NodeTopology]:
    cache: dict[tuple[str, int], NodeTopology] = {}

    def build(model: str, gpus: int) -> NodeTopology:
        # One NodeTopology per (model, count): equal topologies share subset tables anyway,
        # and reusing the object keeps its cached bandwidth matrix.
        k = (model, gpus)
        if k not in cache:
            name = pm.preset_for(model, gpus)
            if name is None:
                raise KeyError(f"no preset rule for {gpus} x {model}; add one with --preset-map")
            topo = presets(name, model=model, memory_mib=pm.memory_for(model))
            if topo.n != gpus:
                raise KeyError(f"preset {name!r} has {topo.n} GPUs, the node has {gpus}")
            cache[k] = topo
        return cache[k]

    return build


def load_trace_nodes(
    path: str | Path,
    *,
    preset_map: PresetMap | Mapping[str, object] | None = None,
    presets: Callable[..., NodeTopology] = preset,
) -> list[NodeSpec]:
    """The Alibaba node CSV (`sn,cpu_milli,memory_mib,gpu,model`); GPU-less rows are CPU nodes."""
    p = Path(path)
    build = _topology_builder(_resolve(preset_map), presets)
    out: list[NodeSpec] = []
    seen: set[str] = set()
    with p.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if tuple(header[: len(NODE_CSV_COLUMNS)]) != NODE_CSV_COLUMNS:
            raise ClusterError(f"{p}:1: header {','.join(header)!r}, expected "
                               f"{','.join(NODE_CSV_COLUMNS)}")
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) < len(NODE_CSV_COLUMNS):
                raise ClusterError(f"{p}:{line}: {len(row)} fields, expected "
                                   f"{len(NODE_CSV_COLUMNS)}")
            cells = dict(zip(NODE_CSV_COLUMNS, (c.strip() for c in row), strict=False))
            vals: dict[str, int] = {}
            for col in ("cpu_milli", "memory_mib", "gpu"):
                try:
                    vals[col] = int(cells[col])
                except ValueError:
                    raise ClusterError(f"{p}:{line}: column {col!r}: {cells[col]!r} is not "
                                       f"an integer") from None
                if vals[col] < 0:
                    raise ClusterError(f"{p}:{line}: column {col!r}: {vals[col]} is negative")
            name, model = cells["sn"], cells["model"]
            if not name or name in seen:
                raise ClusterError(f"{p}:{line}: column 'sn': node name {name!r} is empty or "
                                   f"repeats")
            seen.add(name)
            if vals["gpu"] == 0:
                topo = NodeTopology(gpus=(), links=())
            else:
                if not model:
                    raise ClusterError(f"{p}:{line}: column 'model': empty for a node with "
                                       f"{vals['gpu']} GPUs")
                try:
                    topo = build(model, vals["gpu"])
                except KeyError as e:
                    raise ClusterError(f"{p}:{line}: {e.args[0]}") from None
            out.append(NodeSpec(name=name, cpu_milli=vals["cpu_milli"],
                                memory_mib=vals["memory_mib"], topology=topo))
    if not out:
        raise ClusterError(f"{p}: no nodes")
    return out


def cluster_kind(path: str | Path) -> str:
    """'trace' for the Alibaba node CSV, 'yaml' for a cluster spec (YAML or JSON)."""
    p = Path(path)
    try:
        _, cols = csv_header(p)
    except OSError as e:
        raise ClusterError(f"{p}: cannot read: {e.strerror or e}") from None
    if cols[: len(NODE_CSV_COLUMNS)] == NODE_CSV_COLUMNS:
        return "trace"
    return "yaml"


def load_cluster(
    path: str | Path,
    *,
    preset_map: PresetMap | Mapping[str, object] | None = None,
) -> list[NodeSpec]:
    """A cluster file, recognised by content: the Alibaba node CSV or the YAML cluster spec
    (schema and loader in scheduler.cluster.static, shared with `gts serve --cluster`)."""
    if cluster_kind(path) == "trace":
        return load_trace_nodes(path, preset_map=preset_map)
    try:
        from scheduler.cluster.static import load_cluster_file
    except ModuleNotFoundError as e:
        raise ClusterError(f"{path}: YAML cluster specs are read by scheduler.cluster.static, "
                           f"which this build lacks ({e.name})") from None
    try:
        return list(load_cluster_file(path))
    except ValueError as e:  # StaticClusterError and YAML errors name the file and key
        raise ClusterError(str(e)) from None


# (count, preset, GPU model, GPU MiB, CPU milli, memory MiB)
PoolRow = tuple[int, str, str, int, int, int]

# The embedded default cluster: 64 nodes, 432 GPUs, in blocks (leaf switches) of 8 nodes and
# two spines of 32. Pools: (count, preset, GPU model, GPU MiB, CPU milli, memory MiB), CPU and
# memory as the vendors ship them (DGX H100: 2 x 56 cores with SMT, 2 TiB; DGX A100: 2 x 64
# cores, 2 TiB; DGX-1: 2 x 20 cores, 512 GiB; PCIe boxes typical 2U servers).
DEFAULT_POOLS: tuple[PoolRow, ...] = (
    (12, "dgx-h100", "H100-SXM5-80GB", 81920, 224_000, 2_097_152),
    (12, "dgx-a100", "A100-SXM4-80GB", 81920, 256_000, 2_097_152),
    (16, "dgx1-v100", "V100-SXM2-32GB", 32768, 80_000, 524_288),
    (8, "pcie-8gpu-2socket", "L40S", 46068, 128_000, 1_048_576),
    (8, "pcie-4gpu", "T4", 15360, 64_000, 262_144),
    (8, "pcie-2gpu", "A10", 24576, 32_000, 131_072),
)
DEFAULT_BLOCK_NODES = 8
DEFAULT_SPINE_NODES = 32


def pooled_cluster(pools: Sequence[PoolRow], short: Mapping[str, str],
                   block_nodes: int = DEFAULT_BLOCK_NODES,
                   spine_nodes: int = DEFAULT_SPINE_NODES) -> list[NodeSpec]:
    """Nodes of each pool row (count, preset, GPU model, GPU MiB, CPU milli, memory MiB), named
    `<short name of the preset>-<k>`, in blocks and spines of consecutive nodes; levels follow
    scheduler.constants.DEFAULT_NETWORK_LEVEL_LABELS: (accelerator, block, spine, datacenter)."""
    nodes: list[NodeSpec] = []
    i = 0
    for count, name, model, mem, cpu, ram in pools:
        topo = preset(name, model=model, memory_mib=mem)
        prefix = short.get(name, name)
        for k in range(count):
            levels = ("", f"block-{i // block_nodes}", f"spine-{i // spine_nodes}", "dc-0")
            nodes.append(NodeSpec(name=f"{prefix}-{k:02d}", cpu_milli=cpu, memory_mib=ram,
                                  topology=topo, levels=levels))
            i += 1
    return nodes


def default_cluster() -> list[NodeSpec]:
    """The embedded default scenario's cluster (see DEFAULT_POOLS)."""
    return pooled_cluster(DEFAULT_POOLS, {"pcie-8gpu-2socket": "pcie8"})


def cluster_summary(nodes: Sequence[NodeSpec], source: str) -> dict[str, object]:
    """Counts for reports: nodes, GPUs, and nodes per (model, GPUs, topology)."""
    pools: dict[str, int] = {}
    for s in nodes:
        key = f"{s.topology.n} x {s.gpu_model} ({s.topology.name})" if s.topology.n else "CPU"
        pools[key] = pools.get(key, 0) + 1
    return {
        "source": source,
        "nodes": len(nodes),
        "gpu_nodes": sum(1 for s in nodes if s.topology.n),
        "gpus": sum(s.topology.n for s in nodes),
        "pools": dict(sorted(pools.items(), key=lambda kv: -kv[1])),
    }
