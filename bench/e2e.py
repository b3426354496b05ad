"""Time to bind through a real control plane: our profile (kube-scheduler + extender) against
kube-scheduler's default profile, on identical fresh nodes.

For each size N/P: one control plane (bench.controlplane: etcd, kube-apiserver, kube-scheduler
with the default profile, a second kube-scheduler with deploy/'s configuration and `gts serve`),
both kube-schedulers with client QPS/burst lifted (--qps). Each run creates N fresh 8-GPU nodes
(DGX-1 topology annotation), waits until the extender's cache lists them, creates P one-GPU pods
at once (--create-threads writers) for one profile, and times from the first create until the
last pod is bound (seen on a watch). Then pods and nodes are deleted and the other profile runs
on a new, identical set. Profiles alternate which goes first; the table shows medians over
--repeats runs and the ratio ours / default.

    python -m bench.e2e [--sizes 100/400,1000/2000] [--repeats 3] [--json]
    gts bench e2e ...  (the same)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.controlplane import (
    EXTENDER_PROGRAMS,
    ControlPlane,
    ControlPlaneUnavailable,
    create_gpu_node,
    start_control_plane,
)
from bench.pprof_top import part_shares
from scheduler.cli import exit_code_of
from scheduler.constants import GPU_RESOURCE, SCHEDULER_NAME
from topology.presets import preset

DEFAULT_SIZES = "100/400,1000/2000"
PROFILES = {"ours": SCHEDULER_NAME, "default": "default-scheduler"}
# The kube-scheduler process that serves each profile (bench.controlplane's names).
SCHEDULER_PROCS = {"ours": "gts-kube-scheduler", "default": "default-scheduler"}
RUN_LABEL = "bench.gts.dev/run"


@dataclass
class Run:
    """One timed run."""

    profile: str
    nodes: int
    pods: int
    bound_s: float  # first create -> last pod bound; inf when not all bound in time
    created_s: float  # first create -> last create answered
    bound: int
    # CPU seconds each component used from the first create until the last pod was bound
    # (gts serve also watches the default profile's pods, so it is never idle).
    cpu_s: dict[str, float] = field(default_factory=dict)
    # Connections kube-scheduler opened to the extender port during the run, by protocol.
    connections: dict[str, int] = field(default_factory=dict)
    # --profile-scheduler: share of the profile's kube-scheduler CPU samples in each of
    # SCHEDULER_PARTS (cumulative, 0..1), and the profile's CPU seconds.
    scheduler_parts: dict[str, float] = field(default_factory=dict)


@dataclass
class SizeResult:
    """Every run of one size."""

    nodes: int
    pods: int
    runs: list[Run] = field(default_factory=list)

    def median(self, profile: str) -> float:
        """Median time to all bound of `profile`'s runs."""
        xs = [r.bound_s for r in self.runs if r.profile == profile]
        return statistics.median(xs) if xs else float("nan")

    def median_cpu(self, profile: str) -> dict[str, float]:
        """Median CPU seconds per component over `profile`'s runs."""
        runs = [r for r in self.runs if r.profile == profile]
        keys = sorted({k for r in runs for k in r.cpu_s})
        return {k: statistics.median(r.cpu_s.get(k, 0.0) for r in runs) for k in keys}


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """`100/400,1000/2000` -> [(100, 400), (1000, 2000)]."""
    out: list[tuple[int, int]] = []
    for part in text.split(","):
        try:
            n, p = (int(x) for x in part.strip().split("/"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--sizes: {part.strip()!r} is not NODES/PODS (e.g. 100/400)") from None
        if n < 1 or p < 1 or p > 8 * n:
            raise argparse.ArgumentTypeError(
                f"--sizes: {part.strip()!r}: need 1 <= PODS <= 8 x NODES")
        out.append((n, p))
    return out


def _pod(name: str, scheduler: str) -> dict[str, Any]:
    req = {"cpu": "100m", "memory": "64Mi", GPU_RESOURCE: "1"}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "bench"}},
            "spec": {"schedulerName": scheduler, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "main", "image": "registry.invalid/none:0",
                                     "resources": {"requests": req, "limits": {
                                         k: v for k, v in req.items() if k != "cpu"}}}]}}


