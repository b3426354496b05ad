"""Policy decisions per second: filter + score + assign + allocate, one pod at a time.

Clusters: the Alibaba trace's 1,213 GPU nodes (../shared/traces/alibaba-gpu-v2023/
openb_node_list_gpu_node.csv, topologies by bench.clusters' preset map; without ../shared the
same shape is generated from the per-type counts below), and 5,000 8-GPU nodes. Each pod kind
is placed repeatedly and allocated so the cluster fills as in a replay; when nothing fits the
cluster restarts from a fresh copy (outside the timed region). Two paths are timed: `place`
(what the simulator calls: one filter, one evaluation, the best node's assignment) and the
extender's path (filter_nodes, score_nodes, then assign on the best node, which re-checks
that one node).

    python -m bench.policy_perf [--json] [--decisions N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from scheduler.contract.assignment import Assignment
from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest
from scheduler.policy import (
    DEFAULT_CONFIG,
    Snapshot,
    TypicalWorkload,
    assign,
    build_snapshot,
    filter_nodes,
    place,
    score_nodes,
)

TRACE_NODES = (Path(__file__).resolve().parents[1].parent / "shared" / "traces" /
               "alibaba-gpu-v2023" / "openb_node_list_gpu_node.csv")
# (count, GPUs, model, cpu milli, memory MiB) of the trace's GPU nodes, for when ../shared is
# absent: the counts are the CSV's; CPU and memory are its most common values per type.
TRACE_SHAPE: tuple[tuple[int, int, str, int, int], ...] = (
    (2, 1, "A10", 32000, 131072), (3, 1, "P100", 64000, 262144),
    (19, 1, "V100M16", 64000, 262144), (131, 2, "P100", 64000, 262144),
    (387, 2, "T4", 64000, 262144), (17, 4, "T4", 64000, 262144),
    (28, 4, "V100M16", 96000, 393216), (9, 4, "V100M32", 96000, 393216),
    (549, 8, "G2", 96000, 786432), (39, 8, "G3", 128000, 786432),
    (8, 8, "V100M16", 96000, 786432), (21, 8, "V100M32", 96000, 786432),
)  # fmt: skip

PODS: tuple[tuple[str, PodRequest], ...] = (
    ("1-GPU", PodRequest("p", cpu_milli=8000, memory_mib=16384, gpus=1)),
    ("4-GPU", PodRequest("p", cpu_milli=32000, memory_mib=65536, gpus=4)),
    ("fractional (0.3 GPU)", PodRequest("p", cpu_milli=4000, memory_mib=8192, gpu_milli=300)),
)


def trace_cluster() -> tuple[list[NodeSpec], str]:
    """The trace's GPU nodes, from ../shared when present, else generated from TRACE_SHAPE."""
    from bench.clusters import load_trace_nodes
    if TRACE_NODES.is_file():
        return load_trace_nodes(TRACE_NODES), str(TRACE_NODES)
    from bench.clusters import PresetMap
    from topology.presets import preset
    pm = PresetMap()
    nodes: list[NodeSpec] = []
    for count, gpus, model, cpu, mem in TRACE_SHAPE:
        name = pm.preset_for(model, gpus)
        assert name is not None
        topo = preset(name, model=model, memory_mib=pm.memory_for(model))
        nodes += [NodeSpec(f"{model}-{gpus}-{i}", cpu, mem, topo) for i in range(count)]
    return nodes, "generated from TRACE_SHAPE (../shared absent)"


def big_cluster(n: int = 5000) -> list[NodeSpec]:
    """n 8-GPU nodes: half DGX A100 (NVSwitch), half DGX-1 V100 (hybrid cube-mesh)."""
    from topology.presets import preset
    a100, v100 = preset("dgx-a100"), preset("dgx1-v100")
    return [NodeSpec(f"n{i}", 256000, 2097152, a100 if i % 2 else v100) for i in range(n)]


Step = Callable[[PodRequest, Snapshot, TypicalWorkload], Assignment | None]


