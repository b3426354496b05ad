"""A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver, two kube-schedulers and
`gts serve`, for the end-to-end tests (tests/e2e/) and `gts bench e2e`.

The binaries are etcd, kube-apiserver and kube-scheduler (../shared/control-plane, xz-compressed,
unpacked once into a cache folder). Everything listens on 127.0.0.1 on free ports; certificates
and keys are made with openssl in a throwaway folder. The components run under the identities of
deploy/: the extender and our kube-scheduler under the ServiceAccounts and RBAC of
deploy/manifests/rbac.yaml (tokens from the TokenRequest API), our kube-scheduler with the
configuration of deploy/manifests/scheduler-config.yaml (only the extender's URL, its CA file and
the kubeconfig changed) and the extender with deploy/manifests/extender.yaml's serve.yaml (paths
changed). The default kube-scheduler runs as the built-in user system:kube-scheduler.

Every process is started in its own session with a parent-death signal, registered for atexit,
and killed by `stop()`: nothing outlives the Python process that started it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scheduler.constants import GPU_MODEL_LABELS, GPU_RESOURCE, TOPOLOGY_ANNOTATION
from topology.annotation import to_json
from topology.model import NodeTopology

BIN_ENV = "GTS_E2E_BIN"
BINARIES = ("etcd", "kube-apiserver", "kube-scheduler")
REPO = Path(__file__).resolve().parent.parent
SHARED_CONTROL_PLANE = REPO.parent / "shared" / "control-plane"
DEPLOY = REPO / "deploy" / "manifests"
NAMESPACE = "gpu-topology-scheduler"
EXTENDER_SA = "gts-extender"
SCHEDULER_SA = "gts-kube-scheduler"
# What serves the extender port: `gts serve`, or the do-nothing floor (bench.null_extender).
EXTENDER_PROGRAMS: dict[str, tuple[str, ...]] = {
    "gts": ("scheduler.cli", "serve"), "null": ("bench.null_extender",)}
# The scheduling.x-k8s.io PodGroup CRD, only the fields the extender reads (no controller runs).
PODGROUP_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "podgroups.scheduling.x-k8s.io"},
    "spec": {
        "group": "scheduling.x-k8s.io",
        "names": {"kind": "PodGroup", "plural": "podgroups", "singular": "podgroup",
                  "listKind": "PodGroupList", "shortNames": ["pg"]},
        "scope": "Namespaced",
        "versions": [{
            "name": "v1alpha1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {
                "type": "object", "x-kubernetes-preserve-unknown-fields": True,
                "properties": {"spec": {
                    "type": "object", "x-kubernetes-preserve-unknown-fields": True,
                    "properties": {"minMember": {"type": "integer", "minimum": 1}}}}}},
        }],
    },
}


class ControlPlaneUnavailable(RuntimeError):
    """The binaries (or openssl) are not there: the caller skips, with this message."""


def binaries_source() -> Path:
    """Where the binaries come from, checked cheaply (nothing is unpacked).

    `GTS_E2E_BIN` may name a folder holding the three executables, or a control-plane folder
    with `unpack.sh` (as ../shared/control-plane); without it, ../shared/control-plane is used.
    Raises ControlPlaneUnavailable, with the reason, when neither is there.
    """
    env = os.environ.get(BIN_ENV)
    source = Path(env) if env else SHARED_CONTROL_PLANE
    if all(os.access(source / b, os.X_OK) for b in BINARIES):
        return source
    if not (source / "unpack.sh").is_file():
        where = f"{BIN_ENV}={env}" if env else f"{SHARED_CONTROL_PLANE} (set {BIN_ENV} to " \
            "override)"
        raise ControlPlaneUnavailable(
            f"no control-plane binaries: {where} has neither etcd, kube-apiserver and "
            "kube-scheduler nor unpack.sh")
    if shutil.which("openssl") is None:
        raise ControlPlaneUnavailable("openssl is not on PATH (needed for the test certificates)")
    return source


def find_binaries() -> Path:
    """The folder with etcd, kube-apiserver and kube-scheduler, unpacking them when needed
    (into the system temp folder, where later runs find them again)."""
    source = binaries_source()
    if all(os.access(source / b, os.X_OK) for b in BINARIES):
        return source
    unpack = source / "unpack.sh"
    dest = Path(tempfile.gettempdir()) / "gts-control-plane" / "bin"
    proc = subprocess.run(["bash", str(unpack), str(dest)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise ControlPlaneUnavailable(f"{unpack} failed: {proc.stderr.strip()[-500:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    # Linux: SIGKILL this child when the process that started it dies, even by SIGKILL.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()


def _kill_all_live() -> None:
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for p in procs:
        _kill(p, grace_s=2.0)


atexit.register(_kill_all_live)


def _kill(p: subprocess.Popen[bytes], grace_s: float) -> None:
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
    with _LIVE_LOCK:
        _LIVE.discard(p)


@dataclass
class Process:
    """One child process with its log file."""

    name: str
    argv: list[str]
    log: Path
    env: Mapping[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        """Start it in its own session, output to the log file."""
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=_die_with_parent,
                env=dict(self.env) if self.env is not None else None)
        with _LIVE_LOCK:
            _LIVE.add(self.popen)
        return self

    def alive(self) -> bool:
        """True while it runs."""
        return self.popen is not None and self.popen.poll() is None

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `grace_s`."""
        if self.popen is not None:
            _kill(self.popen, grace_s)

    def kill(self) -> None:
        """SIGKILL now (a crash)."""
        if self.popen is not None:
            _kill(self.popen, 0.0)

    def cpu_s(self) -> float:
        """CPU seconds (user + system) it has used so far; 0.0 when it is not running."""
        if self.popen is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        # utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def tail(self, n: int = 2000) -> str:
        """The end of its log."""
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {proc.stderr.strip()}")


