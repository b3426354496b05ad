"""`gts cluster export`: a running cluster's nodes as a cluster spec for `gts simulate` / `plan`.

Reads the Node objects, from the Kubernetes API (kubeconfig or in-cluster, list nodes only) or
from a file holding `kubectl get nodes -o json` (`--from nodes.json`, `-` for stdin), parses
each with the extender's own parser (scheduler.cluster.nodes.node_spec_from_k8s: allocatable
CPU, memory and `nvidia.com/gpu`, the GPU model label, the node agent's topology annotation or
preset label) and groups equal nodes into pools:

    kubectl get nodes -o json > nodes.json
    gts cluster export --from nodes.json > cluster.yaml
    gts plan --cluster cluster.yaml --workload pods.csv ...      # after adding scale: maps

A pool's topology is written as the preset it equals (same links, model and memory), else as
`gpus` + `gpu_model` (the spec's generic all-PHB topology: a topology published by the node
agent that matches no preset cannot be written in the spec and is flagged in a comment).
Network labels are not exported (the spec's `network` map groups nodes by count, not by name).
Nodes that fail to parse are skipped and listed on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from scheduler.cluster.nodes import NodeParseError, node_spec_from_k8s
from scheduler.contract.node import NodeSpec
from topology.model import NodeTopology
from topology.presets import preset, preset_names


def matching_preset(topo: NodeTopology) -> str | None:
    """The preset whose topology (with this model and memory) equals `topo`, or None."""
    if topo.n == 0:
        return None
    mem = topo.gpus[0].memory_mib or None
    for name in preset_names():
        try:
            cand = preset(name, model=topo.model, memory_mib=mem)
        except ValueError:
            continue
        if cand.n == topo.n and cand.key() == topo.key():
            return name
    return None


def _slug(text: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "-" for c in text).strip("-")
    while "--" in out:
        out = out.replace("--", "-")
    return out[:40] or "pool"


def pools_from_nodes(specs: Sequence[NodeSpec]) -> tuple[list[dict[str, Any]], list[str]]:
    """Pools of equal nodes (topology, CPU, memory), largest first, and comments to print."""
    groups: dict[tuple[str, int, int], list[NodeSpec]] = {}
    for s in specs:
        groups.setdefault((s.topology.key(), s.cpu_milli, s.memory_mib), []).append(s)
    pools: list[dict[str, Any]] = []
    notes: list[str] = []
    names: set[str] = set()
    for (_, cpu, mem), members in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        topo = members[0].topology
        base = _slug(f"{topo.model}-{topo.n}gpu") if topo.n else "cpu"
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.add(name)
        pool: dict[str, Any] = {"name": name, "count": len(members)}
        if topo.n:
            found = matching_preset(topo)
            if found:
                pool["preset"] = found
            else:
                pool["gpus"] = topo.n
                if any(lk not in ("X", "PHB") for row in topo.links for lk in row):
                    notes.append(f"pool {name}: its published topology matches no preset; "
                                 f"written as a generic {topo.n}-GPU node")
            pool["gpu_model"] = topo.model
            if topo.gpus[0].memory_mib:
                pool["gpu_memory_mib"] = int(topo.gpus[0].memory_mib)
        else:
            pool["gpus"] = 0
        pool["cpu"] = f"{cpu}m"
        pool["memory"] = f"{mem}Mi"
        pool["nodes_were"] = sorted(s.name for s in members)[:3]
        pools.append(pool)
    return pools, notes


def export_spec(nodes: Sequence[object]) -> tuple[str, list[str]]:
    """The YAML cluster spec of Node objects, and the nodes skipped (with why)."""
    specs: list[NodeSpec] = []
    skipped: list[str] = []
    for n in nodes:
        try:
            specs.append(node_spec_from_k8s(n))
        except NodeParseError as e:
            skipped.append(str(e))
    if not specs:
        raise ValueError("no node could be read" + (f": {skipped[0]}" if skipped else ""))
    pools, notes = pools_from_nodes(specs)
    lines = ["# Exported by `gts cluster export` from "
             f"{len(specs)} nodes; schema: scheduler/cluster/static.py.",
             "# Add `scale: {min, max, step, cost_per_gpu_hour}` to the pools `gts plan` may "
             "resize."]
    lines += [f"# note: {t}" for t in notes]
    body = []
    for p in pools:
        example = p.pop("nodes_were")
        body.append(f"  # e.g. {', '.join(example)}")
        one = yaml.safe_dump([p], sort_keys=False, default_flow_style=False).rstrip()
        body.extend("  " + ln for ln in one.splitlines())
    return "\n".join([*lines, "pools:", *body]) + "\n", skipped


def read_node_list(text: str, source: str) -> list[object]:
    """Node objects from `kubectl get nodes -o json` (a List) or a single Node."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{source}: not JSON ({e}); use kubectl get nodes -o json") from None
    if isinstance(doc, Mapping) and doc.get("kind") in ("List", "NodeList"):
        items = doc.get("items")
        if not isinstance(items, list):
            raise ValueError(f"{source}: items: expected a list of Node objects")
        return list(items)
    if isinstance(doc, Mapping) and doc.get("kind") == "Node":
        return [doc]
    raise ValueError(f"{source}: kind {doc.get('kind') if isinstance(doc, Mapping) else doc!r}"
                     f": expected a NodeList (kubectl get nodes -o json)")


def nodes_from_api(kubeconfig: str | None, context: str | None) -> list[object]:
    """List the nodes through the Kubernetes API (kubeconfig, else in-cluster)."""
    from kubernetes import client, config

    if kubeconfig or not Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists():
        config.load_kube_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
    else:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    api = client.ApiClient()
    items = client.CoreV1Api(api).list_node().items
    return [api.sanitize_for_serialization(n) for n in items]  # type: ignore[no-untyped-call]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `cluster export` on the `gts` command."""
    p = subparsers.add_parser("cluster", help="cluster specs: export a running cluster's nodes",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cluster_command", metavar="COMMAND")
    e = sub.add_parser("export", help="nodes -> YAML cluster spec on stdout")
    e.add_argument("--from", dest="source", metavar="FILE",
                   help="kubectl get nodes -o json output ('-' = stdin); default: the API")
    e.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default: ~/.kube/config)")
    e.add_argument("--context", help="kubeconfig context")
    e.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    e.set_defaults(func=main_args)

    def usage(_: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=usage)


def main_args(args: argparse.Namespace) -> int:
    """Run `gts cluster export`."""
    try:
        if args.source == "-":
            nodes = read_node_list(sys.stdin.read(), "stdin")
        elif args.source:
            nodes = read_node_list(Path(args.source).read_text(encoding="utf-8"), args.source)
        else:
            nodes = nodes_from_api(args.kubeconfig, args.context)
        text, skipped = export_spec(nodes)
    except (OSError, ValueError) as e:
        print(f"gts cluster export: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # the kubernetes client raises its own types (config, API)
        print(f"gts cluster export: cannot list nodes: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    for s in skipped:
        print(f"gts cluster export: skipped {s}", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
