"""The Kubernetes edge: list+watch into the ClusterCache, and the writes the extender makes.

KubeSource follows client-go's reflector: list (a consistent read), then watch from the list's
resourceVersion with bookmarks, resume from the last version seen when a watch ends or the
connection drops (exponential backoff with jitter), and re-list when the apiserver answers
410 Gone (an HTTP 410 or an ERROR event carrying a 410 Status). Pods are watched without the
terminal ones (the field selector kube-scheduler uses): a pod that finishes leaves the watch
as a DELETED event, which releases what it held.

Events are read as raw JSON (`raw_object`): the list functions are passed to Watch.stream
through wrappers without a return type, so the client does not build model objects for every
event; resourceVersion is tracked here from the raw objects and BOOKMARKs.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable, Mapping
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from scheduler.cluster.cache import ClusterCache
from scheduler.constants import POD_GROUP_API
from scheduler.podcodec.assignment import cleared_assignment_annotations

log = logging.getLogger(__name__)

NON_TERMINAL_PODS = "status.phase!=Succeeded,status.phase!=Failed"
HTTP_GONE = 410


class KubeError(Exception):
    """A failed Kubernetes API call; `status` is the HTTP status (0 when none came back)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message


class Conflict(KubeError):
    """409: the pod was already bound, or its uid is not the one we decided for."""


class NotFound(KubeError):
    """404: the pod (or PodGroup) does not exist (any more)."""


class Timeout(KubeError):
    """No answer in time; the write may or may not have happened."""


class ApiError(KubeError):
    """Any other failure: another HTTP status, or the connection failed."""


def _status_message(e: ApiException) -> str:
    body = getattr(e, "body", None)
    if body:
        try:
            data = json.loads(body)
            if isinstance(data, dict) and data.get("message"):
                return str(data["message"])
        except (TypeError, ValueError):
            pass
    return str(getattr(e, "reason", "") or e)


def map_error(e: BaseException, what: str) -> KubeError:
    """The small exception set for an API client error while doing `what`."""
    if isinstance(e, KubeError):
        return e
    if isinstance(e, ApiException):
        status = int(getattr(e, "status", 0) or 0)
        msg = f"{what}: {_status_message(e)}"
        if status == 409 or (status == 422 and "metadata.uid" in msg):
            # A uid precondition is reported as 409 (storage precondition) by the apiserver;
            # a 422 "field is immutable" on metadata.uid means the same to us.
            return Conflict(status, msg)
        if status == 404:
            return NotFound(status, msg)
        if status == 504:
            return Timeout(status, msg)
        return ApiError(status, msg)
    if isinstance(e, urllib3.exceptions.TimeoutError | TimeoutError):
        return Timeout(0, f"{what}: timed out ({e})")
    if isinstance(e, urllib3.exceptions.MaxRetryError) and isinstance(
            e.reason, urllib3.exceptions.TimeoutError):
        return Timeout(0, f"{what}: timed out ({e.reason})")
    return ApiError(0, f"{what}: {type(e).__name__}: {e}")


def _annotation_path(key: str) -> str:
    # JSON Pointer (RFC 6901): "~" and "/" in a key are escaped as "~0" and "~1".
    return "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")


def _consume(resp: Any) -> bytes:
    """Read the whole body of a raw response and hand its connection back to the pool.

    An unread body left on a kept-alive connection would be read as the next response.
    """
    data: bytes = resp.data
    resp.release_conn()
    return data


