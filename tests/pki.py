"""A test PKI made with openssl: a CA, a server certificate for 127.0.0.1 and a client
certificate, for the extender's TLS tests."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_pki(tmp_path: Path) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all from the CA."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed: cannot make the test certificates")
    d = {k: str(tmp_path / k) for k in ("ca.key", "ca.crt", "srv.key", "srv.csr", "srv.crt",
                                         "cli.key", "cli.csr", "cli.crt", "ext")}
    Path(d["ext"]).write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=ca",
             "-keyout", d["ca.key"], "-out", d["ca.crt"])
    for who in ("srv", "cli"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}",
                 "-keyout", d[f"{who}.key"], "-out", d[f"{who}.csr"])
        openssl("x509", "-req", "-in", d[f"{who}.csr"], "-CA", d["ca.crt"], "-CAkey",
                 d["ca.key"], "-CAcreateserial", "-days", "1", "-extfile", d["ext"],
                 "-out", d[f"{who}.crt"])
    return d


def client_context(pki: dict[str, str], *, certificate: bool = True) -> ssl.SSLContext:
    """A client context trusting the test CA, with the client certificate or without."""
    ctx = ssl.create_default_context(cafile=pki["ca.crt"])
    if certificate:
        ctx.load_cert_chain(pki["cli.crt"], pki["cli.key"])
    return ctx
