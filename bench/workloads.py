"""Workloads for the simulator: the typed `Workload` of `Job`s and the trace loaders (Alibaba
GPU pods, Philly/Lingjun jobs); bench.workload_generator makes seeded synthetic ones.

A job is one pod, or a gang of pods that must run together (every member's GangRef has
min_member = number of pods). Rows are parsed once here; a bad row raises WorkloadError naming
the file, the 1-based line and the column, or is counted with `skip_bad_rows=True`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.csv_header import csv_header
from scheduler.contract.request import GangRef, PodRequest, RequestError
from scheduler.contract.units import MILLI_PER_GPU

ALIBABA_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")
JOB_TRACE_HEADER = ("#job id", "arrival time (sec)", "topology", "shape", "size", "duration (sec)")
# Lingjun rows give only the total size; the cluster's hosts have 8 GPUs, so a job of size S
# runs as S // 8 pods of 8 GPUs plus one pod with the remainder.
GPUS_PER_HOST = 8


class WorkloadError(ValueError):
    """A workload file that cannot be read; names the file, 1-based line and column."""

    def __init__(self, path: str | Path, line: int, column: str, message: str) -> None:
        super().__init__(f"{path}:{line}: column {column!r}: {message}")
        self.path = str(path)
        self.line = line
        self.column = column


@dataclass(frozen=True, slots=True)
class Job:
    """One pod, or a gang of pods placed all-or-nothing; times in seconds."""

    id: str
    arrival_s: float
    duration_s: float
    pods: tuple[PodRequest, ...]

    @property
    def gpu_milli(self) -> int:
        """Total GPU demand of the job in thousandths of a GPU."""
        return sum(p.gpu_demand_milli for p in self.pods)

    @property
    def is_gang(self) -> bool:
        """True when the job has more than one pod."""
        return len(self.pods) > 1


@dataclass(slots=True)
class Workload:
    """Jobs in arrival order, where they came from, and how many input rows were skipped."""

    jobs: list[Job]
    source: str
    skipped_rows: int = 0
    skipped_examples: list[str] = field(default_factory=list)

    def pods(self) -> list[PodRequest]:
        """Every pod of every job, in job order."""
        return [p for j in self.jobs for p in j.pods]

    def summary(self) -> dict[str, object]:
        """Counts for reports: jobs, pods, gangs, GPU demand, shares, CPU-only pods."""
        pods = self.pods()
        return {
            "source": self.source,
            "jobs": len(self.jobs),
            "pods": len(pods),
            "gangs": sum(1 for j in self.jobs if j.is_gang),
            "gpu_demand": sum(p.gpu_demand_milli for p in pods) / MILLI_PER_GPU,
            "share_pods": sum(1 for p in pods if p.is_share),
            "multi_gpu_pods": sum(1 for p in pods if p.gpus > 1),
            "cpu_only_pods": sum(1 for p in pods if not p.wants_gpu),
            "skipped_rows": self.skipped_rows,
        }


class _Rows:
    """Reads a CSV with a header, yielding (line number, row dict); collects bad rows."""

    def __init__(self, path: Path, skip_bad_rows: bool) -> None:
        self.path = path
        self.skip = skip_bad_rows
        self.skipped = 0
        self.examples: list[str] = []

    def bad(self, err: WorkloadError) -> None:
        if not self.skip:
            raise err
        self.skipped += 1
        if len(self.examples) < 5:
            self.examples.append(str(err))

    def read(self, required: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
        with self.path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            try:
                header = [h.strip() for h in next(reader)]
            except StopIteration:
                raise WorkloadError(self.path, 1, "header", "file is empty") from None
            missing = [c for c in required if c not in header]
            if missing:
                raise WorkloadError(self.path, 1, missing[0],
                                    f"missing from the header {','.join(header)}")
            for row in reader:
                line = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    self.bad(WorkloadError(self.path, line, header[min(len(row), len(header)) - 1],
                                           f"{len(row)} fields, the header has {len(header)}"))
                    continue
                yield line, {h: c.strip() for h, c in zip(header, row, strict=True)}


def _int(rows: _Rows, line: int, row: dict[str, str], col: str, *, empty: int | None = None,
         lo: int = 0) -> int:
    text = row.get(col, "")
    if text == "" and empty is not None:
        return empty
    try:
        v = float(text) if "." in text or "e" in text.lower() else int(text)
    except ValueError:
        raise WorkloadError(rows.path, line, col, f"{text!r} is not a number") from None
    if isinstance(v, float):
        if not math.isfinite(v) or v != int(v):
            raise WorkloadError(rows.path, line, col, f"{text!r} is not a whole number")
        v = int(v)
    if v < lo:
        raise WorkloadError(rows.path, line, col, f"{text!r} must be at least {lo}")
    return v


def _float(rows: _Rows, line: int, row: dict[str, str], col: str) -> float:
    text = row.get(col, "")
    try:
        v = float(text)
    except ValueError:
        raise WorkloadError(rows.path, line, col, f"{text!r} is not a number") from None
    if not math.isfinite(v) or v < 0:
        raise WorkloadError(rows.path, line, col, f"{text!r} must be a finite number >= 0")
    return v


def _alibaba_pod(rows: _Rows, line: int, row: dict[str, str]) -> Job:
    name = row["name"]
    if not name:
        raise WorkloadError(rows.path, line, "name", "empty pod name")
    cpu = _int(rows, line, row, "cpu_milli")
    mem = _int(rows, line, row, "memory_mib")
    num_gpu = _int(rows, line, row, "num_gpu")
    milli = _int(rows, line, row, "gpu_milli", empty=0)
    # As FGD's pod_csv_to_yaml.py: gpu_milli above 1000 means a whole GPU, and it only
    # matters when the pod asks for GPUs.
    milli = min(milli, MILLI_PER_GPU)
    if num_gpu > 1 and milli != MILLI_PER_GPU:
        raise WorkloadError(rows.path, line, "gpu_milli",
                            f"{milli} with num_gpu={num_gpu}: a share spans one GPU")
    models = frozenset(m for m in row.get("gpu_spec", "").split("|") if m)
    try:
        if num_gpu == 0 or milli == 0:
            req = PodRequest(key=name, cpu_milli=cpu, memory_mib=mem)
        elif num_gpu == 1 and milli < MILLI_PER_GPU:
            req = PodRequest(key=name, cpu_milli=cpu, memory_mib=mem, gpu_milli=milli,
                             allowed_models=models)
        else:
            req = PodRequest(key=name, cpu_milli=cpu, memory_mib=mem, gpus=num_gpu,
                             allowed_models=models)
    except RequestError as e:
        col = {"gpus": "num_gpu"}.get(e.field, e.field)
        raise WorkloadError(rows.path, line, col, str(e)) from None
    arrival = float(_int(rows, line, row, "creation_time", empty=0))
    start = float(_int(rows, line, row, "scheduled_time", empty=int(arrival)))
    end = row.get("deletion_time", "")
    duration = 0.0
    if end != "":
        stop = float(_int(rows, line, row, "deletion_time"))
        if stop < start:
            raise WorkloadError(rows.path, line, "deletion_time",
                                f"{int(stop)} is before the pod started ({int(start)})")
        duration = stop - start
    return Job(id=name, arrival_s=arrival, duration_s=duration, pods=(req,))


def load_alibaba_pods(path: str | Path, *, skip_bad_rows: bool = False) -> Workload:
    """Alibaba GPU trace v2023 pod list (default and variant CSVs, incl. the 5-column ones).

    arrival = creation_time, duration = deletion_time - scheduled_time (creation_time when
    not scheduled); files without times give arrival 0 and duration 0 (fill mode only).
    """
    p = Path(path)
    rows = _Rows(p, skip_bad_rows)
    jobs: list[Job] = []
    seen: set[str] = set()
    for line, row in rows.read(ALIBABA_COLUMNS):
        try:
            job = _alibaba_pod(rows, line, row)
            if job.id in seen:
                raise WorkloadError(p, line, "name", f"pod {job.id!r} appears twice")
        except WorkloadError as e:
            rows.bad(e)
            continue
        seen.add(job.id)
        jobs.append(job)
    jobs.sort(key=lambda j: j.arrival_s)  # stable: ties keep file order
    return Workload(jobs=jobs, source=str(p), skipped_rows=rows.skipped,
                    skipped_examples=rows.examples)


def _shape(rows: _Rows, line: int, row: dict[str, str]) -> list[int]:
    text = row["shape"]
    size = _int(rows, line, row, "size", lo=1)
    parts = text.split("+")
    try:
        sizes = [int(x) for x in parts]
    except ValueError:
        raise WorkloadError(rows.path, line, "shape",
                            f"{text!r} is not GPUs per machine like 8 or 8+8") from None
    if any(s < 1 for s in sizes):
        raise WorkloadError(rows.path, line, "shape", f"{text!r}: every part must be >= 1")
    if sum(sizes) != size:
        raise WorkloadError(rows.path, line, "size",
                            f"{size} but shape {text!r} adds up to {sum(sizes)}")
    if len(sizes) == 1 and size > GPUS_PER_HOST:
        sizes = [GPUS_PER_HOST] * (size // GPUS_PER_HOST)
        if size % GPUS_PER_HOST:
            sizes.append(size % GPUS_PER_HOST)
    return sizes


def load_job_trace(
    path: str | Path,
    *,
    skip_bad_rows: bool = False,
    cpu_milli_per_gpu: int = 4000,
    memory_mib_per_gpu: int = 16384,
) -> Workload:
    """Philly / Lingjun job trace: `#job id,arrival time (sec),topology,shape,size,duration`.

    `shape` 8+8 is a gang of two 8-GPU pods; a single shape above 8 GPUs (Lingjun) is split
    into 8-GPU pods plus the remainder. The traces carry no CPU or memory, so each pod asks
    for `cpu_milli_per_gpu` and `memory_mib_per_gpu` per GPU (small enough that GPUs, not
    CPUs, are what runs out on the presets' hosts).
    """
    p = Path(path)
    rows = _Rows(p, skip_bad_rows)
    stem = p.stem
    jobs: list[Job] = []
    for line, row in rows.read(JOB_TRACE_HEADER):
        try:
            jid = row["#job id"]
            if not jid:
                raise WorkloadError(p, line, "#job id", "empty job id")
            arrival = _float(rows, line, row, "arrival time (sec)")
            duration = _float(rows, line, row, "duration (sec)")
            sizes = _shape(rows, line, row)
            key = f"{stem}-{jid}"
            gang = GangRef(key=key, min_member=len(sizes)) if len(sizes) > 1 else None
            pods = tuple(
                PodRequest(key=f"{key}-{i}" if gang else key, cpu_milli=cpu_milli_per_gpu * g,
                           memory_mib=memory_mib_per_gpu * g, gpus=g, gang=gang)
                for i, g in enumerate(sizes)
            )
        except RequestError as e:
            rows.bad(WorkloadError(p, line, "shape", str(e)))
            continue
        except WorkloadError as e:
            rows.bad(e)
            continue
        jobs.append(Job(id=key, arrival_s=arrival, duration_s=duration, pods=pods))
    jobs.sort(key=lambda j: j.arrival_s)
    return Workload(jobs=jobs, source=str(p), skipped_rows=rows.skipped,
                    skipped_examples=rows.examples)


def workload_kind(path: str | Path) -> str:
    """'alibaba' or 'jobs', recognised by the header; WorkloadError otherwise."""
    p = Path(path)
    try:
        first, cols = csv_header(p)
    except OSError as e:
        raise WorkloadError(p, 0, "file", f"cannot read: {e.strerror or e}") from None
    if cols[: len(ALIBABA_COLUMNS)] == ALIBABA_COLUMNS:
        return "alibaba"
    if cols[: len(JOB_TRACE_HEADER)] == JOB_TRACE_HEADER:
        return "jobs"
    raise WorkloadError(p, 1, "header",
                        f"{first[:80]!r} is neither an Alibaba pod list "
                        f"({','.join(ALIBABA_COLUMNS)},...) nor a Philly/Lingjun job trace "
                        f"({','.join(JOB_TRACE_HEADER)})")


def load_workload(path: str | Path, *, skip_bad_rows: bool = False) -> Workload:
    """Any supported workload file, recognised by its header."""
    if workload_kind(path) == "alibaba":
        return load_alibaba_pods(path, skip_bad_rows=skip_bad_rows)
    return load_job_trace(path, skip_bad_rows=skip_bad_rows)
