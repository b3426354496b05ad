"""`gts serve` configuration: one table of options drives the flags, the YAML file and --help.

Precedence: built-in default < YAML file (--config) < command-line flag. YAML keys are the
long flag names without dashes in front (`gang-timeout: 30`; `gang_timeout` works too).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scheduler.constants import DEFAULT_NETWORK_LEVEL_LABELS, SCHEDULER_NAME
from scheduler.extender.server import MAX_BODY_BYTES
from scheduler.podcodec import signing
from scheduler.policy.config import DEFAULT_CONFIG, PolicyConfig


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the option and value."""


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """Everything `gts serve` needs, validated."""

    host: str = "127.0.0.1"
    port: int = 8888
    config: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    cluster: str | None = None
    kubeconfig: str | None = None
    gang_timeout: float = 30.0
    gang_bind_grace: float = 10.0
    assume_ttl: float = 60.0
    best_node_only: bool = False
    policy_weights: str | None = None
    signing_key_file: str | None = None
    signing_key_dir: str | None = None
    signing_key_id: str | None = None
    tls_client_ca: str | None = None
    http2: bool = True
    metrics_port: int = 9090
    scheduler_name: str = SCHEDULER_NAME
    max_body_bytes: int = MAX_BODY_BYTES
    max_connections: int = 256
    idle_timeout: float = 60.0
    read_timeout: float = 10.0
    level_label_keys: tuple[str, ...] = DEFAULT_NETWORK_LEVEL_LABELS
    log_level: str = "info"

    @property
    def static(self) -> bool:
        """True in static mode (a cluster file, no Kubernetes)."""
        return self.cluster is not None

    @property
    def min_http_timeout(self) -> float:
        """The smallest kube-scheduler extender httpTimeout that lets a gang bind finish."""
        return self.gang_timeout + self.gang_bind_grace + 5.0


@dataclass(frozen=True, slots=True)
class _Option:
    name: str  # flag without dashes; field name with '_' for '-'
    metavar: str | None
    help: str
    parse: Callable[[Any, str], Any]


def _str(v: Any, name: str) -> str:
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{name}={v!r}: expected a non-empty string")
    return v


