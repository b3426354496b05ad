"""`gts agent`: argument handling and output, with discovery replaced by a known topology."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from scheduler.cli import main
from scheduler.nodeagent import cli as agent_cli
from topology.annotation import from_dict
from topology.model import GPU, NodeTopology


def two_gpus() -> NodeTopology:
    gpus = tuple(
        GPU(
            index=i,
            model="NVIDIA A10",
            uuid=f"GPU-{i}",
            memory_mib=23028,
            numa_node=i,
            pci_bus_id=f"00000000:{i + 1:02X}:00.0",
        )
        for i in range(2)
    )
    return NodeTopology(gpus=gpus, links=(("X", "SYS"), ("SYS", "X")))


def test_discover_json_is_the_annotation(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(agent_cli, "discover", lambda source: two_gpus())
    assert main(["agent", "discover", "--json"]) == 0
    assert from_dict(json.loads(capsys.readouterr().out)) == two_gpus()


def test_discover_text_lists_gpus_and_matrix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(agent_cli, "discover", lambda source: two_gpus())
    assert main(["agent", "discover"]) == 0
    out = capsys.readouterr().out
    assert "2 GPUs, model NVIDIA A10" in out
    assert "GPU1  GPU-1  23028 MiB  NUMA 1  00000000:02:00.0" in out
    assert "GPU0  X    SYS" in out


@pytest.mark.skipif(
    importlib.util.find_spec("pynvml") is not None or shutil.which("nvidia-smi") is not None,
    reason="this machine has NVML bindings or nvidia-smi",
)
def test_discover_without_gpu_tooling_says_what_to_install(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["agent", "discover"]) == 1
    err = capsys.readouterr().err
    assert "gts agent discover:" in err and "nvml" in err and "nvidia-smi" in err


def test_plugin_and_publish_need_a_node_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NODE_NAME", raising=False)
    key = tmp_path / "key"
    key.write_text("0123456789abcdef0123456789abcdef\n")
    assert main(["agent", "plugin", "--signing-key-file", str(key)]) == 2
    assert "--node is required" in capsys.readouterr().err
    assert main(["agent", "publish"]) == 2


def test_plugin_rejects_a_short_signing_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "key"
    key.write_text("short\n")
    assert main(["agent", "plugin", "--node", "n1", "--signing-key-file", str(key)]) == 2
    assert "need at least 32" in capsys.readouterr().err


def test_agent_without_subcommand_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agent"]) == 2
    assert "discover" in capsys.readouterr().err
