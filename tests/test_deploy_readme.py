"""deploy/README.md walks an install, a smoke test, an upgrade and an uninstall, and its
manifest install applies every manifest (the Secrets' placeholders excepted)."""

from __future__ import annotations

import re
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_readme_walks_install_smoke_test_upgrade_uninstall() -> None:
    text = (DEPLOY / "README.md").read_text()
    headings = re.findall(r"^## (.+)$", text, re.M)
    for h in ("Install with Helm", "Install with manifests", "Smoke test", "Upgrade",
              "Uninstall", "Build and push the image", "Supported versions"):
        assert h in headings, h
    assert "helm test" in text and "helm upgrade" in text and "helm uninstall" in text


def test_manifest_install_applies_every_manifest() -> None:
    text = (DEPLOY / "README.md").read_text()
    install = text.split("## Install with manifests", 1)[1].split("\n## ", 1)[0]
    applied = set(re.findall(r"deploy/manifests/([\w.-]+\.yaml)", install))
    shipped = {f.name for f in (DEPLOY / "manifests").glob("*.yaml")}
    assert applied == shipped - {"secrets.yaml"}
    # The Secrets the manifests mount are the ones the walk-through creates.
    for name in ("gts-signing-keys", "gts-extender-tls", "gts-kube-scheduler-tls"):
        assert f"secret generic {name}" in install, name
