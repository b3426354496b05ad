"""CPU the extender's cache spends on a burst of node events (a scale-down, then a scale-up).

`python -m bench.node_burst [--nodes 1000,5000] [--burst 100] [--repeats 3]`: a ClusterCache
holding N DGX-1 nodes receives `--burst` node deletions and as many new nodes, one watch event
at a time, as a cluster autoscaler's scale-down and scale-up would send them. Two ways are
timed in the same run (process CPU seconds, median of --repeats):

- held back: the cache as it runs, read once after the burst (node events are applied in one
  rebuild on the next read, e.g. the next filter);
- each event read: the snapshot read after every event, which applies each event on its own:
  the cost of every node event when reads interleave, and what every node event cost before
  the cache held them back (one full rebuild each).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from typing import Any

from scheduler.cli import exit_code_of
from scheduler.cluster.cache import ClusterCache
from scheduler.constants import GPU_MODEL_LABELS, GPU_RESOURCE, TOPOLOGY_ANNOTATION
from topology.annotation import to_json
from topology.presets import preset


def node_object(name: str, topology_json: str) -> dict[str, Any]:
    """A Node as the watch delivers it: allocatable, model labels, the topology annotation."""
    res = {"cpu": "64", "memory": "512Gi", "pods": "250", GPU_RESOURCE: "8"}
    return {"metadata": {"name": name, "uid": f"uid-{name}",
                         "labels": dict.fromkeys(GPU_MODEL_LABELS, "Tesla-V100-SXM2-16GB"),
                         "annotations": {TOPOLOGY_ANNOTATION: topology_json}},
            "spec": {}, "status": {"capacity": res, "allocatable": dict(res)}}


def burst_cpu_s(n_nodes: int, burst: int, read_each: bool) -> float:
    """CPU seconds for `burst` deletions and `burst` additions on an n-node cache."""
    topo = to_json(preset("dgx1-v100"))
    cache = ClusterCache()
    cache.replace_nodes([node_object(f"n{i:06d}", topo) for i in range(n_nodes)])
    new = [node_object(f"m{i:06d}", topo) for i in range(burst)]
    t0 = time.process_time()
    for i in range(burst):
        cache.delete_node(f"n{i:06d}")
        if read_each:
            _ = cache.snapshot
    for obj in new:
        cache.upsert_node(obj)
        if read_each:
            _ = cache.snapshot
    names = cache.snapshot.names
    spent = time.process_time() - t0
    if len(names) != n_nodes:
        raise AssertionError(f"{len(names)} nodes after the burst, expected {n_nodes}")
    return spent


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.node_burst`."""
    ap = argparse.ArgumentParser(prog="python -m bench.node_burst", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", default="1000,5000", help="cluster sizes (default 1000,5000)")
    ap.add_argument("--burst", type=int, default=100,
                    help="nodes deleted, then added (default 100)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per case (default 3)")
    args = ap.parse_args(argv)
    try:
        sizes = [int(x) for x in args.nodes.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--nodes={args.nodes!r}: must be comma-separated whole numbers")
    if not sizes or args.burst < 1 or args.repeats < 1 or any(n < args.burst for n in sizes):
        ap.error(f"--burst={args.burst}, --repeats={args.repeats}: need burst >= 1, "
                 f"repeats >= 1 and every --nodes >= burst (got {args.nodes!r})")
    print(f"{args.burst} node deletions + {args.burst} additions, CPU s (median of "
          f"{args.repeats})")
    print("| nodes | held back | each event read | ratio |")
    print("| --- | --- | --- | --- |")
    for n in sizes:
        held = statistics.median(burst_cpu_s(n, args.burst, False) for _ in range(args.repeats))
        each = statistics.median(burst_cpu_s(n, args.burst, True) for _ in range(args.repeats))
        print(f"| {n:,} | {held:.3f} | {each:.2f} | {each / max(held, 1e-9):,.0f}x |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(exit_code_of(main))
