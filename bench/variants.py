"""The variant table: every policy and the LP bound on each Alibaba trace variant.

`python -m bench.variants` replays the fill protocol (bench.fill_replay.replay_fill) on the trace's
1,213 GPU nodes for every pod-list variant in ../shared/traces/alibaba-gpu-v2023/, for the
policies topology (ours), fgd, bestfit and random, with paired seeds (seed s is the same
arrival order for every policy), computes bench.bound.fill_bound per seed, and prints one
Markdown table of medians over seeds at 100 % and 130 % arrived, with the gap ratio

    (ours - bound) / (fgd - bound)       per seed, then the median over seeds

(1.0 = as far from the bound as FGD, 0 = on it). `--json FILE` writes every per-seed number;
`--cells FILE` keeps each finished (variant, policy, seed) as it comes, so a run with more
seeds, or an interrupted one, reuses what is there.

Tuning discipline: the policy's packing weights were chosen on TUNING (one variant of each
family, default left out) with few seeds; every variant is reported, and the others
(HELD_OUT, the default trace among them) served only as the check.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, fields, replace
from functools import cache
from multiprocessing import get_context
from pathlib import Path

from bench.baselines import make_policy
from bench.bound import fill_bound
from bench.clusters import load_cluster
from bench.fill_replay import replay_fill
from bench.metrics import at_arrived, interpolated_at
from bench.workloads import load_workload
from scheduler.cli import exit_code_of
from scheduler.contract.node import NodeSpec
from scheduler.contract.request import PodRequest
from scheduler.policy import TopologyPolicy
from scheduler.policy.config import DEFAULT_CONFIG, PolicyConfig

TRACE_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "traces" / "alibaba-gpu-v2023"
VARIANTS = ("default", "gpushare40", "gpushare80", "multigpu20", "multigpu40", "gpuspec10",
            "gpuspec20", "cpu050", "cpu100", "cpu200")
TUNING = ("gpushare40", "multigpu20", "gpuspec10", "cpu050")
HELD_OUT = tuple(v for v in VARIANTS if v not in TUNING)
POLICIES = ("topology", "fgd", "bestfit", "random")
READ_OFF = (100, 130)


@dataclass(frozen=True, slots=True)
class Cell:
    """One replay (or the bound): unallocated GPU % at each read-off point."""

    variant: str
    policy: str  # a policy name, or "bound"
    seed: int
    unallocated: tuple[float, ...]


@cache
def _inputs(trace_dir: str, variant: str) -> tuple[list[NodeSpec], list[PodRequest]]:
    d = Path(trace_dir)
    nodes = load_cluster(d / "openb_node_list_gpu_node.csv")
    pods = load_workload(d / f"openb_pod_list_{variant}.csv").pods()
    return nodes, pods


def run_cell(trace_dir: str, variant: str, policy: str, seed: int,
             overrides: tuple[tuple[str, float], ...] = ()) -> Cell:
    """One fill replay of `policy` (or the LP bound when policy is "bound"); `overrides`
    replace PolicyConfig weights of ours ("topology") only."""
    nodes, pods = _inputs(trace_dir, variant)
    if policy == "bound":
        un = tuple(fill_bound(nodes, pods, seed, x).unallocated_pct for x in READ_OFF)
    else:
        pol = (TopologyPolicy(replace(DEFAULT_CONFIG, **dict(overrides)))
               if policy == "topology" and overrides else make_policy(policy, seed))
        r = replay_fill(pol, nodes, pods, seed=seed)
        # The report's read-off: the artifact's, or interpolated where no pod's arrival
        # rounds to x (small clusters).
        un = tuple(100.0 - _finite(at_arrived(r.arrived_pct, r.allocated_pct, x),
                                   interpolated_at(r.arrived_pct, r.allocated_pct, x))
                   for x in READ_OFF)
    return Cell(variant, policy, seed, un)


def _finite(v: float, fallback: float) -> float:
    return v if math.isfinite(v) else fallback


def _star(args: tuple[str, str, str, int, tuple[tuple[str, float], ...]]) -> Cell:
    return run_cell(*args)


def load_cells(path: Path) -> list[Cell]:
    """Cells saved by an earlier run (one JSON object per line; see `--cells`)."""
    if not path.exists():
        return []
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            out.append(Cell(str(d["variant"]), str(d["policy"]), int(d["seed"]),
                            tuple(float(u) for u in d["unallocated"])))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{n}: not a saved cell: {e}") from None
    return out


def cell_line(c: Cell) -> str:
    """One cell as a line of the `--cells` file."""
    return json.dumps({"variant": c.variant, "policy": c.policy, "seed": c.seed,
                       "unallocated": list(c.unallocated)})


def run_table(
    variants: Sequence[str], policies: Sequence[str], seeds: Sequence[int],
    trace_dir: Path = TRACE_DIR, jobs: int = 1,
    progress: Callable[[Cell], None] | None = None, done: Sequence[Cell] = (),
    overrides: tuple[tuple[str, float], ...] = (),
) -> list[Cell]:
    """Every (variant, policy or bound, seed) cell; `jobs` > 1 runs them in processes.
    Cells in `done` are reused, not run again."""
    have = {(c.variant, c.policy, c.seed): c for c in done}
    # Seed-major: a run cut short (see --cells) leaves whole seeds over every variant, which
    # make a table; variant-major would leave whole variants and none of the others.
    keys = [(v, p, s) for s in seeds for v in variants for p in (*policies, "bound")]
    out: list[Cell] = [have[k] for k in keys if k in have]
    tasks = [(str(trace_dir), *k, overrides) for k in keys if k not in have]
    if jobs <= 1:
        for t in tasks:
            out.append(_star(t))
            if progress is not None:
                progress(out[-1])
        return out
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        # As they finish, not in task order: a run cut short keeps every finished cell.
        for fut in as_completed([pool.submit(_star, t) for t in tasks]):
            cell = fut.result()
            out.append(cell)
            if progress is not None:
                progress(cell)
    return out


def parse_overrides(items: Sequence[str]) -> tuple[tuple[str, float], ...]:
    """NAME=VALUE pairs naming PolicyConfig weights, checked by PolicyConfig itself; a
    ValueError names the bad item."""
    weights = {f.name for f in fields(PolicyConfig) if f.type in ("float", float)}
    out: list[tuple[str, float]] = []
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or name not in weights:
            raise ValueError(f"{item!r}: expected NAME=NUMBER with NAME one of "
                             f"{', '.join(sorted(weights))}")
        try:
            out.append((name, float(value)))
        except ValueError:
            raise ValueError(f"{item!r}: {value!r} is not a number") from None
    replace(DEFAULT_CONFIG, **dict(out))  # PolicyConfig's own range checks
    return tuple(out)


def gap_ratio(ours: float, fgd: float, bound: float) -> float:
    """(ours - bound) / (fgd - bound); nan when FGD is on the bound."""
    den = fgd - bound
    return (ours - bound) / den if den > 1e-9 else math.nan


def summarize(cells: Sequence[Cell], ours: str = "topology") -> dict[str, object]:
    """Medians per variant, policy and read-off, and the paired per-seed gap ratio."""
    by: dict[tuple[str, str], dict[int, tuple[float, ...]]] = {}
    for c in cells:
        by.setdefault((c.variant, c.policy), {})[c.seed] = c.unallocated
    # The table's row order is VARIANTS', whatever order the cells came in (resumed runs).
    variants = sorted(dict.fromkeys(c.variant for c in cells),
                      key=lambda v: VARIANTS.index(v) if v in VARIANTS else len(VARIANTS))
    policies = list(dict.fromkeys(c.policy for c in cells))
    doc: dict[str, object] = {}
    for v in variants:
        row: dict[str, object] = {}
        for p in policies:
            seeds = by.get((v, p), {})
            row[p] = {str(x): statistics.median(u[i] for u in seeds.values())
                      for i, x in enumerate(READ_OFF)} if seeds else {}
        if (v, ours) in by and (v, "fgd") in by and (v, "bound") in by:
            common = sorted(set(by[(v, ours)]) & set(by[(v, "fgd")]) & set(by[(v, "bound")]))
            ratios: dict[str, object] = {}
            for i, x in enumerate(READ_OFF):
                rs = [gap_ratio(by[(v, ours)][s][i], by[(v, "fgd")][s][i], by[(v, "bound")][s][i])
                      for s in common]
                rs = [r for r in rs if not math.isnan(r)]
                ratios[str(x)] = statistics.median(rs) if rs else math.nan
            row["gap_ratio"] = ratios
        row["role"] = "tuning" if v in TUNING else "held out"
        doc[v] = row
    return doc


def markdown(summary: dict[str, object], policies: Sequence[str]) -> str:
    """The README table: per variant and read-off, each policy, the bound and the ratio."""
    head = ["variant", "role", "arrived", *policies, "bound", "gap ratio"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for v, row in summary.items():
        assert isinstance(row, dict)
        for x in READ_OFF:
            vals = [row.get(p, {}).get(str(x), math.nan) for p in (*policies, "bound")]
            ratio = row.get("gap_ratio", {}).get(str(x), math.nan)
            lines.append("| " + " | ".join(
                [v, str(row["role"]), f"{x} %"] + [f"{a:.2f}" for a in vals]
                + [f"{ratio:.2f}"]) + " |")
    return "\n".join(lines)


def parse_variants(text: str, known: Sequence[str] = VARIANTS) -> list[str]:
    """`default,cpu050`, or `tuning`, `held-out`, `all`: the variants named; ValueError
    naming any that is not in `known`."""
    named = {"tuning": TUNING, "held-out": HELD_OUT, "all": VARIANTS}
    variants = list(named.get(text, [v for v in text.split(",") if v]))
    unknown = [v for v in variants if v not in known]
    if unknown or not variants:
        raise ValueError(f"{text!r}: unknown {', '.join(unknown) or 'none given'}; known: "
                         f"{', '.join(known)}, or tuning, held-out, all")
    return variants


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run the table and print it (see the module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m bench.variants", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="comma-separated; 'tuning' or 'held-out' for those sets")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--jobs", type=int, default=1, help="processes (default 1)")
    ap.add_argument("--trace-dir", type=Path, default=TRACE_DIR)
    ap.add_argument("--json", type=Path, help="also write every per-seed number here")
    ap.add_argument("--cells", type=Path,
                    help="append each finished cell to this file (JSON lines) and reuse the "
                         "cells already in it: an interrupted run resumes. Keep one file per "
                         "code version: cells of an older policy are reused as they are")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="override a PolicyConfig weight of ours (topology), e.g. "
                         "share_fit_weight=0.01; use its own --cells file")
    args = ap.parse_args(argv)
    try:
        overrides = parse_overrides(args.set)
    except ValueError as e:
        ap.error(f"--set: {e}")
    try:
        variants = parse_variants(args.variants)
    except ValueError as e:
        ap.error(f"--variants: {e}")
    if not args.trace_dir.is_dir():
        ap.error(f"--trace-dir: {args.trace_dir} is not a directory")
    policies = [p for p in args.policies.split(",") if p]
    if "fgd" not in policies:
        ap.error("--policies: must include fgd (the gap ratio's reference)")
    t0 = time.monotonic()

    try:
        done = load_cells(args.cells) if args.cells else []
    except ValueError as e:
        ap.error(f"--cells: {e}")
    sink = args.cells.open("a") if args.cells else None

    def tick(c: Cell) -> None:
        if sink is not None:
            sink.write(cell_line(c) + "\n")
            sink.flush()
        print(f"{time.monotonic() - t0:7.1f}s {c.variant:11s} {c.policy:9s} seed {c.seed}: "
              + " ".join(f"{u:.3f}" for u in c.unallocated), file=sys.stderr, flush=True)

    try:
        cells = run_table(variants, policies, range(args.seeds), args.trace_dir, args.jobs,
                          tick, done, overrides)
    finally:
        if sink is not None:
            sink.close()
    summary = summarize(cells)
    print(markdown(summary, policies))
    if args.json:
        args.json.write_text(json.dumps({
            "summary": summary, "seeds": list(range(args.seeds)), "overrides": dict(overrides),
            "tuning": list(TUNING), "held_out": list(HELD_OUT),
            "cells": [{"variant": c.variant, "policy": c.policy, "seed": c.seed,
                       "unallocated_gpu_pct": dict(zip(map(str, READ_OFF), c.unallocated,
                                                       strict=True))} for c in cells],
        }, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(exit_code_of(main))
