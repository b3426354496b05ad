"""Print the image's Python requirements: pyproject's dependencies for the service and the node
agent (the [nvml] extra included: GPU health checks), without what only the simulator needs.

Run by deploy/Dockerfile; tests/test_deploy_image.py checks that every third-party module
scheduler/ and topology/ import is in this list.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

# Only the simulator's reports (bench/) and `gts topo show --png` draw with matplotlib.
SIMULATOR_ONLY = {"matplotlib"}
EXTRAS = ("nvml",)


def requirement_name(req: str) -> str:
    """The distribution name of a requirement string, normalized (PEP 503)."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    if not m:
        raise ValueError(f"not a requirement: {req!r}")
    return re.sub(r"[-_.]+", "-", m[1]).lower()


def image_requirements(pyproject: Path) -> list[str]:
    """The requirement strings the image installs."""
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = [r for r in project["dependencies"] if requirement_name(r) not in SIMULATOR_ONLY]
    for extra in EXTRAS:
        reqs += project["optional-dependencies"][extra]
    return reqs


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("pyproject.toml")
    print("\n".join(image_requirements(path)))
