"""Fixtures of the end-to-end suite: one real control plane per session (bench.controlplane),
a namespace and fake GPU nodes per test, removed again after it.

Without the binaries (GTS_E2E_BIN, else ../shared/control-plane) the suite skips with one
message (from test_control_plane.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from bench.controlplane import (
    ControlPlane,
    ControlPlaneUnavailable,
    binaries_source,
    create_gpu_node,
    start_control_plane,
)
from e2e.e2e_kit import Api, MakeNodes, signer_for, unique
from scheduler.constants import POD_GROUP_API
from scheduler.podcodec.signing import Signer
from topology.model import NodeTopology

# Gangs are all-or-nothing within gang-timeout: shorter than deploy/'s 30 s so that a test of
# a gang that fails does not wait half a minute (kube-scheduler's httpTimeout of 60 s still
# exceeds gang-timeout + gang-bind-grace + 5 s).
E2E_SERVE_OVERRIDES = {"gang-timeout": 8, "gang-bind-grace": 4}


try:
    binaries_source()
except ControlPlaneUnavailable:
    # Without binaries only test_control_plane.py is collected, and it skips with the reason:
    # one message for the whole suite.
    collect_ignore_glob = ["test_e2e_*.py"]


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd, kube-apiserver, both kube-schedulers and `gts serve`, for the whole session."""
    cp = start_control_plane(serve_overrides=E2E_SERVE_OVERRIDES)
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def api(control_plane: ControlPlane) -> Api:
    """The admin's API view."""
    return Api.of(control_plane.api_client())


@pytest.fixture(scope="session")
def signer(control_plane: ControlPlane) -> Signer:
    """A verifier holding the extender's signing key, as the node agents do."""
    return signer_for(control_plane.signing_key)


@pytest.fixture
def ns(api: Api, control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace; its pods and PodGroups are deleted afterwards (no controller-manager
    runs, so the namespace itself would stay Terminating: it is left, empty)."""
    name = unique("e2e")
    api.core.create_namespace({"metadata": {"name": name}})  # type: ignore[arg-type]
    yield name
    api.core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
    group, version, plural = POD_GROUP_API
    api.custom.delete_collection_namespaced_custom_object(group, version, name, plural)
    control_plane.check_alive()


@pytest.fixture
def make_nodes(api: Api) -> Iterator[MakeNodes]:
    """`make_nodes(count, topo)`: fake GPU nodes for this test; deleted after it."""
    made: list[str] = []

    def make(count: int, topo: NodeTopology, prefix: str = "gpu", **kw: Any) -> list[str]:
        base = unique(prefix)
        names = [f"{base}-{i}" for i in range(count)]
        for n in names:
            create_gpu_node(api.core, n, topo, **kw)
            made.append(n)
        return names

    yield make
    for n in made:
        try:
            api.core.delete_node(n)
        except client.ApiException as e:
            if e.status != 404:
                raise
