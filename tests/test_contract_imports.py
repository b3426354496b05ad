"""scheduler.contract is the bottom of the scheduler: its modules load nothing else of ours
and no numpy, so any part (the node agent included) can use the shared types cheaply."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_contract_loads_only_itself() -> None:
    files = sorted((ROOT / "scheduler" / "contract").glob("*.py"))
    modules = [f"scheduler.contract.{f.stem}" for f in files if f.stem != "__init__"]
    assert {"scheduler.contract.request", "scheduler.contract.assignment"} <= set(modules)
    script = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout.splitlines()[-1])
    assert set(modules) <= set(loaded)
    ours = [m for m in loaded if m.split(".")[0] in ("scheduler", "topology", "bench")]
    assert [m for m in ours if m not in ("scheduler", "scheduler.contract")
            and not m.startswith("scheduler.contract.")] == []
    assert "numpy" not in loaded
