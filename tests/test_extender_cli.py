"""`gts serve`: options from flags and a YAML file, --help, and a static-mode server process."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from extender_fakes import ExtenderClient
from kube_scheduler_oracle import check_filter_reply

from scheduler.extender import cli
from scheduler.extender.config import (
    OPTIONS,
    ConfigError,
    load_policy_config,
    load_signing_key,
    resolve,
)

ROOT = Path(__file__).resolve().parents[1]


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    cli.add_parser(sub)
    return p.parse_args(["serve", *argv])


def test_help_documents_every_option() -> None:
    out = subprocess.run([sys.executable, "-m", "scheduler.cli", "serve", "--help"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60, check=True).stdout
    for o in OPTIONS:
        assert f"--{o.name}" in out
    for needle in ("httpTimeout", "config file example", "/readyz", "static"):
        assert needle in out


def test_yaml_file_then_flags(tmp_path: Path) -> None:
    f = tmp_path / "serve.yaml"
    f.write_text("port: 9000\ngang_timeout: 12\nbest-node-only: true\n"
                 "level-label-keys: [rack, zone]\nlog-level: DEBUG\n")
    cfg = resolve(parse("--config", str(f), "--port", "9100"))
    assert cfg.port == 9100 and cfg.gang_timeout == 12.0 and cfg.best_node_only
    assert cfg.level_label_keys == ("rack", "zone") and cfg.log_level == "debug"
    assert cfg.min_http_timeout == 12.0 + 10.0 + 5.0
    assert resolve(parse("--level-label-keys", "a, b")).level_label_keys == ("a", "b")


@pytest.mark.parametrize(("text", "argv", "needle"), [
    ("prot: 1\n", (), "unknown option 'prot'"),
    ("- a\n", (), "expected a mapping"),
    ("port: 70000\n", (), "port"),
    ("", ("--gang-timeout", "-3"), "--gang-timeout"),
    ("", ("--tls-cert", "c.pem"), "--tls-key"),
    ("", ("--gang-timeout", "60"), "--assume-ttl"),
    ("", ("--log-level", "loud"), "--log-level"),
    ("best-node-only: maybe\n", (), "best-node-only"),
    ("", ("--cluster", "c.yaml", "--kubeconfig", "k"), "exclude"),
])
def test_bad_configuration_is_named(tmp_path: Path, text: str, argv: tuple[str, ...],
                                    needle: str) -> None:
    f = tmp_path / "serve.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=needle.replace("-", r"\-").replace("'", ".")):
        resolve(parse("--config", str(f), *argv))


def test_policy_weights_and_signing_key(tmp_path: Path) -> None:
    w = tmp_path / "w.yaml"
    w.write_text("frag_weight: 2\nmin_quality: 0.5\ngang_domains_per_level: 4\n")
    pc = load_policy_config(resolve(parse("--policy-weights", str(w), "--best-node-only")))
    assert pc.frag_weight == 2.0 and pc.min_quality == 0.5 and pc.best_node_only
    assert pc.gang_domains_per_level == 4
    for bad, needle in [("frag_wieght: 1\n", "unknown field"), ("min_quality: 3\n", "0..1"),
                        ("gang_domains_per_level: 2.5\n", "integer")]:
        w.write_text(bad)
        with pytest.raises(ConfigError, match=needle):
            load_policy_config(resolve(parse("--policy-weights", str(w))))
    k = tmp_path / "key"
    k.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    assert load_signing_key(str(k)) == b"0123456789abcdef0123456789abcdef"
    k.write_bytes(b"short\n")
    with pytest.raises(ConfigError, match="at least 32"):
        load_signing_key(str(k))


def test_kubernetes_mode_requires_a_signing_key() -> None:
    r = subprocess.run([sys.executable, "-m", "scheduler.cli", "serve", "--kubeconfig",
                        "/nonexistent"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "--signing-key-file is required" in r.stderr


def test_static_mode_process_answers_the_readme_curl_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "scheduler.cli", "serve", "--cluster",
         "deploy/examples/cluster.yaml", "--port", "0", "--metrics-port", "0",
         "--log-level", "debug"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stderr is not None
        lines = []
        url = ""
        for line in proc.stderr:
            lines.append(json.loads(line))
            if lines[-1]["msg"] == "serving":
                url = lines[-1]["url"]
                break
        assert url, lines
        assert any("static mode" in x["msg"] for x in lines)
        doc = json.loads((ROOT / "deploy/examples/filter-request.json").read_text())
        c = ExtenderClient(url)
        reply = c.post("filter", doc)
        passed = check_filter_reply(reply, doc)
        assert passed and "cpu-00" in reply["FailedAndUnresolvableNodes"]
        assert c.raw("GET", "/readyz") == (200, b"ok\n")
        c.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        rest = [json.loads(x) for x in proc.stderr.read().splitlines() if x.strip()]
        decided = [x for x in rest if x.get("verb") == "filter"]
        assert decided and decided[0]["pod"] == "default/train-4gpu"
        assert decided[0]["decision"] == "passed"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