class BoundWatch:
    """Watches a namespace's pods from a thread; `wait(n)` returns when n pods have a node.

    List first (for a resourceVersion), then watch from it, resuming after a dropped stream.
    """

    def __init__(self, core: Any, ns: str) -> None:
        self.core, self.ns = core, ns
        self.bound: set[str] = set()
        self.last_bound_at = 0.0
        self.cond = threading.Condition()
        self.stopped = threading.Event()
        self.watch: Any = None
        self.rv = ""
        self._relist()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from kubernetes import watch

        core, ns = self.core, self.ns

        # No return annotation: the client then yields raw dicts instead of building Pod
        # models, which would steal the CPU from the components being measured.
        def list_pods(**kw):  # type: ignore[no-untyped-def]
            return core.list_namespaced_pod(ns, **kw)

        while not self.stopped.is_set():
            self.watch = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for ev in self.watch.stream(list_pods, resource_version=self.rv,
                                            timeout_seconds=900):
                    obj = ev.get("raw_object") if isinstance(ev, dict) else None
                    if not isinstance(obj, dict):
                        continue
                    if ev.get("type") == "ERROR":
                        self.rv = ""  # 410 Gone: start over from a new list
                        break
                    self.rv = str(obj.get("metadata", {}).get("resourceVersion") or self.rv)
                    self._seen(obj)
            except Exception as e:  # a dropped stream: resume from the last version
                if not self.stopped.is_set():
                    print(f"  (pod watch: {type(e).__name__}: {e}; resuming)", file=sys.stderr)
                    time.sleep(0.2)
            if not self.rv and not self.stopped.is_set():
                self._relist()

    def _relist(self) -> None:
        """List the namespace's pods: note the bound ones and the version to watch from."""
        resp = self.core.list_namespaced_pod(self.ns, _preload_content=False)
        data = json.loads(resp.data)
        resp.release_conn()
        self.rv = str(data["metadata"]["resourceVersion"])
        for obj in data["items"]:
            self._seen(obj)

    def _seen(self, obj: dict[str, Any]) -> None:
        if (obj.get("spec") or {}).get("nodeName"):
            with self.cond:
                name = obj["metadata"]["name"]
                if name not in self.bound:
                    self.bound.add(name)
                    self.last_bound_at = time.monotonic()
                    self.cond.notify_all()

    def wait(self, n: int, timeout_s: float) -> bool:
        """True once n pods are bound; False after timeout_s."""
        end = time.monotonic() + timeout_s
        with self.cond:
            while len(self.bound) < n:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 1.0))
        return True

    def stop(self) -> None:
        """End the watch."""
        self.stopped.set()
        if self.watch is not None:
            self.watch.stop()


class RawWriter:
    """POSTs pre-encoded objects over one keep-alive HTTPS connection per thread: the
    generated client's per-call overhead would make creating pods the thing measured."""

    def __init__(self, cp: ControlPlane) -> None:
        self.ctx = ssl.create_default_context(cafile=str(cp.ca))
        self.port = cp.api_port
        self.headers = {"Authorization": f"Bearer {cp.admin_token}",
                        "Content-Type": "application/json", "Accept": "application/json"}
        self.local = threading.local()

    def post(self, path: str, body: bytes) -> None:
        """POST one object; raise on anything but 201."""
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx,
                                               timeout=60)
            self.local.conn = conn
        conn.request("POST", path, body, self.headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 201:
            raise RuntimeError(f"POST {path}: HTTP {resp.status}: {data[:300]!r}")


# Where a kube-scheduler's CPU goes: a sample is in a part when a function on its stack
# contains one of the part's names (kube-scheduler v1.36's; the parallel filter and score run
# in goroutines of their own). Parts may overlap (NodeResourcesFit is a filter plugin).
SCHEDULER_PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("filter plugins", ("scheduler.(*Scheduler).findNodesThatPassFilters",)),
    ("of them NodeResourcesFit", ("noderesources.(*Fit).Filter",)),
    ("extender filter call", ("scheduler.findNodesThatPassExtenders",)),
    ("scoring", ("(*frameworkImpl).RunPreScorePlugins", "(*frameworkImpl).RunScorePlugins",
                 "scheduler.prioritizeNodes")),
    ("binding cycle", ("scheduler.(*Scheduler).bindingCycle",)),
    ("events", ("events.(*eventBroadcasterImpl).recordToSink",)),
    ("garbage collector", ("runtime.gcBgMarkWorker",)),
)


# A run waits for its profile before cleaning up: a typo must not hold it for hours.
MAX_PROFILE_S = 600


def scheduler_parts(profile: bytes) -> dict[str, float]:
    """Shares of SCHEDULER_PARTS in a kube-scheduler CPU profile, and its CPU seconds."""
    total_s, shares = part_shares(profile, SCHEDULER_PARTS)
    return {"profiled_cpu_s": total_s, **shares}


