"""The node agent checks the NVIDIA container toolkit settings volume-mounts relies on, and
refuses to start without them (or without NVML) with an actionable one-line error."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from scheduler import cli
from scheduler.nodeagent.toolkit import VOLUME_MOUNT_SETTINGS, read_config, toolkit_problems

GOOD = """\
accept-nvidia-visible-devices-envvar-when-unprivileged = false
accept-nvidia-visible-devices-as-volume-mounts = true

[nvidia-container-runtime]
mode = "legacy"
"""


def test_good_config_passes() -> None:
    assert toolkit_problems(GOOD, "c.toml", "volume-mounts") == []


def test_defaults_fail_naming_each_key_and_the_fix() -> None:
    problems = toolkit_problems("[nvidia-container-cli]\nldconfig = '@/sbin/ldconfig'\n",
                                "c.toml", "volume-mounts")
    assert len(problems) == len(VOLUME_MOUNT_SETTINGS) == 2
    for s, p in zip(VOLUME_MOUNT_SETTINGS, problems, strict=True):
        assert s.key in p and "unset" in p and s.operator_env in p
    assert "accept-nvidia-visible-devices-as-volume-mounts = true" in problems[1]


def test_a_wrong_value_and_a_broken_file() -> None:
    text = GOOD.replace("as-volume-mounts = true", "as-volume-mounts = false")
    (p,) = toolkit_problems(text, "c.toml", "volume-mounts")
    assert "accept-nvidia-visible-devices-as-volume-mounts = false;" in p
    (p,) = toolkit_problems("accept-nvidia = [", "c.toml", "volume-mounts")
    assert "not valid TOML" in p
    (p,) = toolkit_problems(None, "/etc/gts/x/config.toml", "volume-mounts")
    assert "cannot be read" in p and "nodeAgent.toolkitConfigDir" in p


def test_envvar_strategy_needs_nothing() -> None:
    assert toolkit_problems(None, "c.toml", "envvar") == []


def test_read_config(tmp_path: Path) -> None:
    f = tmp_path / "config.toml"
    f.write_text(GOOD)
    assert read_config(str(f)) == GOOD
    assert read_config(str(tmp_path / "nosuch")) is None


def test_plugin_refuses_to_start_on_a_bad_toolkit_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "key"
    key.write_text(secrets.token_hex(32))
    cfg = tmp_path / "config.toml"
    cfg.write_text("")
    rc = cli.main(["agent", "plugin", "--node", "n1", "--signing-key-file", str(key),
                   "--device-list-strategy", "volume-mounts", "--toolkit-config", str(cfg)])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("gts agent plugin: ") and err.count("\n") == 1
    assert "accept-nvidia-visible-devices-envvar-when-unprivileged is unset" in err


def test_plugin_refuses_to_start_without_nvml(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from test_nodeagent_cli import two_gpus

    from scheduler.nodeagent import cli as agent_cli
    from scheduler.nodeagent import discovery

    def no_nvml() -> object:
        raise discovery.DiscoveryError("NVML library not found (libnvidia-ml.so.1)")

    monkeypatch.setattr(agent_cli, "discover", lambda source: two_gpus())
    monkeypatch.setattr(agent_cli, "_core_v1", lambda kubeconfig: object())
    monkeypatch.setattr(discovery, "load_nvml", no_nvml)
    key = tmp_path / "key"
    key.write_text(secrets.token_hex(32))
    rc = cli.main(["agent", "plugin", "--node", "n1", "--signing-key-file", str(key),
                   "--no-publish", "--socket-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1
    assert "no GPU health checks: NVML library not found" in err and "--no-health-check" in err
