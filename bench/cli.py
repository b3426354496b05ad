"""`gts simulate`: replay a workload on a cluster through several policies and write a report.

With no arguments it runs the embedded default scenario (bench.clusters.default_cluster() and
bench.workload_generator.generate_workload(seed) per seed), fill and dynamic, for the policies
topology, default, binpack, fgd and random. This is the command line; bench.simulate runs the
tasks (`--jobs N` spawned processes).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.clusters import (
    ClusterError,
    default_cluster,
    load_cluster,
    load_preset_map,
)
from bench.out_path import OutPathError, check_out_dir
from bench.policy_answer import ReplayError
from bench.simulate import PolicyFactory, Scenario, default_factory, simulate
from bench.subcommand import run_subcommand
from bench.workloads import WorkloadError, load_workload

DEFAULT_POLICIES = ("topology", "default", "binpack", "fgd", "random")
DEFAULT_SEEDS = 5
DEFAULT_OUT = "gts-report"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `simulate` on the `gts` command."""
    p = subparsers.add_parser(
        "simulate", help="replay a workload through several policies and write a report",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cluster", metavar="FILE",
                   help="cluster: Alibaba node CSV or YAML cluster spec (default: embedded "
                        "64-node mixed cluster)")
    p.add_argument("--workload", metavar="FILE",
                   help="workload: Alibaba pod CSV or Philly/Lingjun job CSV (default: "
                        "generated per seed)")
    p.add_argument("--mode", choices=("fill", "dynamic", "both"), default="both")
    p.add_argument("--policies", default=",".join(DEFAULT_POLICIES),
                   help=f"comma-separated policy names (default {','.join(DEFAULT_POLICIES)})")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, metavar="N",
                   help=f"run seeds 0..N-1 and report medians (default {DEFAULT_SEEDS})")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"report folder (default ./{DEFAULT_OUT})")
    p.add_argument("--skip-bad-rows", action="store_true",
                   help="count and skip unreadable workload rows instead of stopping")
    p.add_argument("--preset-map", metavar="FILE",
                   help="YAML/JSON rules choosing topology presets for trace nodes")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="worker processes (default: CPU count)")
    p.add_argument("--generated-jobs", type=int, default=4000, metavar="N",
                   help="jobs per seed of the generated workload (default 4000)")
    p.add_argument("--load", type=float, default=1.1,
                   help="offered load of the generated workload (default 1.1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--plan", metavar="FILE",
                   help="plan.json of `gts plan` on the same workload: the report's verdict "
                        "then opens with the GPUs needed at the plan's target")
    p.add_argument("--no-sensitivity", action="store_true",
                   help="skip the dynamic reruns at the ends of the speed model's range")
    p.add_argument("--scenario", choices=("heterogeneous",),
                   help="a named scenario instead of --cluster/--workload: 'heterogeneous' "
                        "(bench/heterogeneous.py: H100, A100, V100 and L4 pools; Alibaba "
                        "shares with Philly and Lingjun jobs and gangs; dynamic mode; policies "
                        "default to topology,default,fgd,binpack; prints a table)")
    p.add_argument("--split", choices=("report", "tune"), default="report",
                   help="--scenario: which half of the traces to draw jobs from (default "
                        "report; weights were tuned on 'tune')")
    p.add_argument("--no-bound", action="store_true",
                   help="skip the LP lower bound (bench/bound.py) in the fill report")
    p.set_defaults(func=main_args)


def _heterogeneous(args: argparse.Namespace) -> int:
    from bench import heterogeneous

    given = [s.strip() for s in args.policies.split(",") if s.strip()]
    policies = heterogeneous.POLICIES if args.policies == ",".join(DEFAULT_POLICIES) else given
    if args.cluster or args.workload:
        print("gts simulate: --scenario replaces --cluster and --workload", file=sys.stderr)
        return 2
    if args.seeds < 1 or not policies:
        print("gts simulate: --scenario needs --seeds >= 1 and a policy", file=sys.stderr)
        return 2
    for name in policies:
        try:
            default_factory(name, 0)
        except KeyError as e:
            print(f"gts simulate: {e}", file=sys.stderr)
            return 2
    return heterogeneous.main(policies, list(range(args.seeds)), Path(args.out), args.split,
                              n_jobs=args.generated_jobs if args.generated_jobs != 4000 else
                              heterogeneous.DEFAULT_JOBS, load=args.load if args.load != 1.1
                              else heterogeneous.DEFAULT_LOAD, quiet=args.quiet)


