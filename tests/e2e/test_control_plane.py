"""The control plane the suite runs on: every component under the identity deploy/ gives it.

This module also carries the suite's one skip message when the binaries are missing.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client, config

from bench.controlplane import (
    EXTENDER_SA,
    NAMESPACE,
    SCHEDULER_SA,
    ControlPlane,
    ControlPlaneUnavailable,
    binaries_source,
)

try:
    binaries_source()
except ControlPlaneUnavailable as e:
    pytest.skip(f"end-to-end suite skipped: {e}", allow_module_level=True)


def _client(cp: ControlPlane, identity: str) -> Any:
    return config.new_client_from_config(str(cp.kubeconfigs[identity]))  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("sa", [EXTENDER_SA, SCHEDULER_SA])
def test_components_run_as_deploy_service_accounts(control_plane: ControlPlane, sa: str) -> None:
    auth: Any = client.AuthenticationV1Api(_client(control_plane, sa))  # takes plain dicts
    review = auth.create_self_subject_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert review.status.user_info.username == f"system:serviceaccount:{NAMESPACE}:{sa}"


def test_extender_has_only_what_deploy_rbac_grants(control_plane: ControlPlane) -> None:
    authz: Any = client.AuthorizationV1Api(_client(control_plane, EXTENDER_SA))  # plain dicts

    def allowed(verb: str, resource: str, sub: str = "") -> bool:
        r = authz.create_self_subject_access_review({"spec": {"resourceAttributes": {
            "verb": verb, "resource": resource, "subresource": sub, "namespace": "x"}}})
        return bool(r.status.allowed)

    assert allowed("list", "pods") and allowed("watch", "nodes")
    assert allowed("create", "pods", "binding")
    assert not allowed("delete", "pods")
    assert not allowed("update", "nodes")
    assert not allowed("get", "secrets")


@pytest.mark.parametrize("name", ["gts-kube-scheduler", "default-scheduler"])
def test_kube_scheduler_cpu_profiles_are_readable(control_plane: ControlPlane,
                                                   name: str) -> None:
    # `gts bench e2e --profile-scheduler` reads these: the endpoint answers the admin token
    # and the file parses (an idle scheduler may have taken no samples in a second).
    from bench.pprof_top import rank

    data = control_plane.scheduler_cpu_profile(name, 1)
    assert data[:2] == b"\x1f\x8b"
    assert rank(data).total_s >= 0.0
