"""Render the Helm chart without a helm binary (helm-python-sdk) and compare it to deploy/manifests.

`python -m tests.deploy_chart --write` regenerates deploy/manifests/ from the chart's defaults
(release `gts` in namespace `gpu-topology-scheduler`, MANIFEST_VALUES); the test suite checks
that the two describe the same objects.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "gpu-topology-scheduler"
MANIFESTS = DEPLOY / "manifests"
RELEASE = "gts"
NAMESPACE = "gpu-topology-scheduler"
# What the manifests pin that the chart takes from the install: the registry (a placeholder
# to replace, deploy/README.md) and kube-scheduler's version (the chart follows the API server).
MANIFEST_VALUES: dict[str, Any] = {
    "image": {"registry": "registry.example.com"},
    "kubeScheduler": {"image": {"tag": "v1.36.2"}},
}
# Labels and annotations only Helm adds or needs.
HELM_LABELS = ("app.kubernetes.io/managed-by", "helm.sh/chart")
HELM_ANNOTATIONS = ("helm.sh/resource-policy", "checksum/config")

Obj = dict[str, Any]


def merge(base: Obj, over: Obj) -> Obj:
    """Deep merge of Helm values (`over` wins)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def render(values: Obj | None = None, *, release: str = RELEASE,
           namespace: str = NAMESPACE) -> list[Obj]:
    """Every object the chart renders (NOTES.txt left out), in template order."""
    import helm_python

    chart = helm_python.Chart.load(CHART)
    out = chart.render(merge(MANIFEST_VALUES, values or {}), name=release, namespace=namespace,
                       is_install=True)
    docs: list[Obj] = []
    for path in sorted(out):
        if path.endswith(".txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(out[path]) if d)
    return docs


def is_hook(doc: Obj) -> bool:
    """A Helm hook (the `helm test` pod): not part of the installed objects."""
    return "helm.sh/hook" in (doc["metadata"].get("annotations") or {})


def normalize(doc: Obj) -> Obj:
    """The object without what only Helm adds; Secrets reduced to their key names."""
    d = copy.deepcopy(doc)
    for meta in _metas(d):
        labels = meta.get("labels") or {}
        for k in HELM_LABELS:
            labels.pop(k, None)
        ann = meta.get("annotations") or {}
        for k in HELM_ANNOTATIONS:
            ann.pop(k, None)
        for key in ("labels", "annotations"):
            if key in meta and not meta[key]:
                del meta[key]
    if d["kind"] == "Secret":
        keys = sorted({*(d.pop("data", None) or {}), *(d.pop("stringData", None) or {})})
        d["stringData"] = {k: "" for k in keys}
    return d


def _metas(d: Obj) -> list[Obj]:
    metas = [d.setdefault("metadata", {})]
    tmpl = (d.get("spec") or {}).get("template")
    if isinstance(tmpl, dict) and isinstance(tmpl.get("metadata"), dict):
        metas.append(tmpl["metadata"])
    return metas


def key(doc: Obj) -> tuple[str, str, str, str]:
    """Identity of an object: apiVersion, kind, namespace, name."""
    m = doc["metadata"]
    return (doc["apiVersion"], doc["kind"], m.get("namespace", ""), m["name"])


def manifest_docs() -> list[Obj]:
    """Every object in deploy/manifests/*.yaml."""
    docs: list[Obj] = []
    for f in sorted(MANIFESTS.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(f.read_text()) if d)
    return docs


# ---- regenerating deploy/manifests ------------------------------------------------------

FILES = {  # chart template -> manifest file, with the file's header comment
    "extender.yaml": "extender.yaml",
    "kube-scheduler.yaml": "kube-scheduler.yaml",
    "node-agent.yaml": "node-agent.yaml",
    "rbac.yaml": "rbac.yaml",
    "scheduler-config.yaml": "scheduler-config.yaml",
    "secrets.yaml": "secrets.yaml",
    "networkpolicy.yaml": "networkpolicy.yaml",
    "monitoring.yaml": "monitoring.yaml",
}


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, s: str) -> yaml.Node:
    style = "|" if "\n" in s else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)


_Dumper.add_representer(str, _str)


def write_manifests() -> None:
    """Rewrite the generated part of each manifest file (its leading comment is kept)."""
    import helm_python

    chart = helm_python.Chart.load(CHART)
    out = chart.render(MANIFEST_VALUES, name=RELEASE, namespace=NAMESPACE, is_install=True)
    for path, text in sorted(out.items()):
        name = path.rsplit("/", 1)[-1]
        if name not in FILES:
            continue
        docs = [normalize(d) for d in yaml.safe_load_all(text) if d and not is_hook(d)]
        target = MANIFESTS / FILES[name]
        header = ""
        if target.exists():
            lines = target.read_text().splitlines(keepends=True)
            header = "".join(ln for ln in _leading_comments(lines))
        body = "---\n".join(yaml.dump(d, Dumper=_Dumper, sort_keys=False, width=100)
                            for d in docs)
        target.write_text(header + body)


def _leading_comments(lines: list[str]) -> list[str]:
    out = []
    for ln in lines:
        if not ln.startswith("#"):
            break
        out.append(ln)
    return out


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        raise SystemExit("usage: python -m tests.deploy_chart --write")
    write_manifests()