def step_place(req: PodRequest, snap: Snapshot, mix: TypicalWorkload) -> Assignment | None:
    """The simulator's path."""
    a = place(req, snap, mix, DEFAULT_CONFIG)
    if a is not None:
        snap.allocate(a)
    return a


def step_extender(req: PodRequest, snap: Snapshot, mix: TypicalWorkload) -> Assignment | None:
    """The extender's path: filter_nodes, score_nodes, assign on the best node."""
    fr = filter_nodes(req, snap, None, DEFAULT_CONFIG)
    if not fr.feasible.size:
        return None
    s = score_nodes(req, snap, fr.feasible, mix, DEFAULT_CONFIG)
    a = assign(req, snap, int(fr.feasible[int(np.argmax(s))]), DEFAULT_CONFIG, mix)
    snap.allocate(a)
    return a


def measure(base: Snapshot, req: PodRequest, step: Step,
            decisions: int) -> dict[str, float | str]:
    """Decisions per second over `decisions` placements (restarting when full), and a
    fingerprint of the decisions (sha256 of each one's node, GPUs and share, outside the
    timed span): equal fingerprints before and after a change mean the same decisions."""
    mix = TypicalWorkload()
    snap = base.copy()
    done = restarts = 0
    spent = 0.0
    digest = hashlib.sha256()
    while done < decisions:
        r = PodRequest(f"p{done}", cpu_milli=req.cpu_milli, memory_mib=req.memory_mib,
                       gpus=req.gpus, gpu_milli=req.gpu_milli)
        t0 = time.perf_counter()
        a = step(r, snap, mix)
        spent += time.perf_counter() - t0
        if a is not None:
            done += 1
            digest.update(f"{a.node}:{a.gpus}:{a.gpu_milli};".encode())
        else:
            snap = base.copy()
            restarts += 1
            digest.update(b"refill;")
    return {"decisions": done, "seconds": spent, "per_second": done / spent,
            "us_per_decision": 1e6 * spent / done, "refills": restarts,
            "fingerprint": digest.hexdigest()[:16]}


def run(decisions: int) -> dict[str, object]:
    """All measurements, as a JSON-ready dict."""
    trace_nodes, source = trace_cluster()
    clusters: list[tuple[str, Sequence[NodeSpec]]] = [
        (f"trace ({len(trace_nodes)} nodes)", trace_nodes),
        ("5,000 x 8-GPU", big_cluster()),
    ]
    rows: list[dict[str, object]] = []
    for cname, nodes in clusters:
        base = build_snapshot(nodes)
        for pname, req in PODS:
            for path, step in (("place", step_place), ("extender", step_extender)):
                m = measure(base, req, step, decisions)
                rows.append({"cluster": cname, "pod": pname, "path": path, **m})
    return {"source": source, "decisions_per_case": decisions, "target_per_second": 5000,
            "results": rows}


def table(res: dict[str, object]) -> str:
    """A plain-text table of the results."""
    lines = [f"{'cluster':<22} {'pod':<22} {'path':<9} {'decisions/s':>12} {'us/decision':>12}"
             f"  decisions' fingerprint"]
    rows = res["results"]
    assert isinstance(rows, list)
    for r in rows:
        lines.append(f"{r['cluster']:<22} {r['pod']:<22} {r['path']:<9} "
                     f"{r['per_second']:>12,.0f} {r['us_per_decision']:>12.1f}"
                     f"  {r['fingerprint']}")
    lines.append(f"(cluster source: {res['source']}; target: >= 5,000 decisions/s on the trace)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print a table (or JSON)."""
    ap = argparse.ArgumentParser(prog="python -m bench.policy_perf", description=__doc__)
    add_arguments(ap)
    args = ap.parse_args(argv)
    return run_args(args)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The benchmark's options (shared with `gts bench policy`)."""
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--decisions", type=int, default=2000,
                    help="decisions per (cluster, pod, path) case (default 2000)")


def run_args(args: argparse.Namespace) -> int:
    """Run with parsed arguments."""
    if args.decisions < 1:
        raise SystemExit(f"--decisions={args.decisions}: must be >= 1")
    res = run(args.decisions)
    print(json.dumps(res, indent=2) if args.json else table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
