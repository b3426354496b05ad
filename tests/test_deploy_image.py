"""deploy/Dockerfile: non-root, lean (no simulator, no matplotlib), NVML for the node agent,
and everything the service and the agent import is installed."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

from deploy.image_requirements import SIMULATOR_ONLY, image_requirements, requirement_name

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
# Imported lazily, only by code the image does not run: `gts topo show --png`.
LAZY_OPTIONAL = {"matplotlib": {"topology/draw.py"}}


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module a file imports (at any depth of the file)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def with_dependencies(names: set[str]) -> set[str]:
    """The distributions `names` install, their own dependencies included (extras left out)."""
    out: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out.add(name)
        try:
            reqs = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo.extend(requirement_name(r) for r in reqs if "extra ==" not in r)
    return out


def test_image_installs_everything_the_service_and_agent_import() -> None:
    wanted = with_dependencies(
        {requirement_name(r) for r in image_requirements(ROOT / "pyproject.toml")})
    dists = importlib.metadata.packages_distributions()
    missing: dict[str, set[str]] = {}
    for pkg in ("scheduler", "topology"):
        for f in (ROOT / pkg).rglob("*.py"):
            rel = f.relative_to(ROOT).as_posix()
            if "_pb2" in rel:
                continue
            for mod in imported_modules(f):
                if mod in sys.stdlib_module_names or mod in ("scheduler", "topology"):
                    continue
                assert mod != "bench", f"{rel} imports the simulator, which the image lacks"
                if rel in LAZY_OPTIONAL.get(mod, set()):
                    continue
                names = {requirement_name(d) for d in dists.get(mod, [])}
                if not names & wanted:
                    missing.setdefault(mod, set()).add(rel)
    assert not missing, f"imported but not installed in the image: {missing}"


def test_image_requirements_are_lean_and_carry_nvml() -> None:
    names = {requirement_name(r) for r in image_requirements(ROOT / "pyproject.toml")}
    assert not names & SIMULATOR_ONLY
    assert "nvidia-ml-py" in names


def test_dockerfile_builds_from_the_requirements_and_runs_non_root() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^USER 65532", text, re.M)
    assert 'ENTRYPOINT ["gts"]' in text
    assert "COPY bench" not in text
    assert "image_requirements.py" in text and "--no-deps ." in text
