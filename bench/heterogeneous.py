"""The heterogeneous scenario: four GPU generations side by side and a workload that mixes
Alibaba's shared-GPU pods with multi-GPU jobs and gangs from the Philly and Lingjun traces.

`gts simulate --scenario heterogeneous` replays it (dynamic mode: arrivals, durations, a retried
queue, gangs placed whole where the policy can) for ours, default, fgd and binpack and prints
one table; README "Heterogeneous clusters" has the numbers and the command.

Cluster (HETERO_POOLS, 96 nodes, 768 GPUs). The proportion is Alibaba's production GPU cluster
(../shared/traces/alibaba-gpu-v2023/openb_node_list_gpu_node.csv, 6,212 GPUs), each class moved
to its current counterpart: the 8-GPU G3 training nodes (312 GPUs, 5.0%) -> DGX H100, the 8-GPU
G2 nodes (4,392, 70.7%) -> DGX A100, the V100 nodes (399, 6.4%) -> DGX-1 V100, the inference
cards T4, P100 and A10 (1,109, 17.9%) -> 8 x L4 PCIe servers. Scaled to 96 8-GPU nodes that is
5 / 68 / 6 / 17. Nodes sit in network blocks of 8 (leaf switches) and spines of 32, pool by pool
as racks are usually filled.

Workload (per seed; `split` picks disjoint halves of every trace, so weights tuned on "tune"
are reported on "report" rows they never saw):
- 87% of jobs are 1-GPU pods, whole or a share, drawn from Alibaba's openb default pod list
  (their CPU, memory and share as in the trace). 87% is Philly's share of 1-GPU jobs (Jeon et
  al., ATC'19; ../shared/traces/philly: 86.7%).
- 11% are Philly jobs of 2+ GPUs (one machine or a gang over several, shape as in the trace).
- 2% are Lingjun jobs of 2..64 GPUs (../shared/traces/lingjun/crux.csv; above 8 GPUs a gang of
  8-GPU pods), the large-model training share.
- Durations from the traces, clipped to [60 s, 1 day] so a replay of a few thousand jobs
  reaches a steady state; Poisson arrivals at the rate that offers `load` x the cluster's GPUs
  (as bench.workload_generator.generate_workload).
- GPU models as users write them (MODEL_CHOICES): families (`A100`), memory variants
  (`H100-80GB`), label forms (`NVIDIA-L4`), lower case, lists (`V100|A100`), or nothing. The
  mix is an assumption, stated here: inference pods mostly accept anything or ask for L4,
  training jobs ask for NVLink generations.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from bench.clusters import PoolRow, pooled_cluster
from bench.dynamic_replay import DynamicResult, replay_dynamic
from bench.simulate import PolicyFactory, default_factory
from bench.speed import SpeedModel
from bench.workload_generator import DURATION_CLIP_S
from bench.workloads import Job, Workload, load_alibaba_pods, load_job_trace
from scheduler.contract.node import NodeSpec
from scheduler.contract.request import GangRef
from scheduler.contract.units import MILLI_PER_GPU

ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT.parent / "shared" / "traces"
ALIBABA_PODS = "alibaba-gpu-v2023/openb_pod_list_default.csv"
PHILLY_JOBS = "philly/philly_trace.csv"
LINGJUN_JOBS = "lingjun/crux.csv"

# (nodes, preset, GPU model as nvidia-smi names it, GPU MiB, CPU milli, memory MiB); CPU and
# memory as shipped (DGX H100 2 x 56 cores SMT 2 TiB, DGX A100 2 x 64 cores 2 TiB, DGX-1
# 2 x 20 cores 512 GiB, a 2-socket 8 x L4 server 2 x 48 cores 1 TiB).
HETERO_POOLS: tuple[PoolRow, ...] = (
    (5, "dgx-h100", "NVIDIA H100 80GB HBM3", 81559, 224_000, 2_097_152),
    (68, "dgx-a100", "NVIDIA A100-SXM4-80GB", 81920, 256_000, 2_097_152),
    (6, "dgx1-v100", "Tesla V100-SXM2-32GB", 32768, 80_000, 524_288),
    (17, "pcie-8gpu-2socket", "NVIDIA L4", 23034, 192_000, 1_048_576),
)

ONE_GPU_SHARE = 0.87
PHILLY_SHARE = 0.11
LINGJUN_SHARE = 0.02
LINGJUN_MAX_GPUS = 64

# (allowed models as written, probability) per job kind; "" = no restriction.
MODEL_CHOICES: dict[str, tuple[tuple[str, float], ...]] = {
    "one": (("", 0.5), ("L4", 0.15), ("l4|A100", 0.15), ("V100|A100", 0.1), ("A100-80GB", 0.1)),
    "multi": (("", 0.4), ("A100|H100", 0.3), ("H100-80GB|a100-80gb", 0.15),
              ("V100|A100|H100", 0.15)),
    "large": (("H100|A100", 0.7), ("", 0.3)),
}
POLICIES = ("topology", "default", "fgd", "binpack")
DEFAULT_JOBS = 3000
DEFAULT_LOAD = 1.2
SPLITS = ("tune", "report")


def heterogeneous_cluster() -> list[NodeSpec]:
    """The scenario's 96 nodes (HETERO_POOLS), levels (accelerator, block, spine, datacenter)."""
    return pooled_cluster(HETERO_POOLS, {"dgx-h100": "h100", "dgx-a100": "a100",
                                         "dgx1-v100": "v100", "pcie-8gpu-2socket": "l4"})


