"""The sentence a person reads for a failure code: what the pod needs and what the node has."""

from __future__ import annotations

import numpy as np

from scheduler.contract.request import PodRequest
from scheduler.policy.config import PolicyConfig
from scheduler.policy.failure import Failure
from scheduler.policy.flat_tables import flat_tables
from scheduler.policy.gpu_models import matching_model_ids
from scheduler.policy.snapshot import Snapshot
from scheduler.policy.whole_sets import whole_set_lookup

# Codes whose sentence depends only on one per-node value (besides the pod): nodes with equal
# values share one sentence, so a busy cluster's many full nodes cost one format, not one each.
_KEYED: dict[Failure, str] = {
    Failure.FREE_GPUS: "free_mask", Failure.CPU: "cpu_free", Failure.MEMORY: "mem_free",
    Failure.TOO_FEW_GPUS: "gpu_count", Failure.CPU_TOTAL: "cpu_total",
    Failure.MEMORY_TOTAL: "mem_total",
}


def reason_texts(req: PodRequest, snap: Snapshot, nodes: np.ndarray, codes: np.ndarray,
                 config: PolicyConfig) -> dict[int, str]:
    """reason_text for each node index with its failure code, equal sentences built once."""
    out: dict[int, str] = {}
    memo: dict[tuple[int, object], str] = {}
    for code in np.unique(codes).tolist():
        at = nodes[codes == code]
        attr = _KEYED.get(Failure(code))
        values: list[object] = (getattr(snap, attr)[at].tolist() if attr is not None
                                else [snap.specs[n].gpu_model for n in at.tolist()]
                                if code == Failure.MODEL else [None] * len(at))
        for node, value in zip(at.tolist(), values, strict=True):
            key = (code, value if value is not None else -1 - node)
            text = memo.get(key)
            if text is None:
                text = memo[key] = reason_text(req, snap, node, Failure(code), config)
            out[node] = text
    return out


def reason_text(
    req: PodRequest, snap: Snapshot, node: int, failure: Failure, config: PolicyConfig
) -> str:
    """The sentence for one node and failure code."""
    if failure == Failure.MODEL:
        want = "|".join(sorted(req.allowed_models))
        if not matching_model_ids(req.allowed_models, snap.models).size:
            return (f"GPU model {want} required, node has {snap.specs[node].gpu_model or 'no GPU'}"
                    f"; no node has {want} (known: {', '.join(snap.models) or 'none'})")
        return f"GPU model {want} required, node has {snap.specs[node].gpu_model or 'no GPU'}"
    if failure == Failure.TOO_FEW_GPUS:
        need = max(req.gpus, 1)
        return f"needs {need} GPU{'s' * (need > 1)}, node has {int(snap.gpu_count[node])} in total"
    if failure == Failure.CPU_TOTAL:
        return (f"needs {req.cpu_milli}m cpu, node has {int(snap.cpu_total[node])}m in total")
    if failure == Failure.MEMORY_TOTAL:
        return (f"needs {req.memory_mib} MiB memory, node has {int(snap.mem_total[node])} MiB "
                f"in total")
    if failure == Failure.GPU_MEMORY_TOTAL:
        return (f"needs {req.gpu_memory_mib} MiB of GPU memory, node's largest GPU has "
                f"{int(snap.gpu_mem_total[node].max())} MiB")
    if failure == Failure.CPU:
        return f"insufficient cpu: needs {req.cpu_milli}m, {int(snap.cpu_free[node])}m free"
    if failure == Failure.MEMORY:
        return (f"insufficient memory: needs {req.memory_mib} MiB, "
                f"{int(snap.mem_free[node])} MiB free")
    if failure == Failure.FREE_GPUS:
        free = int(snap.free_mask[node]).bit_count()
        return f"needs {req.gpus} free GPUs, {free} free"
    if failure == Failure.QUALITY:
        _, q = whole_set_lookup(snap, np.array([node]), req.gpus, flat_tables(snap))
        return (f"needs {req.gpus} GPUs linked at quality >= {config.min_quality:.2f}; the best "
                f"free set reaches {float(q[0]):.2f} ({int(snap.free_mask[node]).bit_count()} "
                f"free)")
    if failure == Failure.SHARE:
        n = int(snap.gpu_count[node])
        most = int(snap.milli_free[node, :n].max()) if n else 0
        return (f"needs {req.gpu_milli} thousandths of one GPU, at most {most} free on any GPU")
    if failure == Failure.SHARE_MEMORY:
        n = int(snap.gpu_count[node])
        ok = snap.milli_free[node, :n] >= req.gpu_milli
        mem = int(snap.gpu_mem_free[node, :n][ok].max()) if ok.any() else 0
        return (f"needs {req.gpu_milli} thousandths and {req.gpu_memory_mib} MiB on one GPU; "
                f"the GPUs with room have at most {mem} MiB free")
    return "fits"
