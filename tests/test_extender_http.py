"""The HTTP(S) server on 127.0.0.1: keep-alive, concurrency, TLS, and malformed requests."""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from extender_fakes import (
    KEY,
    ExtenderClient,
    FakeBinder,
    address,
    check_invariants,
    gpu_owners,
    pod_obj,
    spec,
    static_cache,
)

from scheduler.extender.runtime import Extender, build
from scheduler.extender.server import tls_context
from scheduler.extender.service import ServiceOptions
from scheduler.podcodec.signing import Signer

NAMES = ["a", "b", "c"]


def serve(tls: ssl.SSLContext | None = None) -> Extender:
    cache = static_cache([spec(n) for n in NAMES])
    return build(cache, FakeBinder(), Signer(KEY), ServiceOptions(), tls=tls).start()


@pytest.fixture
def ext() -> Iterator[Extender]:
    e = serve()
    yield e
    e.stop()


def test_keep_alive_serves_many_requests_on_one_connection(ext: Extender) -> None:
    c = ExtenderClient(ext.url)
    c.raw("GET", "/healthz")
    sock = c.conn.sock
    for i in range(20):
        pod = pod_obj(f"p{i}", gpus=1)
        c.post("filter", {"Pod": pod, "NodeNames": NAMES})
        c.post("prioritize", {"Pod": pod, "NodeNames": NAMES})
        assert c.conn.sock is sock  # http.client would have reconnected after a close
    c.conn.request("GET", "/healthz")
    r = c.conn.getresponse()
    assert r.version == 11 and r.getheader("Content-Length") == "3"
    assert r.getheader("Connection") is None and r.read() == b"ok\n"
    c.close()


def test_concurrent_binds_over_many_connections_never_double_assign(ext: Extender) -> None:
    pods = [pod_obj(f"p{i}", gpus=1) for i in range(40)]  # 40 pods, 24 GPUs
    lock = threading.Lock()
    results: list[tuple[str, str]] = []

    def worker(k: int) -> None:
        c = ExtenderClient(ext.url)
        for p in pods[k::10]:
            # Like kube-scheduler: a bind that lost a race for the GPUs its score assumed
            # ("no longer fits") is retried from filter.
            for _ in range(40):
                node, err = c.schedule(p, NAMES)
                if "no longer fits" not in err:
                    break
            with lock:
                results.append((node, err))
        c.close()

    with ThreadPoolExecutor(10) as pool:
        list(pool.map(worker, range(10)))
    bound = [r for r in results if not r[1]]
    assert len(bound) == 24
    assert all(e == "no node passed filter" for _, e in results if e)
    with ext.cache.lock:
        snap = ext.cache.snapshot
        assert len(snap.holdings) == 24
        assert all(len(v) == 1 for v in gpu_owners(snap).values())
        check_invariants(snap)


def test_bad_requests_get_4xx_and_the_server_keeps_serving(ext: Extender) -> None:
    c = ExtenderClient(ext.url)
    assert c.raw("POST", "/filter", b"{oops")[0] == 400
    assert c.raw("POST", "/filter", b"")[0] == 400
    assert c.raw("GET", "/nowhere")[0] == 404
    assert c.raw("GET", "/bind")[0] == 405
    st, body = c.raw("GET", "/metrics")
    assert st == 200 and b"gts_extender_requests_total" in body
    c.close()
    # A lying Content-Length closes that connection only.
    with socket.create_connection(address(ext), timeout=10) as s:
        s.sendall(b"POST /filter HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    # A chunked body (curl -T -) is read too.
    with socket.create_connection(address(ext), timeout=10) as s:
        body = b'{"PodName":"x","PodNamespace":"d","Node":"a"}'
        s.sendall(b"POST /bind HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
        r = http.client.HTTPResponse(s)
        r.begin()
        assert r.status == 200 and b"not seen at filter" in r.read()
    c = ExtenderClient(ext.url)
    assert c.raw("GET", "/healthz") == (200, b"ok\n")
    c.close()


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "tls.crt", tmp / "tls.key"
    if shutil.which("openssl"):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=60)
        return cert, key
    try:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID
    except ImportError:
        pytest.skip("TLS test needs the openssl CLI or the cryptography package; neither "
                    "is available")
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    c = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
         .public_key(k.public_key()).serial_number(1)
         .not_valid_before(now - datetime.timedelta(minutes=1))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.SubjectAlternativeName(
             [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
         .sign(k, hashes.SHA256()))
    cert.write_bytes(c.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(k.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption()))
    return cert, key


def test_tls_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    e = serve(tls_context(str(cert), str(key)))
    try:
        assert e.url.startswith("https://")
        # A client that does not speak TLS (or hangs mid-handshake) harms only itself.
        with socket.create_connection(address(e), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert not s.recv(100).startswith(b"HTTP/1.1 200")
        idle = socket.create_connection(address(e), timeout=10)
        ctx = ssl.create_default_context(cafile=str(cert))
        c = ExtenderClient(e.url, context=ctx)
        node, err = c.schedule(pod_obj("secure", gpus=2), NAMES)
        assert err == "" and node in NAMES
        assert c.raw("GET", "/readyz") == (200, b"ok\n")
        c.close()
        idle.close()
        untrusted = ExtenderClient(e.url, context=ssl.create_default_context())
        with pytest.raises(ssl.SSLCertVerificationError):
            untrusted.raw("GET", "/healthz")
    finally:
        e.stop()


def test_two_servers_in_one_process_keep_separate_metrics() -> None:
    a, b = serve(), serve()
    try:
        ca, cb = ExtenderClient(a.url), ExtenderClient(b.url)
        ca.post("filter", {"Pod": pod_obj("x"), "NodeNames": NAMES})
        ma = ca.raw("GET", "/metrics")[1].decode()
        mb = cb.raw("GET", "/metrics")[1].decode()
        assert 'gts_extender_requests_total{code="200",verb="filter"} 1.0' in ma
        assert 'verb="filter"' not in mb
        ca.close()
        cb.close()
    finally:
        a.stop()
        b.stop()


def test_http_client_sees_a_well_formed_reply_to_every_verb(ext: Extender) -> None:
    conn = http.client.HTTPConnection(*address(ext), timeout=10)
    for path, body in [("/filter", b'{"Pod":{"metadata":{"name":"p"}},"NodeNames":["a"]}'),
                       ("/prioritize", b'{"Pod":{"metadata":{"name":"p"}},"NodeNames":["a"]}'),
                       ("/bind", b'{"PodName":"p","PodNamespace":"d","PodUID":"","Node":"a"}')]:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        assert r.status == 200 and r.getheader("Content-Type") == "application/json"
        assert int(r.getheader("Content-Length") or -1) == len(data)
    conn.close()
