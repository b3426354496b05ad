"""`gts status`: ask the API server why a pod is pending or what holds a node's GPUs.

    gts status pod NAMESPACE/NAME [--kubeconfig F] [--json]
    gts status node NAME [--kubeconfig F] [--json]
    gts status probe URL          (the extender's metrics port: live, ready, cache synced)

Reads only: pods, events, nodes and PodGroups (get/list), with your kubeconfig.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from typing import Any

from scheduler.constants import POD_GROUP_API
from scheduler.podcodec.pod_fields import gang_key_of
from scheduler.status.probe import ProbeError, probe
from scheduler.status.report import node_status, pod_status
from topology.command_group import EXIT_USAGE, add_command_group

EXIT_ERROR = 1


def add_parser(subparsers: Any) -> None:
    """Register `gts status` and its subcommands."""
    sub = add_command_group(subparsers, "status", "why a pod is pending; what holds a node's GPUs",
                            __doc__, "status_command")
    p = sub.add_parser("pod", help="why a pod is pending (or where it runs), and its gang")
    p.add_argument("pod", metavar="NAMESPACE/NAME")
    _api_args(p)
    p.set_defaults(func=cmd_pod, reader=None)
    n = sub.add_parser("node", help="a node's GPUs, the pods holding them and their shares")
    n.add_argument("node", metavar="NAME")
    _api_args(n)
    n.set_defaults(func=cmd_node, reader=None)
    r = sub.add_parser("probe", help="the extender is live, ready and its cache synced")
    r.add_argument("url", metavar="URL", help="the extender's metrics port, http://HOST:9090")
    r.add_argument("--timeout", type=float, default=10.0, metavar="S")
    r.set_defaults(func=cmd_probe)


def _api_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", metavar="F", help="kubeconfig (default: ~/.kube/config, "
                   "else the in-cluster service account)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _fail(message: str, code: int = EXIT_ERROR) -> int:
    print(f"gts status: {message}", file=sys.stderr)
    return code


class KubeReader:
    """The reads `gts status` makes, as plain JSON objects."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    @staticmethod
    def _json(resp: Any) -> Any:
        return json.loads(resp.data)

    def pod(self, ns: str, name: str) -> dict[str, Any]:
        """GET the pod."""
        return dict(self._json(self.core.read_namespaced_pod(name, ns, _preload_content=False)))

    def events_of(self, ns: str, uid: str, name: str) -> list[dict[str, Any]]:
        """Events about the object (by uid when known)."""
        sel = f"involvedObject.uid={uid}" if uid else f"involvedObject.name={name}"
        resp = self.core.list_namespaced_event(ns, field_selector=sel, _preload_content=False)
        return list(self._json(resp).get("items") or [])

    def pods_in(self, ns: str) -> list[dict[str, Any]]:
        """Every pod of a namespace."""
        resp = self.core.list_namespaced_pod(ns, _preload_content=False)
        return list(self._json(resp).get("items") or [])

    def podgroup(self, ns: str, name: str) -> dict[str, Any] | None:
        """The PodGroup, None when there is none (or the CRD is not installed)."""
        from kubernetes.client.exceptions import ApiException

        group, version, plural = POD_GROUP_API
        try:
            resp = self.custom.get_namespaced_custom_object(group, version, ns, plural, name,
                                                            _preload_content=False)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return dict(self._json(resp))

    def node(self, name: str) -> dict[str, Any]:
        """GET the node."""
        return dict(self._json(self.core.read_node(name, _preload_content=False)))

    def pods_on(self, node: str) -> list[dict[str, Any]]:
        """The pods bound to the node."""
        resp = self.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}",
                                                     _preload_content=False)
        return list(self._json(resp).get("items") or [])


def pod_report(reader: KubeReader, ns: str, name: str) -> Any:
    """The PodStatus of ns/name, read through `reader`."""
    pod = reader.pod(ns, name)
    meta = pod.get("metadata") or {}
    events = reader.events_of(ns, str(meta.get("uid") or ""), name)
    members: list[dict[str, Any]] = []
    podgroup = None
    key = gang_key_of(pod)
    if key is not None:
        group = key.split("/", 1)[1]
        members = [p for p in reader.pods_in(ns) if gang_key_of(p) == key]
        podgroup = reader.podgroup(ns, group)
        if podgroup is not None:  # the gang coordinator may report on the PodGroup itself
            pg_uid = str((podgroup.get("metadata") or {}).get("uid") or "")
            events += reader.events_of(ns, pg_uid, group)
        for m in members:  # the gang coordinator's events may be on any member
            if m.get("metadata", {}).get("uid") != meta.get("uid"):
                events += [e for e in reader.events_of(ns, str(m["metadata"].get("uid", "")),
                                                        m["metadata"]["name"])
                           if str(e.get("reason", "")).startswith("Gang")]
    return pod_status(pod, events, members, podgroup)


def _reader(kubeconfig: str | None) -> KubeReader:
    from kubernetes import client, config

    configuration = client.Configuration()
    loader: Any = config
    try:
        loader.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    except Exception:
        if kubeconfig:
            raise
        loader.load_incluster_config(client_configuration=configuration)
    return KubeReader(client.ApiClient(configuration))


def _print(report: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(dataclasses.asdict(report), indent=2))
    else:
        print("\n".join(report.lines()))


def _api_failure(e: Exception, what: str) -> int:
    status = getattr(e, "status", None)
    if status == 404:
        return _fail(f"{what} not found")
    if status in (401, 403):
        return _fail(f"the API server refused to show {what} ({status}): your identity needs "
                     "get/list on pods, events, nodes and podgroups")
    reason = getattr(e, "reason", None) or e
    return _fail(f"cannot read {what} from the API server: {reason}")


def cmd_pod(args: argparse.Namespace) -> int:
    """Print why the pod is pending, or where it runs."""
    ns, sep, name = args.pod.partition("/")
    if not sep or not ns or not name:
        return _fail(f"{args.pod!r}: expected NAMESPACE/NAME", EXIT_USAGE)
    return _show(f"pod {ns}/{name}", args.json,
                 lambda: pod_report(args.reader or _reader(args.kubeconfig), ns, name))


def cmd_node(args: argparse.Namespace) -> int:
    """Print the node's GPUs and the pods holding them."""

    def build() -> Any:
        reader = args.reader or _reader(args.kubeconfig)
        return node_status(reader.node(args.node), reader.pods_on(args.node))

    return _show(f"node {args.node}", args.json, build)


def _show(what: str, as_json: bool, build: Callable[[], Any]) -> int:
    """Print the report `build` reads from the API, or one line on why it could not."""
    try:
        report = build()
    except Exception as e:
        return _api_failure(e, what)
    _print(report, as_json)
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    """Exit 0 when the extender is live, ready and synced; else one line and exit 1."""
    try:
        print(probe(args.url, args.timeout))
    except ProbeError as e:
        return _fail(str(e))
    return 0
