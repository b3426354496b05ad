"""The Helm chart renders and lints (helm-python-sdk, no helm binary) for several value sets;
every rendered object and every manifest validates against the Kubernetes schemas of the oldest
and newest supported versions; the chart and deploy/manifests describe the same objects."""

from __future__ import annotations

import base64
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_chart import (
    CHART,
    MANIFESTS,
    NAMESPACE,
    is_hook,
    key,
    manifest_docs,
    normalize,
    render,
)
from test_extender_deploy import check

helm_python = pytest.importorskip(
    "helm_python", reason="helm-python-sdk (the dev extra) renders the chart without helm")
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate (the dev extra) holds the API schemas")

# Oldest: ValidatingAdmissionPolicy v1 and the node name in service account tokens (the
# agent's own-node policy) are GA/beta-on from 1.30. Newest: the newest schemas available.
OLDEST, NEWEST = "1.30", "1.37"
# Custom resources have no schema in kubernetes-validate; checked by their own tests.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "PrometheusRule")}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "no-tls": {"tls": {"enabled": False}},
    "no-node-agent": {"nodeAgent": {"enabled": False}},
    "existing-secrets": {"tls": {"existingSecret": "my-serving", "existingClientSecret":
                                 "my-client"},
                         "signingKeys": {"existingSecret": "my-keys", "activeKeyId": "k2"}},
    "monitoring-and-weights": {"monitoring": {"prometheusRule": {"enabled": True},
                                              "dashboard": {"namespace": "monitoring"}},
                               "extender": {"policyWeights": {"topology_weight": 2.0},
                                            "bestNodeOnly": True},
                               "imagePullSecrets": [{"name": "regcred"}]},
    "minimal": {"networkPolicy": {"enabled": False}, "smokeTest": {"enabled": False},
                "monitoring": {"dashboard": {"enabled": False}},
                "nodeAgent": {"ownNodeOnlyPolicy": False}},
}


def validate(doc: dict[str, Any], version: str) -> None:
    """kubernetes-validate --strict (unknown fields are errors) for one object."""
    if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
        return
    kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_chart_renders_lints_and_validates(name: str) -> None:
    values = VALUE_SETS[name]
    docs = render(values)
    installed = [d for d in docs if not is_hook(d)]
    agent = values.get("nodeAgent", {})
    check(installed, node_agent=agent.get("enabled", True),
          own_node_policy=agent.get("ownNodeOnlyPolicy", True))
    for d in docs:
        for v in (OLDEST, NEWEST):
            validate(d, v)
    keys = [key(d) for d in docs]
    assert len(keys) == len(set(keys)), "an object rendered twice"
    from deploy_chart import MANIFEST_VALUES, merge

    report = helm_python.lint(CHART, merge(MANIFEST_VALUES, values), strict=True,
                              kube_version=f"v{OLDEST}.0")
    errors = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not errors, errors


def test_every_manifest_file_validates() -> None:
    files = sorted(MANIFESTS.glob("*"))
    assert files and all(f.suffix == ".yaml" for f in files), files
    for f in files:
        docs = [d for d in yaml.safe_load_all(f.read_text()) if d]
        assert docs, f
        for d in docs:
            for v in (OLDEST, NEWEST):
                try:
                    validate(d, v)
                except Exception as e:
                    raise AssertionError(f"{f.name}: {d['kind']} {d['metadata']['name']} "
                                         f"(Kubernetes {v}): {e}") from None


def test_validation_rejects_a_misspelled_field() -> None:
    """The schema check can fail: an unknown field in a Deployment's pod spec is an error."""
    dep = next(d for d in manifest_docs() if d["kind"] == "Deployment")
    dep["spec"]["template"]["spec"]["containerz"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(dep, NEWEST)


def test_chart_and_manifests_describe_the_same_objects() -> None:
    chart = {key(d): normalize(d) for d in render() if not is_hook(d)}
    manifests = {key(d): normalize(d) for d in manifest_docs()}
    # The release namespace: the manifests create it (Pod Security `restricted`); Helm installs
    # into it (deploy/README.md creates and labels it first).
    release_ns = ("v1", "Namespace", "", NAMESPACE)
    assert manifests.pop(release_ns)["metadata"]["labels"] == {
        "pod-security.kubernetes.io/enforce": "restricted"}
    assert sorted(chart) == sorted(manifests)
    for k in chart:
        assert chart[k] == manifests[k], f"{k} differs between the chart and deploy/manifests"


def test_chart_refuses_what_would_not_work() -> None:
    errors: dict[str, dict[str, Any]] = {
        "image.registry is empty": {"image": {"registry": ""}},
        "version skew policy": {"kubeScheduler": {"image": {"tag": "v1.20.0"}}},
        "must exceed gangTimeout": {"extender": {"httpTimeoutSeconds": 30}},
        "go together": {"tls": {"existingSecret": "only-serving"}},
    }
    for message, values in errors.items():
        with pytest.raises(helm_python.HelmError, match=message):
            render(values)


def test_generated_certificates_make_a_mutual_tls_handshake(tmp_path: Path) -> None:
    """kube-scheduler's client certificate and the extender's serving certificate, as the
    chart generates them, complete a TLS handshake in which each side verifies the other
    (the server requires a client certificate, the client checks the Service's DNS name)."""
    secrets = {d["metadata"]["name"]: d["data"] for d in render() if d["kind"] == "Secret"}

    def files(name: str) -> dict[str, str]:
        out = {}
        for k, v in secrets[name].items():
            f = tmp_path / f"{name}-{k}"
            f.write_bytes(base64.b64decode(v))
            out[k] = str(f)
        return out

    srv, cli = files("gts-extender-tls"), files("gts-kube-scheduler-tls")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(srv["tls.crt"], srv["tls.key"])
    server_ctx.load_verify_locations(srv["ca.crt"])
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(cli["ca.crt"])
    client_ctx.load_cert_chain(cli["tls.crt"], cli["tls.key"])
    a, b = socket.socketpair()
    peer: dict[str, Any] = {}

    def serve() -> None:
        with server_ctx.wrap_socket(a, server_side=True) as s:
            peer["cert"] = s.getpeercert()
            s.sendall(b"ok")

    t = threading.Thread(target=serve)
    t.start()
    with client_ctx.wrap_socket(b, server_hostname=f"gts-extender.{NAMESPACE}.svc") as c:
        assert c.recv(2) == b"ok"
    t.join(timeout=10)
    subject = dict(x[0] for x in peer["cert"]["subject"])
    assert subject["commonName"] == f"system:serviceaccount:{NAMESPACE}:gts-kube-scheduler"
    keys = secrets["gts-signing-keys"]
    assert list(keys) == ["key-1"] and len(base64.b64decode(keys["key-1"])) >= 32


def test_notes_warn_when_the_namespace_is_not_restricted() -> None:
    """`--create-namespace` makes a namespace without Pod Security labels; the install notes
    say how to label it (offline, `lookup` finds no namespace: the warning shows)."""
    from deploy_chart import MANIFEST_VALUES

    chart = helm_python.Chart.load(CHART)
    out = chart.render(MANIFEST_VALUES, name="gts", namespace="team-gpu", is_install=True)
    (notes,) = [v for k, v in out.items() if k.endswith("NOTES.txt")]
    assert ("kubectl label namespace team-gpu pod-security.kubernetes.io/enforce=restricted"
            in notes)
    assert "helm test gts -n team-gpu" in notes