class KubeBinder:
    """Pod annotations, Bindings and PodGroup reads through the official client."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        request_timeout_s: float = 5.0,
        field_manager: str = "gpu-topology-scheduler",
    ) -> None:
        self.core = k8s.CoreV1Api(api_client)
        self.custom = k8s.CustomObjectsApi(api_client)
        self.timeout = request_timeout_s
        self.field_manager = field_manager

    def annotate(self, pod_ns: str, pod_name: str, uid: str,
                 annotations: Mapping[str, str | None]) -> None:
        """Merge-patch the pod's annotations (None removes one), only if its uid is `uid`."""
        meta: dict[str, Any] = {"annotations": dict(annotations)}
        if uid:
            meta["uid"] = uid  # a precondition: a recreated pod of the same name is not ours
        try:
            resp: Any = self.core.patch_namespaced_pod(
                pod_name, pod_ns, {"metadata": meta},
                field_manager=self.field_manager,
                _content_type="application/merge-patch+json",
                _preload_content=False, _request_timeout=self.timeout,
            )
            _consume(resp)
        except Exception as e:  # every client failure is mapped to our small set
            raise map_error(e, f"annotating pod {pod_ns}/{pod_name}") from e

    def clear_assignment(self, pod_ns: str, pod_name: str, uid: str) -> None:
        """Remove our assignment annotations (after a rollback or an expired assumption)."""
        self.annotate(pod_ns, pod_name, uid, cleared_assignment_annotations())

    def remove_annotations_if(self, pod_ns: str, pod_name: str, uid: str,
                              expected: Mapping[str, str]) -> None:
        """Remove annotations only if each still has the expected value (and the uid matches).

        One JSON Patch of `test` then `remove` operations, applied atomically by the
        apiserver: an expired assignment is never removed after the extender wrote a new one.
        Raises Conflict when something changed (the apiserver answers 422 for a failed test).
        """
        if not expected:
            return
        ops: list[dict[str, Any]] = []
        if uid:
            ops.append({"op": "test", "path": "/metadata/uid", "value": uid})
        for k, v in sorted(expected.items()):
            ops.append({"op": "test", "path": _annotation_path(k), "value": v})
        ops += [{"op": "remove", "path": _annotation_path(k)} for k in sorted(expected)]
        try:
            resp: Any = self.core.patch_namespaced_pod(
                pod_name, pod_ns, ops, field_manager=self.field_manager,
                _content_type="application/json-patch+json",
                _preload_content=False, _request_timeout=self.timeout,
            )
            _consume(resp)
        except Exception as e:  # every client failure is mapped to our small set
            err = map_error(e, f"removing annotations of pod {pod_ns}/{pod_name}")
            if err.status == 422:
                raise Conflict(422, err.message) from e
            raise err from e

    def bind(self, ns: str, name: str, uid: str, node: str,
             annotations: Mapping[str, str] | None = None) -> None:
        """POST the pod's Binding to `node`, carrying `annotations` (the signed assignment).

        The API server copies a Binding's metadata.annotations onto the pod in the same write
        that sets spec.nodeName (setPodNodeAndMetadata, pkg/registry/core/pod/storage), so
        the assignment and the binding land together or not at all: one write per pod.
        The apiserver answers with a Status, not a Binding, which the generated client fails
        to deserialize; _preload_content=False returns the raw response instead.
        """
        body = k8s.V1Binding(
            api_version="v1", kind="Binding",
            metadata=k8s.V1ObjectMeta(name=name, namespace=ns, uid=uid or None,
                                      annotations=dict(annotations) if annotations else None),
            target=k8s.V1ObjectReference(api_version="v1", kind="Node", name=node),
        )
        try:
            resp: Any = self.core.create_namespaced_pod_binding(
                name, ns, body, _preload_content=False, _request_timeout=self.timeout)
            _consume(resp)
        except Exception as e:  # every client failure is mapped to our small set
            raise map_error(e, f"binding pod {ns}/{name} to {node}") from e

    def get_podgroup_min_member(self, ns: str, name: str) -> int | None:
        """spec.minMember of a scheduling.x-k8s.io PodGroup; None if it or the field is absent."""
        group, version, plural = POD_GROUP_API
        try:
            resp: Any = self.custom.get_namespaced_custom_object(
                group, version, ns, plural, name,
                _preload_content=False, _request_timeout=self.timeout)
            data = json.loads(_consume(resp))
        except Exception as e:  # every client failure is mapped to our small set
            err = map_error(e, f"reading PodGroup {ns}/{name}")
            if isinstance(err, NotFound):
                return None
            raise err from e
        mm = (data.get("spec") or {}).get("minMember") if isinstance(data, dict) else None
        if mm is None:
            return None
        if isinstance(mm, bool) or not isinstance(mm, int) or mm < 1:
            raise ApiError(0, f"PodGroup {ns}/{name}: spec.minMember={mm!r} is not a positive "
                           "integer")
        return mm


class _Gone(Exception):
    """The watch's resourceVersion is too old: re-list."""