def _port(v: Any, name: str) -> int:
    try:
        n = int(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={v!r}: expected a port number") from None
    if isinstance(v, bool) or not 0 <= n <= 65535 or (isinstance(v, float) and v != n):
        raise ConfigError(f"{name}={v!r}: expected a port number 0..65535")
    return n


def _count(v: Any, name: str) -> int:
    try:
        n = int(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={v!r}: expected a positive integer") from None
    if isinstance(v, bool) or n < 1 or (isinstance(v, float) and v != n):
        raise ConfigError(f"{name}={v!r}: expected a positive integer")
    return n


def _key_id(v: Any, name: str) -> str:
    s = _str(v, name)
    if not signing.KEY_ID_RE.fullmatch(s):
        raise ConfigError(f"{name}={v!r}: a key id is [a-z0-9-]{{1,32}} (a file name in "
                          f"signing-key-dir)")
    return s


def _seconds(v: Any, name: str) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={v!r}: expected seconds (a number)") from None
    if isinstance(v, bool) or not 0 < x <= 86400:
        raise ConfigError(f"{name}={v!r}: expected seconds in (0, 86400]")
    return x


def _bool(v: Any, name: str) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false", "yes", "no", "1", "0"):
        return v.lower() in ("true", "yes", "1")
    raise ConfigError(f"{name}={v!r}: expected true or false")


def _keys(v: Any, name: str) -> tuple[str, ...]:
    items = v.split(",") if isinstance(v, str) else v
    if not isinstance(items, list | tuple) or not all(isinstance(x, str) for x in items):
        raise ConfigError(f"{name}={v!r}: expected label keys, comma-separated or a list")
    keys = tuple(x.strip() for x in items if x.strip())
    if not keys:
        raise ConfigError(f"{name}={v!r}: expected at least one label key")
    return keys


def _level(v: Any, name: str) -> str:
    s = _str(v, name).lower()
    if s not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"{name}={v!r}: expected debug, info, warning or error")
    return s


OPTIONS: tuple[_Option, ...] = (
    _Option("host", "ADDR", "address to listen on (default 127.0.0.1; 0.0.0.0 for all)", _str),
    _Option("port", "PORT", "port to listen on (default 8888; 0 picks a free one)", _port),
    _Option("config", "FILE", "YAML file with any of these options (flags override it)", _str),
    _Option("tls-cert", "FILE", "PEM certificate chain: serve HTTPS (needs --tls-key)", _str),
    _Option("tls-key", "FILE", "PEM private key of --tls-cert", _str),
    _Option("tls-client-ca", "FILE",
            "PEM CA bundle: require mutual TLS on the extender port; only clients with a "
            "certificate chaining to it (kube-scheduler's extender tlsConfig certFile) get "
            "past the handshake (needs --tls-cert)", _str),
    _Option("http2", "BOOL",
            "offer HTTP/2 by ALPN on the TLS port (default true): kube-scheduler then sends "
            "every call over one connection instead of a TLS handshake per concurrent bind; "
            "false serves HTTP/1.1 only", _bool),
    _Option("metrics-port", "PORT",
            "plain-HTTP port for /healthz, /readyz and /metrics only, so probes and "
            "Prometheus need no client certificate (default 9090; 0 = off, /metrics then on "
            "the extender port)", _port),
    _Option("scheduler-name", "NAME",
            f"spec.schedulerName of the pods this extender binds (default {SCHEDULER_NAME}); "
            "bind refuses others", _str),
    _Option("max-body-bytes", "BYTES",
            f"largest request body accepted (default {MAX_BODY_BYTES}: full Node objects of "
            "5,000 nodes with nodeCacheCapable false)", _count),
    _Option("max-connections", "N",
            "open connections at most; a new one evicts the longest-idle (default 256)",
            _count),
    _Option("idle-timeout", "SECONDS",
            "close a keep-alive connection idle this long (default 60)", _seconds),
    _Option("read-timeout", "SECONDS",
            "a request (TLS handshake, headers, body) must arrive within this (default 10)",
            _seconds),
    _Option("cluster", "FILE",
            "static mode: serve decisions for the cluster in this YAML file, without "
            "Kubernetes (bind only records the assignment in memory)", _str),
    _Option("kubeconfig", "FILE",
            "kubeconfig to reach the API server (default: in-cluster service account)", _str),
    _Option("gang-timeout", "SECONDS",
            "how long a gang's reservation waits for all members to reach bind before it is "
            "released (default 30); kube-scheduler's extender httpTimeout must exceed "
            "gang-timeout + gang-bind-grace + 5s", _seconds),
    _Option("gang-bind-grace", "SECONDS",
            "extra time a waiting member allows for the last one to post the Bindings "
            "(default 10)", _seconds),
    _Option("assume-ttl", "SECONDS",
            "a reservation not confirmed by a bound pod is released after this (default 60; "
            "must exceed gang-timeout + gang-bind-grace)", _seconds),
    _Option("best-node-only", None,
            "filter passes only the best-scoring node, so kube-scheduler skips its scoring "
            "and the prioritize call, and its own scores cannot move a pod to worse-linked "
            "GPUs (deploy/ turns it on; see deploy/README)", _bool),
    _Option("policy-weights", "FILE",
            "YAML mapping of scheduler.policy.PolicyConfig fields (topology_weight, "
            "frag_weight, value_weight, pack_weight, gang_affinity_weight, min_quality, ...)",
            _str),
    _Option("signing-key-file", "FILE",
            "HMAC key shared with the node agents (at least 32 random-looking bytes; "
            "trailing whitespace is ignored); one key, its id derived from it", _str),
    _Option("signing-key-dir", "DIR",
            "directory of HMAC keys, one per file named by its key id ([a-z0-9-]{1,32}); "
            "all verify, --signing-key-id signs; this or --signing-key-file is required "
            "with Kubernetes", _str),
    _Option("signing-key-id", "ID",
            "the key of --signing-key-dir that signs (required when it holds several)",
            _key_id),
    _Option("level-label-keys", "KEYS",
            "node label keys of network levels, narrowest first, comma-separated (default "
            + ",".join(DEFAULT_NETWORK_LEVEL_LABELS) + ")", _keys),
    _Option("log-level", "LEVEL", "debug, info, warning or error (default info)", _level),
)

YAML_EXAMPLE = """\
config file example (every key optional):
  host: 0.0.0.0
  port: 8888
  tls-cert: /etc/gts/tls/tls.crt
  tls-key: /etc/gts/tls/tls.key
  gang-timeout: 30
  assume-ttl: 60
  best-node-only: false
  policy-weights: /etc/gts/policy.yaml
  signing-key-dir: /etc/gts/signing-keys
  signing-key-id: k2026-11
  tls-client-ca: /etc/gts/tls/client-ca.crt
  http2: true
  metrics-port: 9090
  level-label-keys: [network.topology.nvidia.com/accelerator, network.topology.nvidia.com/block]
  log-level: info
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add every option as a flag; defaults stay None so the file can supply them."""
    for o in OPTIONS:
        if o.metavar is None:
            p.add_argument(f"--{o.name}", action="store_const", const=True, default=None,
                           help=o.help)
        else:
            p.add_argument(f"--{o.name}", metavar=o.metavar, default=None, help=o.help)


def _field(name: str) -> str:
    return name.replace("-", "_")


def read_yaml_mapping(path: str, what: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping; ConfigError naming the file otherwise."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"{what} {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {path}: not YAML: {e}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{what} {path}: expected a mapping of option: value")
    return doc


def resolve(args: argparse.Namespace) -> ServeConfig:
    """The configuration from defaults, the --config file and the flags, validated."""
    by_field = {_field(o.name): o for o in OPTIONS}
    values: dict[str, Any] = {}
    cfg_path = getattr(args, "config", None)
    if cfg_path:
        for k, v in read_yaml_mapping(cfg_path, "config file").items():
            f = _field(str(k))
            if f not in by_field or f == "config":
                known = ", ".join(o.name for o in OPTIONS if o.name != "config")
                raise ConfigError(f"config file {cfg_path}: unknown option {k!r}; known: {known}")
            if v is not None:
                values[f] = by_field[f].parse(v, str(k))
    for f, o in by_field.items():
        v = getattr(args, f, None)
        if v is not None:
            values[f] = o.parse(v, f"--{o.name}")
    cfg = ServeConfig(**values)
    _check(cfg)
    return cfg


def _check(cfg: ServeConfig) -> None:
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together: give both or neither")
    if cfg.tls_client_ca and not cfg.tls_cert:
        raise ConfigError(f"--tls-client-ca={cfg.tls_client_ca}: client certificates need TLS; "
                          "give --tls-cert and --tls-key too")
    if cfg.signing_key_file and cfg.signing_key_dir:
        raise ConfigError("--signing-key-file and --signing-key-dir exclude each other")
    if cfg.signing_key_id and not cfg.signing_key_dir:
        raise ConfigError(f"--signing-key-id={cfg.signing_key_id}: names a key of "
                          "--signing-key-dir, which is not given")
    if cfg.metrics_port and cfg.metrics_port == cfg.port:
        raise ConfigError(f"--metrics-port={cfg.metrics_port} is --port too; give another "
                          "(or 0 for none)")
    if cfg.assume_ttl <= cfg.gang_timeout + cfg.gang_bind_grace:
        raise ConfigError(
            f"--assume-ttl={cfg.assume_ttl:g} must exceed --gang-timeout + --gang-bind-grace "
            f"({cfg.gang_timeout + cfg.gang_bind_grace:g}): a gang's reservation must not "
            f"expire before the gang does")
    if cfg.static and cfg.kubeconfig:
        raise ConfigError("--cluster (static mode) and --kubeconfig exclude each other")


def load_policy_config(cfg: ServeConfig) -> PolicyConfig:
    """PolicyConfig from --policy-weights (unknown keys rejected) and --best-node-only."""
    base = DEFAULT_CONFIG
    if cfg.policy_weights:
        raw = read_yaml_mapping(cfg.policy_weights, "policy weights file")
        names = {f.name: f for f in dataclasses.fields(PolicyConfig)}
        updates: dict[str, Any] = {}
        for k, v in raw.items():
            if k not in names:
                raise ConfigError(f"policy weights file {cfg.policy_weights}: unknown field "
                                  f"{k!r}; known: {', '.join(sorted(names))}")
            default = getattr(DEFAULT_CONFIG, k)
            if isinstance(default, bool):
                updates[k] = _bool(v, k)
                continue
            whole = isinstance(default, int)
            if isinstance(v, bool) or not isinstance(v, int | float) or (
                    whole and not isinstance(v, int)):
                raise ConfigError(f"policy weights file {cfg.policy_weights}: {k}={v!r}: "
                                  f"expected {'an integer' if whole else 'a number'}")
            updates[k] = v if whole else float(v)
        try:
            base = dataclasses.replace(base, **updates)
        except ValueError as e:
            raise ConfigError(f"policy weights file {cfg.policy_weights}: {e}") from None
    if cfg.best_node_only:
        base = dataclasses.replace(base, best_node_only=True)
    return base


def load_signing_key(path: str) -> bytes:
    """scheduler.podcodec.signing.load_signing_key, its error as a ConfigError naming the flag."""
    try:
        return signing.load_signing_key(path)
    except signing.SigningKeyError as e:
        raise ConfigError(f"--signing-key-file: {e}") from None


def load_signer(cfg: ServeConfig) -> signing.Signer | None:
    """The key ring of --signing-key-dir (or the one key of --signing-key-file); None if
    neither is given. ConfigError naming the flag and file otherwise."""
    if cfg.signing_key_file:
        return signing.Signer(load_signing_key(cfg.signing_key_file))
    if not cfg.signing_key_dir:
        return None
    try:
        keys = signing.load_key_dir(cfg.signing_key_dir)
        return signing.Signer(keys=keys, key_id=cfg.signing_key_id)
    except (signing.SigningKeyError, ValueError) as e:
        raise ConfigError(f"--signing-key-dir: {e}") from None


def as_mapping(cfg: ServeConfig) -> Mapping[str, Any]:
    """The configuration as a plain mapping (for the startup log line)."""
    return {k: v for k, v in dataclasses.asdict(cfg).items()}
