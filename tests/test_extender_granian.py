"""`--http-server=granian`: the same extender behind granian's Rust HTTP/1.1, HTTP/2 and TLS.

The same checks the built-in server has where granian can be held to them: verbs over HTTP/2
and HTTP/1.1, mutual TLS, a blocked bind that does not hold up a filter, bodies over the limit,
a stalled body, and the option itself.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from extender_fakes import (
    KEY,
    ExtenderClient,
    FakeBinder,
    address,
    pod_obj,
    spec,
    static_cache,
    wait_for,
)
from h2_test_client import H2Client
from kube_scheduler_oracle import check_bind_reply, check_filter_reply
from pki import client_context, make_pki
from test_extender_http2 import (
    NAMES,
    GatedBinder,
    bind_doc,
    filter_doc,
    filtered,
)

from scheduler.extender.config import ConfigError, ServeConfig, add_arguments, resolve
from scheduler.extender.granian_server import GranianExtenderServer, TlsFiles
from scheduler.extender.runtime import Extender, build
from scheduler.extender.server import DEFAULT_LIMITS, Limits
from scheduler.extender.service import ServiceOptions
from scheduler.podcodec.signing import Signer

# The module under test imports granian only when a server is made.
pytest.importorskip("granian", reason="granian is not installed (the [granian] extra; "
                                      "`pip install -e '.[dev]'` has it)")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return make_pki(tmp_path_factory.mktemp("pki"))


def serve(pki: dict[str, str], binder: FakeBinder | None = None, *, client_ca: bool = True,
          limits: Limits = DEFAULT_LIMITS, http2: bool = True) -> Extender:
    tls = TlsFiles(pki["srv.crt"], pki["srv.key"], pki["ca.crt"] if client_ca else None)
    cache = static_cache([spec(n) for n in NAMES])
    e = build(cache, binder or FakeBinder(), Signer(KEY), ServiceOptions(), limits=limits,
              serve_with=lambda app: GranianExtenderServer(app, "127.0.0.1", 0, tls, limits,
                                                           http2=http2)).start()
    # granian binds its socket in the serving thread: wait until it accepts.
    end = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(address(e), timeout=1).close()
            return e
        except OSError:
            if time.monotonic() > end:
                e.stop()
                raise
            time.sleep(0.05)


@pytest.fixture
def gated(pki: dict[str, str]) -> Iterator[tuple[Extender, GatedBinder]]:
    binder = GatedBinder()
    e = serve(pki, binder)
    yield e, binder
    binder.gate.set()
    e.stop()


def h2c(e: Extender, pki: dict[str, str]) -> H2Client:
    c = H2Client(address(e), client_context(pki))
    assert c.protocol == "h2"
    return c


def test_filter_prioritize_and_bind_over_http2(pki: dict[str, str]) -> None:
    binder = FakeBinder()
    e = serve(pki, binder)
    try:
        c = h2c(e, pki)
        pods = [pod_obj(f"p{i}", gpus=1 + i % 4) for i in range(6)]
        filters = {c.post("filter", filter_doc(p)): p for p in pods}  # all in flight at once
        for sid, p in filters.items():
            r = c.wait(sid)
            assert r.status == 200 and r.headers["content-type"] == "application/json"
            assert check_filter_reply(r.json(), filter_doc(p))
        for p in pods:  # one at a time, as kube-scheduler's cycle runs
            node = filtered(c, p)
            prio = c.wait(c.post("prioritize", filter_doc(p)))
            assert sorted(h["Host"] for h in prio.json()) == NAMES
            assert check_bind_reply(c.wait(c.post("bind", bind_doc(p, node))).json()) == ""
        assert len(binder.bound) == len(pods)
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


def test_binds_are_answered_on_workers_and_filters_on_the_loop(
        pki: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    e = serve(pki)
    threads: dict[str, str] = {}
    real_filter, real_bind = e.service.filter, e.service.bind

    def filter_(args: Any) -> Any:
        threads["filter"] = threading.current_thread().name
        return real_filter(args)

    def bind(args: Any) -> Any:
        threads["bind"] = threading.current_thread().name
        return real_bind(args)

    monkeypatch.setattr(e.service, "filter", filter_)
    monkeypatch.setattr(e.service, "bind", bind)
    try:
        c = h2c(e, pki)
        p = pod_obj("p", gpus=1)
        assert c.wait(c.post("bind", bind_doc(p, filtered(c, p)))).status == 200
        c.close()
    finally:
        e.stop()
    assert threads["bind"].startswith("gts-granian-worker")
    assert not threads["filter"].startswith("gts-granian-worker")


def test_mutual_tls_refuses_a_client_without_a_certificate(pki: dict[str, str]) -> None:
    e = serve(pki)
    try:
        with pytest.raises((ssl.SSLError, OSError)):
            c = H2Client(address(e), client_context(pki, certificate=False))
            c.get("/healthz")
        c = h2c(e, pki)
        assert c.get("/healthz").status == 200
        c.close()
    finally:
        e.stop()


def test_http11_clients_work_and_http2_false_offers_no_h2(pki: dict[str, str]) -> None:
    for http2 in (True, False):
        e = serve(pki, http2=http2)
        try:
            ctx = client_context(pki)
            ctx.set_alpn_protocols(["http/1.1"] if http2 else ["h2", "http/1.1"])
            c = ExtenderClient(e.url, context=ctx)
            node, err = c.schedule(pod_obj(f"p-{http2}", gpus=1), NAMES)
            assert err == "" and node in NAMES
            c.close()
            if not http2:
                with socket.create_connection(address(e)) as raw, \
                        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                    assert s.selected_alpn_protocol() in (None, "http/1.1")
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
        r = c.wait(c.request("POST", "/filter", b"x" * 30_000))
        assert r.status == 413
        assert c.get("/healthz").status == 200
        c.close()
    finally:
        e.stop()


def test_a_stalled_body_gets_408_while_a_bind_on_the_same_connection_waits(
        pki: dict[str, str]) -> None:
    binder = GatedBinder()
    e = serve(pki, binder, limits=Limits(read_timeout_s=0.3))
    try:
        c = h2c(e, pki)
        slow = pod_obj("slow", gpus=1)
        bind = c.post("bind", bind_doc(slow, filtered(c, slow)))
        wait_for(lambda: binder.entered == 1, "the bind never reached the binder")
        stalled = c.request("POST", "/filter", b'{"Pod": ', end=False)  # and nothing more
        assert c.wait(stalled).status == 408
        binder.gate.set()
        assert c.wait(bind).status == 200  # the connection and its bind were left be
        assert c.get("/healthz").status == 200
        c.close()
    finally:
        binder.gate.set()
        e.stop()


def test_the_option_from_flags_and_its_bad_values() -> None:
    import argparse

    ap = argparse.ArgumentParser()
    add_arguments(ap)
    assert resolve(ap.parse_args([])).http_server == "builtin"
    cfg: ServeConfig = resolve(ap.parse_args(["--http-server", "granian"]))
    assert cfg.http_server == "granian"
    with pytest.raises(ConfigError, match=r"http-server='nginx': expected builtin or granian"):
        resolve(ap.parse_args(["--http-server", "nginx"]))