class KubeSource:
    """List+watch of nodes and pods into a ClusterCache, in two background threads.

    `cache.synced` becomes True once both lists are in. With a `binder`, an expiry thread
    also calls `cache.expire()` every `expire_interval_s` and removes the annotations of
    expired assumptions, so the API (and a restarted cache) agrees with this one.
    """

    def __init__(
        self,
        api_client: k8s.ApiClient,
        cache: ClusterCache,
        *,
        binder: KubeBinder | None = None,
        pod_field_selector: str = NON_TERMINAL_PODS,
        watch_timeout_s: int = 300,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        request_timeout_s: float = 30.0,
        expire_interval_s: float = 1.0,
        rng: random.Random | None = None,
        watch_podgroups: bool = True,
    ) -> None:
        self.core = k8s.CoreV1Api(api_client)
        self.custom = k8s.CustomObjectsApi(api_client)
        # PodGroups give gangs their identity (UID) and minMember; optional: without the
        # CRD the list answers 404, retried slowly, and gangs fall back to pod annotations.
        self.watch_podgroups = watch_podgroups
        self._podgroups_missing_logged = False
        self.cache = cache
        self.binder = binder
        self.pod_field_selector = pod_field_selector
        self.watch_timeout_s = watch_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.request_timeout_s = request_timeout_s
        self.expire_interval_s = expire_interval_s
        self.rng = rng or random.Random()
        self.stop_event = threading.Event()
        self.stats: dict[str, int] = {"lists": 0, "relists_gone": 0, "reconnects": 0,
                                      "events": 0, "bad_events": 0, "expired": 0}
        self._listed: set[str] = set()
        self._watches: dict[str, Any] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._cleared: set[str] = set()
        # Last resourceVersion seen per kind ("nodes", "pods"); absent = list first.
        self.resource_version: dict[str, str] = {}

    # ---- life cycle ----------------------------------------------------------------------

    def start(self) -> KubeSource:
        """Start the node and pod threads (and the expiry thread when a binder is given)."""
        targets: list[tuple[str, Callable[[], None]]] = [
            ("gts-watch-nodes", lambda: self._run("nodes")),
            ("gts-watch-pods", lambda: self._run("pods")),
        ]
        if self.watch_podgroups:
            targets.append(("gts-watch-podgroups", lambda: self._run("podgroups")))
        if self.binder is not None:
            targets.append(("gts-expire", self._expire_loop))
        for name, fn in targets:
            t = threading.Thread(target=fn, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the threads, interrupting open watches."""
        self.stop_event.set()
        with self._lock:
            watches = list(self._watches.values())
        for w in watches:
            w.stop()
        for t in self._threads:
            t.join(timeout_s)

    def wait_synced(self, timeout_s: float) -> bool:
        """Block until both lists are in the cache (or the timeout passes)."""
        end = timeout_s
        step = 0.02
        while end > 0:
            if self.cache.synced:
                return True
            if self.stop_event.wait(step):
                break
            end -= step
        return self.cache.synced

    # ---- one resource --------------------------------------------------------------------

    def _list_func(self, kind: str) -> Callable[..., Any]:
        core = self.core
        if kind == "nodes":
            def list_nodes(**kw: Any):  # type: ignore[no-untyped-def]
                # No return annotation: Watch.stream then yields raw dicts (see module doc).
                return core.list_node(**kw)
            return list_nodes
        if kind == "podgroups":
            custom = self.custom
            group, version, plural = POD_GROUP_API

            def list_podgroups(**kw: Any):  # type: ignore[no-untyped-def]
                return custom.list_cluster_custom_object(group, version, plural, **kw)
            return list_podgroups

        selector = self.pod_field_selector

        def list_pods(**kw: Any):  # type: ignore[no-untyped-def]
            if selector:
                kw.setdefault("field_selector", selector)
            return core.list_pod_for_all_namespaces(**kw)
        return list_pods

    def _list(self, kind: str) -> tuple[list[dict[str, Any]], str]:
        resp = self._list_func(kind)(_preload_content=False,
                                     _request_timeout=self.request_timeout_s)
        data = json.loads(_consume(resp))
        items = data.get("items") or []
        rv = str((data.get("metadata") or {}).get("resourceVersion") or "")
        if not rv:
            raise ApiError(0, f"list {kind}: the answer has no metadata.resourceVersion")
        return items, rv

    def _apply_list(self, kind: str, items: list[dict[str, Any]]) -> None:
        if kind == "nodes":
            self.cache.replace_nodes(items)
        elif kind == "podgroups":
            self.cache.replace_podgroups(items)
        else:
            self.cache.replace_pods(items)
        with self._lock:
            self._listed.add(kind)
            synced = self._listed >= {"nodes", "pods"}
        if synced:
            with self.cache.lock:
                self.cache.synced = True

    def _apply_event(self, kind: str, type_: str, obj: Any) -> None:
        if not isinstance(obj, dict):
            self.stats["bad_events"] += 1
            return
        try:
            if kind == "nodes":
                if type_ == "DELETED":
                    name = (obj.get("metadata") or {}).get("name")
                    if isinstance(name, str):
                        self.cache.delete_node(name)
                else:
                    self.cache.upsert_node(obj)
            elif kind == "podgroups":
                if type_ == "DELETED":
                    self.cache.delete_podgroup(obj)
                else:
                    self.cache.upsert_podgroup(obj)
            elif type_ == "DELETED":
                self.cache.delete_pod(obj)
            else:
                self.cache.upsert_pod(obj)
        except ValueError as e:  # an object without a name: nothing to key it by
            self.stats["bad_events"] += 1
            log.warning("ignoring %s %s event: %s", kind, type_, e)
        except Exception:
            # Never let one object stop the watch: re-watching would meet it again forever.
            self.stats["bad_events"] += 1
            log.exception("ignoring %s %s event that the cache could not apply", kind, type_)

    def _watch(self, kind: str, rv: str) -> None:
        """Watch from `rv` until the server ends the stream; self.resource_version[kind] follows
        every event, so a dropped connection resumes where it stopped."""
        w: Any = k8s_watch.Watch()  # type: ignore[no-untyped-call]
        with self._lock:
            self._watches[kind] = w
        # The server ends the watch after timeout_seconds (jittered like client-go's reflector);
        # the read timeout only catches a connection that died silently.
        server_timeout = int(self.watch_timeout_s * (1 + self.rng.random()))
        try:
            for ev in w.stream(self._list_func(kind), resource_version=rv,
                               allow_watch_bookmarks=True, timeout_seconds=server_timeout,
                               _request_timeout=(10, server_timeout + 30)):
                if self.stop_event.is_set():
                    w.stop()
                    break
                if not isinstance(ev, dict):
                    continue
                type_, obj = ev.get("type"), ev.get("raw_object")
                meta = obj.get("metadata") if isinstance(obj, dict) else None
                new_rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
                if type_ in ("ADDED", "MODIFIED", "DELETED"):
                    self.stats["events"] += 1
                    self._apply_event(kind, str(type_), obj)
                if isinstance(new_rv, str) and new_rv:
                    self.resource_version[kind] = new_rv
        except ApiException as e:
            if int(getattr(e, "status", 0) or 0) == HTTP_GONE:
                raise _Gone() from e
            raise
        finally:
            with self._lock:
                self._watches.pop(kind, None)

    def _run(self, kind: str) -> None:
        delay = self.backoff_initial_s
        while not self.stop_event.is_set():
            rv = self.resource_version.get(kind)
            try:
                if rv is None:
                    items, rv = self._list(kind)
                    self._apply_list(kind, items)
                    self.resource_version[kind] = rv
                    self.stats["lists"] += 1
                self._watch(kind, rv)
                delay = self.backoff_initial_s
            except _Gone:
                log.info("%s watch: resourceVersion %s is gone (410); re-listing", kind,
                         self.resource_version.get(kind))
                self.stats["relists_gone"] += 1
                self.resource_version.pop(kind, None)
            except Exception as e:  # the loop must survive anything the network does
                if self.stop_event.is_set():
                    break
                self.stats["reconnects"] += 1
                if kind == "podgroups" and isinstance(map_error(e, kind), NotFound):
                    # No PodGroup CRD in this cluster: say so once, look again now and then.
                    if not self._podgroups_missing_logged:
                        log.info("no PodGroup API (scheduling.x-k8s.io); gangs use the "
                                 "gang-min-member annotation and their pods' creation time")
                        self._podgroups_missing_logged = True
                    if self.stop_event.wait(self.backoff_max_s):
                        break
                    continue
                wait = delay * (0.5 + self.rng.random())
                log.warning("%s %s failed (%s); retrying in %.1fs", kind,
                            "list" if rv is None else "watch", map_error(e, kind), wait)
                if self.stop_event.wait(wait):
                    break
                delay = min(delay * 2, self.backoff_max_s)

    # ---- expiry --------------------------------------------------------------------------

    def expire_once(self) -> list[str]:
        """Release expired assumptions and remove their stale annotations from the API."""
        gone = self.cache.expire()
        self.stats["expired"] += len(gone)
        if self.binder is None:
            return gone
        stale = self.cache.stale_annotations()
        # Patched once each; the entry leaves the cache when the watch shows the annotation
        # gone (or changed), and a patch that failed for another reason is tried again.
        self._cleared &= {k for k, _, _ in stale}
        for key, uid, ours in stale:
            if key in self._cleared:
                continue
            ns, name = key.split("/", 1)
            try:
                self.binder.remove_annotations_if(ns, name, uid, ours)
                self._cleared.add(key)
            except (NotFound, Conflict):
                self._cleared.add(key)  # the pod is gone, or holds another assignment now
            except KubeError as e:
                if e.status == 403:
                    # Binds are one write now, so only pods annotated by an older extender
                    # (or by hand) need this; without `pods patch` in RBAC, give up on them
                    # once: the cache ignores the stale annotation anyway.
                    self._cleared.add(key)
                log.warning("could not clear the expired assignment of %s: %s", key, e)
        return gone

    def _expire_loop(self) -> None:
        while not self.stop_event.wait(self.expire_interval_s):
            try:
                self.expire_once()
            except Exception:  # the loop must keep running
                log.exception("expiring assumptions failed")
