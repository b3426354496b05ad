"""The extender's writes to the API server: Bindings, annotation patches, PodGroup reads.

A Binding is posted on the client's own connection pool (urllib3, TLS and client
certificates as the kubeconfig set them) with an orjson body, not through the generated
client: that path validates every argument with pydantic and builds and serializes
V1Binding models, which cost more CPU per bind than the write itself (py-spy on
`gts bench e2e`). The pool is looked up once and the request made on it directly, with the
headers and timeout built once: PoolManager.request's URL parsing and pool-key building cost
about as much client CPU as the rest of the request. The pool does not block: binds of
different pods each take an idle connection or open one, and never wait for each other.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import orjson
import urllib3
from kubernetes import client as k8s

from scheduler.cluster.kube_errors import (
    ApiError,
    Conflict,
    NotFound,
    error_for_status,
    map_error,
    status_message,
)
from scheduler.constants import POD_GROUP_API

# How long a bearer token read through the configuration is reused. The read runs the
# kubeconfig loader's refresh hook, which rebuilds the configuration's host and proxy settings
# (an environment scan) on every call: a few percent of the extender's CPU per bind in
# `gts bench e2e`. Tokens rotate on the scale of minutes to hours (the in-cluster loader
# re-reads its file once a minute), so a second's reuse never sends one that has expired.
TOKEN_REUSE_S = 1.0


def _annotation_path(key: str) -> str:
    # JSON Pointer (RFC 6901): "~" and "/" in a key are escaped as "~0" and "~1".
    return "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")


def consume(resp: Any) -> bytes:
    """Read the whole body of a raw response and hand its connection back to the pool.

    An unread body left on a kept-alive connection would be read as the next response.
    """
    data: bytes = resp.data
    resp.release_conn()
    return data


def binding_body(ns: str, name: str, uid: str, node: str,
                 annotations: Mapping[str, str] | None) -> bytes:
    """The v1 Binding of pod ns/name (uid as a precondition when given) to `node`."""
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if uid:
        meta["uid"] = uid
    if annotations:
        meta["annotations"] = dict(annotations)
    return orjson.dumps({"apiVersion": "v1", "kind": "Binding", "metadata": meta,
                         "target": {"apiVersion": "v1", "kind": "Node", "name": node}})


class KubeBinder:
    """Bindings (raw, see the module doc), pod annotation patches and PodGroup reads."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        request_timeout_s: float = 5.0,
        field_manager: str = "gpu-topology-scheduler",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api_client = api_client
        self.core = k8s.CoreV1Api(api_client)
        self.custom = k8s.CustomObjectsApi(api_client)
        self.timeout = request_timeout_s
        self.field_manager = field_manager
        # What every Binding POST shares, built once (see _post for the pool).
        self._timeout = urllib3.Timeout(total=request_timeout_s)
        self._bind_headers = {"Content-Type": "application/json", "Accept": "application/json",
                              "User-Agent": api_client.user_agent}
        self._pool: Any = None
        self._clock = clock
        self._token: tuple[float, str | None] | None = None  # (read at, value)
        self._token_lock = threading.Lock()

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
            consume(resp)
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
        Never retried here: a repeated POST of a Binding that landed answers 409, which would
        report a bound pod as failed; kube-scheduler retries the pod instead.
        """
        what = f"binding pod {ns}/{name} to {node}"
        path = f"/api/v1/namespaces/{quote(ns, safe='')}/pods/{quote(name, safe='')}/binding"
        headers = dict(self._bind_headers)
        token = self._bearer()
        if token:
            headers["Authorization"] = token
        body = binding_body(ns, name, uid, node, annotations)
        try:
            resp = self._post(path, body, headers)
        except Exception as e:  # every client failure is mapped to our small set
            raise map_error(e, what) from e
        if not 200 <= resp.status < 300:
            raise error_for_status(resp.status, f"{what}: "
                                   f"{status_message(resp.data, resp.reason or str(resp.status))}")

    def _bearer(self) -> str | None:
        """The Authorization value, read through the configuration (so a token that rotates
        is re-read) at most once per TOKEN_REUSE_S."""
        now = self._clock()
        with self._token_lock:
            held = self._token
            if held is not None and 0 <= now - held[0] < TOKEN_REUSE_S:
                return held[1]
            token: str | None = self.api_client.configuration.get_api_key_with_prefix(
                "BearerToken", alias="authorization")
            self._token = (now, token)
            return token

    def _post(self, path: str, body: bytes, headers: dict[str, str]) -> Any:
        """POST on the API server's connection pool, the body read and the connection back.

        The pool is looked up once (PoolManager.request parses the URL and rebuilds the pool
        key on every call); should it be closed (by closing the client, or by a manager that
        closes the pools it evicts, as urllib3 1.x did), the request was not sent and is made
        again on the pool the manager has now.
        """
        for _ in range(2):
            pool = self._pool
            if pool is None:
                pool = self._pool = self.api_client.rest_client.pool_manager.connection_from_url(
                    self.api_client.configuration.host)
            try:
                return pool.urlopen("POST", path, body=body, headers=headers, retries=False,
                                    timeout=self._timeout, assert_same_host=False)
            except urllib3.exceptions.ClosedPoolError:
                self._pool = None
        raise ApiError(0, "the API server's connection pool was closed twice in a row")

    def get_podgroup_min_member(self, ns: str, name: str) -> int | None:
        """spec.minMember of a scheduling.x-k8s.io PodGroup; None if it or the field is absent."""
        group, version, plural = POD_GROUP_API
        try:
            resp: Any = self.custom.get_namespaced_custom_object(
                group, version, ns, plural, name,
                _preload_content=False, _request_timeout=self.timeout)
            data = json.loads(consume(resp))
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
