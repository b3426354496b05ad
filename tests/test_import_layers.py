"""The import layering of issue 13, checked on the real tree.

- The node agent loads no placement or service code: only the shared contract, the pod codec,
  the constants, topology and its own modules. Checked at run time (a fresh interpreter
  imports every node agent module and lists what got loaded, transitively) and in the source
  (imports inside functions, such as the plugin command's lazy ones, never run at import).
- scheduler.contract is the bottom of the scheduler: it loads nothing else of ours, no numpy.
- No two of our modules import each other, directly or around a circle. Every import counts,
  including those under TYPE_CHECKING and inside functions: a circle of type hints is still
  two modules that cannot be read, or changed, one without the other.
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
PACKAGES = ("scheduler", "topology", "bench")
# Our packages the node agent may load; anything else of ours (policy, cluster, extender,
# status, bench) is placement or service code.
AGENT_ALLOWED = ("scheduler.contract", "scheduler.podcodec", "scheduler.constants",
                 "scheduler.nodeagent", "topology")


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _agent_may_load(module: str) -> bool:
    return module == "scheduler" or _within(module, AGENT_ALLOWED)


def _module_files(root: Path) -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg in PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            parts = f.relative_to(root).with_suffix("").parts
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return mods


def loaded_after_importing(modules: list[str]) -> list[str]:
    """sys.modules of a fresh interpreter, on this tree, after importing `modules`."""
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
    loaded: list[str] = json.loads(out.stdout.splitlines()[-1])
    assert set(modules) <= set(loaded)  # the check saw what it imported
    return loaded


def _imports_in(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, at any depth; `from scheduler import x`
    names the package scheduler.x."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "scheduler":
                found += [(node.lineno, f"scheduler.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def test_agent_modules_load_no_placement_code() -> None:
    mods = [m for m in _module_files(ROOT) if _within(m, ("scheduler.nodeagent",))]
    assert "scheduler.nodeagent.plugin" in mods and "scheduler.nodeagent.claims" in mods
    loaded = loaded_after_importing(mods)
    forbidden = [m for m in loaded if _within(m, PACKAGES) and not _agent_may_load(m)]
    assert forbidden == [], f"the node agent loads placement or service code: {forbidden}"


def test_agent_sources_import_no_placement_code() -> None:
    files = sorted(AGENT_DIR.rglob("*.py"))
    assert len(files) > 5, f"node agent sources not found under {AGENT_DIR}"
    bad = [f"{f.relative_to(ROOT)}:{line}: {mod}"
           for f in files
           for line, mod in _imports_in(f)
           if _within(mod, PACKAGES) and not _agent_may_load(mod)]
    assert bad == [], "node agent imports outside its allowed packages:\n" + "\n".join(bad)


def test_the_source_check_sees_a_lazy_forbidden_import(tmp_path: Path) -> None:
    f = tmp_path / "agent.py"
    f.write_text("def run():\n    from scheduler.policy.snapshot import Snapshot\n"
                 "    import bench.replay\n    from scheduler import cluster, constants\n")
    mods = [m for _, m in _imports_in(f)]
    assert [m for m in mods if _within(m, PACKAGES) and not _agent_may_load(m)] == [
        "scheduler.policy.snapshot", "bench.replay", "scheduler.cluster"]


def test_contract_loads_only_itself_and_no_numpy() -> None:
    mods = [m for m in _module_files(ROOT) if _within(m, ("scheduler.contract",))]
    assert {"scheduler.contract.request", "scheduler.contract.assignment"} <= set(mods)
    loaded = loaded_after_importing(mods)
    assert [m for m in loaded if _within(m, PACKAGES) and m != "scheduler"
            and not _within(m, ("scheduler.contract",))] == []
    assert "numpy" not in loaded


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the modules of ours it imports (`from a import b` counts a.b if a module)."""
    mods = _module_files(root)
    graph: dict[str, set[str]] = {}
    for name, f in mods.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text(), filename=str(f))):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    deps.add(sub if sub in mods else node.module)
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                group = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    group.append(w)
                    if w == v:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def test_no_import_circles() -> None:
    graph = import_graph(ROOT)
    assert "scheduler.extender.gangs" in graph and len(graph) > 50  # it read the tree
    assert circles(graph) == []


def test_a_circle_of_type_hints_is_found(tmp_path: Path) -> None:
    pkg = tmp_path / "scheduler"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    from scheduler.b import B\n")
    (pkg / "b.py").write_text("def f():\n    from scheduler import c\n")
    (pkg / "c.py").write_text("import scheduler.a\n")
    (pkg / "d.py").write_text("import scheduler.a\n")
    assert circles(import_graph(tmp_path)) == [["scheduler.a", "scheduler.b", "scheduler.c"]]
