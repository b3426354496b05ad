"""bench.null_extender: the do-nothing floor `gts bench e2e --extender null` measures with."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench.null_extender import NullApp, build
from scheduler.extender.metrics import ExtenderMetrics


class _Binder:
    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail = fail

    def bind(self, ns: str, name: str, uid: str, node: str,
             annotations: dict[str, str] | None = None) -> None:
        self.calls.append((ns, name, uid, node, annotations))
        if self.fail is not None:
            raise self.fail


POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "spec": {}}


def _post(app: NullApp, verb: str, doc: object) -> tuple[int, Any]:
    status, _, body = app.handle("POST", f"/{verb}", json.dumps(doc).encode())
    return status, json.loads(body)


def test_filter_passes_the_first_listed_node_and_nothing_else() -> None:
    app = NullApp(_Binder(), ExtenderMetrics())
    status, reply = _post(app, "filter", {"Pod": POD, "NodeNames": ["b", "a", "c"]})
    assert status == 200
    assert reply["NodeNames"] == ["b"]
    assert reply["FailedNodes"] == {} and reply["Error"] == ""
    status, reply = _post(app, "filter", {"Pod": POD, "NodeNames": []})
    assert status == 200 and reply["NodeNames"] == []


def test_bind_posts_a_bare_binding_and_reports_a_failure_in_error() -> None:
    binder = _Binder()
    app = NullApp(binder, ExtenderMetrics())
    args = {"PodName": "p", "PodNamespace": "ns", "PodUID": "u1", "Node": "n3"}
    status, reply = _post(app, "bind", args)
    assert (status, reply) == (200, {"Error": ""})
    assert binder.calls == [("ns", "p", "u1", "n3", None)]  # no annotations: nothing signed
    app = NullApp(_Binder(RuntimeError("409 already bound")), ExtenderMetrics())
    status, reply = _post(app, "bind", args)
    assert status == 200 and "409 already bound" in reply["Error"]


def test_bad_requests_name_the_field_and_health_is_served() -> None:
    app = NullApp(_Binder(), ExtenderMetrics())
    status, reply = _post(app, "bind", {"PodName": "p", "PodNamespace": "ns", "Node": 7})
    assert status == 400 and "Node" in reply["Error"]
    assert app.handle("GET", "/filter", b"")[0] == 405
    assert app.handle("GET", "/healthz", b"")[:1] == (200,)
    assert app.handle("GET", "/readyz", b"")[0] == 200
    assert app.may_wait("/bind", b"{}") and not app.may_wait("/filter", b"{}")


@pytest.mark.parametrize("side", [None, 0])
def test_build_serves_metrics_where_gts_serve_would(side: int | None) -> None:
    cfg: dict[str, Any] = {"host": "127.0.0.1", "port": 0}
    if side is not None:
        cfg["metrics-port"] = side
    servers = build(cfg, _Binder())
    try:
        assert len(servers) == (1 if side is None else 2)
        main = servers[0].app
        assert main.verbs
        assert (main.handle("GET", "/metrics", b"")[0] == 200) == (side is None)
        if side is not None:
            assert servers[1].app.handle("GET", "/metrics", b"")[0] == 200
            assert servers[1].app.handle("POST", "/filter", b"{}")[0] == 404
    finally:
        for s in servers:
            s.server_close()


def test_an_unknown_extender_program_is_refused_by_name(tmp_path: Any) -> None:
    from bench.controlplane import EXTENDER_PROGRAMS, ControlPlane

    assert set(EXTENDER_PROGRAMS) == {"gts", "null"}
    cp = ControlPlane(bin_dir=tmp_path, work=tmp_path)
    with pytest.raises(ValueError, match=r"'bogus'.*gts, null"):
        cp.start_extender(program="bogus")


@pytest.mark.parametrize("text", ["host: 127.0.0.1\n", "- a list\n", "port: [\n",
                                  "kubeconfig: /nonexistent/kubeconfig\n"])
def test_a_bad_config_is_refused_by_name(tmp_path: Any, text: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from bench.null_extender import main

    path = tmp_path / "serve.yaml"
    path.write_text(text)
    assert main(["--config", str(path)]) == 2
    assert f"--config {path}" in capsys.readouterr().err
