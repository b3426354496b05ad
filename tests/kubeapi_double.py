"""A small Kubernetes API server double on 127.0.0.1 for the cache's watch and binder tests.

Implements only what scheduler.cluster.kube_watch and kube_binder use, with the real
apiserver's shapes:
- GET /api/v1/nodes, GET /api/v1/pods (list: `{"kind": "NodeList", "metadata":
  {"resourceVersion": N}, "items": [...]}`; `fieldSelector` on status.phase and spec.nodeName);
- the same with `?watch=true&resourceVersion=N` (chunked JSON lines of ADDED / MODIFIED /
  DELETED / BOOKMARK events; a too-old version gets an ERROR event with a 410 Status, or an HTTP
  410 when `gone_as_http` is set; `timeoutSeconds` ends the stream);
- PATCH /api/v1/namespaces/{ns}/pods/{name} (merge and strategic-merge patches of maps, 404
  when missing, 409 when metadata.uid in the patch differs from the pod's; JSON patches with
  test/add/replace/remove, 422 when a test fails; 415 for other content types);
- POST /api/v1/namespaces/{ns}/pods/{name}/binding (sets spec.nodeName and copies the
  Binding's metadata.annotations onto the pod; 409 when already bound
  or on a uid mismatch; answers 201 with a Status object, like the real apiserver);
- GET /apis/scheduling.x-k8s.io/v1alpha1/namespaces/{ns}/podgroups/{name}.
Test hooks change objects (each change is a watch event), compact history, drop watch
connections, send bookmarks, and inject failures (a status code or a delay) per request.
"""

from __future__ import annotations

import copy
import json
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Obj = dict[str, Any]
_POD_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)$")
_BIND_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/binding$")
_PG_PATH = re.compile(
    r"^/apis/scheduling\.x-k8s\.io/v1alpha1/namespaces/([^/]+)/podgroups/([^/]+)$")
_LIST_KIND = {"/api/v1/nodes": "Node", "/api/v1/pods": "Pod",
              "/apis/scheduling.x-k8s.io/v1alpha1/podgroups": "PodGroup"}
# Reads of `gts status`: one node, one pod, a namespace's pods and events.
_NODE_PATH = re.compile(r"^/api/v1/nodes/([^/]+)$")
_NS_PODS_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/pods$")
_NS_EVENTS_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/events$")


