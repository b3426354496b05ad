"""deploy/manifests against a real kube-apiserver v1.36.2 (../shared/control-plane): every
object is accepted (server-side validation, CEL compiled), the agent's ValidatingAdmissionPolicy
lets its ServiceAccount patch only the Node its pod runs on, and the extender's RBAC is what it
claims (list nodes, not get them).

The control plane here is etcd and kube-apiserver only, started once for this module.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from deploy_chart import manifest_docs

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
CONTROL_PLANE = ROOT.parent / "shared" / "control-plane"
ADMIN_TOKEN = "gts-deploy-admin-token"
AGENT_NS, AGENT_SA = "gts-node-agent", "gts-node-agent"
EXT_NS, EXT_SA = "gpu-topology-scheduler", "gts-extender"
# kind -> (API path prefix, plural, namespaced)
PLURALS = {
    "Namespace": "namespaces", "ServiceAccount": "serviceaccounts", "Secret": "secrets",
    "ConfigMap": "configmaps", "Service": "services", "Deployment": "deployments",
    "DaemonSet": "daemonsets", "ClusterRole": "clusterroles", "Role": "roles",
    "ClusterRoleBinding": "clusterrolebindings", "RoleBinding": "rolebindings",
    "NetworkPolicy": "networkpolicies",
    "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
    "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Api:
    """HTTPS calls to the API server as one identity (a bearer token)."""

    url: str
    token: str

    def call(self, method: str, path: str, body: Any = None,
             content_type: str = "application/json") -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", content_type)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # a throwaway server certificate on 127.0.0.1
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
                return int(r.status), _body(r.read())
        except urllib.error.HTTPError as e:
            return int(e.code), _body(e.read())

    def as_token(self, token: str) -> Api:
        return Api(self.url, token)


def _body(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        return {"message": raw.decode(errors="replace")}  # /readyz answers plain text


def object_path(doc: dict[str, Any], *, with_name: bool = False) -> str:
    group_version = doc["apiVersion"]
    base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    ns = doc["metadata"].get("namespace")
    path = base + (f"/namespaces/{ns}" if ns else "") + "/" + PLURALS[doc["kind"]]
    return path + (f"/{doc['metadata']['name']}" if with_name else "")


@pytest.fixture(scope="module")
def apiserver() -> Iterator[Api]:
    if not (CONTROL_PLANE / "unpack.sh").exists():
        pytest.skip(f"{CONTROL_PLANE} is absent: no kube-apiserver to check deploy/ against")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (it makes the API server's certificates)")
    bin_dir = Path(subprocess.run([str(CONTROL_PLANE / "unpack.sh")], capture_output=True,
                                  text=True, check=True, timeout=300).stdout.strip())
    with tempfile.TemporaryDirectory(prefix="gts-deploy-api-") as tmp:
        work = Path(tmp)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            yield _start(bin_dir, work, procs)
        finally:
            for p in reversed(procs):
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def _start(bin_dir: Path, work: Path, procs: list[subprocess.Popen[bytes]]) -> Api:
    def ssl_cmd(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=work, check=True, capture_output=True, timeout=60)

    ssl_cmd("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=ca",
            "-keyout", "ca.key", "-out", "ca.crt")
    ssl_cmd("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", "apiserver.key", "-out", "apiserver.crt")
    ssl_cmd("genrsa", "-out", "sa.key", "2048")
    ssl_cmd("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")
    (work / "tokens.csv").write_text(f'{ADMIN_TOKEN},admin,admin,"system:masters"\n')
    etcd_port, peer_port, api_port = _free_port(), _free_port(), _free_port()
    logs = [open(work / f"{n}.log", "wb") for n in ("etcd", "apiserver")]  # noqa: SIM115
    procs.append(subprocess.Popen(
        [str(bin_dir / "etcd"), "--data-dir", str(work / "etcd"),
         "--client-url", f"http://127.0.0.1:{etcd_port}",
         "--peer-url", f"http://127.0.0.1:{peer_port}", "--unsafe-no-fsync"],
        stdout=logs[0], stderr=subprocess.STDOUT))
    procs.append(subprocess.Popen(
        [str(bin_dir / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{etcd_port}",
         "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
         f"--secure-port={api_port}", f"--tls-cert-file={work / 'apiserver.crt'}",
         f"--tls-private-key-file={work / 'apiserver.key'}",
         f"--client-ca-file={work / 'ca.crt'}", f"--token-auth-file={work / 'tokens.csv'}",
         "--authorization-mode=RBAC", f"--service-account-key-file={work / 'sa.pub'}",
         f"--service-account-signing-key-file={work / 'sa.key'}",
         "--service-account-issuer=https://kubernetes.default.svc",
         "--service-cluster-ip-range=10.0.0.0/24",
         "--disable-admission-plugins=ServiceAccount", "--endpoint-reconciler-type=none",
         "--profiling=false"],
        stdout=logs[1], stderr=subprocess.STDOUT))
    for f in logs:  # the children hold their own descriptors
        f.close()
    api = Api(f"https://127.0.0.1:{api_port}", ADMIN_TOKEN)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            break
        try:
            if api.call("GET", "/readyz")[0] == 200:
                return api
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    tail = (work / "apiserver.log").read_text(errors="replace")[-2000:]
    pytest.fail(f"kube-apiserver did not become ready:\n{tail}")


@pytest.fixture(scope="module")
def installed(apiserver: Api) -> Api:
    """Every object of deploy/manifests, created in the order of the README (namespaces first)."""
    docs = manifest_docs()
    docs.sort(key=lambda d: d["kind"] != "Namespace")
    for doc in docs:
        code, body = apiserver.call("POST", object_path(doc), doc)
        assert code == 201, f"{doc['kind']} {doc['metadata']['name']}: {code} {body}"
    return apiserver


def test_every_manifest_is_accepted_by_the_api_server(installed: Api) -> None:
    for doc in manifest_docs():
        code, body = installed.call("GET", object_path(doc, with_name=True))
        assert code == 200, (doc["kind"], doc["metadata"]["name"], body)
    # CEL compiled and type-checked: no warning on the policy.
    (vap,) = [d for d in manifest_docs() if d["kind"] == "ValidatingAdmissionPolicy"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _, got = installed.call("GET", object_path(vap, with_name=True))
        status = got.get("status") or {}
        if status.get("observedGeneration"):
            break
        time.sleep(0.5)
    assert not (status.get("typeChecking") or {}).get("expressionWarnings"), status


def _node(api: Api, name: str) -> None:
    code, body = api.call("POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                                     "metadata": {"name": name}})
    assert code == 201, body


def _token(api: Api, ns: str, sa: str, bound_pod: dict[str, Any] | None = None) -> str:
    spec: dict[str, Any] = {"expirationSeconds": 600}
    if bound_pod is not None:
        spec["boundObjectRef"] = {"apiVersion": "v1", "kind": "Pod",
                                  "name": bound_pod["metadata"]["name"],
                                  "uid": bound_pod["metadata"]["uid"]}
    code, body = api.call("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token",
                          {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                           "spec": spec})
    assert code == 201, body
    return str(body["status"]["token"])


def _annotate(api: Api, node: str, value: str) -> tuple[int, Any]:
    return api.call("PATCH", f"/api/v1/nodes/{node}",
                    {"metadata": {"annotations": {"gts.dev/test": value}}},
                    content_type="application/merge-patch+json")


def test_node_agent_may_patch_only_its_own_node(installed: Api) -> None:
    _node(installed, "gpu-a")
    _node(installed, "gpu-b")
    code, pod = installed.call("POST", f"/api/v1/namespaces/{AGENT_NS}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "agent-on-a"},
        "spec": {"nodeName": "gpu-a", "serviceAccountName": AGENT_SA,
                 "automountServiceAccountToken": False,
                 "containers": [{"name": "c", "image": "registry.example.com/x:1"}]}})
    assert code == 201, pod
    agent = installed.as_token(_token(installed, AGENT_NS, AGENT_SA, bound_pod=pod))
    # The policy takes effect once the API server has loaded it: retry the denial briefly.
    deadline = time.monotonic() + 30
    while True:
        code, body = _annotate(agent, "gpu-b", "x")
        if code != 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert code in (403, 422), body
    assert "the node agent on node 'gpu-a' may not modify node 'gpu-b'" in body["message"]
    code, body = _annotate(agent, "gpu-a", "mine")
    assert code == 200, body
    # A token not bound to a pod carries no node name: refused too.
    unbound = installed.as_token(_token(installed, AGENT_NS, AGENT_SA))
    code, body = _annotate(unbound, "gpu-a", "y")
    assert code in (403, 422) and "carries no node name" in body["message"], body
    # Anyone else is not affected by the policy.
    assert _annotate(installed, "gpu-b", "admin")[0] == 200


def test_extender_rbac_lists_but_does_not_get(installed: Api) -> None:
    ext = installed.as_token(_token(installed, EXT_NS, EXT_SA))
    assert ext.call("GET", "/api/v1/nodes")[0] == 200
    assert ext.call("GET", "/api/v1/pods")[0] == 200
    _node(installed, "gpu-c")
    assert ext.call("GET", "/api/v1/nodes/gpu-c")[0] == 403
    assert ext.call("GET", "/api/v1/namespaces/default/pods/x")[0] == 403
    assert ext.call("GET", f"/api/v1/namespaces/{EXT_NS}/secrets")[0] == 403



def test_kube_scheduler_starts_with_the_shipped_configuration(installed: Api,
                                                              tmp_path: Path) -> None:
    """The real kube-scheduler v1.36.2 decodes the shipped KubeSchedulerConfiguration strictly
    and loads the extender's mTLS files (the chart's generated client certificate)."""
    import base64

    import yaml
    from deploy_chart import render

    pytest.importorskip("helm_python", reason="helm-python-sdk (the dev extra) renders the "
                        "chart's generated client certificate")

    bin_dir = Path(subprocess.run([str(CONTROL_PLANE / "unpack.sh")], capture_output=True,
                                  text=True, check=True, timeout=300).stdout.strip())
    (cm,) = [d for d in manifest_docs() if d["kind"] == "ConfigMap"
             and "scheduler-config.yaml" in d["data"]]
    ksc = yaml.safe_load(cm["data"]["scheduler-config.yaml"])
    (client_secret,) = [d for d in render() if d["kind"] == "Secret"
                        and d["metadata"]["name"] == "gts-kube-scheduler-tls"]
    tls = ksc["extenders"][0]["tlsConfig"]
    for field, key in (("caFile", "ca.crt"), ("certFile", "tls.crt"), ("keyFile", "tls.key")):
        f = tmp_path / key
        f.write_bytes(base64.b64decode(client_secret["data"][key]))
        tls[field] = str(f)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": installed.url,
                                               "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": ADMIN_TOKEN}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    ksc["clientConnection"] = {"kubeconfig": str(kubeconfig)}
    ksc["leaderElection"]["leaderElect"] = False
    config = tmp_path / "scheduler-config.yaml"
    config.write_text(yaml.safe_dump(ksc))
    port = _free_port()
    log = tmp_path / "kube-scheduler.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(bin_dir / "kube-scheduler"), f"--config={config}",
             f"--authentication-kubeconfig={kubeconfig}",
             f"--authorization-kubeconfig={kubeconfig}",
             "--bind-address=127.0.0.1", f"--secure-port={port}", "--v=1"],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        health = Api(f"https://127.0.0.1:{port}", ADMIN_TOKEN)
        deadline = time.monotonic() + 60
        healthy = False
        while time.monotonic() < deadline and proc.poll() is None and not healthy:
            try:
                healthy = health.call("GET", "/healthz")[0] == 200
            except OSError:
                time.sleep(0.5)
        assert healthy, log.read_text(errors="replace")[-3000:]
    finally:
        proc.terminate()
        proc.wait(timeout=15)
