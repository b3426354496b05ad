"""Workload loaders on slices of the real traces, bad rows, and the seeded generator."""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from bench.workload_generator import generate_workload
from bench.workloads import (
    WorkloadError,
    load_alibaba_pods,
    load_job_trace,
    load_workload,
    workload_kind,
)

ALIBABA = "traces/alibaba-gpu-v2023"


def _slice(src: Path, dst: Path, n: int, keep: object = None) -> Path:
    """Header plus the first n data rows of src (or the first n rows for which keep(row))."""
    with src.open(encoding="utf-8") as f:
        header = f.readline()
        rows = (line for line in f if keep is None or keep(line))  # type: ignore[operator]
        body = list(islice(rows, n))
    dst.write_text(header + "".join(body), encoding="utf-8")
    return dst


def test_alibaba_default_slice(shared: Path, tmp_path: Path) -> None:
    path = _slice(shared / ALIBABA / "openb_pod_list_default.csv", tmp_path / "pods.csv", 300)
    wl = load_alibaba_pods(path)
    assert len(wl.jobs) == 300 and wl.skipped_rows == 0
    rows = [line.rstrip("\n").split(",") for line in path.read_text().splitlines()[1:]]
    by_name = {j.id: j for j in wl.jobs}
    for r in rows:
        name, cpu, mem, ngpu, milli = r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4])
        job = by_name[name]
        (p,) = job.pods
        assert (p.cpu_milli, p.memory_mib) == (cpu, mem)
        if ngpu == 0:
            assert not p.wants_gpu
        elif ngpu == 1 and milli < 1000:
            assert p.gpu_milli == milli and p.gpus == 0
        else:
            assert p.gpus == ngpu and p.gpu_milli == 0
        created, deleted, scheduled = int(r[8]), int(r[9]), r[10]
        assert job.arrival_s == created
        start = int(scheduled) if scheduled else created
        assert job.duration_s == deleted - start
    assert [j.arrival_s for j in wl.jobs] == sorted(j.arrival_s for j in wl.jobs)


def test_alibaba_five_column_variant(shared: Path, tmp_path: Path) -> None:
    path = _slice(shared / ALIBABA / "openb_pod_list_multigpu40.csv", tmp_path / "m.csv", 400,
                  keep=lambda line: ",8," in line or ",1,1000" in line)
    wl = load_workload(path)
    assert len(wl.jobs) > 0
    assert {j.arrival_s for j in wl.jobs} == {0.0} and {j.duration_s for j in wl.jobs} == {0.0}
    assert any(p.gpus == 8 for p in wl.pods())


def test_alibaba_gpu_spec_becomes_allowed_models(shared: Path, tmp_path: Path) -> None:
    path = _slice(shared / ALIBABA / "openb_pod_list_gpuspec20.csv", tmp_path / "g.csv", 50,
                  keep=lambda line: "|" in line)
    wl = load_alibaba_pods(path)
    assert wl.jobs
    for p in wl.pods():
        if p.wants_gpu:
            assert len(p.allowed_models) >= 2
            assert all(m and "|" not in m for m in p.allowed_models)


def test_philly_gangs(shared: Path, tmp_path: Path) -> None:
    path = _slice(shared / "traces/philly/philly_trace.csv", tmp_path / "philly.csv", 40,
                  keep=lambda line: "+" in line or line.split(",")[3] == "8")
    wl = load_job_trace(path)
    assert len(wl.jobs) == 40
    for job in wl.jobs:
        if job.is_gang:
            assert all(p.gang is not None and p.gang.min_member == len(job.pods)
                       for p in job.pods)
            assert len({p.key for p in job.pods}) == len(job.pods)
        else:
            assert job.pods[0].gang is None
    eight_eight = [j for j in wl.jobs if [p.gpus for p in j.pods] == [8, 8]]
    assert eight_eight, "the slice holds 8+8 jobs"


def test_lingjun_sizes_split_into_hosts(shared: Path, tmp_path: Path) -> None:
    path = _slice(shared / "traces/lingjun/crux.csv", tmp_path / "crux.csv", 3000,
                  keep=lambda line: line.split(",")[3] in ("48", "60", "4"))
    wl = load_workload(path)
    sizes = {tuple(p.gpus for p in j.pods) for j in wl.jobs}
    assert (8,) * 6 in sizes
    assert (8,) * 7 + (4,) in sizes
    assert (4,) in sizes
    for job in wl.jobs:
        assert sum(p.gpus for p in job.pods) in (48, 60, 4)


def test_bad_row_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,"
        "deletion_time,scheduled_time\n"
        "p0,1000,1024,1,500,,LS,Running,0,10,0\n"
        "p1,1000,1024,two,500,,LS,Running,0,10,0\n"
        "p2,1000,1024,4,500,,LS,Running,0,10,0\n"
        "p3,1000,1024,1,1000,,LS,Running,0,10,0\n"
        "p4,1000,1024,1\n"
    )
    with pytest.raises(WorkloadError) as e:
        load_alibaba_pods(path)
    assert e.value.line == 3 and e.value.column == "num_gpu"
    assert str(path) in str(e.value) and "'two'" in str(e.value)
    wl = load_alibaba_pods(path, skip_bad_rows=True)
    assert [j.id for j in wl.jobs] == ["p0", "p3"]
    assert wl.skipped_rows == 3
    assert "gpu_milli" in wl.skipped_examples[1]  # a share cannot span 4 GPUs


def test_job_trace_bad_shape(tmp_path: Path) -> None:
    path = tmp_path / "jobs.csv"
    path.write_text("#job id,arrival time (sec),topology,shape,size,duration (sec)\n"
                    "0,0.0,CLOS,8+8,16,10.0\n"
                    "1,5.0,CLOS,8+8,12,10.0\n"
                    "2,-4,CLOS,8,8,10.0\n")
    with pytest.raises(WorkloadError) as e:
        load_job_trace(path)
    assert e.value.line == 3 and e.value.column == "size"
    wl = load_job_trace(path, skip_bad_rows=True)
    assert len(wl.jobs) == 1 and wl.skipped_rows == 2


def test_unknown_header(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(WorkloadError, match="neither"):
        workload_kind(path)


def test_generator_is_deterministic_per_seed() -> None:
    a = generate_workload(7, 300)
    b = generate_workload(7, 300)
    c = generate_workload(8, 300)
    assert a.jobs == b.jobs
    assert a.jobs != c.jobs
    arr = [j.arrival_s for j in a.jobs]
    assert arr == sorted(arr) and arr[0] == 0.0
    assert all(j.duration_s >= 60 for j in a.jobs)
    keys = [p.key for p in a.pods()]
    assert len(keys) == len(set(keys))
    for j in a.jobs:
        if j.is_gang:
            assert all(p.gang is not None and p.gang.min_member == len(j.pods) for p in j.pods)
    s: dict[str, Any] = a.summary()
    assert s["share_pods"] > 0 and s["cpu_only_pods"] > 0 and s["multi_gpu_pods"] > 0


def test_generator_load_sets_arrival_rate() -> None:
    lo = generate_workload(3, 400, load=0.5)
    hi = generate_workload(3, 400, load=1.0)
    # Same jobs, arrivals twice as dense at twice the load.
    assert [j.duration_s for j in lo.jobs] == [j.duration_s for j in hi.jobs]
    assert lo.jobs[-1].arrival_s == pytest.approx(2 * hi.jobs[-1].arrival_s, rel=1e-3)
