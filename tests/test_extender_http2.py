"""HTTP/2 on the extender's TLS port: multiplexed streams, bounds, mTLS, ALPN fallback."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from extender_fakes import (
    KEY,
    ExtenderClient,
    FakeBinder,
    address,
    check_invariants,
    pod_obj,
    spec,
    static_cache,
    wait_for,
)
from h2.errors import ErrorCodes
from h2_test_client import H2Client, client_window
from kube_scheduler_oracle import check_bind_reply, check_filter_reply
from pki import client_context, make_pki

from scheduler.extender.config import ServeConfig, add_arguments, resolve
from scheduler.extender.runtime import Extender, build
from scheduler.extender.server import Limits, tls_context
from scheduler.extender.service import ServiceOptions
from scheduler.podcodec.signing import Signer

NAMES = ["a", "b", "c"]


class GatedBinder(FakeBinder):
    """A binder whose bind waits until `gate` is set (a bind blocked in the API, or a gang
    gathering)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = 0

    def bind(self, ns: str, name: str, uid: str, node: str,
             annotations: Any = None) -> None:
        with self.lock:
            self.entered += 1
        assert self.gate.wait(30), "test left the gate closed"
        super().bind(ns, name, uid, node, annotations)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return make_pki(tmp_path_factory.mktemp("pki"))


def serve(pki: dict[str, str], binder: FakeBinder | None = None, *, http2: bool = True,
          client_ca: bool = True, limits: Limits | None = None) -> Extender:
    tls = tls_context(pki["srv.crt"], pki["srv.key"], pki["ca.crt"] if client_ca else None,
                      http2=http2)
    cache = static_cache([spec(n) for n in NAMES])
    kw: dict[str, Any] = {"limits": limits} if limits is not None else {}
    return build(cache, binder or FakeBinder(), Signer(KEY), ServiceOptions(), tls=tls,
                 **kw).start()


@pytest.fixture
def gated(pki: dict[str, str]) -> Iterator[tuple[Extender, GatedBinder]]:
    binder = GatedBinder()
    e = serve(pki, binder)
    yield e, binder
    binder.gate.set()
    e.stop()


def h2c(e: Extender, pki: dict[str, str], **kw: Any) -> H2Client:
    c = H2Client(address(e), client_context(pki), **kw)
    assert c.protocol == "h2"
    return c


def filter_doc(pod: dict[str, Any], names: list[str] = NAMES) -> dict[str, Any]:
    return {"Pod": pod, "Nodes": None, "NodeNames": names}


def bind_doc(pod: dict[str, Any], node: str) -> dict[str, Any]:
    m = pod["metadata"]
    return {"PodName": m["name"], "PodNamespace": m.get("namespace", "default"),
            "PodUID": m.get("uid", ""), "Node": node}


def filtered(c: H2Client, pod: dict[str, Any]) -> str:
    """Filter `pod` over `c`; the first node that passed (bind wants a filter first)."""
    r = c.wait(c.post("filter", filter_doc(pod)))
    passed = check_filter_reply(r.json(), filter_doc(pod))
    assert passed, r.json()
    return passed[0]