def make_pki(d: Path) -> None:
    """CA, serving certificates for the apiserver and the extender (SAN IP:127.0.0.1), a client
    certificate for kube-scheduler, and the ServiceAccount token key pair, in folder `d`."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.crt", "-days", "2", "-subj", "/CN=gts-e2e-ca", cwd=d)
    for name, cn, usage in (("apiserver", "127.0.0.1", "serverAuth"),
                            ("extender", "127.0.0.1", "serverAuth"),
                            ("client", "gts-kube-scheduler", "clientAuth")):
        ext = d / f"{name}.ext"
        ext.write_text(f"subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage={usage}\n")
        # EC P-256, as deploy/README makes them: kube-scheduler keeps only 2 idle connections
        # to an extender (Go's default MaxIdleConnsPerHost), so concurrent binds mean new TLS
        # handshakes, and an ECDSA signature costs a tenth of an RSA-2048 one on both sides.
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", ext.name,
                 cwd=d)
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)


def kubeconfig(path: Path, server: str, ca: Path, token: str) -> Path:
    """A kubeconfig file for `server` with a bearer token."""
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": "e2e",
        "clusters": [{"name": "e2e", "cluster": {"server": server,
                                                  "certificate-authority": str(ca)}}],
        "users": [{"name": "e2e", "user": {"token": token}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "e2e"}}],
    }
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


def _wait(what: str, ok: Callable[[], bool], timeout_s: float,
          procs: Iterable[Process] = ()) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        for p in procs:
            if not p.alive():
                raise RuntimeError(f"{p.name} exited while waiting for {what}:\n{p.tail()}")
        try:
            if ok():
                return
        except Exception:  # not up yet
            pass
        time.sleep(0.1)
    tails = "\n".join(f"--- {p.name}:\n{p.tail()}" for p in procs)
    raise RuntimeError(f"timed out after {timeout_s:g}s waiting for {what}\n{tails}")


def _https_ok(url: str, ca: Path, token: str | None = None, cert: Path | None = None,
              key: Path | None = None) -> bool:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=2, context=ctx) as r:
        return int(r.status) == 200


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]


def scheduler_config_from_deploy() -> dict[str, Any]:
    """The KubeSchedulerConfiguration of deploy/manifests/scheduler-config.yaml, as a dict."""
    for doc in _documents(DEPLOY / "scheduler-config.yaml"):
        if doc.get("kind") == "ConfigMap":
            for text in (doc.get("data") or {}).values():
                cfg = yaml.safe_load(text)
                if isinstance(cfg, dict) and cfg.get("kind") == "KubeSchedulerConfiguration":
                    return cfg
    raise RuntimeError("deploy/manifests/scheduler-config.yaml holds no "
                       "KubeSchedulerConfiguration")


def serve_config_from_deploy() -> dict[str, Any]:
    """The `gts serve --config` mapping of deploy/manifests/extender.yaml."""
    for doc in _documents(DEPLOY / "extender.yaml"):
        if doc.get("kind") == "ConfigMap":
            for text in (doc.get("data") or {}).values():
                cfg = yaml.safe_load(text)
                if isinstance(cfg, dict) and "port" in cfg:
                    return cfg
    raise RuntimeError("deploy/manifests/extender.yaml holds no serve.yaml ConfigMap")


@dataclass
class ControlPlane:
    """etcd + kube-apiserver (+ schedulers and the extender once started), all on 127.0.0.1."""

    bin_dir: Path
    work: Path
    procs: dict[str, Process] = field(default_factory=dict)
    api_port: int = 0
    admin_token: str = ""
    scheduler_token: str = ""
    signing_key: bytes = b""
    extender_port: int = 0
    extender_metrics_port: int = 0
    kubeconfigs: dict[str, Path] = field(default_factory=dict)
    extender_argv: list[str] = field(default_factory=list)
    scheduler_ports: dict[str, int] = field(default_factory=dict)  # secure port by process

    @property
    def pki(self) -> Path:
        """Folder of certificates and keys."""
        return self.work / "pki"

    @property
    def server(self) -> str:
        """The apiserver's URL."""
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def ca(self) -> Path:
        """The CA every serving certificate chains to."""
        return self.pki / "ca.crt"

    # ---- start ---------------------------------------------------------------------------

    def start_api(self, extra_apiserver_flags: Iterable[str] = ()) -> ControlPlane:
        """Make the PKI, start etcd and kube-apiserver, wait for /readyz."""
        make_pki(self.pki)
        etcd_port, peer_port, self.api_port = free_port(), free_port(), free_port()
        self.admin_token = secrets.token_hex(16)
        self.scheduler_token = secrets.token_hex(16)
        tokens = self.work / "tokens.csv"
        tokens.write_text(f'{self.admin_token},e2e-admin,e2e-admin,"system:masters"\n'
                          f"{self.scheduler_token},system:kube-scheduler,"
                          "system:kube-scheduler\n")
        tokens.chmod(0o600)
        etcd = Process("etcd", [
            str(self.bin_dir / "etcd"), "--data-dir", str(self.work / "etcd"),
            "--client-url", f"http://127.0.0.1:{etcd_port}",
            "--peer-url", f"http://127.0.0.1:{peer_port}", "--unsafe-no-fsync"],
            self.work / "etcd.log").start()
        self.procs["etcd"] = etcd

        def etcd_up() -> bool:
            with socket.create_connection(("127.0.0.1", etcd_port), timeout=1):
                return True
        _wait("etcd", etcd_up, 30, [etcd])
        p = self.pki
        api = Process("kube-apiserver", [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.api_port}",
            f"--tls-cert-file={p / 'apiserver.crt'}",
            f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={p / 'ca.crt'}",
            f"--token-auth-file={tokens}",
            "--authorization-mode=RBAC",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--disable-admission-plugins=ServiceAccount",
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            *extra_apiserver_flags],
            self.work / "kube-apiserver.log").start()
        self.procs["kube-apiserver"] = api
        _wait("kube-apiserver /readyz",
              lambda: _https_ok(f"{self.server}/readyz", self.ca, self.admin_token), 120, [api])
        self.kubeconfigs["admin"] = kubeconfig(self.work / "admin.kubeconfig", self.server,
                                               self.ca, self.admin_token)
        self.kubeconfigs["default-scheduler"] = kubeconfig(
            self.work / "default-scheduler.kubeconfig", self.server, self.ca,
            self.scheduler_token)
        return self

    def api_client(self) -> Any:
        """A kubernetes.client.ApiClient as the admin."""
        from kubernetes import client

        conf = client.Configuration()
        conf.host = self.server
        conf.ssl_ca_cert = str(self.ca)
        conf.api_key = {"authorization": f"Bearer {self.admin_token}"}
        conf.connection_pool_maxsize = 32
        return client.ApiClient(conf)

    def install_deploy_identities(self) -> None:
        """Namespace, ServiceAccounts and RBAC of deploy/, the PodGroup CRD, and a kubeconfig
        with a TokenRequest token for each of our two ServiceAccounts."""
        from kubernetes import client, utils

        api = self.api_client()
        core = client.CoreV1Api(api)
        namespaces = {NAMESPACE}
        docs = _documents(DEPLOY / "00-namespace.yaml") + _documents(DEPLOY / "rbac.yaml")
        for d in docs:
            ns = (d.get("metadata") or {}).get("namespace")
            if ns:
                namespaces.add(ns)
        # The client takes plain dict bodies as they are (its stubs name only the model
        # classes), so the manifests go in unchanged: Any at this edge.
        body: Any
        for ns in sorted(namespaces):
            with contextlib.suppress(client.ApiException):
                body = {"metadata": {"name": ns}}
                core.create_namespace(body)
        create_from_dict: Callable[..., Any] = utils.create_from_dict  # untyped in the client
        for d in docs:
            if d.get("kind") == "Namespace":
                continue
            create_from_dict(api, d)
        ext = client.ApiextensionsV1Api(api)
        body = PODGROUP_CRD
        ext.create_custom_resource_definition(body)
        _wait("the PodGroup CRD", lambda: _crd_established(ext), 30,
              [self.procs["kube-apiserver"]])
        for sa in (EXTENDER_SA, SCHEDULER_SA):
            body = {"spec": {"expirationSeconds": 86400}}
            tr = core.create_namespaced_service_account_token(sa, NAMESPACE, body)
            token = tr.status.token if tr.status is not None else None
            if not token:
                raise RuntimeError(f"TokenRequest for service account {sa}: no token returned")
            self.kubeconfigs[sa] = kubeconfig(self.work / f"{sa}.kubeconfig", self.server,
                                              self.ca, token)

    def start_default_scheduler(self, qps: int | None = None) -> Process:
        """kube-scheduler with the default profile, as system:kube-scheduler."""
        cfg: dict[str, Any] = {
            "apiVersion": "kubescheduler.config.k8s.io/v1",
            "kind": "KubeSchedulerConfiguration",
            "leaderElection": {"leaderElect": False},
            "clientConnection": {"kubeconfig": str(self.kubeconfigs["default-scheduler"])},
        }
        if qps:
            cfg["clientConnection"].update(qps=qps, burst=qps)
        return self._start_scheduler("default-scheduler", cfg, "default-scheduler")

    def start_our_scheduler(self, qps: int | None = None,
                            overrides: Mapping[str, Any] | None = None) -> Process:
        """kube-scheduler with deploy/'s configuration; the extender at our port and CA.
        `overrides` replace top-level fields (e.g. percentageOfNodesToScore) for a benchmark."""
        cfg = scheduler_config_from_deploy()
        cfg.update(overrides or {})
        if not self.extender_port:
            self.extender_port = free_port()
        for e in cfg.get("extenders") or []:
            e["urlPrefix"] = f"https://127.0.0.1:{self.extender_port}"
            tls = e.get("tlsConfig")
            if isinstance(tls, dict):
                tls.update(self._tls_paths(tls, {"caFile": "ca.crt", "certFile": "client.crt",
                                                 "keyFile": "client.key"}))
        cc = cfg.setdefault("clientConnection", {})
        cc["kubeconfig"] = str(self.kubeconfigs[SCHEDULER_SA])
        if qps:
            cc.update(qps=qps, burst=qps)
        return self._start_scheduler("gts-kube-scheduler", cfg, SCHEDULER_SA)

    def _tls_paths(self, section: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, str]:
        return {k: str(self.pki / f) for k, f in names.items() if k in section}

    def _start_scheduler(self, name: str, cfg: dict[str, Any], identity: str) -> Process:
        path = self.work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        kc = str(self.kubeconfigs[identity])
        port = free_port()
        self.scheduler_ports[name] = port
        proc = Process(name, [
            str(self.bin_dir / "kube-scheduler"), f"--config={path}",
            f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1", f"--secure-port={port}", "--v=1"],
            self.work / f"{name}.log").start()
        self.procs[name] = proc

        def healthy() -> bool:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # kube-scheduler's own self-signed serving cert
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", timeout=2,
                                        context=ctx) as r:
                return int(r.status) == 200
        _wait(f"{name} /healthz", healthy, 60, [proc])
        return proc

    def start_extender(self, extra: Mapping[str, Any] | None = None,
                       program: str = "gts") -> Process:
        """`gts serve` with deploy/'s serve.yaml (paths and port changed), under its SA;
        `program="null"` runs bench.null_extender on the same configuration instead."""
        if program not in EXTENDER_PROGRAMS:
            raise ValueError(f"extender program {program!r}: one of "
                             f"{', '.join(sorted(EXTENDER_PROGRAMS))}")
        from scheduler.extender.config import OPTIONS

        known = {o.name for o in OPTIONS}
        cfg = serve_config_from_deploy()
        if not self.signing_key:
            self.signing_key = secrets.token_hex(32).encode()
        keydir = self.work / "signing-keys"
        keydir.mkdir(exist_ok=True)
        (keydir / "e2e").write_bytes(self.signing_key)
        for k in ("signing-key-file", "signing-key-dir", "signing-key-id"):
            cfg.pop(k, None)
        if "signing-key-dir" in known:
            cfg.update({"signing-key-dir": str(keydir), "signing-key-id": "e2e"})
        else:
            cfg["signing-key-file"] = str(keydir / "e2e")
        if not self.extender_port:
            self.extender_port = free_port()
        cfg.update(host="127.0.0.1", port=self.extender_port,
                   kubeconfig=str(self.kubeconfigs[EXTENDER_SA]),
                   **self._tls_paths(cfg, {"tls-cert": "extender.crt",
                                           "tls-key": "extender.key",
                                           "tls-client-ca": "ca.crt"}))
        if "metrics-port" in known:
            if not self.extender_metrics_port:
                self.extender_metrics_port = free_port()
            cfg["metrics-port"] = self.extender_metrics_port
        cfg.update(extra or {})
        # deploy/ may already name options this build of `gts serve` lacks (branches merge
        # one at a time): leave those out, and say so in the log.
        for k in sorted(k for k in cfg if str(k).replace("_", "-") not in known):
            print(f"gts serve config: dropping {k!r}, unknown to this build", file=sys.stderr)
            cfg.pop(k)
        path = self.work / "serve.yaml"
        path.write_text(yaml.safe_dump(cfg))
        self.extender_argv = [sys.executable, "-m", *EXTENDER_PROGRAMS[program], "--config",
                              str(path)]
        return self.restart_extender()

    def restart_extender(self) -> Process:
        """(Re)start `gts serve` with the configuration of start_extender; wait for /readyz."""
        old = self.procs.get("gts-serve")
        if old is not None:
            old.stop()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = Process("gts-serve", self.extender_argv, self.work / "gts-serve.log",
                       env=env).start()
        self.procs["gts-serve"] = proc
        _wait("gts serve /readyz", lambda: self.extender_get("/readyz")[0] == 200, 60, [proc])
        return proc

    def extender_get(self, path: str) -> tuple[int, str]:
        """GET an extender endpoint (/metrics from the metrics port when there is one)."""
        if self.extender_metrics_port:
            url = f"http://127.0.0.1:{self.extender_metrics_port}{path}"
            with urllib.request.urlopen(url, timeout=5) as r:
                return int(r.status), r.read().decode()
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.load_cert_chain(str(self.pki / "client.crt"), str(self.pki / "client.key"))
        url = f"https://127.0.0.1:{self.extender_port}{path}"
        with urllib.request.urlopen(url, timeout=5, context=ctx) as r:
            return int(r.status), r.read().decode()

    def start_all(self, qps: int | None = None,
                  serve_overrides: Mapping[str, Any] | None = None,
                  scheduler_overrides: Mapping[str, Any] | None = None,
                  extender: str = "gts") -> ControlPlane:
        """API, identities, extender, both schedulers."""
        self.start_api()
        self.install_deploy_identities()
        self.start_extender(serve_overrides, extender)
        self.start_our_scheduler(qps, scheduler_overrides)
        self.start_default_scheduler(qps)
        return self

    def scheduler_cpu_profile(self, name: str, seconds: int) -> bytes:
        """A kube-scheduler's CPU profile over the next `seconds` (its /debug/pprof/profile,
        on by default in KubeSchedulerConfiguration; the admin token is system:masters)."""
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # kube-scheduler's own self-signed serving cert
        url = (f"https://127.0.0.1:{self.scheduler_ports[name]}/debug/pprof/profile"
               f"?seconds={int(seconds)}")
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.admin_token}"})
        with urllib.request.urlopen(req, timeout=seconds + 30, context=ctx) as r:
            data: bytes = r.read()
            return data

    def check_alive(self) -> None:
        """Raise (with its log tail) if a component died."""
        for p in self.procs.values():
            if not p.alive():
                raise RuntimeError(f"{p.name} is not running:\n{p.tail()}")

    def stop(self) -> None:
        """Stop every process, newest first."""
        for p in reversed(list(self.procs.values())):
            p.stop()


