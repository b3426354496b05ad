"""`gts topo`: list presets, show a topology (matrix, NUMA split, best set per size), parse.

    gts topo presets
    gts topo show PRESET|FILE [--json] [--png FILE] [--model M] [--memory-mib N]
    gts topo parse FILE [--model M] [--memory-mib N]     (prints the annotation JSON)

FILE is `nvidia-smi topo -m` text or the topology JSON annotation (recognised by its leading
`{`). Errors in a file are printed with their line and token and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from topology.annotation import TopologyJSONError, from_json, to_dict
from topology.command_group import EXIT_USAGE, add_command_group
from topology.links import link_rank
from topology.model import NodeTopology
from topology.presets import PRESETS, preset, preset_description
from topology.quality import best_gpus, ring_bandwidth
from topology.smi import TopologyParseError, parse_topo_m
from topology.tables import EXACT_MAX_GPUS


class _LoadError(Exception):
    """A topology argument that could not be loaded; the message is for the user."""


def add_parser(subparsers: Any) -> None:
    """Register `topo` and its subcommands on the `gts` dispatcher's subparsers."""
    sub = add_command_group(subparsers, "topo", "GPU topologies: presets, show, parse", __doc__,
                            "topo_command")

    p = sub.add_parser("presets", help="list the topology presets")
    p.set_defaults(func=cmd_presets)

    s = sub.add_parser("show", help="a topology: link matrix, NUMA split, best set per size")
    s.add_argument("topology", help="a preset name, or a file (nvidia-smi topo -m text or JSON)")
    s.add_argument("--json", action="store_true", help="print JSON (annotation + best_sets)")
    s.add_argument("--png", metavar="FILE", help="draw the GPU link graph to a PNG file")
    _model_args(s)
    s.set_defaults(func=cmd_show)

    r = sub.add_parser("parse", help="parse nvidia-smi topo -m text, print the annotation JSON")
    r.add_argument("file", help="nvidia-smi topo -m text ('-' for standard input)")
    _model_args(r)
    r.set_defaults(func=cmd_parse)


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="GPU model name (nvidia-smi topo -m does not print it)")
    p.add_argument("--memory-mib", type=int, help="GPU memory in MiB")


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise _LoadError(f"cannot read {path}: {e}") from None


def _from_text(text: str, source: str, model: str | None, memory_mib: int | None) -> NodeTopology:
    try:
        if text.lstrip().startswith("{"):
            return from_json(text)
        return parse_topo_m(
            text, model or "unknown", memory_mib or 0, name=Path(source).stem if source else ""
        )
    except TopologyParseError as e:
        raise _LoadError(f"{source}: line {e.line}: {e.reason} (token {e.token!r})") from None
    except TopologyJSONError as e:
        raise _LoadError(f"{source}: {e}") from None


def load_topology(
    arg: str, model: str | None = None, memory_mib: int | None = None
) -> NodeTopology:
    """A preset by name, else a file of nvidia-smi topo -m text or topology JSON."""
    if memory_mib is not None and memory_mib < 0:
        raise _LoadError(f"--memory-mib must be >= 0, got {memory_mib}")
    if arg in PRESETS:
        return preset(arg, model=model, memory_mib=memory_mib)
    if arg != "-" and not Path(arg).is_file():
        raise _LoadError(f"{arg!r} is neither a preset nor a file; presets: {', '.join(PRESETS)}")
    return _from_text(_read(arg), arg, model, memory_mib)


def _link_summary(topo: NodeTopology) -> str:
    counts = Counter(topo.links[i][j] for i in range(topo.n) for j in range(i + 1, topo.n))
    if not counts:
        return "-"
    kinds = sorted(counts, key=link_rank, reverse=True)
    return " ".join(f"{k}x{counts[k]}" for k in kinds)