@functools.cache
def _pools(traces: Path) -> dict[str, list[Job]]:
    """The trace jobs each kind draws from (loaded once per process)."""
    ali = load_alibaba_pods(traces / ALIBABA_PODS)
    one = [j for j in ali.jobs if len(j.pods) == 1 and j.pods[0].wants_gpu
           and j.pods[0].gpus <= 1]
    philly = [j for j in load_job_trace(traces / PHILLY_JOBS).jobs
              if sum(p.gpus for p in j.pods) >= 2]
    lingjun = [j for j in load_job_trace(traces / LINGJUN_JOBS).jobs
               if 2 <= sum(p.gpus for p in j.pods) <= LINGJUN_MAX_GPUS]
    return {"one": one, "multi": philly, "large": lingjun}


def _models(text: str) -> frozenset[str]:
    return frozenset(m for m in text.split("|") if m)


def _restyle(job: Job, key: str, models: frozenset[str], duration: float) -> Job:
    gang = GangRef(key, len(job.pods)) if job.is_gang else None
    pods = tuple(
        dataclasses.replace(p, key=f"{key}-{k}" if gang else key, gang=gang,
                            allowed_models=models)
        for k, p in enumerate(job.pods))
    return Job(id=key, arrival_s=0.0, duration_s=duration, pods=pods)


def heterogeneous_workload(seed: int, split: str = "report", n_jobs: int = 3000,
                           load: float = 1.1, traces: Path = TRACES) -> Workload:
    """The scenario's jobs for one seed, drawn from `split`'s half of every trace."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: must be one of {', '.join(SPLITS)}")
    for rel in (ALIBABA_PODS, PHILLY_JOBS, LINGJUN_JOBS):
        if not (traces / rel).is_file():
            raise FileNotFoundError(f"{traces / rel}: trace missing (the scenario reads "
                                    f"../shared/traces)")
    pools = _pools(traces)
    half = SPLITS.index(split)
    rng = np.random.default_rng([seed, half])
    kinds = rng.choice(3, size=n_jobs, p=[ONE_GPU_SHARE, PHILLY_SHARE, LINGJUN_SHARE])
    jobs: list[Job] = []
    gpu_s = 0.0
    for kind_id, kind in enumerate(("one", "multi", "large")):
        pool = pools[kind][half::2]
        need = int((kinds == kind_id).sum())
        picks = rng.choice(len(pool), size=need, replace=need > len(pool))
        names = [m for m, _ in MODEL_CHOICES[kind]]
        probs = [p for _, p in MODEL_CHOICES[kind]]
        styles = rng.choice(len(names), size=need, p=probs)
        for n, (pick, style) in enumerate(zip(picks, styles, strict=True)):
            src = pool[int(pick)]
            dur = float(np.clip(src.duration_s, *DURATION_CLIP_S))
            job = _restyle(src, f"{kind}-{seed}-{n:05d}", _models(names[int(style)]), dur)
            gpu_s += job.gpu_milli / MILLI_PER_GPU * dur
            jobs.append(job)
    order = rng.permutation(len(jobs))
    capacity = sum(c * 8 for c, *_ in HETERO_POOLS)
    rate = load * capacity / max(gpu_s / max(len(jobs), 1), 1e-9)
    arrivals = np.cumsum(rng.exponential(1.0 / rate, size=len(jobs)))
    arrivals -= arrivals[0]
    out = [dataclasses.replace(jobs[int(j)], arrival_s=float(round(t, 3)))
           for j, t in zip(order, arrivals, strict=True)]
    return Workload(jobs=out, source=f"heterogeneous(seed={seed}, split={split}, "
                                     f"n_jobs={n_jobs}, load={load})")


@dataclass(frozen=True, slots=True)
class Row:
    """One policy on one seed: what the README table reports."""

    policy: str
    seed: int
    requests_placed: int  # pods placed by the time the last job arrived
    requests: int
    unallocated_waiting_pct: float  # GPUs unallocated while a job waited (time mean)
    bw_median_gbps: float
    bw_p10_gbps: float
    multi_gpu_jobs: int
    max_incomplete_gang_gpus: float
    jct_median_h: float
    jct_mean_h: float
    utilization_pct: float
    bandwidths_gbps: tuple[float, ...] = ()  # every multi-GPU job's, for pooled percentiles


def row_of(r: DynamicResult, wl: Workload) -> Row:
    """The table's figures from one dynamic replay."""
    last = r.last_arrival_s
    placed = sum(len(j.pods) for j, s in zip(wl.jobs, r.start_s, strict=True)
                 if np.isfinite(s) and s <= last)
    t = np.minimum(r.t, last)
    dt = np.diff(t, append=last)
    wait = (r.queue_len > 0) & (dt > 0)
    cap = r.capacity_milli
    idle = ((cap - r.alloc_milli) * dt)[wait].sum()
    unalloc = float(100.0 * idle / (cap * dt[wait].sum())) if wait.any() else 0.0
    bw = r.bandwidth_gbps[np.isfinite(r.bandwidth_gbps)]
    return Row(
        policy=r.policy, seed=r.seed, requests_placed=placed,
        requests=sum(len(j.pods) for j in wl.jobs), unallocated_waiting_pct=unalloc,
        bw_median_gbps=float(np.median(bw)) if bw.size else math.nan,
        bw_p10_gbps=float(np.percentile(bw, 10)) if bw.size else math.nan,
        multi_gpu_jobs=int(bw.size), max_incomplete_gang_gpus=r.max_held_incomplete_gpus,
        jct_median_h=float(np.median(r.jct_s)) / 3600 if r.jct_s.size else math.nan,
        jct_mean_h=float(np.mean(r.jct_s)) / 3600 if r.jct_s.size else math.nan,
        utilization_pct=r.utilization_pct(),
        bandwidths_gbps=tuple(float(x) for x in bw),
    )