def _extender_nodes(cp: ControlPlane) -> float:
    for line in cp.extender_get("/metrics")[1].splitlines():
        if line.startswith("gts_cache_nodes "):
            return float(line.split()[1])
    return -1.0


def _extender_connections(cp: ControlPlane) -> dict[str, int]:
    """gts_extender_connections_total by protocol (since the extender started)."""
    out: dict[str, int] = {}
    prefix = 'gts_extender_connections_total{protocol="'
    for line in cp.extender_get("/metrics")[1].splitlines():
        if line.startswith(prefix):
            out[line[len(prefix):].split('"', 1)[0]] = int(float(line.split()[-1]))
    return out


def one_run(cp: ControlPlane, core: Any, profile: str, n_nodes: int, n_pods: int, tag: str,
            threads: int, timeout_s: float, cache: bool = True, profile_s: int = 0,
            profile_out: Path | None = None) -> Run:
    """Fresh nodes, P pods of `profile` at once, time to all bound; then clean up. `cache`:
    the extender has a node cache to wait for (bench.null_extender has none). `profile_s`:
    a CPU profile of the profile's kube-scheduler over that many seconds from the first
    create (written to `profile_out`/TAG.pb.gz when given)."""
    topo = preset("dgx1-v100")
    names = [f"{tag}-n{i}" for i in range(n_nodes)]
    labels = {RUN_LABEL: tag}
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda n: create_gpu_node(core, n, topo, labels=labels), names))
    end = time.monotonic() + 120
    while cache and _extender_nodes(cp) != n_nodes and time.monotonic() < end:
        time.sleep(0.2)
    time.sleep(1.0)  # kube-scheduler's informers are at least as quick as the extender's
    ns = tag
    core.create_namespace({"metadata": {"name": ns}})
    watch = BoundWatch(core, ns)
    bodies = [json.dumps(_pod(f"p{i}", PROFILES[profile])).encode() for i in range(n_pods)]
    writer = RawWriter(cp)
    path = f"/api/v1/namespaces/{ns}/pods"
    components = {"extender": "gts-serve", "kube-scheduler": SCHEDULER_PROCS[profile],
                  "kube-apiserver": "kube-apiserver"}
    cpu0 = {k: cp.procs[p].cpu_s() for k, p in components.items() if p in cp.procs}
    conns0 = _extender_connections(cp)
    got: dict[str, bytes | BaseException] = {}
    profiler = None
    if profile_s > 0:
        def grab() -> None:
            try:
                got["profile"] = cp.scheduler_cpu_profile(SCHEDULER_PROCS[profile], profile_s)
            except BaseException as e:  # reported after the run, which it must not stop
                got["profile"] = e
        profiler = threading.Thread(target=grab, name="pprof", daemon=True)
        profiler.start()
    t0 = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda b: writer.post(path, b), bodies))
    created = time.monotonic() - t0
    ok = watch.wait(n_pods, timeout_s)
    cpu = {k: round(cp.procs[components[k]].cpu_s() - v, 3) for k, v in cpu0.items()}
    bound_s = (watch.last_bound_at - t0) if ok else float("inf")
    bound = len(watch.bound)
    conns = {k: v - conns0.get(k, 0) for k, v in _extender_connections(cp).items()}
    parts: dict[str, float] = {}
    if profiler is not None:
        profiler.join(profile_s + 60)  # before the cleanup, which it must not sample
        data = got.get("profile")
        if not isinstance(data, bytes):
            raise RuntimeError(f"{tag}: kube-scheduler CPU profile: {data!r}")
        if profile_out is not None:
            profile_out.mkdir(parents=True, exist_ok=True)
            (profile_out / f"{tag}.pb.gz").write_bytes(data)
        parts = scheduler_parts(data)
    watch.stop()
    core.delete_collection_namespaced_pod(ns, grace_period_seconds=0)
    core.delete_collection_node(label_selector=f"{RUN_LABEL}={tag}")
    end = time.monotonic() + 120
    while cache and _extender_nodes(cp) != 0 and time.monotonic() < end:
        time.sleep(0.2)
    return Run(profile, n_nodes, n_pods, bound_s, created, bound, cpu,
               {k: v for k, v in conns.items() if v}, parts)


