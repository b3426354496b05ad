"""The pods bound to this node, read from the API server on every call (no cache to lag)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

PodList = Sequence[dict[str, Any]]


def kube_pod_source(core_v1: Any, node: str, timeout_s: float = 10.0) -> Callable[[], PodList]:
    """A PodSource listing the Pending pods bound to `node` (a field-selected list call).

    `core_v1` is a kubernetes.client.CoreV1Api; items come back as plain JSON dicts, parsed
    once here, the way the rest of the scheduler reads pods.
    """
    selector = f"spec.nodeName={node},status.phase=Pending"

    def pods() -> PodList:
        resp = core_v1.list_pod_for_all_namespaces(
            field_selector=selector, _preload_content=False, _request_timeout=timeout_s
        )
        items = json.loads(resp.data).get("items") or []
        if not isinstance(items, list):
            raise ValueError(f"pod list: items is {type(items).__name__}, expected a list")
        return items

    return pods