def status_object(code: int, reason: str, message: str) -> Obj:
    """A metav1.Status as the apiserver writes it."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Success" if code < 400 else "Failure",
            "message": message, "reason": reason, "code": code}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (null deletes a key)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ValueError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(target: Obj, ops: list[Any]) -> Obj:
    """RFC 6902 JSON Patch on objects (test, add, replace, remove); ValueError on failure."""
    doc = copy.deepcopy(target)
    for op in ops:
        parts = _pointer(op["path"])
        parent: Any = doc
        for p in parts[:-1]:
            if not isinstance(parent, dict) or p not in parent:
                raise ValueError(f"path {op['path']!r} does not exist")
            parent = parent[p]
        last = parts[-1]
        if not isinstance(parent, dict):
            raise ValueError(f"path {op['path']!r} is not in an object")
        kind = op["op"]
        if kind == "test":
            if parent.get(last, object()) != op["value"]:
                raise ValueError(f"testing value {op['path']} failed")
        elif kind == "remove":
            if last not in parent:
                raise ValueError(f"unable to remove nonexistent key: {last}")
            del parent[last]
        elif kind in ("add", "replace"):
            if kind == "replace" and last not in parent:
                raise ValueError(f"replace operation does not apply: {last} is missing")
            parent[last] = copy.deepcopy(op["value"])
        else:
            raise ValueError(f"unsupported operation {kind!r}")
    return doc


def _field(obj: Obj, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return "" if cur is None else str(cur)


def matches_selector(obj: Obj, selector: str) -> bool:
    """Field selectors of the form `a.b=v,c.d!=w` (what the cache's pod watch sends)."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if _field(obj, k) == v:
                return False
        else:
            k, v = term.split("=", 1)
            if _field(obj, k.rstrip("=")) != v:
                return False
    return True


@dataclass
class Fault:
    """An injected failure for requests whose method and path match."""

    method: str
    path: re.Pattern[str]
    status: int | None = None
    delay_s: float = 0.0
    times: int = 1
    message: str = "injected failure"


@dataclass
class _Event:
    rv: int
    kind: str
    type: str
    obj: Obj
    prev: Obj | None


class KubeAPIDouble:
    """The server and its state; use as a context manager or call start()/stop()."""

    def __init__(self, *, gone_as_http: bool = False) -> None:
        self.gone_as_http = gone_as_http
        self.cond = threading.Condition()
        self.rv = 100
        self.compacted_rv = 0
        self.nodes: dict[str, Obj] = {}
        self.pods: dict[tuple[str, str], Obj] = {}
        self.podgroups: dict[tuple[str, str], Obj] = {}
        self.events: list[_Event] = []
        self.k8s_events: list[Obj] = []  # core/v1 Event objects (put_event)
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.watch_count = 0
        self._drop_generation = 0
        self._bookmark_generation = 0
        self._stopping = False
        self._paused = False
        self._uid = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # ---- life cycle ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, http://127.0.0.1:PORT."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> KubeAPIDouble:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """End every watch and stop serving."""
        with self.cond:
            self._stopping = True
            self.cond.notify_all()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> KubeAPIDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- test hooks ----------------------------------------------------------------------

    def _next_uid(self) -> str:
        self._uid += 1
        return f"00000000-0000-4000-8000-{self._uid:012d}"

    def _record(self, kind: str, type_: str, obj: Obj, prev: Obj | None) -> None:
        self.rv += 1
        if type_ != "DELETED":
            obj["metadata"]["resourceVersion"] = str(self.rv)
        else:
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self.rv)
        self.events.append(_Event(self.rv, kind, type_, copy.deepcopy(obj),
                                  copy.deepcopy(prev) if prev is not None else None))
        self.cond.notify_all()

    def put_node(self, node: Obj) -> Obj:
        """Create or replace a node (ADDED or MODIFIED event); returns the stored copy."""
        with self.cond:
            obj = copy.deepcopy(node)
            obj.setdefault("metadata", {})
            name = obj["metadata"]["name"]
            prev = self.nodes.get(name)
            obj["metadata"].setdefault("uid", prev["metadata"]["uid"] if prev else self._next_uid())
            self.nodes[name] = obj
            self._record("Node", "MODIFIED" if prev else "ADDED", obj, prev)
            return copy.deepcopy(obj)

    def delete_node(self, name: str) -> None:
        """Delete a node (DELETED event)."""
        with self.cond:
            prev = self.nodes.pop(name)
            self._record("Node", "DELETED", prev, prev)

    def put_pod(self, pod: Obj) -> Obj:
        """Create or replace a pod (ADDED or MODIFIED event); returns the stored copy."""
        with self.cond:
            obj = copy.deepcopy(pod)
            meta = obj.setdefault("metadata", {})
            meta.setdefault("namespace", "default")
            key = (meta["namespace"], meta["name"])
            prev = self.pods.get(key)
            meta.setdefault("uid", prev["metadata"]["uid"] if prev else self._next_uid())
            self.pods[key] = obj
            self._record("Pod", "MODIFIED" if prev else "ADDED", obj, prev)
            return copy.deepcopy(obj)

    def delete_pod(self, ns: str, name: str) -> None:
        """Delete a pod (DELETED event)."""
        with self.cond:
            prev = self.pods.pop((ns, name))
            self._record("Pod", "DELETED", prev, prev)

    def emit_raw(self, kind: str, type_: str, obj: Obj) -> None:
        """Send an arbitrary watch event (malformed objects included) without storing it."""
        with self.cond:
            self.rv += 1
            self.events.append(_Event(self.rv, kind, type_, copy.deepcopy(obj), None))
            self.cond.notify_all()

    def get_pod(self, ns: str, name: str) -> Obj | None:
        """A copy of the stored pod, None when absent."""
        with self.cond:
            p = self.pods.get((ns, name))
            return copy.deepcopy(p) if p is not None else None

    def put_event(self, event: Obj) -> None:
        """Store a core/v1 Event (listed by GET .../namespaces/{ns}/events)."""
        with self.cond:
            self.k8s_events.append(copy.deepcopy(event))

    def put_podgroup(self, ns: str, name: str, min_member: int | None) -> None:
        """Create a scheduling.x-k8s.io PodGroup (spec.minMember left out when None)."""
        spec = {} if min_member is None else {"minMember": min_member}
        with self.cond:
            prev = self.podgroups.get((ns, name))
            obj = {
                "apiVersion": "scheduling.x-k8s.io/v1alpha1", "kind": "PodGroup",
                "metadata": {"name": name, "namespace": ns, "uid": self._next_uid()},
                "spec": spec,
            }
            self.podgroups[(ns, name)] = obj
            self._record("PodGroup", "MODIFIED" if prev else "ADDED", obj, prev)

    def delete_podgroup(self, ns: str, name: str) -> None:
        """Delete a PodGroup (DELETED event)."""
        with self.cond:
            prev = self.podgroups.pop((ns, name))
            self._record("PodGroup", "DELETED", prev, prev)

    def compact(self) -> int:
        """Forget history: watches from any version before now get 410 Gone."""
        with self.cond:
            self.compacted_rv = self.rv
            self.events.clear()
            return self.rv

    def drop_watches(self) -> None:
        """Close every open watch connection abruptly (no final chunk)."""
        with self.cond:
            self._drop_generation += 1
            self.cond.notify_all()

    def pause_watches(self, paused: bool = True) -> None:
        """Hold back watch events (as a slow or partitioned apiserver would) until resumed."""
        with self.cond:
            self._paused = paused
            self.cond.notify_all()

    def bookmark(self) -> None:
        """Send a BOOKMARK with the current version to watches that allow bookmarks."""
        with self.cond:
            self._bookmark_generation += 1
            self.cond.notify_all()

    def inject(self, method: str, path: str, *, status: int | None = None,
               delay_s: float = 0.0, times: int = 1, message: str = "injected failure") -> None:
        """Fail (or delay, then handle) the next `times` requests matching method and path."""
        with self.cond:
            self.faults.append(Fault(method, re.compile(path), status, delay_s, times, message))

    def wait_for(self, predicate: Any, timeout_s: float = 10.0) -> bool:
        """Wait until predicate() is true (checked whenever state changes or every 20 ms)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if predicate():
                return True
            time.sleep(0.02)
        return bool(predicate())

    # ---- HTTP ----------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                api._serve(self, "GET")

            def do_PATCH(self) -> None:
                api._serve(self, "PATCH")

            def do_POST(self) -> None:
                api._serve(self, "POST")

        return Handler

    def _send(self, h: BaseHTTPRequestHandler, code: int, body: Obj) -> None:
        data = json.dumps(body).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _status(self, h: BaseHTTPRequestHandler, code: int, reason: str, message: str) -> None:
        self._send(h, code, status_object(code, reason, message))

    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        body: Any = None
        length = int(h.headers.get("Content-Length") or 0)
        if length:
            raw = h.rfile.read(length)
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                self._status(h, 400, "BadRequest", "body is not JSON")
                return
        with self.cond:
            self.requests.append((method, path, query, body))
            fault = next((f for f in self.faults if f.times > 0 and f.method == method
                          and f.path.search(path)), None)
            if fault is not None:
                fault.times -= 1
        if fault is not None:
            if fault.delay_s:
                time.sleep(fault.delay_s)
            if fault.status is not None:
                self._status(h, fault.status, "Injected", fault.message)
                return
        if method == "GET" and path in _LIST_KIND:
            if query.get("watch") in ("true", "1"):
                self._watch(h, _LIST_KIND[path], query)
            else:
                self._list(h, _LIST_KIND[path], query)
        elif method == "PATCH" and (m := _POD_PATH.match(path)):
            self._patch_pod(h, m[1], m[2], body)
        elif method == "POST" and (m := _BIND_PATH.match(path)):
            self._bind(h, m[1], m[2], body)
        elif method == "GET" and (m := _PG_PATH.match(path)):
            with self.cond:
                pg = copy.deepcopy(self.podgroups.get((m[1], m[2])))
            if pg is None:
                self._status(h, 404, "NotFound", f'podgroups.scheduling.x-k8s.io "{m[2]}" '
                             "not found")
            else:
                self._send(h, 200, pg)
        elif method == "GET" and self._serve_status_reads(h, path, query):
            pass
        else:
            self._status(h, 404, "NotFound", f"the server could not find {method} {path}")

    def _serve_status_reads(self, h: BaseHTTPRequestHandler, path: str,
                            query: dict[str, str]) -> bool:
        """GET one node, one pod, or a namespace's pods or events; False for other paths."""
        sel = query.get("fieldSelector", "")
        with self.cond:
            if m := _NODE_PATH.match(path):
                found = copy.deepcopy(self.nodes.get(m[1]))
                missing = f'nodes "{m[1]}" not found'
            elif m := _POD_PATH.match(path):
                found = copy.deepcopy(self.pods.get((m[1], m[2])))
                missing = f'pods "{m[2]}" not found'
            elif m := _NS_PODS_PATH.match(path):
                items = [copy.deepcopy(p) for (ns, _), p in self.pods.items()
                         if ns == m[1] and matches_selector(p, sel)]
                found = {"kind": "PodList", "apiVersion": "v1",
                         "metadata": {"resourceVersion": str(self.rv)}, "items": items}
            elif m := _NS_EVENTS_PATH.match(path):
                items = [copy.deepcopy(e) for e in self.k8s_events
                         if e.get("metadata", {}).get("namespace") == m[1]
                         and matches_selector(e, sel)]
                found = {"kind": "EventList", "apiVersion": "v1", "metadata": {},
                         "items": items}
            else:
                return False
        if found is None:
            self._status(h, 404, "NotFound", missing)
        else:
            self._send(h, 200, found)
        return True

    def _objects(self, kind: str) -> list[Obj]:
        if kind == "PodGroup":
            return list(self.podgroups.values())
        return list(self.nodes.values()) if kind == "Node" else list(self.pods.values())

    def _list(self, h: BaseHTTPRequestHandler, kind: str, query: dict[str, str]) -> None:
        sel = query.get("fieldSelector", "")
        with self.cond:
            items = [copy.deepcopy(o) for o in self._objects(kind) if matches_selector(o, sel)]
            rv = self.rv
        self._send(h, 200, {"kind": f"{kind}List", "apiVersion": "v1",
                            "metadata": {"resourceVersion": str(rv)}, "items": items})

    def _chunk(self, h: BaseHTTPRequestHandler, obj: Obj) -> None:
        data = json.dumps(obj).encode() + b"\n"
        h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        h.wfile.flush()

    def _watch(self, h: BaseHTTPRequestHandler, kind: str, query: dict[str, str]) -> None:
        sel = query.get("fieldSelector", "")
        timeout = float(query.get("timeoutSeconds") or 1800)
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        try:
            since = int(query.get("resourceVersion") or 0)
        except ValueError:
            self._status(h, 400, "BadRequest", "resourceVersion must be an integer")
            return
        with self.cond:
            self.watch_count += 1
            gone = since < self.compacted_rv
            drop_gen, mark_gen = self._drop_generation, self._bookmark_generation
        if gone and self.gone_as_http:
            self._status(h, 410, "Expired", f"too old resource version: {since} "
                         f"({self.compacted_rv})")
            return
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.close_connection = True
        if gone:
            self._chunk(h, {"type": "ERROR", "object": status_object(
                410, "Expired", f"too old resource version: {since} ({self.compacted_rv})")})
            h.wfile.write(b"0\r\n\r\n")
            return
        end = time.monotonic() + timeout
        sent = since
        try:
            while True:
                with self.cond:
                    pending = self._pending(sent, kind)
                    if (not pending and not self._stopping
                            and drop_gen == self._drop_generation
                            and (mark_gen == self._bookmark_generation or self._paused)):
                        self.cond.wait(timeout=min(0.05, max(0.0, end - time.monotonic())))
                        pending = self._pending(sent, kind)
                    dropped = drop_gen != self._drop_generation or self._stopping
                    # A bookmark while paused would skip the events held back.
                    mark = mark_gen != self._bookmark_generation and not self._paused
                    if mark:
                        mark_gen = self._bookmark_generation
                    now_rv = self.rv
                if dropped:
                    # Abrupt close: no terminating chunk, as when a proxy or apiserver dies.
                    h.connection.shutdown(socket.SHUT_RDWR)
                    return
                for e in pending:
                    sent = e.rv
                    ev = self._visible_event(e, sel)
                    if ev is not None:
                        self._chunk(h, ev)
                if mark and bookmarks:
                    sent = max(sent, now_rv)
                    self._chunk(h, {"type": "BOOKMARK", "object": {
                        "kind": kind, "apiVersion": "v1",
                        "metadata": {"resourceVersion": str(sent)}}})
                if time.monotonic() >= end:
                    h.wfile.write(b"0\r\n\r\n")
                    h.wfile.flush()
                    return
        except (BrokenPipeError, ConnectionResetError, OSError):
            return

    def _pending(self, sent: int, kind: str) -> list[_Event]:
        if self._paused:
            return []
        return [e for e in self.events if e.rv > sent and e.kind == kind]

    @staticmethod
    def _visible_event(e: _Event, selector: str) -> Obj | None:
        # An object entering or leaving the selector is ADDED or DELETED for this watch.
        now = e.type != "DELETED" and matches_selector(e.obj, selector)
        before = e.prev is not None and matches_selector(e.prev, selector)
        if e.type == "DELETED":
            return {"type": "DELETED", "object": e.obj} if before else None
        if now and not before:
            return {"type": "ADDED", "object": e.obj}
        if now:
            return {"type": "MODIFIED", "object": e.obj}
        if before:
            return {"type": "DELETED", "object": e.obj}
        return None

    def _patch_pod(self, h: BaseHTTPRequestHandler, ns: str, name: str, body: Any) -> None:
        ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype not in ("application/merge-patch+json",
                         "application/strategic-merge-patch+json",
                         "application/json-patch+json"):
            self._status(h, 415, "UnsupportedMediaType",
                         f"the body of the request was in an unknown format - accepted media "
                         f"types include: application/json-patch+json, "
                         f"application/merge-patch+json, got {ctype!r}")
            return
        is_json_patch = ctype == "application/json-patch+json"
        if not isinstance(body, list if is_json_patch else dict):
            self._status(h, 400, "BadRequest", "patch body has the wrong JSON type")
            return
        with self.cond:
            pod = self.pods.get((ns, name))
            if pod is None:
                self._status(h, 404, "NotFound", f'pods "{name}" not found')
                return
            if isinstance(body, list):  # a JSON patch (the type was checked above)
                try:
                    new = json_patch(pod, body)
                except ValueError as e:
                    # The apiserver answers a failed `test` (or a bad path) with 422.
                    self._status(h, 422, "Invalid", str(e))
                    return
                self.pods[(ns, name)] = new
                self._record("Pod", "MODIFIED", new, pod)
                out = copy.deepcopy(new)
                self._send(h, 200, out)
                return
            want_uid = (body.get("metadata") or {}).get("uid")
            if want_uid is not None and want_uid != pod["metadata"]["uid"]:
                self._status(h, 409, "Conflict", f'Operation cannot be fulfilled on pods '
                             f'"{name}": Precondition failed: UID in precondition: '
                             f'{want_uid}, UID in object meta: {pod["metadata"]["uid"]}')
                return
            new = merge_patch(pod, body)
            self.pods[(ns, name)] = new
            self._record("Pod", "MODIFIED", new, pod)
            out = copy.deepcopy(new)
        self._send(h, 200, out)

    def _bind(self, h: BaseHTTPRequestHandler, ns: str, name: str, body: Any) -> None:
        target = (body or {}).get("target") or {}
        node = target.get("name")
        if not isinstance(node, str) or not node:
            self._status(h, 400, "BadRequest", "Binding.target.name is required")
            return
        with self.cond:
            pod = self.pods.get((ns, name))
            if pod is None:
                self._status(h, 404, "NotFound", f'pods "{name}" not found')
                return
            uid = ((body or {}).get("metadata") or {}).get("uid")
            if uid and uid != pod["metadata"]["uid"]:
                self._status(h, 409, "Conflict", f'Operation cannot be fulfilled on '
                             f'pods/binding "{name}": Precondition failed: UID in precondition: '
                             f'{uid}, UID in object meta: {pod["metadata"]["uid"]}')
                return
            bound = (pod.get("spec") or {}).get("nodeName")
            if bound:
                self._status(h, 409, "Conflict", f'Operation cannot be fulfilled on '
                             f'pods/binding "{name}": pod {name} is already assigned to node '
                             f'"{bound}"')
                return
            new = copy.deepcopy(pod)
            new.setdefault("spec", {})["nodeName"] = node
            # setPodNodeAndMetadata: the Binding's annotations are copied onto the pod.
            ann = ((body or {}).get("metadata") or {}).get("annotations") or {}
            if ann:
                new.setdefault("metadata", {}).setdefault("annotations", {}).update(ann)
            self.pods[(ns, name)] = new
            self._record("Pod", "MODIFIED", new, pod)
        self._send(h, 201, status_object(201, "", ""))