def _crd_established(ext: Any) -> bool:
    crd = ext.read_custom_resource_definition(PODGROUP_CRD["metadata"]["name"])
    return any(c.type == "Established" and c.status == "True"
               for c in (crd.status.conditions or []))


def start_control_plane(work: Path | None = None, *, qps: int | None = None,
                        serve_overrides: Mapping[str, Any] | None = None,
                        scheduler_overrides: Mapping[str, Any] | None = None,
                        keep: bool = False, extender: str = "gts") -> ControlPlane:
    """A started ControlPlane (raises ControlPlaneUnavailable without binaries); `extender`
    is a key of EXTENDER_PROGRAMS."""
    bin_dir = find_binaries()
    if work is None:
        work = Path(tempfile.mkdtemp(prefix="gts-e2e-"))
    cp = ControlPlane(bin_dir=bin_dir, work=work)
    try:
        cp.start_all(qps, serve_overrides, scheduler_overrides, extender)
    except BaseException:
        cp.stop()
        raise
    if not keep:
        atexit.register(shutil.rmtree, work, True)
    return cp


def drain(resp: Any) -> None:
    """Read a `_preload_content=False` response to its end; hand its connection back."""
    _ = resp.data
    resp.release_conn()


def create_gpu_node(core: Any, name: str, topo: NodeTopology,
                    labels: Mapping[str, str] | None = None, cpu: str = "64",
                    memory: str = "512Gi") -> None:
    """A Node as the kubelet, the device plugin and our node agent would leave it: capacity and
    allocatable, Ready, GPU model labels, the topology annotation; no not-ready taint.
    The API server keeps a Node's status on create, so two writes make one."""
    model = topo.gpus[0].model if topo.gpus else ""
    lab = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
           **dict.fromkeys(GPU_MODEL_LABELS, model.replace(" ", "-")), **(labels or {})}
    res = {"cpu": cpu, "memory": memory, "pods": "250", GPU_RESOURCE: str(topo.n)}
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    body = {
        "metadata": {"name": name, "labels": lab,
                     "annotations": {TOPOLOGY_ANNOTATION: to_json(topo)}},
        "status": {"capacity": res, "allocatable": res, "conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady",
             "message": "fake node", "lastHeartbeatTime": now, "lastTransitionTime": now}]},
    }
    drain(core.create_node(body, _preload_content=False))
    # Admission (TaintNodesByCondition) adds node.kubernetes.io/not-ready on create; a
    # kubelet's Ready status would clear it through the node lifecycle controller.
    drain(core.patch_node(name, {"spec": {"taints": None}}, _preload_content=False))