def cmd_presets(args: argparse.Namespace) -> int:
    """Print one line per preset: name, GPUs, model, NUMA nodes, NICs, links."""
    rows = [("NAME", "GPUS", "MODEL", "MEM MiB", "NUMA", "NICS", "LINKS (pairs)")]
    for name in PRESETS:
        t = preset(name)
        numa = len({g.numa_node for g in t.gpus})
        rows.append(
            (name, str(t.n), t.model, str(t.gpus[0].memory_mib), str(numa), str(len(t.nics)),
             _link_summary(t))
        )  # fmt: skip
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    print()
    for name in PRESETS:
        print(f"{name}: {preset_description(name)}")
    return 0


def _best_sets(topo: NodeTopology) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    bw = topo.bandwidth()
    for k in range(1, topo.n + 1):
        best = best_gpus(topo, None, k)
        if best is None:
            continue
        gpus, q = best
        ring = ring_bandwidth(bw, gpus) if k >= 2 else None
        out[str(k)] = {"gpus": list(gpus), "quality": round(q, 6),
                       "ring_gbps": None if ring is None else round(ring, 3)}  # fmt: skip
    return out


def _matrix(topo: NodeTopology) -> list[str]:
    cols = [f"GPU{i}" for i in range(topo.n)] + [nic.name for nic in topo.nics]
    w = max(6, *(len(c) + 1 for c in cols))
    lines = [" " * 7 + "".join(c.rjust(w) for c in cols)]
    for g in range(topo.n):
        cells = [("X" if j == g else topo.links[g][j]) for j in range(topo.n)]
        cells += [nic.gpu_links[g] for nic in topo.nics]
        lines.append(f"GPU{g}".ljust(7) + "".join(c.rjust(w) for c in cells))
    return lines


def cmd_show(args: argparse.Namespace) -> int:
    """Print (or --json) a topology and its best GPU set per size; --png draws it."""
    try:
        topo = load_topology(args.topology, args.model, args.memory_mib)
    except _LoadError as e:
        print(f"gts topo show: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    best = _best_sets(topo)
    if args.png:
        from topology.draw import draw_topology  # matplotlib only when asked for

        try:
            draw_topology(topo, args.png)
        except OSError as e:
            print(f"gts topo show: error: cannot write {args.png}: {e}", file=sys.stderr)
            return EXIT_USAGE
        # stderr, so that --json --png still prints pure JSON on stdout.
        print(f"wrote {args.png}", file=sys.stderr)
    if args.json:
        obj = to_dict(topo)
        obj["best_sets"] = best
        print(json.dumps(obj, indent=2))
        return 0
    g0 = topo.gpus[0]
    print(f"{topo.name or args.topology}: {topo.n} x {g0.model}"
          + (f", {g0.memory_mib} MiB" if g0.memory_mib else ""))  # fmt: skip
    print()
    print("links:")
    print("\n".join("  " + ln for ln in _matrix(topo)))
    print()
    print("NUMA split:")
    for node, gpus in sorted(topo.numa_split().items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
        cpus = topo.gpus[gpus[0]].cpu_affinity
        nics = [n.name for n in topo.nics if n.numa_node == node and node is not None]
        label = "n/a" if node is None else str(node)
        extra = f"  CPUs {cpus}" if cpus else ""
        extra += f"  NICs {', '.join(nics)}" if nics else ""
        print(f"  node {label}: GPUs {', '.join(map(str, gpus))}{extra}")
    print()
    how = "exact tables" if topo.n <= EXACT_MAX_GPUS else "greedy estimate"
    print(f"best set per size on an empty node ({how}):")
    for k, b in best.items():
        ring = "" if b["ring_gbps"] is None else f"  ring {b['ring_gbps']:.1f} GB/s"
        print(f"  k={k:>2}  GPUs {{{', '.join(map(str, b['gpus']))}}}  "
              f"quality {b['quality']:.3f}{ring}")  # fmt: skip
    return 0


def cmd_parse(args: argparse.Namespace) -> int:
    """Parse nvidia-smi topo -m text and print its compact JSON annotation."""
    try:
        if args.memory_mib is not None and args.memory_mib < 0:
            raise _LoadError(f"--memory-mib must be >= 0, got {args.memory_mib}")
        topo = _from_text(_read(args.file), args.file, args.model, args.memory_mib)
    except _LoadError as e:
        print(f"gts topo parse: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(to_dict(topo), separators=(",", ":")))
    return 0
