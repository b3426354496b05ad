"""Errors a user can act on: one line naming the problem, exit status 2, no traceback."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from scheduler import cli

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = str(ROOT / "deploy" / "examples" / "cluster.yaml")


def gts(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scheduler.cli", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_port_in_use() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = gts("serve", "--cluster", CLUSTER, "--port", str(port))
    assert r.returncode == 2
    line = one_line(r.stderr)
    assert f"127.0.0.1:{port}" in line and "in use" in line


def test_address_not_local() -> None:
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never an address of this machine.
    r = gts("serve", "--cluster", CLUSTER, "--host", "192.0.2.1", "--port", "0")
    assert r.returncode == 2
    line = one_line(r.stderr)
    assert "192.0.2.1" in line and "not an address of this machine" in line


def test_port_without_permission(monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    # Root may bind any port, so the kernel's refusal is reproduced at bind().
    def refuse(self: socket.socket, address: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(socket.socket, "bind", refuse)
    assert cli.main(["serve", "--cluster", CLUSTER, "--port", "80"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "127.0.0.1:80" in line and "permission denied" in line and "1024" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root may bind privileged ports")
def test_privileged_port_as_a_user() -> None:
    r = gts("serve", "--cluster", CLUSTER, "--port", "1")
    assert r.returncode == 2 and "permission denied" in one_line(r.stderr)


def test_broken_pipe_exits_quietly() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte, as with `| head -0`
    try:
        r = subprocess.run([sys.executable, "-m", "scheduler.cli", "topo", "show", "dgx1-v100"],
                           cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE, text=True,
                           timeout=120)
    finally:
        os.close(write_end)
    assert r.returncode == 2
    assert r.stderr == ""


def test_missing_workload_file() -> None:
    r = gts("simulate", "--workload", "nosuch.csv")
    assert r.returncode == 2
    assert one_line(r.stderr) == "gts simulate: --workload nosuch.csv: no such file"


def test_missing_cluster_file() -> None:
    r = gts("simulate", "--cluster", "nosuch.yaml")
    assert r.returncode == 2
    assert one_line(r.stderr) == "gts simulate: --cluster nosuch.yaml: no such file"
