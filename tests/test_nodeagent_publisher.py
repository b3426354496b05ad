"""Publishing the topology and listing this node's pods, through the real kubernetes client
against a small HTTP double of the two API endpoints each uses (127.0.0.1 only)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client

from scheduler.constants import TOPOLOGY_ANNOTATION
from scheduler.nodeagent.podsource import kube_pod_source
from scheduler.nodeagent.publisher import (
    GPU_MODEL_LABEL,
    MERGE_PATCH,
    model_label_value,
    node_patch,
    publish,
)
from topology.annotation import from_json
from topology.model import GPU, NodeTopology


def topo(model: str = "NVIDIA H100 80GB HBM3", link: str = "NV18") -> NodeTopology:
    gpus = tuple(GPU(index=i, model=model, uuid=f"GPU-{i}", memory_mib=81920, numa_node=0)
                 for i in range(2))  # fmt: skip
    return NodeTopology(gpus=gpus, links=(("X", link), (link, "X")))


def merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch."""
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict):
            target[k] = merge(dict(target.get(k) or {}), v)
        else:
            target[k] = v
    return target


class FakeAPI:
    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {
            "n1": {"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}}}
        }
        self.pods: list[dict[str, Any]] = []
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.pod_queries: list[dict[str, list[str]]] = []


@pytest.fixture
def api() -> Iterator[tuple[FakeAPI, Any]]:
    state = FakeAPI()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path == "/api/v1/pods":
                state.pod_queries.append(parse_qs(url.query))
                self._send(200, {"kind": "PodList", "items": state.pods})
            elif url.path.startswith("/api/v1/nodes/"):
                node = state.nodes.get(url.path.rsplit("/", 1)[1])
                self._send(200, node) if node else self._send(404, {"kind": "Status"})
            else:
                self._send(404, {"kind": "Status"})

        def do_PATCH(self) -> None:
            name = urlparse(self.path).path.rsplit("/", 1)[1]
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.patches.append((self.headers["Content-Type"], body))
            merge(state.nodes[name], body)
            self._send(200, state.nodes[name])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    cfg = client.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
    core = client.CoreV1Api(client.ApiClient(cfg))
    yield state, core
    server.shutdown()
    server.server_close()


def test_publish_writes_annotation_and_label_by_merge_patch_once(api: tuple[FakeAPI, Any]) -> None:
    state, core = api
    t = topo()
    assert publish(core, "n1", t) is True
    assert len(state.patches) == 1
    content_type, _ = state.patches[0]
    assert content_type == MERGE_PATCH
    node = state.nodes["n1"]
    assert from_json(node["metadata"]["annotations"][TOPOLOGY_ANNOTATION]) == t
    assert node["metadata"]["labels"][GPU_MODEL_LABEL] == "NVIDIA-H100-80GB-HBM3"
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "n1"  # merge, not replace
    # unchanged: no second patch
    assert publish(core, "n1", t) is False
    assert len(state.patches) == 1
    # a changed topology patches the annotation only
    assert publish(core, "n1", topo(link="PIX")) is True
    assert set(state.patches[1][1]["metadata"]) == {"annotations"}


def test_node_patch_is_none_when_up_to_date() -> None:
    t = topo()
    patch = node_patch({"metadata": {}}, t)
    assert patch is not None
    node = merge({"metadata": {}}, patch)
    assert node_patch(node, t) is None


def test_model_label_value_follows_label_rules() -> None:
    assert model_label_value("NVIDIA A100-SXM4-80GB") == "NVIDIA-A100-SXM4-80GB"
    assert model_label_value("Tesla V100-SXM2-32GB") == "Tesla-V100-SXM2-32GB"
    long = model_label_value("X" * 70 + " (rev 1)")
    assert len(long) <= 63 and long[0].isalnum() and long[-1].isalnum()
    assert model_label_value(" weird/model (v2) ") == "weird-model-v2"


def test_pod_source_lists_pending_pods_of_this_node(api: tuple[FakeAPI, Any]) -> None:
    state, core = api
    state.pods = [{"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": {}}]
    pods = kube_pod_source(core, "n1")()
    assert pods == state.pods
    (query,) = state.pod_queries
    assert query["fieldSelector"] == ["spec.nodeName=n1,status.phase=Pending"]
