"""`gts plan`: how large a cluster this workload needs under each policy, and what that saves.

For every policy, the smallest pool counts (bench/plan_search.py: bisection for one scaling
pool, coordinate descent for several) at which EVERY seed meets the target:

- fill: the workload's pods, each once, submitted one by one in the seed's shuffled order (the
  fill protocol's order, bench.fill_replay.fill_order with no copies), no departures; the target is
  the share of the workload's GPU request that gets placed (default 99 %). Unlike the FGD
  protocol the workload does not grow with the cluster, so every step of the search and every
  policy replays exactly the same pods in the same order for a given seed.
- dynamic: the dynamic replay (arrivals, durations, retry queue, gangs); the target is a p95
  wait (and optionally a maximum wait) over the jobs, and every job must start.

Honest statistics: every answer states the seeds, the per-seed answers (one scaling pool) or
the per-seed values at the answer, and the margin: the worst seed's value at the answer and at
one step smaller. Reuse between steps: each (seed, counts) runs once; a seed's search starts
from the previous seed's answer; only the first seed replays the largest cluster up front (to
say "not within bounds" in one replay; that replay runs whole and is reused for the report); a
fill step stops as soon as the pods that failed exceed the target's allowance (the step has
missed); clusters with fewer GPUs than the target's share of the request are rejected
without a replay.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.baselines.typical_pods import typical_pods_of
from bench.capacity_plan import PlanInputs, Target, plan_all, what_if
from bench.clusters import ClusterError, load_preset_map
from bench.out_path import OutPathError, check_out_dir
from bench.plan_cluster import PlanCluster, load_plan_cluster
from bench.plan_report import plan_json, plan_markdown, what_if_markdown
from bench.plan_search import Counts
from bench.policy_answer import ReplayError
from bench.report_plots import plot_plan
from bench.subcommand import run_subcommand
from bench.workloads import WorkloadError, load_workload

DEFAULT_PLAN_POLICIES = ("topology", "fgd", "default", "default-timeslice", "binpack")
DEFAULT_PLAN_SEEDS = 3
README_BEGIN = "<!-- gts plan: begin -->"
README_END = "<!-- gts plan: end -->"


def _scale(text: str) -> tuple[int, int, int]:
    parts = text.split(":")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--scale {text!r}: expected MIN:MAX[:STEP] (integers)"
                                         ) from None
    if len(vals) not in (2, 3) or vals[0] < 0 or vals[1] < vals[0] or (len(vals) == 3 and
                                                                       vals[2] < 1):
        raise argparse.ArgumentTypeError(f"--scale {text!r}: expected MIN:MAX[:STEP] with "
                                         f"0 <= MIN <= MAX and STEP >= 1")
    return vals[0], vals[1], vals[2] if len(vals) == 3 else 1


def parse_what_if(text: str, cl: PlanCluster) -> Counts:
    """`POOL+N` or `POOL-N`: the current counts with one pool grown or shrunk by N nodes."""
    for sign in ("+", "-"):
        if sign in text:
            name, _, n = text.rpartition(sign)
            break
    else:
        raise ValueError(f"--what-if {text!r}: expected POOL+N or POOL-N")
    names = [p.name for p in cl.pools]
    if name not in names:
        raise ValueError(f"--what-if {text!r}: no pool {name!r}; pools: {', '.join(names)}")
    try:
        k = int(n)
    except ValueError:
        raise ValueError(f"--what-if {text!r}: {n!r} is not a node count") from None
    i = names.index(name)
    cur = list(cl.current())
    cur[i] = cur[i] + k if sign == "+" else cur[i] - k
    if cur[i] < 0:
        raise ValueError(f"--what-if {text!r}: pool {name!r} has only {cl.pools[i].count} nodes")
    return tuple(cur)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `plan` on the `gts` command."""
    p = subparsers.add_parser(
        "plan", help="smallest cluster per policy that meets a target (capacity planning)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cluster", metavar="FILE", required=True,
                   help="Alibaba node CSV (one pool `all`, see --scale) or YAML spec whose "
                        "pools may carry scale: {min, max, step, cost_per_node_hour, "
                        "cost_per_gpu_hour}")
    p.add_argument("--workload", metavar="FILE", required=True,
                   help="workload: Alibaba pod CSV or Philly/Lingjun job CSV")
    p.add_argument("--scale", type=_scale, metavar="MIN:MAX[:STEP]",
                   help="node CSV only: how many nodes the one pool may have")
    p.add_argument("--cost-per-gpu-hour", type=float, default=0.0, metavar="X",
                   help="node CSV only: price of a GPU-hour (for the cost column)")
    p.add_argument("--cost-per-node-hour", type=float, default=0.0, metavar="X",
                   help="node CSV only: price of a node-hour")
    p.add_argument("--mode", choices=("fill", "dynamic"), default="fill")
    p.add_argument("--placed", type=float, default=99.0, metavar="PCT",
                   help="fill target: %% of the GPU request placed (default 99)")
    p.add_argument("--p95-wait-min", type=float, default=10.0, metavar="MIN",
                   help="dynamic target: p95 wait in minutes (default 10)")
    p.add_argument("--max-wait-min", type=float, default=None, metavar="MIN",
                   help="dynamic target: no job waits longer (default: no limit)")
    p.add_argument("--policies", default=",".join(DEFAULT_PLAN_POLICIES),
                   help=f"comma-separated (default {','.join(DEFAULT_PLAN_POLICIES)})")
    p.add_argument("--baseline", default="default",
                   help="policy the others are compared with (default: default)")
    p.add_argument("--seeds", type=int, default=DEFAULT_PLAN_SEEDS, metavar="N",
                   help=f"seeds 0..N-1 (default {DEFAULT_PLAN_SEEDS})")
    p.add_argument("--what-if", metavar="POOL+N|POOL-N",
                   help="no search: the current cluster against it with one pool changed")
    p.add_argument("--preset-map", metavar="FILE", help="topology preset rules for CSV nodes")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="worker processes, one policy each (default: CPU count)")
    p.add_argument("--out", metavar="DIR", help="also write plan.md, plan.json, plan.png here")
    p.add_argument("--readme", metavar="FILE",
                   help=f"also replace the text between {README_BEGIN!r} and {README_END!r} "
                        f"in FILE with the table (keeps a README's numbers rerunnable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=main_args)


def main_args(args: argparse.Namespace) -> int:
    """Run `gts plan` from parsed arguments."""
    from bench.baselines import POLICIES
    from bench.progress_bar import ProgressBar

    def fail(msg: str) -> int:
        print(f"gts plan: {msg}", file=sys.stderr)
        return 2

    policies = [s.strip() for s in args.policies.split(",") if s.strip()]
    unknown = [p for p in policies if p not in POLICIES]
    if not policies or unknown:
        return fail(f"--policies: unknown {unknown[0]!r}; valid: {', '.join(POLICIES)}"
                    if unknown else "--policies is empty")
    if args.seeds < 1:
        return fail(f"--seeds {args.seeds}: must be at least 1")
    if args.jobs < 1:
        return fail(f"--jobs {args.jobs}: must be at least 1")
    if not 0 < args.placed <= 100:
        return fail(f"--placed {args.placed}: must be in (0, 100]")
    if args.p95_wait_min < 0 or (args.max_wait_min is not None and args.max_wait_min < 0):
        return fail("--p95-wait-min / --max-wait-min: must be >= 0")
    try:
        out = check_out_dir(args.out, files=("plan.md", "plan.json", "plan.png")) \
            if args.out else None
    except OutPathError as e:
        return fail(str(e))
    if args.readme:
        try:
            text = Path(args.readme).read_text(encoding="utf-8")
        except OSError as e:
            return fail(f"--readme {args.readme}: {e.strerror or e}")
        if README_BEGIN not in text or README_END not in text:
            return fail(f"--readme {args.readme}: needs the lines {README_BEGIN} and "
                        f"{README_END} around the table")
    try:
        pm = load_preset_map(args.preset_map) if args.preset_map else None
        cl = load_plan_cluster(args.cluster, preset_map=pm, scale=args.scale,
                               cost_per_node_hour=args.cost_per_node_hour,
                               cost_per_gpu_hour=args.cost_per_gpu_hour)
        wl = load_workload(args.workload)
        changed = parse_what_if(args.what_if, cl) if args.what_if else None
    except (ClusterError, WorkloadError, OSError, ValueError) as e:
        return fail(str(e))
    target = Target(mode=args.mode, placed_pct=args.placed, p95_wait_s=args.p95_wait_min * 60,
                    max_wait_s=None if args.max_wait_min is None else args.max_wait_min * 60)
    if target.mode == "dynamic" and not any(j.duration_s > 0 for j in wl.jobs):
        return fail(f"{wl.source} has no times (arrival/duration): use --mode fill")
    pods = wl.pods()
    inp = PlanInputs(cl, wl, target, list(range(args.seeds)),
                     demand_milli=sum(p.gpu_demand_milli for p in pods),
                     typical=typical_pods_of(pods))
    if inp.demand_milli == 0:
        return fail(f"{wl.source}: the workload requests no GPUs")
    argv = getattr(args, "argv", None)
    command = "gts plan " + shlex.join(argv) if argv is not None else \
        "gts " + shlex.join(sys.argv[1:])
    # Expected replays: a bisection of the grid for the first seed, ~3 per further seed.
    grid = max(len(p.grid()) for p in cl.pools)
    guess = len(policies) * (max(1, grid).bit_length() + 3 * len(inp.seeds))
    bar = ProgressBar(guess if changed is None else 2 * len(policies) * len(inp.seeds),
                      enabled=not args.quiet)
    t0 = time.perf_counter()

    def progress(label: str) -> None:
        bar.done += 1
        bar.total = max(bar.total, int(bar.done) + 1)
        bar.update(bar.done, label[:60], force=True)

    try:
        if changed is not None:
            res = what_if(inp, policies, changed, progress)
            bar.close()
            print(what_if_markdown(inp, res, changed, command))
            return 0
        plans = plan_all(inp, policies, args.jobs, progress)
    except (ReplayError, ClusterError) as e:
        bar.close()
        return fail(str(e))
    bar.close()
    wall = time.perf_counter() - t0
    baseline = args.baseline if args.baseline in plans else policies[-1]
    md = plan_markdown(inp, plans, baseline, command, wall, min(args.jobs, len(policies)))
    print(md)
    if args.readme:
        path = Path(args.readme)
        text = path.read_text(encoding="utf-8")
        head, _, rest = text.partition(README_BEGIN)
        _, _, tail = rest.partition(README_END)
        path.write_text(f"{head}{README_BEGIN}\n{md}\n{README_END}{tail}", encoding="utf-8")
    if out is not None:
        (out / "plan.md").write_text(md + "\n", encoding="utf-8")
        (out / "plan.json").write_text(json.dumps(plan_json(inp, plans, baseline), indent=1,
                                                  allow_nan=False) + "\n", encoding="utf-8")
        plot_plan(plan_json(inp, plans, baseline), out / "plan.png")
        print(f"plan: {out / 'plan.md'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.plan [args]`, the same as `gts plan [args]`."""
    return run_subcommand("plan", add_parser, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    raise SystemExit(main())