def run(policies: Sequence[str] = POLICIES, seeds: Sequence[int] = (0, 1, 2),
        split: str = "report", n_jobs: int = 3000, load: float = 1.1,
        factory: PolicyFactory = default_factory,
        progress: TextIO | None = None) -> list[Row]:
    """Replay the scenario for every (policy, seed); one Row each."""
    nodes = heterogeneous_cluster()
    rows: list[Row] = []
    for seed in seeds:
        wl = heterogeneous_workload(seed, split, n_jobs, load)
        for name in policies:
            t0 = time.perf_counter()
            r = replay_dynamic(factory(name, seed), nodes, wl.jobs, seed=seed,
                               speed_model=SpeedModel())
            rows.append(row_of(r, wl))
            if progress is not None:
                print(f"  seed {seed} {name}: {time.perf_counter() - t0:.0f} s",
                      file=progress, flush=True)
    return rows


COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("requests_placed", "requests placed by last arrival", "{:.0f}"),
    ("unallocated_waiting_pct", "unallocated GPU % while jobs wait", "{:.1f}"),
    ("bw_median_gbps", "all-reduce GB/s median", "{:.1f}"),
    ("bw_p10_gbps", "all-reduce GB/s p10", "{:.1f}"),
    ("bw_p10_pooled_gbps", "p10 over all seeds' jobs", "{:.1f}"),
    ("bw_mean_pooled_gbps", "mean GB/s", "{:.0f}"),
    ("max_incomplete_gang_gpus", "max GPUs held by incomplete gangs", "{:.0f}"),
    ("jct_median_h", "JCT median h", "{:.2f}"),
    ("jct_mean_h", "JCT mean h", "{:.2f}"),
)


def summary(rows: Sequence[Row]) -> dict[str, dict[str, float]]:
    """Median over seeds of every column, per policy (policy order as in rows)."""
    out: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(r.policy for r in rows):
        mine = [r for r in rows if r.policy == name]
        out[name] = {c: float(np.median([getattr(r, c) for r in mine]))
                     for c in (f.name for f in dataclasses.fields(Row))
                     if c not in ("policy", "seed", "bandwidths_gbps")}
        pooled = np.array([b for r in mine for b in r.bandwidths_gbps])
        out[name]["bw_p10_pooled_gbps"] = (float(np.percentile(pooled, 10)) if pooled.size
                                           else math.nan)
        out[name]["bw_mean_pooled_gbps"] = float(pooled.mean()) if pooled.size else math.nan
    return out


def table(rows: Sequence[Row]) -> str:
    """The README table: medians over seeds per policy (the pooled columns over every seed's
    multi-GPU jobs together)."""
    s = summary(rows)
    head = "| policy | " + " | ".join(t for _, t, _ in COLUMNS) + " |"
    sep = "| --- |" + " ---: |" * len(COLUMNS)
    body = [f"| {'ours (topology)' if name == 'topology' else name} | "
            + " | ".join(fmt.format(v[c]) for c, _, fmt in COLUMNS) + " |"
            for name, v in s.items()]
    return "\n".join([head, sep, *body])


def main(policies: Sequence[str], seeds: Sequence[int], out: Path, split: str = "report",
         n_jobs: int = 3000, load: float = 1.1, quiet: bool = False) -> int:
    """`gts simulate --scenario heterogeneous`: run, print the table, write results.json."""
    try:
        rows = run(policies, seeds, split, n_jobs, load,
                   progress=None if quiet else sys.stderr)
    except FileNotFoundError as e:
        print(f"gts simulate: {e}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    doc = {"scenario": "heterogeneous", "split": split, "seeds": list(seeds),
           "n_jobs": n_jobs, "load": load, "policies": summary(rows),
           "per_seed": [dataclasses.asdict(r) for r in rows]}
    (out / "results.json").write_text(json.dumps(doc, indent=1, default=float) + "\n")
    text = table(rows)
    (out / "table.md").write_text(text + "\n")
    print(text)
    print(f"results: {out / 'results.json'}")
    return 0