def metric(e: Extender, pki: dict[str, str], name: str) -> float:
    """A sample's value from /metrics (over HTTP/1.1), 0 when absent."""
    c = ExtenderClient(e.url, context=client_context(pki))
    status, text = c.raw("GET", "/metrics")
    c.close()
    assert status == 200
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_concurrent_streams_on_one_connection_get_their_own_replies(
        pki: dict[str, str]) -> None:
    binder = FakeBinder()
    e = serve(pki, binder)
    try:
        c = h2c(e, pki)
        pods = [pod_obj(f"p{i}", gpus=1 + i % 4) for i in range(8)]
        # Every filter and prioritize in flight at once, with health and readiness between.
        filters = {c.post("filter", filter_doc(p)): p for p in pods}
        prios = {c.post("prioritize", filter_doc(p)): p for p in pods}
        health, ready = c.request("GET", "/healthz"), c.request("GET", "/readyz")
        chosen: dict[str, str] = {}
        for sid, p in filters.items():
            r = c.wait(sid)
            assert r.status == 200 and r.headers["content-type"] == "application/json"
            assert int(r.headers["content-length"]) == len(r.body)
            passed = check_filter_reply(r.json(), filter_doc(p))
            assert passed, r.json()
            chosen[p["metadata"]["name"]] = passed[0]
        for sid, _p in prios.items():
            r = c.wait(sid)
            assert r.status == 200
            assert sorted(h["Host"] for h in r.json()) == NAMES
        assert (c.wait(health).status, bytes(c.wait(health).body)) == (200, b"ok\n")
        assert c.wait(ready).status == 200
        # All binds at once: the first takes the GPUs every score assumed, and the others
        # that lost the race are told to retry, as kube-scheduler would be.
        binds = {c.post("bind", bind_doc(p, chosen[p["metadata"]["name"]])): p for p in pods}
        errors = {p["metadata"]["name"]: check_bind_reply(c.wait(sid).json())
                  for sid, p in binds.items()}
        assert "" in errors.values()
        assert all(err == "" or "no longer fits" in err for err in errors.values()), errors
        for p in pods:
            if errors[p["metadata"]["name"]]:
                passed = check_filter_reply(c.wait(c.post("filter", filter_doc(p))).json(),
                                            filter_doc(p))
                assert check_bind_reply(c.wait(c.post("bind", bind_doc(p, passed[0]))).json()) \
                    == ""
        assert sorted(binder.bound) == sorted(f"default/{p['metadata']['name']}" for p in pods)
        check_invariants(e.cache.snapshot)
        # Same routing as HTTP/1.1: unknown paths and wrong methods.
        assert c.get("/nope").status == 404
        assert c.get("/filter").status == 405
        bad = c.wait(c.request("POST", "/filter", b"{not json", content_length=9))
        assert bad.status == 400 and "filter" in bad.json()["Error"]
        # Metrics are shared: the requests above were counted, the connection as h2.
        r = c.get("/metrics")
        text = bytes(r.body).decode()
        assert r.status == 200 and 'gts_extender_connections_total{protocol="h2"} 1.0' in text
        n_binds = len(pods) + sum(1 for err in errors.values() if err)
        assert f'gts_extender_requests_total{{code="200",verb="bind"}} {n_binds}.0' in text
        c.close()
    finally:
        e.stop()


def test_a_blocked_bind_does_not_block_a_filter_on_the_same_connection(
        gated: tuple[Extender, GatedBinder], pki: dict[str, str]) -> None:
    e, binder = gated
    c = h2c(e, pki)
    held = pod_obj("held", gpus=1)
    node = filtered(c, held)
    sid_bind = c.post("bind", bind_doc(held, node))
    wait_for(lambda: binder.entered == 1, "the bind never reached the binder")
    other = pod_obj("other", gpus=2)
    r = c.wait(c.post("filter", filter_doc(other)))
    assert r.status == 200 and check_filter_reply(r.json(), filter_doc(other))
    assert not c.responses[sid_bind].ended  # the bind is still waiting
    binder.gate.set()
    r = c.wait(sid_bind)
    assert r.status == 200 and check_bind_reply(r.json()) == ""
    assert binder.bound == {"default/held": node}
    c.close()


