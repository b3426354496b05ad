"""Time `build_tables` for 8- and 16-GPU topologies: `python -m bench.topology_tables`.

The 16-GPU cases are the NVSwitch HGX-2 preset (one distinct link bandwidth, so one pass of
the ring search) and a random topology with many distinct bandwidths (the worst case: one
Hamiltonian-cycle pass per distinct threshold).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from scheduler.cli import exit_code_of
from topology.links import PCIE_LEVELS
from topology.model import GPU, NodeTopology
from topology.presets import preset
from topology.tables import build_tables


def random_topology(n: int, seed: int, model: str = "NVIDIA A100-SXM4-80GB") -> NodeTopology:
    """A random symmetric topology over NV1..NV12 and every PCIe level."""
    rng = random.Random(seed)
    kinds = [f"NV{i}" for i in range(1, 13)] + list(PCIE_LEVELS)
    links = [["X"] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            links[i][j] = links[j][i] = rng.choice(kinds)
    return NodeTopology(
        gpus=tuple(GPU(index=i, model=model) for i in range(n)),
        links=tuple(tuple(r) for r in links),
        name=f"random-{n}",
    )


def time_build(topo: NodeTopology, repeat: int) -> list[float]:
    """Seconds per build_tables call, `repeat` times."""
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        build_tables(topo)
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    """Print median and min build time per topology."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5, help="builds per topology (default 5)")
    args = ap.parse_args(argv)
    cases = [
        preset("dgx1-v100"),
        preset("pcie-8gpu-2socket"),
        random_topology(8, seed=1),
        preset("hgx-2-v100-16"),
        random_topology(16, seed=1),
    ]
    print(f"{'topology':<20} {'GPUs':>4} {'thresholds':>10} {'median ms':>10} {'min ms':>8}")
    for topo in cases:
        reps = args.repeat if topo.n <= 8 else max(1, min(args.repeat, 3))
        times = time_build(topo, reps)
        bw = topo.bandwidth()
        distinct = len({float(bw[i, j]) for i in range(topo.n) for j in range(i + 1, topo.n)})
        print(
            f"{topo.name:<20} {topo.n:>4} {distinct:>10} "
            f"{statistics.median(times) * 1e3:>10.1f} {min(times) * 1e3:>8.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(exit_code_of(main))
