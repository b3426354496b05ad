"""The node agent depends on no placement code: only the shared contract, the pod codec, the
constants, topology and its own modules (issue 13).

Checked twice: at run time (a fresh interpreter imports every node agent module and lists
what got loaded, transitively) and in the source (imports inside functions, which the run
time check does not execute, such as the plugin command's lazy imports).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AGENT_DIR = ROOT / "scheduler" / "nodeagent"
# Our packages the node agent may load; anything else of ours (policy, cluster, extender,
# status, bench) is placement or service code.
ALLOWED = ("scheduler.contract", "scheduler.podcodec", "scheduler.constants",
           "scheduler.nodeagent", "topology")
OURS = ("scheduler", "topology", "bench")


def _allowed(module: str) -> bool:
    return module == "scheduler" or any(
        module == a or module.startswith(a + ".") for a in ALLOWED)


def _ours(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in OURS)


def _agent_modules() -> list[str]:
    files = sorted(AGENT_DIR.rglob("*.py"))
    assert len(files) > 5, f"node agent sources not found under {AGENT_DIR}"
    mods = []
    for f in files:
        parts = f.relative_to(ROOT).with_suffix("").parts
        mods.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return mods


def test_agent_modules_load_no_placement_code() -> None:
    modules = _agent_modules()
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
    assert "scheduler.nodeagent.plugin" in loaded  # the check saw the agent itself
    forbidden = [m for m in loaded if _ours(m) and not _allowed(m)]
    assert forbidden == [], f"the node agent loads placement or service code: {forbidden}"


def _imports_in(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "scheduler":  # `from scheduler import policy` names a package
                found += [(node.lineno, f"scheduler.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def test_agent_sources_import_no_placement_code() -> None:
    bad = [f"{f.relative_to(ROOT)}:{line}: {mod}"
           for f in sorted(AGENT_DIR.rglob("*.py"))
           for line, mod in _imports_in(f)
           if _ours(mod) and not _allowed(mod)]
    assert bad == [], "node agent imports outside its allowed packages:\n" + "\n".join(bad)


def test_the_checks_see_a_forbidden_import(tmp_path: Path) -> None:
    # The static check must flag a lazy policy import (guards against a check that passes
    # because it reads nothing).
    f = tmp_path / "agent.py"
    f.write_text("def run():\n    from scheduler.policy.snapshot import Snapshot\n"
                 "    import bench.replay\n    from scheduler import cluster\n")
    mods = [m for _, m in _imports_in(f)]
    assert [m for m in mods if _ours(m) and not _allowed(m)] == [
        "scheduler.policy.snapshot", "bench.replay", "scheduler.cluster"]