def test_what_may_wait_goes_to_a_worker_and_the_rest_is_answered_on_the_connection(
        pki: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    e = serve(pki)
    threads: list[tuple[str, str]] = []
    real_filter, real_bind = e.service.filter, e.service.bind

    def filter_(args: Any) -> Any:
        threads.append(("filter", threading.current_thread().name))
        return real_filter(args)

    def bind(args: Any) -> Any:
        threads.append(("bind", threading.current_thread().name))
        return real_bind(args)

    monkeypatch.setattr(e.service, "filter", filter_)
    monkeypatch.setattr(e.service, "bind", bind)
    try:
        c = h2c(e, pki)
        single = pod_obj("single", gpus=1)
        c.wait(c.post("bind", bind_doc(single, filtered(c, single))))
        member = pod_obj("member", gpus=1, gang="g", min_member=2)
        assert c.wait(c.post("filter", filter_doc(member))).status == 200
        c.close()
    finally:
        e.stop()
    where = {verb + ("-gang" if i == 2 else ""): t for i, (verb, t) in enumerate(threads)}
    workers = "gts-h2-request"
    assert not where["filter"].startswith(workers)  # the connection's own thread
    assert where["bind"].startswith(workers) and where["filter-gang"].startswith(workers)


@pytest.mark.parametrize(("path", "pod", "waits"), [
    ("/filter", pod_obj("p"), False),
    ("/prioritize?x=1", pod_obj("p"), False),
    ("/healthz", None, False),
    ("/bind", None, True),
    ("/metrics", None, True),
    ("/filter", pod_obj("p", gang="g", min_member=2), True),
    ("/filter", pod_obj("p", annotations={"scheduling.k8s.io/group-name": "g"}), True),
])
def test_may_wait_by_verb_and_gang_markers(path: str, pod: dict[str, Any] | None,
                                           waits: bool, pki: dict[str, str]) -> None:
    e = serve(pki)
    try:
        body = json.dumps(filter_doc(pod)).encode() if pod is not None else b"{}"
        assert e.server.app.may_wait(path, body) is waits
    finally:
        e.stop()


def test_bodies_over_the_limit_are_refused_and_the_connection_goes_on(
        pki: dict[str, str]) -> None:
    e = serve(pki, limits=Limits(max_body_bytes=10_000))
    try:
        c = h2c(e, pki)
        # Announced too large: refused before any of it is read.
        r = c.wait(c.request("POST", "/filter", content_length=50_000, end=False))
        assert r.status == 413 and "10000" in r.json()["Error"]
        # Not announced: refused once what arrived passes the limit.
        sid = c.request("POST", "/filter", b"x" * 30_000)
        r = c.wait(sid)
        assert r.status == 413
        assert c.get("/healthz").status == 200
        assert e.server._inflight == 0  # every reserved byte was given back
        c.close()
    finally:
        e.stop()


def test_a_names_only_body_for_20000_nodes_needs_no_window_update(pki: dict[str, str]) -> None:
    e = serve(pki)
    try:
        c = h2c(e, pki)
        names = [f"node-{i:05d}.rack-{i // 40:03d}.example.internal" for i in range(20_000)]
        doc = filter_doc(pod_obj("big", gpus=1), names)
        body = json.dumps(doc).encode()
        assert len(body) > 500_000
        # The whole body fits the windows the server granted up front (stream and connection).
        assert client_window(c) >= len(body)
        assert c.h2.outbound_flow_control_window >= len(body)
        r = c.wait(c.post("filter", doc))
        assert r.status == 200
        assert set(r.json()["FailedNodes"]) == set(names)  # none of them is in the cache
        c.close()
    finally:
        e.stop()


def test_a_large_reply_waits_for_the_clients_window(pki: dict[str, str]) -> None:
    e = serve(pki)
    try:
        c = h2c(e, pki, window=1_000)  # the server must stop after 1,000 bytes and wait
        names = [f"missing-{i}" for i in range(2_000)]
        r = c.wait(c.post("filter", filter_doc(pod_obj("p", gpus=1), names)))
        assert r.status == 200 and len(r.body) > 20_000
        assert int(r.headers["content-length"]) == len(r.body)
        assert set(r.json()["FailedNodes"]) == set(names)
        c.close()
    finally:
        e.stop()


def test_streams_over_the_limit_are_refused_one_by_one(pki: dict[str, str]) -> None:
    binder = GatedBinder()
    e = serve(pki, binder, limits=Limits(h2_max_streams=2))
    try:
        first = h2c(e, pki)
        pods = [pod_obj(f"g{i}", gpus=1) for i in range(3)]
        nodes = [filtered(first, p) for p in pods]
        first.close()
        # Sent before the server's SETTINGS are read, so this client does not hold back.
        c = h2c(e, pki, read_settings=False)
        sids = [c.post("bind", bind_doc(p, n)) for p, n in zip(pods, nodes, strict=True)]
        r = c.wait(sids[2])
        assert r.reset == ErrorCodes.REFUSED_STREAM and r.status == 0
        assert c.h2.remote_settings.max_concurrent_streams == 2
        binder.gate.set()
        for sid in sids[:2]:
            assert c.wait(sid).status == 200
        # The connection survived the refusal.
        assert c.get("/healthz").status == 200
        c.close()
    finally:
        binder.gate.set()
        e.stop()


def test_a_request_reset_while_answered_still_counts_toward_the_stream_limit(
        pki: dict[str, str]) -> None:
    # Request, reset, repeat ("rapid reset"): the requests are still being answered, so they
    # hold their places and the next one is refused.
    binder = GatedBinder()
    e = serve(pki, binder, limits=Limits(h2_max_streams=2))
    try:
        first = h2c(e, pki)
        pods = [pod_obj(f"r{i}", gpus=1) for i in range(3)]
        nodes = [filtered(first, p) for p in pods]
        first.close()
        c = h2c(e, pki)
        for p, n in zip(pods[:2], nodes[:2], strict=True):
            sid = c.post("bind", bind_doc(p, n))
            c.h2.reset_stream(sid, ErrorCodes.CANCEL)
            c.flush()
        wait_for(lambda: binder.entered == 2, "both binds in the service")
        r = c.wait(c.post("bind", bind_doc(pods[2], nodes[2])))
        assert r.reset == ErrorCodes.REFUSED_STREAM and r.status == 0
        binder.gate.set()
        # Once those answers are in, their places are free again.
        wait_for(lambda: c.get("/healthz").status == 200, "a new stream accepted")
        c.close()
    finally:
        binder.gate.set()
        e.stop()


def test_mutual_tls_refuses_an_h2_client_without_a_certificate(pki: dict[str, str]) -> None:
    e = serve(pki)
    try:
        with pytest.raises((ssl.SSLError, OSError)):
            c = H2Client(address(e), client_context(pki, certificate=False))
            c.get("/healthz")
        assert metric(e, pki, 'gts_extender_connections_total{protocol="h2"}') == 0
        c = h2c(e, pki)
        assert c.get("/healthz").status == 200
        c.close()
    finally:
        e.stop()


def test_http11_clients_still_work_on_the_same_port(pki: dict[str, str]) -> None:
    e = serve(pki)
    try:
        for alpn in (None, ["http/1.1"]):
            ctx = client_context(pki)
            if alpn:
                ctx.set_alpn_protocols(alpn)
            c = ExtenderClient(e.url, context=ctx)
            node, err = c.schedule(pod_obj(f"p-{alpn}", gpus=1), NAMES)
            assert err == "" and node in NAMES
            c.close()
        assert metric(e, pki, 'gts_extender_connections_total{protocol="http/1.1"}') >= 2
        assert metric(e, pki, 'gts_extender_connections_total{protocol="h2"}') == 0
    finally:
        e.stop()


def test_http2_false_offers_no_h2(pki: dict[str, str]) -> None:
    e = serve(pki, http2=False)
    try:
        ctx = client_context(pki)
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection(address(e)) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            assert s.selected_alpn_protocol() is None  # Go's client then speaks HTTP/1.1
        c = ExtenderClient(e.url, context=ctx)
        assert c.raw("GET", "/healthz") == (200, b"ok\n")
        c.close()
    finally:
        e.stop()


def test_http2_option_from_flag_and_config_file(tmp_path: Path) -> None:
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    assert resolve(p.parse_args([])).http2 is True
    assert resolve(p.parse_args(["--http2=false"])).http2 is False
    f = tmp_path / "serve.yaml"
    f.write_text("http2: false\n")
    assert resolve(p.parse_args(["--config", str(f)])).http2 is False
    assert resolve(p.parse_args(["--config", str(f), "--http2", "true"])).http2 is True
    from scheduler.extender.config import ConfigError

    with pytest.raises(ConfigError, match="http2"):
        resolve(p.parse_args(["--http2", "maybe"]))
    assert ServeConfig().http2


def test_a_protocol_error_closes_only_that_connection(pki: dict[str, str]) -> None:
    e = serve(pki)
    try:
        c = h2c(e, pki)
        # A DATA frame on stream 0 is a connection error (RFC 9113 6.1).
        c.sock.sendall(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")
        with pytest.raises(ConnectionError):
            while True:
                c.pump()
        assert c.terminated is not None and c.terminated.error_code == ErrorCodes.PROTOCOL_ERROR
        c.close()
        wait_for(lambda: e.server.h2_errors == 1, "the error was not counted")
        assert metric(e, pki, "gts_extender_http2_protocol_errors_total") == 1
        c = h2c(e, pki)
        assert c.get("/healthz").status == 200
        c.close()
    finally:
        e.stop()


def test_shutdown_sends_goaway(pki: dict[str, str]) -> None:
    e = serve(pki)
    c = h2c(e, pki)
    assert c.get("/healthz").status == 200
    e.stop()
    with pytest.raises(ConnectionError):
        while True:
            c.pump()
    assert c.terminated is not None and c.terminated.error_code == ErrorCodes.NO_ERROR
    c.close()


def test_the_reaper_cuts_idle_and_stalled_connections_but_not_busy_ones(
        pki: dict[str, str]) -> None:
    binder = GatedBinder()
    e = serve(pki, binder, limits=Limits(idle_timeout_s=0.3, read_timeout_s=0.3,
                                         reap_interval_s=0.05))
    try:
        idle = h2c(e, pki)
        assert idle.get("/healthz").status == 200
        stalled = h2c(e, pki)
        stalled.request("POST", "/filter", b'{"Pod": ', end=False)  # and nothing more
        busy = h2c(e, pki)
        slow = pod_obj("slow", gpus=1)
        sid = busy.post("bind", bind_doc(slow, filtered(busy, slow)))
        wait_for(lambda: binder.entered == 1, "the bind never reached the binder")
        for c in (idle, stalled):
            with pytest.raises((ConnectionError, ssl.SSLError, OSError)):
                while True:
                    c.pump()
            c.close()
        assert e.server.reaped >= 2
        binder.gate.set()
        assert busy.wait(sid).status == 200  # the waiting bind kept its connection
        busy.close()
        wait_for(lambda: e.server._inflight == 0, "the stalled body's bytes were kept")
    finally:
        binder.gate.set()
        e.stop()


def test_a_stalled_body_is_reset_while_a_bind_on_the_same_connection_is_answered(
        pki: dict[str, str]) -> None:
    binder = GatedBinder()
    e = serve(pki, binder, limits=Limits(read_timeout_s=0.3, reap_interval_s=0.05))
    try:
        c = h2c(e, pki)
        slow = pod_obj("slow", gpus=1)
        bind = c.post("bind", bind_doc(slow, filtered(c, slow)))
        wait_for(lambda: binder.entered == 1, "the bind never reached the binder")
        stalled = c.request("POST", "/filter", b'{"Pod": ', end=False)  # and nothing more
        r = c.wait(stalled)
        assert r.reset == ErrorCodes.CANCEL and r.status == 0
        assert e.server._inflight == 0
        binder.gate.set()
        assert c.wait(bind).status == 200  # the connection and its bind were left be
        assert c.get("/healthz").status == 200
        c.close()
    finally:
        binder.gate.set()
        e.stop()


def test_an_idle_h2_connection_counts_toward_the_cap_and_is_evicted_first(
        pki: dict[str, str]) -> None:
    e = serve(pki, limits=Limits(max_connections=2))
    try:
        idle = h2c(e, pki)
        assert idle.get("/healthz").status == 200
        others = [ExtenderClient(e.url, context=client_context(pki)) for _ in range(2)]
        for c in others:  # the second of these needs a slot: the idle h2 connection's
            assert c.raw("GET", "/healthz") == (200, b"ok\n")
        with pytest.raises((ConnectionError, ssl.SSLError, OSError)):
            while True:
                idle.pump()
        assert e.server.evicted == 1 and e.server.connections == 2
        idle.close()
        for c in others:
            c.close()
    finally:
        e.stop()