def parse_serve(text: str) -> tuple[str, str]:
    """`best-node-only=false` -> ("best-node-only", "false")."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key.strip(), value.strip()


def run(sizes: Sequence[tuple[int, int]], repeats: int, qps: int, threads: int,
        timeout_s: float, log: Any = sys.stderr,
        serve: Sequence[tuple[str, str]] = (),
        scheduler: Sequence[tuple[str, str]] = (), extender: str = "gts",
        profile_s: int = 0, profile_out: Path | None = None) -> dict[str, Any]:
    """Every size, `repeats` runs of each profile; a JSON-ready result. `serve` overrides
    options of deploy/'s serve.yaml (YAML values: `best-node-only=false`), `scheduler`
    top-level fields of our kube-scheduler's configuration (`percentageOfNodesToScore=0`);
    `extender="null"` serves our profile's extender port with bench.null_extender;
    `profile_s` profiles each run's kube-scheduler (one_run)."""
    from kubernetes import client

    results: list[SizeResult] = []
    load_before = list(os.getloadavg())
    overrides = {k: yaml.safe_load(v) for k, v in serve}
    sched = {k: yaml.safe_load(v) for k, v in scheduler}
    for n_nodes, n_pods in sizes:
        cp = start_control_plane(qps=qps, serve_overrides=overrides, scheduler_overrides=sched,
                                 extender=extender)
        try:
            core = client.CoreV1Api(cp.api_client())
            res = SizeResult(n_nodes, n_pods)
            for r in range(repeats):
                order = ["ours", "default"] if r % 2 == 0 else ["default", "ours"]
                for profile in order:
                    tag = f"b{n_nodes}-{r}-{profile}"
                    one = one_run(cp, core, profile, n_nodes, n_pods, tag, threads, timeout_s,
                                  cache=extender == "gts", profile_s=profile_s,
                                  profile_out=profile_out)
                    cp.check_alive()
                    res.runs.append(one)
                    cpu = ", ".join(f"{k} {v:.2f}" for k, v in one.cpu_s.items())
                    print(f"  {n_nodes} nodes / {n_pods} pods, {profile:7s} run {r + 1}: "
                          f"all bound in {one.bound_s:.2f} s (created in {one.created_s:.2f} s;"
                          f" CPU s: {cpu}; extender connections: {one.connections})",
                          file=log, flush=True)
            results.append(res)
        finally:
            cp.stop()
    return {"qps": qps, "repeats": repeats, "serve": overrides, "scheduler": sched,
            "extender": extender, "profile_s": profile_s,
            "loadavg_before": load_before,
            "loadavg_after": list(os.getloadavg()), "cpus": os.cpu_count(),
            "sizes": [{"nodes": s.nodes, "pods": s.pods, "ours_median_s": s.median("ours"),
                       "default_median_s": s.median("default"),
                       "ratio": s.median("ours") / s.median("default"),
                       "ours_cpu_s": s.median_cpu("ours"),
                       "default_cpu_s": s.median_cpu("default"),
                       "runs": [asdict(x) for x in s.runs]} for s in results]}


