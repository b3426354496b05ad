"""Issue 8, root 3: the service trusts no caller and no input (bounds, mTLS, metrics port)."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from extender_fakes import KEY, ExtenderClient, FakeBinder, address, pod_obj, spec, static_cache
from pki import make_pki, openssl

from scheduler.constants import ALLOWED_MODELS_ANNOTATION
from scheduler.extender.metrics import ExtenderMetrics
from scheduler.extender.runtime import Extender, build
from scheduler.extender.server import ExtenderApp, Limits, tls_context
from scheduler.extender.service import ExtenderService, ServiceOptions
from scheduler.podcodec.signing import Signer

NAMES = ["a", "b", "c"]


def app_of(names: list[str]) -> ExtenderApp:
    cache = static_cache([spec(n) for n in names])
    metrics = ExtenderMetrics()
    svc = ExtenderService(cache, FakeBinder(), Signer(KEY), ServiceOptions(), metrics=metrics)
    return ExtenderApp(svc, metrics, ready=lambda: True)


def serve(limits: Limits | None = None, **kw: Any) -> Extender:
    cache = static_cache([spec(n) for n in NAMES])
    args: dict[str, Any] = {"limits": limits} if limits is not None else {}
    return build(cache, FakeBinder(), Signer(KEY), ServiceOptions(), **args, **kw).start()


@pytest.fixture
def tight() -> Iterator[Extender]:
    e = serve(Limits(max_body_bytes=10_000, max_inflight_bytes=40_000, max_connections=4,
                     idle_timeout_s=0.3, read_timeout_s=0.3, reap_interval_s=0.05))
    yield e
    e.stop()


def wait_closed(s: socket.socket, timeout: float = 10.0) -> bytes:
    """Read until the server closes the connection; what it sent (never checks the time)."""
    s.settimeout(timeout)
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return out
        except TimeoutError:
            raise AssertionError(f"the server kept the connection open; got {out[:200]!r}")\
                from None
        if not chunk:
            return out
        out += chunk


def raw(e: Extender, data: bytes) -> socket.socket:
    s = socket.create_connection(address(e), timeout=10)
    s.sendall(data)
    return s


# ---- replies are bounded ------------------------------------------------------------------

def test_a_huge_annotation_gives_a_reply_proportional_to_the_node_count() -> None:
    names = [f"n{i}" for i in range(200)]
    app = app_of(names[:2])
    pod = pod_obj("p", gpus=1, annotations={ALLOWED_MODELS_ANNOTATION: "X" * 250_000})
    status, _, body = app.handle("POST", "/filter", json.dumps(
        {"Pod": pod, "NodeNames": names}).encode())
    assert status == 200
    reply = json.loads(body)
    reasons = list(reply["FailedNodes"].values()) + \
        list(reply["FailedAndUnresolvableNodes"].values())
    assert len(reasons) == 200 and all(len(r) <= 300 for r in reasons)
    assert "at most 4096" in reasons[0]
    assert len(body) < 200 * 400


def test_lone_surrogates_in_names_get_a_400_naming_the_body_not_a_500() -> None:
    # Go's encoder never writes a lone surrogate (it writes U+FFFD), so only a hostile or broken
    # caller sends one: the strict decoder refuses the body with a reason, and the service goes on.
    app = app_of(NAMES)
    body = (b'{"Pod": {"metadata": {"name": "p\\ud800", "namespace": "default", "uid": "u"},'
            b' "spec": {"containers": [{"resources": {"requests": {"nvidia.com/gpu": "1"}}}],'
            b' "schedulerName": "gpu-topology-scheduler"}},'
            b' "NodeNames": ["a", "b\\udc00"]}')
    for verb in ("filter", "prioritize"):
        status, _, out = app.handle("POST", f"/{verb}", body)
        assert status == 400 and b"surrogate" in out, out
        json.loads(out)
    status, _, out = app.handle("POST", "/bind", (
        b'{"PodName": "p\\ud800", "PodNamespace": "default", "PodUID": "u", '
        b'"Node": "b\\udc00"}'))
    assert status == 400 and b"surrogate" in out, out
    status, _, out = app.handle("POST", "/filter", json.dumps(
        {"Pod": pod_obj("p"), "NodeNames": ["a"]}).encode())
    assert status == 200, out


def test_huge_integer_literals_are_a_400_not_a_500() -> None:
    app = app_of(NAMES)
    body = b'{"Pod": {"metadata": {"name": "p"}, "spec": {"priority": ' + b"9" * 5000 + \
        b'}}, "NodeNames": ["a"]}'
    status, _, out = app.handle("POST", "/filter", body)
    assert status == 400 and b"not JSON" in out, out


def test_candidate_lists_larger_than_the_cluster_are_not_memoized() -> None:
    app = app_of(NAMES)
    assert app.service is not None
    many = [f"x{i}" for i in range(5_000)]
    app.handle("POST", "/filter", json.dumps({"Pod": pod_obj("p"), "NodeNames": many}).encode())
    assert all(len(names) < 5_000 for names, _, _ in app.service._indices)


# ---- intake is bounded -------------------------------------------------------------------

@pytest.mark.parametrize("length", ["1_0", "+10", "1 0", "0x10", "1e3", "-1", "\u0661\u0660"])
def test_content_length_must_be_plain_digits(tight: Extender, length: str) -> None:
    s = raw(tight, f"POST /filter HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n"
                   "0123456789".encode())
    reply = wait_closed(s)
    assert reply.startswith(b"HTTP/1.1 400") or reply.startswith(b"HTTP/1.1 413")
    assert b"Content-Length" in reply.split(b"\r\n\r\n", 1)[1]
    s.close()


def test_a_body_over_the_limit_is_refused_before_it_is_read(tight: Extender) -> None:
    s = raw(tight, b"POST /filter HTTP/1.1\r\nHost: x\r\nContent-Length: 10001\r\n\r\n")
    assert wait_closed(s).startswith(b"HTTP/1.1 413")
    s.close()


def test_a_body_shorter_than_its_content_length_loses_its_connection(tight: Extender) -> None:
    s = raw(tight, b"POST /filter HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{")
    assert wait_closed(s) == b""  # reaped at read-timeout, not held for minutes
    s.close()
    assert tight.server.reaped >= 1


def test_idle_connections_cannot_starve_valid_requests(tight: Extender) -> None:
    idle = [raw(tight, b"") for _ in range(12)]  # three times the connection cap
    c = ExtenderClient(tight.url)
    node, err = c.schedule(pod_obj("valid", gpus=1), NAMES)
    assert err == "" and node in NAMES
    c.close()
    assert tight.server.connections <= 4
    for s in idle:
        s.close()


def test_idle_keep_alive_connections_are_closed(tight: Extender) -> None:
    s = raw(tight, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    out = wait_closed(s)
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"ok\n")
    s.close()


# ---- mutual TLS and the metrics port ------------------------------------------------------

@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    return make_pki(tmp_path)


def test_mutual_tls_refuses_clients_without_a_certificate_of_the_ca(
        pki: dict[str, str], tmp_path: Path) -> None:
    e = serve(tls=tls_context(pki["srv.crt"], pki["srv.key"], pki["ca.crt"]), metrics_port=0)
    try:
        good = ssl.create_default_context(cafile=pki["ca.crt"])
        good.load_cert_chain(pki["cli.crt"], pki["cli.key"])
        c = ExtenderClient(e.url, context=good)
        node, err = c.schedule(pod_obj("ok", gpus=1), NAMES)
        assert err == "" and node in NAMES
        c.close()
        anonymous = ExtenderClient(e.url, context=ssl.create_default_context(
            cafile=pki["ca.crt"]))
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            anonymous.post("bind", {"PodName": "x", "PodNamespace": "default", "Node": "a"})
        # A certificate from another CA (self-signed) is refused as well.
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                 "/CN=mallory", "-keyout", str(tmp_path / "m.key"), "-out",
                 str(tmp_path / "m.crt"))
        other = ssl.create_default_context(cafile=pki["ca.crt"])
        other.load_cert_chain(str(tmp_path / "m.crt"), str(tmp_path / "m.key"))
        mallory = ExtenderClient(e.url, context=other)
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            mallory.post("bind", {"PodName": "x", "PodNamespace": "default", "Node": "a"})
        # Probes and Prometheus use the plain metrics port; /metrics left the extender port.
        assert e.metrics_url is not None
        m = ExtenderClient(e.metrics_url)
        assert m.raw("GET", "/healthz") == (200, b"ok\n")
        status, text = m.raw("GET", "/metrics")
        assert status == 200 and b"gts_unverified_assignments" in text
        assert m.raw("POST", "/filter")[0] == 404
        m.close()
        c = ExtenderClient(e.url, context=good)
        assert c.raw("GET", "/metrics")[0] == 404 and c.raw("GET", "/readyz")[0] == 200
        c.close()
    finally:
        e.stop()


def test_tls_client_ca_without_a_server_certificate_is_a_config_error() -> None:
    from scheduler.extender.config import ConfigError, _check
    from scheduler.extender.config import ServeConfig as Cfg

    with pytest.raises(ConfigError, match="tls-client-ca"):
        _check(Cfg(tls_client_ca="/etc/ca.crt"))
