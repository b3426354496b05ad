"""`gts simulate`: replay a workload on a cluster through several policies and write a report.

With no arguments it runs the embedded default scenario (bench.clusters.default_cluster() and
bench.workload_generator.generate_workload(seed) per seed), fill and dynamic, for the policies
topology, default, binpack, fgd and random. Every (mode, policy, seed) is one task; `--jobs N`
runs tasks in N spawned processes (each loads the scenario once).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import TextIO

from bench.baselines.typical_pods import typical_pods_of
from bench.bound_report import seed_bounds
from bench.clusters import (
    ClusterError,
    cluster_summary,
    default_cluster,
    load_cluster,
    load_preset_map,
)
from bench.dynamic_replay import DynamicResult, replay_dynamic
from bench.fill_replay import FillResult, replay_fill
from bench.out_path import OutPathError, check_out_dir
from bench.policy_answer import ReplayError
from bench.report import write_report
from bench.simulation_run import SimulationRun
from bench.speed import SPEED_RANGE, SpeedModel
from bench.workload_generator import generate_workload
from bench.workloads import Workload, WorkloadError, load_workload
from scheduler.policy.interface import PlacementPolicy

DEFAULT_POLICIES = ("topology", "default", "binpack", "fgd", "random")
DEFAULT_SEEDS = 5
DEFAULT_OUT = "gts-report"
OURS, BASELINE = "topology", "default"
SENSITIVITY_SEEDS = 3  # seeds rerun at each end of the speed model's range
PolicyFactory = Callable[[str, int], PlacementPolicy]


def default_factory(name: str, seed: int) -> PlacementPolicy:
    """bench.baselines.make_policy (imported late: spawned workers import it themselves)."""
    from bench.baselines import make_policy

    policy: PlacementPolicy = make_policy(name, seed)
    return policy


@dataclass(slots=True)
class Scenario:
    """What every task replays: the cluster and the workload (None = generated per seed)."""

    nodes: list[NodeSpec]
    cluster_source: str
    workload: Workload | None
    generated_jobs: int = 4000
    load: float = 1.1

    def workload_for(self, seed: int) -> Workload:
        """The trace, or the generated workload of this seed."""
        if self.workload is not None:
            return self.workload
        gpus = sum(s.topology.n for s in self.nodes)
        return generate_workload(seed, self.generated_jobs, capacity_gpus=max(gpus, 1),
                                 load=self.load)


Task = tuple[str, str, int]  # (mode, policy, seed)
Result = FillResult | DynamicResult


def run_task(scenario: Scenario, task: Task, factory: PolicyFactory,
             progress: Callable[[float], None] | None = None) -> Result:
    """One replay: a fresh policy from the factory, seeded, on the scenario."""
    mode, name, seed = task
    policy = factory(name, seed)
    wl = scenario.workload_for(seed)
    if mode == "fill":
        return replay_fill(policy, scenario.nodes, wl.pods(), seed=seed,
                           typical=typical_pods_of(wl.pods()), progress=progress)
    # "dynamic@low" / "dynamic@high": the sensitivity runs at the ends of the speed model's
    # documented range (bench.speed.SPEED_RANGE).
    model = SPEED_RANGE[mode.partition("@")[2]] if "@" in mode else SpeedModel()
    return replay_dynamic(policy, scenario.nodes, wl.jobs, seed=seed, speed_model=model,
                          progress=progress)


# Spawned workers receive the scenario once, through the pool initializer, and keep it here
# for the tasks they run: the process boundary is the edge, this is its state.
_WORKER: dict[str, object] = {}


def _worker_init(scenario: Scenario, factory: PolicyFactory) -> None:
    _WORKER["scenario"] = scenario
    _WORKER["factory"] = factory


def _worker_run(task: Task) -> tuple[Task, Result]:
    scenario = _WORKER["scenario"]
    factory = _WORKER["factory"]
    assert isinstance(scenario, Scenario)
    return task, run_task(scenario, task, factory)  # type: ignore[arg-type]


class ProgressBar:
    """A plain one-line bar on stderr; silent when stderr is not a terminal or when quiet."""

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.total = max(total, 1)
        self.done = 0.0
        self.clock = clock
        self.t0 = clock()
        self.last = 0.0

    def update(self, done: float, label: str = "", force: bool = False) -> None:
        """Show `done` of `total` units with a label (redrawn at most 10 times a second)."""
        self.done = done
        if not self.enabled:
            return
        now = self.clock()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        width = 30
        frac = min(1.0, self.done / self.total)
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        el = int(now - self.t0)
        self.stream.write(f"\r[{bar}] {self.done:.0f}/{self.total} {label[:60]:<60} "
                          f"{el // 60:02d}:{el % 60:02d}")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.enabled:
            self.update(self.done, "done", force=True)
            self.stream.write("\n")
            self.stream.flush()


def run_tasks(scenario: Scenario, tasks: Sequence[Task], factory: PolicyFactory, jobs: int,
              bar: ProgressBar) -> dict[Task, Result]:
    """Run the tasks, in this process (jobs == 1) or in `jobs` spawned processes."""
    out: dict[Task, Result] = {}
    if jobs <= 1 or len(tasks) <= 1:
        for k, t in enumerate(tasks):
            label = f"{t[0]} {t[1]} seed {t[2]}"

            def prog(f: float, k: int = k, label: str = label) -> None:
                bar.update(k + f, label)

            out[t] = run_task(scenario, t, factory, prog)
            bar.update(k + 1, label)
        return out
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init,
                             initargs=(scenario, factory)) as pool:
        pending: set[Future[tuple[Task, Result]]] = {pool.submit(_worker_run, t) for t in tasks}
        try:
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in finished:
                    t, r = fut.result()
                    out[t] = r
                    bar.update(len(out), f"{t[0]} {t[1]} seed {t[2]}")
                bar.update(len(out), f"{len(pending)} left")
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    return out


def simulate(
    scenario: Scenario,
    *,
    modes: Sequence[str],
    policies: Sequence[str],
    seeds: Sequence[int],
    out: str | Path,
    jobs: int = 1,
    factory: PolicyFactory = default_factory,
    command: str = "gts simulate",
    quiet: bool = False,
    stream: TextIO | None = None,
    sensitivity: bool = True,
    plan: dict[str, object] | None = None,
    bound: bool = True,
) -> Path:
    """Run every (mode, policy, seed) and write the report; returns the path of report.md.

    With `bound`, the fill runs are also set against the LP bound (bench.bound_report)."""
    t0 = time.perf_counter()
    for name in policies:  # fail before any work on an unknown name
        factory(name, 0)
    notes: list[str] = []
    cwl = scenario.workload
    modes = list(modes)
    if "dynamic" in modes and cwl is not None and not any(j.duration_s > 0 for j in cwl.jobs):
        modes.remove("dynamic")
        notes.append(f"{cwl.source} has no times (arrival/duration), so the dynamic replay was "
                     f"skipped")
    # Dynamic tasks take longest: start them first so the pool ends together.
    tasks = [(m, p, s) for m in sorted(modes, key=lambda m: m != "dynamic")
             for p in policies for s in seeds]
    if sensitivity and "dynamic" in modes:
        pair = [p for p in (OURS, BASELINE) if p in policies]
        if len(pair) == 2:
            tasks += [(f"dynamic@{end}", p, s) for end in ("low", "high") for p in pair
                      for s in seeds[:SENSITIVITY_SEEDS]]
    bar = ProgressBar(len(tasks), stream=stream, enabled=not quiet)
    try:
        results = run_tasks(scenario, tasks, factory, jobs, bar)
    finally:
        bar.close()
    wl = scenario.workload_for(seeds[0]) if seeds else None
    wsum = wl.summary() if wl is not None else {}
    if cwl is None:
        wsum["source"] = (f"generated per seed (generate_workload(seed, n_jobs="
                          f"{scenario.generated_jobs}, load={scenario.load})); counts of seed "
                          f"{seeds[0]}")
    run = SimulationRun(
        command=command,
        cluster=cluster_summary(scenario.nodes, scenario.cluster_source),
        workload=wsum, seeds=list(seeds), policies=list(policies), notes=notes, plan=plan,
    )
    for (mode, name, seed) in tasks:
        r = results[(mode, name, seed)]
        if "@" in mode:
            assert isinstance(r, DynamicResult)
            run.sensitivity.setdefault(mode.partition("@")[2], {}).setdefault(name, []).append(r)
            continue
        if isinstance(r, FillResult):
            run.fill.setdefault(name, []).append(r)
        else:
            run.dynamic.setdefault(name, []).append(r)
            if seed == seeds[0] and r.gang_mode != "whole":
                run.notes.append(f"policy {name!r} cannot plan gangs: its gang members are "
                                 f"placed one by one and hold GPUs while the rest wait")
    if run.fill and bound:
        run.bound = seed_bounds(scenario.nodes, lambda s: scenario.workload_for(s).pods(),
                                sorted({r.seed for rs in run.fill.values() for r in rs}))
    utils = [r.utilization_pct() for rs in run.dynamic.values() for r in rs]
    if utils and max(utils) < 10.0:
        run.notes.append(f"the workload keeps at most {max(utils):.1f}% of the cluster's GPUs "
                         f"busy over its arrival window (short pods spread over a long span), "
                         f"so the dynamic replay barely tests placement here")
    run.wall_s = time.perf_counter() - t0
    return write_report(run, out)


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
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="gts")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["simulate", *argv])
    args.argv = argv
    return int(args.func(args))
