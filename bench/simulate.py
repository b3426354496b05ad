"""Running a simulation: every (mode, policy, seed) of a scenario is one task, run in this
process or in spawned worker processes (each loads the scenario once); the results become the
report folder (bench.report).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import TextIO

from bench.baselines.typical_pods import typical_pods_of
from bench.bound_report import seed_bounds
from bench.clusters import cluster_summary
from bench.dynamic_replay import DynamicResult, replay_dynamic
from bench.fill_replay import FillResult, replay_fill
from bench.progress_bar import ProgressBar
from bench.report import write_report
from bench.simulation_run import SimulationRun
from bench.speed import SPEED_RANGE, SpeedModel
from bench.workload_generator import generate_workload
from bench.workloads import Workload
from scheduler.contract.node import NodeSpec
from scheduler.policy.interface import PlacementPolicy

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