def main_args(args: argparse.Namespace, factory: PolicyFactory = default_factory) -> int:
    """Run `gts simulate` from parsed arguments; prints where the report is."""
    if getattr(args, "scenario", None) == "heterogeneous":
        return _heterogeneous(args)
    policies = [s.strip() for s in args.policies.split(",") if s.strip()]
    if not policies:
        print("gts simulate: --policies is empty", file=sys.stderr)
        return 2
    if args.seeds < 1:
        print(f"gts simulate: --seeds {args.seeds}: must be at least 1", file=sys.stderr)
        return 2
    for flag, path in (("--cluster", args.cluster), ("--workload", args.workload),
                       ("--preset-map", args.preset_map)):
        if path and not Path(path).is_file():
            what = "is a directory" if Path(path).is_dir() else "no such file"
            print(f"gts simulate: {flag} {path}: {what}", file=sys.stderr)
            return 2
    if args.jobs < 1:
        print(f"gts simulate: --jobs {args.jobs}: must be at least 1", file=sys.stderr)
        return 2
    plan = None
    if getattr(args, "plan", None):
        try:
            plan = json.loads(Path(args.plan).read_text(encoding="utf-8"))
            if not isinstance(plan, dict) or not isinstance(plan.get("policies"), dict):
                raise ValueError("expected the plan.json written by gts plan --out")
        except (OSError, ValueError) as e:
            print(f"gts simulate: --plan {args.plan}: {e}", file=sys.stderr)
            return 2
    try:  # before the run: a bad --out used to fail only after the whole simulation
        check_out_dir(args.out, files=("report.md", "report.html", "results.json"))
    except OutPathError as e:
        print(f"gts simulate: {e}", file=sys.stderr)
        return 2
    try:
        pm = load_preset_map(args.preset_map) if args.preset_map else None
        if args.cluster:
            nodes = load_cluster(args.cluster, preset_map=pm)
            csource = str(args.cluster)
        else:
            nodes, csource = default_cluster(), "embedded default cluster"
        wl = load_workload(args.workload, skip_bad_rows=args.skip_bad_rows) \
            if args.workload else None
    except (ClusterError, WorkloadError, OSError) as e:
        print(f"gts simulate: {e}", file=sys.stderr)
        return 2
    if wl is not None and wl.skipped_rows:
        print(f"gts simulate: skipped {wl.skipped_rows} bad rows, e.g. {wl.skipped_examples[0]}",
              file=sys.stderr)
    scenario = Scenario(nodes=nodes, cluster_source=csource, workload=wl,
                        generated_jobs=args.generated_jobs, load=args.load)
    modes = ["fill", "dynamic"] if args.mode == "both" else [args.mode]
    argv = getattr(args, "argv", None)
    command = "gts simulate " + shlex.join(argv) if argv is not None else \
        "gts " + shlex.join(sys.argv[1:])
    try:
        path = simulate(scenario, modes=modes, policies=policies, seeds=list(range(args.seeds)),
                        out=args.out, jobs=args.jobs, factory=factory,
                        command=command.strip(), quiet=args.quiet,
                        sensitivity=not getattr(args, "no_sensitivity", False), plan=plan,
                        bound=not getattr(args, "no_bound", False))
    except (KeyError, ValueError, ReplayError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"gts simulate: {msg}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    print(f"        {path.with_name('report.html')}")
    print(f"        {path.with_name('results.json')}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench [args]`, the same as `gts simulate [args]`."""
    return run_subcommand("simulate", add_parser, sys.argv[1:] if argv is None else argv)
