"""Merge-patches of a pod's annotations written by hand, as an older extender (or an operator)
would: how tests set up the annotated-but-unbound and stale states the cache must handle."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scheduler.cluster.kube_binder import KubeBinder, consume
from scheduler.cluster.kube_errors import map_error
from scheduler.podcodec.assignment import ASSIGNMENT_ANNOTATIONS


def annotate(binder: KubeBinder, pod_ns: str, pod_name: str, uid: str,
             annotations: Mapping[str, str | None]) -> None:
    """Merge-patch the pod's annotations (None removes one), only if its uid is `uid`."""
    meta: dict[str, Any] = {"annotations": dict(annotations)}
    if uid:
        meta["uid"] = uid  # a precondition: a recreated pod of the same name is not ours
    try:
        resp: Any = binder.core.patch_namespaced_pod(
            pod_name, pod_ns, {"metadata": meta},
            field_manager=binder.field_manager,
            _content_type="application/merge-patch+json",
            _preload_content=False, _request_timeout=binder.timeout,
        )
        consume(resp)
    except Exception as e:  # every client failure is mapped to our small set
        raise map_error(e, f"annotating pod {pod_ns}/{pod_name}") from e


def cleared_assignment_annotations() -> dict[str, None]:
    """A merge-patch annotations map that removes our assignment."""
    return dict.fromkeys(ASSIGNMENT_ANNOTATIONS)
