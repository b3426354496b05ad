"""The lean pieces of the watch and bind path: orjson event decoding, and a Binding POST on a
pool the client's manager has since closed."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from kubeapi_double import KubeAPIDouble
from test_cluster_kube import api_client, pod_obj

from scheduler.cluster.kube_binder import KubeBinder
from scheduler.cluster.kube_watch import RawWatch


@pytest.fixture
def api() -> Iterator[KubeAPIDouble]:
    with KubeAPIDouble() as server:
        yield server


def test_watch_lines_decode_as_the_clients_decoder_does() -> None:
    w = RawWatch()  # type: ignore[no-untyped-call]
    obj = {"metadata": {"name": "p", "resourceVersion": "7"}, "x": [1, 2.5, None, "é"]}
    ev = w.unmarshal_event(json.dumps({"type": "MODIFIED", "object": obj}), None)
    assert ev == {"type": "MODIFIED", "object": obj, "raw_object": obj}
    for line in ("", "  ", "{not json"):
        assert w.unmarshal_event(line, None) is None


def test_a_bind_after_the_pool_was_closed_opens_it_again(api: KubeAPIDouble) -> None:
    api.put_node({"metadata": {"name": "a"}, "status": {}})
    for name in ("p", "q"):
        api.put_pod(pod_obj(name, gpus=1))
    binder = KubeBinder(api_client(api))
    binder.bind("default", "p", "", "a", {"x/a": "1"})
    # Its pools closed and dropped (what urllib3 1.x's manager did on eviction, and what
    # closing the client does): the pool the binder looked up is closed.
    pm = binder.api_client.rest_client.pool_manager
    for key in pm.pools.keys():  # noqa: SIM118 - the container refuses iteration
        pm.pools[key].close()
    pm.clear()
    binder.bind("default", "q", "", "a", {"x/a": "2"})
    for name, v in (("p", "1"), ("q", "2")):
        pod = api.get_pod("default", name)
        assert pod is not None and pod["spec"]["nodeName"] == "a"
        assert pod["metadata"]["annotations"]["x/a"] == v