def table(res: dict[str, Any]) -> str:
    """The markdown ratio table."""
    lines = [
        f"kube-scheduler QPS/burst {res['qps']}, median of {res['repeats']} runs, "
        f"{res['cpus']} CPUs, load average {res['loadavg_before'][0]:.2f} before / "
        f"{res['loadavg_after'][0]:.2f} after"
        + "".join(f"; gts serve {k}={v}" for k, v in (res.get("serve") or {}).items())
        + "".join(f"; our kube-scheduler {k}={v}"
                  for k, v in (res.get("scheduler") or {}).items())
        + ("; extender port served by bench.null_extender (no policy, no state: a floor)"
           if res.get("extender") == "null" else ""),
        "",
        "| nodes x 8 GPUs | one-GPU pods | ours: all bound (s) | default profile (s) | "
        "ours / default | ours pods/s | default pods/s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in res["sizes"]:
        o, d = s["ours_median_s"], s["default_median_s"]
        lines.append(f"| {s['nodes']:,} | {s['pods']:,} | {o:.2f} | {d:.2f} | "
                     f"{s['ratio']:.2f}x | {s['pods'] / o:,.0f} | {s['pods'] / d:,.0f} |")
    lines += [
        "",
        "CPU milliseconds per pod, from the first create until the last pod was bound "
        "(medians; less sensitive to other load than wall time):",
        "",
        "| nodes | pods | profile | gts serve | its kube-scheduler | kube-apiserver |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for s in res["sizes"]:
        for profile in ("ours", "default"):
            c = s.get(f"{profile}_cpu_s") or {}
            ms = [f"{1000 * c[k] / s['pods']:.2f}" if k in c else "-"
                  for k in ("extender", "kube-scheduler", "kube-apiserver")]
            lines.append(f"| {s['nodes']:,} | {s['pods']:,} | {profile} | {' | '.join(ms)} |")
    if res.get("profile_s"):
        lines += ["", parts_table(res)]
    return "\n".join(lines)


def parts_table(res: dict[str, Any]) -> str:
    """Where each profile's kube-scheduler spent its CPU (--profile-scheduler): each part's
    median share of the profile's samples, times the run's kube-scheduler CPU per pod."""
    names = [p for p, _ in SCHEDULER_PARTS]
    lines = [
        f"kube-scheduler CPU ms per pod by part (median share of a {res['profile_s']} s CPU "
        "profile from the first create, times its CPU per pod above; parts overlap):",
        "",
        "| nodes | profile | " + " | ".join(names) + " |",
        "| --- | --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for s in res["sizes"]:
        for profile in ("ours", "default"):
            runs = [r for r in s["runs"] if r["profile"] == profile and r["scheduler_parts"]]
            if not runs:
                continue
            per_pod = 1000 * (s.get(f"{profile}_cpu_s") or {}).get("kube-scheduler", 0.0) \
                / s["pods"]
            ms = [per_pod * statistics.median(r["scheduler_parts"][p] for r in runs)
                  for p in names]
            lines.append(f"| {s['nodes']:,} | {profile} | "
                         + " | ".join(f"{m:.2f}" for m in ms) + " |")
    return "\n".join(lines)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The benchmark's options."""
    ap.add_argument("--sizes", type=parse_sizes, default=parse_sizes(DEFAULT_SIZES),
                    metavar="N/P,...",
                    help=f"nodes/pods pairs (default {DEFAULT_SIZES}; add 5000/5000 where "
                         "the machine allows)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per profile (default 3)")
    ap.add_argument("--qps", type=int, default=1000,
                    help="kube-scheduler client QPS and burst (default 1000)")
    ap.add_argument("--create-threads", type=int, default=8,
                    help="parallel writers creating nodes and pods (default 8)")
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="seconds to wait for all pods of a run to bind (default 600)")
    ap.add_argument("--serve", type=parse_serve, action="append", default=[],
                    metavar="KEY=VALUE",
                    help="override an option of deploy/'s serve.yaml for this run (repeatable; "
                         "e.g. --serve best-node-only=false)")
    ap.add_argument("--scheduler", type=parse_serve, action="append", default=[],
                    metavar="KEY=VALUE",
                    help="override a top-level field of our kube-scheduler's configuration "
                         "(deploy/manifests/scheduler-config.yaml; repeatable; e.g. "
                         "--scheduler percentageOfNodesToScore=0 for kube-scheduler's "
                         "adaptive default instead of deploy/'s 100)")
    ap.add_argument("--extender", choices=sorted(EXTENDER_PROGRAMS), default="gts",
                    help="what serves our profile's extender port: gts serve (default), or "
                         "null, bench.null_extender: the same server passing the first listed "
                         "node and posting a bare Binding, the floor any extender on this "
                         "stack could reach (it places pods wrongly; a peer, not a scheduler)")
    ap.add_argument("--profile-scheduler", type=int, default=0, metavar="SECONDS",
                    help="take a CPU profile of each run's kube-scheduler over SECONDS from "
                         "the first create and print where its CPU went (the run's cleanup "
                         "waits for it, so SECONDS beyond the time to bind add idle time "
                         "only)")
    ap.add_argument("--profile-out", type=Path, default=None, metavar="DIR",
                    help="also keep the raw profiles there (python -m bench.pprof_top FILE)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run_args(args: argparse.Namespace) -> int:
    """Run with parsed arguments; print the table (or JSON)."""
    if not 0 <= args.profile_scheduler <= MAX_PROFILE_S:
        print(f"gts bench e2e: --profile-scheduler={args.profile_scheduler}: seconds from 0 "
              f"(off) to {MAX_PROFILE_S} (each run's cleanup waits for the profile)",
              file=sys.stderr)
        return 2
    try:
        res = run(args.sizes, args.repeats, args.qps, args.create_threads, args.timeout,
                  serve=args.serve, scheduler=args.scheduler, extender=args.extender,
                  profile_s=args.profile_scheduler, profile_out=args.profile_out)
    except ControlPlaneUnavailable as e:
        print(f"gts bench e2e: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res, indent=2) if args.json else table(res))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.e2e`."""
    ap = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    return run_args(ap.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(exit_code_of(main))
