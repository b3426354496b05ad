"""List+watch of the cluster into the ClusterCache, as client-go's reflector does it.

KubeSource lists (a consistent read), then watches from the list's resourceVersion with
bookmarks, resumes from the last version seen when a watch ends or the connection drops
(exponential backoff with jitter), and re-lists when the apiserver answers 410 Gone (an HTTP
410 or an ERROR event carrying a 410 Status). Pods are watched without the terminal ones (the
field selector kube-scheduler uses): a pod that finishes leaves the watch as a DELETED event,
which releases what it held.

Events are read as raw JSON, never as the client's model objects: the watch is opened with
the client's list call (its authentication, TLS and pools) and its body read by WatchStream
(watch_stream.py), which decodes each event line with orjson; resourceVersion is tracked here
from the raw objects and BOOKMARKs.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from scheduler.cluster.cache import ClusterCache
from scheduler.cluster.kube_binder import consume
from scheduler.cluster.kube_errors import ApiError, NotFound, map_error
from scheduler.cluster.watch_stream import WatchStream
from scheduler.constants import POD_GROUP_API

log = logging.getLogger(__name__)

NON_TERMINAL_PODS = "status.phase!=Succeeded,status.phase!=Failed"
HTTP_GONE = 410


class _Gone(Exception):
    """The watch's resourceVersion is too old: re-list."""


class KubeSource:
    """List+watch of nodes, pods (and PodGroups) into a ClusterCache, a thread per kind.

    `cache.synced` becomes True once the node and pod lists are in.
    """

    def __init__(
        self,
        api_client: k8s.ApiClient,
        cache: ClusterCache,
        *,
        pod_field_selector: str = NON_TERMINAL_PODS,
        watch_timeout_s: int = 300,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        request_timeout_s: float = 30.0,
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
        self.pod_field_selector = pod_field_selector
        self.watch_timeout_s = watch_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.request_timeout_s = request_timeout_s
        self.rng = rng or random.Random()
        self.stop_event = threading.Event()
        self.stats: dict[str, int] = {"lists": 0, "relists_gone": 0, "reconnects": 0,
                                      "events": 0, "bad_events": 0}
        self._listed: set[str] = set()
        self._watches: dict[str, WatchStream] = {}
        # Kinds whose watch the server has answered: events from then on are not missed.
        self._open: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        # Last resourceVersion seen per kind ("nodes", "pods"); absent = list first.
        self.resource_version: dict[str, str] = {}

    # ---- life cycle ----------------------------------------------------------------------

    def start(self) -> KubeSource:
        """Start the watch threads."""
        targets: list[tuple[str, Callable[[], None]]] = [
            ("gts-watch-nodes", lambda: self._run("nodes")),
            ("gts-watch-pods", lambda: self._run("pods")),
        ]
        if self.watch_podgroups:
            targets.append(("gts-watch-podgroups", lambda: self._run("podgroups")))
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
        """Block until both lists are in the cache and the node and pod watches are open (or
        the timeout passes)."""
        end = timeout_s
        step = 0.02
        while end > 0:
            if self._synced():
                return True
            if self.stop_event.wait(step):
                break
            end -= step
        return self._synced()

    def _synced(self) -> bool:
        with self._lock:
            watching = self._open >= {"nodes", "pods"}
        return watching and self.cache.synced

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
        data = json.loads(consume(resp))
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
        # The server ends the watch after timeout_seconds (jittered like client-go's reflector);
        # the read timeout only catches a connection that died silently.
        server_timeout = int(self.watch_timeout_s * (1 + self.rng.random()))
        try:
            resp = self._list_func(kind)(watch=True, _preload_content=False,
                                         resource_version=rv, allow_watch_bookmarks=True,
                                         timeout_seconds=server_timeout,
                                         _request_timeout=(10, server_timeout + 30))
            stream = WatchStream(resp)
            with self._lock:
                self._watches[kind] = stream
                self._open.add(kind)  # answered: events from here on are not missed
            if self.stop_event.is_set():
                stream.stop()  # stop() ran before this stream was registered
            for ev in stream.events():
                if self.stop_event.is_set():
                    stream.stop()
                    break
                type_, obj = ev.get("type"), ev.get("object")
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
                self._open.discard(kind)

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
