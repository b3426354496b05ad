"""The device plugin over real gRPC on unix sockets, with a fake kubelet and no Kubernetes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from dgx1_topo_matrix import DGX1_TOPO_ROWS

from scheduler.constants import GPU_MEMORY_RESOURCE, GPU_MILLI_RESOURCE, GPU_RESOURCE
from scheduler.contract.assignment import Assignment
from scheduler.nodeagent.claims import ClaimBook, Want, read_node_pods
from scheduler.nodeagent.devices import share_device_id, share_devices, whole_gpu_devices
from scheduler.nodeagent.health import nvml_health_probe
from scheduler.nodeagent.plugin import (
    API_VERSION,
    KUBELET_SOCKET,
    VOLUME_MOUNT_ROOT,
    DevicePluginService,
    PluginConfig,
    PluginRunner,
    PluginServer,
    container_response,
    pb,
    pb_grpc,
    socket_target,
)
from scheduler.podcodec.assignment import assignment_annotations, assignment_signature_ok
from scheduler.podcodec.signing import Signer
from topology.model import GPU, NodeTopology

NODE = "gpu-node-1"
KEY = b"k" * 32
OTHER_KEY = b"x" * 32


def uuid(i: int) -> str:
    return f"GPU-{i:08x}-1111-2222-3333-444444444444"


def dgx1() -> NodeTopology:
    gpus = tuple(
        GPU(index=i, model="Tesla V100-SXM2-32GB", uuid=uuid(i), memory_mib=32768,
            numa_node=i // 4)
        for i in range(8)
    )  # fmt: skip
    return NodeTopology(gpus=gpus, links=tuple(tuple(r.split()) for r in DGX1_TOPO_ROWS))


def pod(
    name: str,
    *,
    gpus: tuple[int, ...] | None = None,
    sizes: tuple[int, ...] = (),
    milli: int = 0,
    mem: int = 0,
    key: bytes | None = KEY,
    created: str = "2026-01-01T00:00:00Z",
    node: str = NODE,
    phase: str = "Pending",
    init_sizes: tuple[int, ...] = (),
) -> dict[str, Any]:
    """A pod bound to `node`; `gpus` given = annotated with an assignment signed with `key`."""
    uid = f"uid-{name}"

    def container(i: int, n: int, prefix: str) -> dict[str, Any]:
        limits = {GPU_RESOURCE: str(n)} if n else {}
        return {"name": f"{prefix}{i}", "resources": {"limits": limits}}

    if milli:
        limits: dict[str, str] = {GPU_MILLI_RESOURCE: str(milli)}
        if mem:
            limits[GPU_MEMORY_RESOURCE] = str(mem)
        containers = [{"name": "c0", "resources": {"limits": limits}}]
    else:
        sizes = sizes or ((len(gpus),) if gpus else (1,))
        containers = [container(i, n, "c") for i, n in enumerate(sizes)]
    p: dict[str, Any] = {
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": uid,
            "creationTimestamp": created,
            "annotations": {},
        },
        "spec": {"nodeName": node, "containers": containers},
        "status": {"phase": phase},
    }
    if init_sizes:
        p["spec"]["initContainers"] = [container(i, n, "init") for i, n in enumerate(init_sizes)]
    if gpus is not None:
        a = Assignment(
            pod=f"default/{name}", node=node, gpus=gpus, gpu_milli=milli or 1000,
            gpu_memory_mib=mem,
        )  # fmt: skip
        signer = Signer(key if key is not None else KEY)
        ann = assignment_annotations(a, signer, uid=uid)
        if key is None:
            del ann["gts.dev/signature"]
        p["metadata"]["annotations"] = ann
    return p


def check(p: Any, a: Assignment) -> bool:
    return assignment_signature_ok(p, a, Signer(KEY))


class FakeKubelet(pb_grpc.RegistrationServicer):  # type: ignore[misc]
    """kubelet's Registration service: records every Register call."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    def Register(self, request: Any, context: Any) -> Any:
        self.requests.append(request)
        return pb.Empty()


def serve_kubelet(socket_dir: Path) -> tuple[grpc.Server, FakeKubelet]:
    path = socket_dir / KUBELET_SOCKET
    path.unlink(missing_ok=True)
    kubelet = FakeKubelet()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_RegistrationServicer_to_server(kubelet, server)
    server.add_insecure_port(socket_target(str(path)))
    server.start()
    return server, kubelet


@dataclass
class Agent:
    """Both plugins served and registered with a fake kubelet in a tmp socket dir."""

    dir: Path
    pods: list[dict[str, Any]]
    runner: PluginRunner
    kubelet_server: grpc.Server
    kubelet: FakeKubelet
    whole: DevicePluginService
    share: DevicePluginService
    channels: list[grpc.Channel] = field(default_factory=list)

    def stub(self, endpoint: str) -> Any:
        ch = grpc.insecure_channel(socket_target(str(self.dir / endpoint)))
        self.channels.append(ch)
        return pb_grpc.DevicePluginStub(ch)

    def restart_kubelet(self) -> FakeKubelet:
        """A new kubelet on a new kubelet.sock, once the old one is gone.

        gRPC removes a unix socket's file when its server has shut down, and stop() only starts
        that: without the wait, the old server could remove the new kubelet.sock.
        """
        self.kubelet_server.stop(0).wait()
        self.kubelet_server, kubelet = serve_kubelet(self.dir)
        return kubelet


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    sock_dir = tmp_path / "dp"
    sock_dir.mkdir()
    kubelet_server, kubelet = serve_kubelet(sock_dir)
    pods: list[dict[str, Any]] = []
    topo = dgx1()
    config = PluginConfig(node=NODE, retry_delays=())
    book = ClaimBook()
    whole = DevicePluginService(whole_gpu_devices(topo), topo, lambda: list(pods), check, config,
                                book=book)  # fmt: skip
    share = DevicePluginService(share_devices(topo), topo, lambda: list(pods), check, config,
                                book=book)  # fmt: skip
    servers = [
        PluginServer(whole, str(sock_dir), "gts-gpu.sock"),
        PluginServer(share, str(sock_dir), "gts-gpu-milli.sock"),
    ]
    runner = PluginRunner(servers, str(sock_dir), poll_s=0.05)
    runner.step()
    a = Agent(sock_dir, pods, runner, kubelet_server, kubelet, whole, share)
    yield a
    for ch in a.channels:
        ch.close()
    for s in runner.servers:
        s.service.stop()
        s.stop(0)
    a.kubelet_server.stop(0).wait()


def allocate(stub: Any, *device_lists: list[str]) -> Any:
    req = pb.AllocateRequest(
        container_requests=[pb.ContainerAllocateRequest(devices_ids=d) for d in device_lists]
    )
    return stub.Allocate(req, timeout=10)


def visible(resp: Any, i: int = 0) -> set[str]:
    return set(resp.container_responses[i].envs["NVIDIA_VISIBLE_DEVICES"].split(","))


def test_registers_with_kubelet_version_endpoint_and_resource(agent: Agent) -> None:
    reqs = {r.resource_name: r for r in agent.kubelet.requests}
    assert set(reqs) == {GPU_RESOURCE, GPU_MILLI_RESOURCE}
    r = reqs[GPU_RESOURCE]
    assert r.version == API_VERSION == "v1beta1"
    assert r.endpoint == "gts-gpu.sock"  # the socket's base name in kubelet's directory
    assert r.options.get_preferred_allocation_available
    assert reqs[GPU_MILLI_RESOURCE].endpoint == "gts-gpu-milli.sock"
    assert (agent.dir / "gts-gpu.sock").exists()
    opts = agent.stub("gts-gpu.sock").GetDevicePluginOptions(pb.Empty(), timeout=5)
    assert opts.get_preferred_allocation_available and not opts.pre_start_required


def test_list_and_watch_streams_devices_numa_and_health_changes(agent: Agent) -> None:
    stream = agent.stub("gts-gpu.sock").ListAndWatch(pb.Empty(), timeout=10)
    first = next(stream)
    assert [d.ID for d in first.devices] == [uuid(i) for i in range(8)]
    assert {d.health for d in first.devices} == {"Healthy"}
    assert [[n.ID for n in d.topology.nodes] for d in first.devices] == [[i // 4] for i in range(8)]
    agent.whole.set_unhealthy(frozenset({2}))
    second = next(stream)
    assert [d.health for d in second.devices] == ["Unhealthy" if i == 2 else "Healthy"
                                                   for i in range(8)]  # fmt: skip
    stream.cancel()
    share = next(agent.stub("gts-gpu-milli.sock").ListAndWatch(pb.Empty(), timeout=10))
    assert len(share.devices) == 8000
    assert share_device_id(uuid(1), 0) == share.devices[1000].ID
    assert all(len(d.ID) <= 63 for d in share.devices)


def test_reregisters_when_kubelet_restarts(agent: Agent) -> None:
    assert agent.runner.registrations == 1
    agent.runner.step()  # nothing changed: no new registration
    assert agent.runner.registrations == 1 and len(agent.kubelet.requests) == 2
    # kubelet restart: it removes the plugin sockets and re-creates kubelet.sock
    agent.kubelet_server.stop(0).wait()
    for name in ("gts-gpu.sock", "gts-gpu-milli.sock"):
        (agent.dir / name).unlink()
    agent.kubelet_server, new_kubelet = serve_kubelet(agent.dir)
    agent.runner.step()
    assert agent.runner.registrations == 2
    assert sorted(r.resource_name for r in new_kubelet.requests) == sorted(
        [GPU_RESOURCE, GPU_MILLI_RESOURCE]
    )
    assert (agent.dir / "gts-gpu.sock").exists()
    opts = agent.stub("gts-gpu.sock").GetDevicePluginOptions(pb.Empty(), timeout=5)
    assert opts.get_preferred_allocation_available
    # kubelet.sock re-created alone also triggers it
    third = agent.restart_kubelet()
    agent.runner.step()
    assert agent.runner.registrations == 3 and len(third.requests) == 2


def test_kubelet_socket_that_vanished_and_came_back_alike_is_registered_again(
        agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    # A new kubelet.sock may look like the old one to stat() (a reused inode, a ctime from a
    # coarse clock); once a poll saw it gone, the next one is registered regardless.
    st = (agent.dir / KUBELET_SOCKET).stat()
    same = (st.st_dev, st.st_ino, st.st_ctime_ns)  # what the runner registered against
    seen: list[tuple[int, int, int] | None] = [None, same, same]
    monkeypatch.setattr("scheduler.nodeagent.plugin._identity", lambda path: seen.pop(0))
    agent.runner.step()
    assert agent.runner.registrations == 1  # gone: nothing to register with
    agent.runner.step()
    assert agent.runner.registrations == 2 and len(agent.kubelet.requests) == 4
    agent.runner.step()
    assert agent.runner.registrations == 2


def test_registration_retries_until_kubelet_is_up(tmp_path: Path) -> None:
    topo = dgx1()
    svc = DevicePluginService(whole_gpu_devices(topo), topo, list, check, PluginConfig(NODE))
    server = PluginServer(svc, str(tmp_path), "gts-gpu.sock")
    runner = PluginRunner([server], str(tmp_path))
    runner.step()  # no kubelet.sock yet
    assert runner.registrations == 0
    kserver, kubelet = serve_kubelet(tmp_path)
    try:
        runner.step()
        assert runner.registrations == 1 and kubelet.requests[0].endpoint == "gts-gpu.sock"
    finally:
        server.stop(0)
        kserver.stop(0).wait()


def until(predicate: Any, timeout_s: float = 10.0) -> bool:
    """Poll `predicate` until it holds (True) or the timeout passes (False)."""
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def test_run_loop_serves_until_stopped_then_closes_everything(agent: Agent) -> None:
    stream = agent.stub("gts-gpu.sock").ListAndWatch(pb.Empty(), timeout=10)
    assert len(next(stream).devices) == 8
    stop = threading.Event()
    t = threading.Thread(target=agent.runner.run, args=(stop,), daemon=True)
    t.start()
    try:
        # While it runs, the loop does its work: a kubelet restart is met with a new registration.
        second = agent.restart_kubelet()
        assert until(lambda: agent.runner.registrations == 2)
        assert sorted(r.resource_name for r in second.requests) == sorted(
            [GPU_RESOURCE, GPU_MILLI_RESOURCE])
    finally:
        stop.set()  # a failed check must not leave the loop running (pytest would never exit)
    t.join(timeout=10)
    assert not t.is_alive()
    # Stopped: the open ListAndWatch stream ended (it did not run into its 10 s deadline) and
    # the plugin socket answers no more.
    try:
        list(stream)
        code = grpc.StatusCode.OK
    except grpc.RpcError as e:
        code = e.code()
    assert code != grpc.StatusCode.DEADLINE_EXCEEDED
    with pytest.raises(grpc.RpcError):
        agent.stub("gts-gpu.sock").GetDevicePluginOptions(pb.Empty(), timeout=1)


def preferred(stub: Any, available: list[str], size: int, must: Sequence[str] = ()) -> list[str]:
    req = pb.PreferredAllocationRequest(
        container_requests=[
            pb.ContainerPreferredAllocationRequest(
                available_deviceIDs=available,
                must_include_deviceIDs=list(must),
                allocation_size=size,
            )
        ]
    )
    return list(stub.GetPreferredAllocation(req, timeout=10).container_responses[0].deviceIDs)


def test_preferred_allocation_is_the_signed_assignment(agent: Agent) -> None:
    agent.pods.append(pod("train", gpus=(4, 5, 6, 7)))
    stub = agent.stub("gts-gpu.sock")
    all_ids = [uuid(i) for i in range(8)]
    assert sorted(preferred(stub, all_ids[::-1], 4)) == [uuid(i) for i in (4, 5, 6, 7)]
    # not among the available ids: the assignment cannot be proposed, the topology decides
    got = preferred(stub, [uuid(i) for i in range(4)], 4)
    assert sorted(got) == [uuid(i) for i in range(4)]


def test_preferred_allocation_without_a_pod_follows_the_topology(agent: Agent) -> None:
    stub = agent.stub("gts-gpu.sock")
    # GPU 4's only NVLink partner among 0..3 is GPU 0 (NV2); the others are SYS from it
    got = preferred(stub, [uuid(i) for i in range(5)], 2, must=[uuid(4)])
    assert sorted(got) == [uuid(0), uuid(4)]
    # two free GPUs out of {0, 1, 3}: 0-3 is NV2, better than 0-1 or 1-3 (NV1)
    assert sorted(preferred(stub, [uuid(0), uuid(1), uuid(3)], 2)) == [uuid(0), uuid(3)]
    # a forged pod's NV1 pair is never proposed: the topology's NV2 pair is
    agent.pods.append(pod("forged", gpus=(0, 1), key=OTHER_KEY))
    assert sorted(preferred(stub, [uuid(0), uuid(1), uuid(3)], 2)) == [uuid(0), uuid(3)]


def test_allocate_honours_the_signed_assignment(agent: Agent) -> None:
    agent.pods.append(pod("train", gpus=(4, 5, 6, 7)))
    stub = agent.stub("gts-gpu.sock")
    # kubelet picked other ids (it may ignore the hint): the assignment still wins
    resp = allocate(stub, [uuid(i) for i in range(4)])
    assert visible(resp) == {uuid(i) for i in (4, 5, 6, 7)}
    # the pod is served: a second allocation of the same size finds nobody
    with pytest.raises(grpc.RpcError) as e:
        allocate(stub, [uuid(i) for i in range(4)])
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize(
    ("key", "reason"),
    [(OTHER_KEY, "signature does not verify"), (None, "not signed")],
    ids=["forged", "unsigned"],
)
def test_hand_written_assignment_gets_no_gpus(agent: Agent, key: bytes | None, reason: str) -> None:
    agent.pods.append(pod("sneaky", gpus=(0, 1), key=key))
    with pytest.raises(grpc.RpcError) as e:
        allocate(agent.stub("gts-gpu.sock"), [uuid(0), uuid(1)])
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "default/sneaky" in e.value.details() and reason in e.value.details()


def test_tampered_gpu_list_breaks_the_signature(agent: Agent) -> None:
    p = pod("greedy", gpus=(0, 1))
    p["metadata"]["annotations"]["gts.dev/gpus"] = "0,1,2,3"
    p["spec"]["containers"][0]["resources"]["limits"][GPU_RESOURCE] = "4"
    agent.pods.append(p)
    with pytest.raises(grpc.RpcError) as e:
        allocate(agent.stub("gts-gpu.sock"), [uuid(i) for i in range(4)])
    assert "signature does not verify" in e.value.details()


def test_pod_without_any_assignment_is_refused(agent: Agent) -> None:
    agent.pods.append(pod("by-default-scheduler", sizes=(1,)))
    with pytest.raises(grpc.RpcError) as e:
        allocate(agent.stub("gts-gpu.sock"), [uuid(0)])
    assert "no assignment by gpu-topology-scheduler" in e.value.details()


def test_unsigned_pod_of_the_same_size_blocks_rather_than_steals(agent: Agent) -> None:
    agent.pods.append(pod("legit", gpus=(0, 3)))
    agent.pods.append(pod("forged", gpus=(1, 2), key=OTHER_KEY, created="2026-01-01T00:00:01Z"))
    stub = agent.stub("gts-gpu.sock")
    with pytest.raises(grpc.RpcError) as e:
        allocate(stub, [uuid(0), uuid(3)])
    assert "cannot tell which pod" in e.value.details()
    # kubelet marks the pod it was admitting Failed; once the forged one is gone, legit works
    agent.pods[1]["status"]["phase"] = "Failed"
    assert visible(allocate(stub, [uuid(0), uuid(3)])) == {uuid(0), uuid(3)}


def test_pod_on_another_node_or_not_pending_is_ignored(agent: Agent) -> None:
    agent.pods.append(pod("elsewhere", gpus=(0,), node="other-node"))
    agent.pods.append(pod("running", gpus=(1,), phase="Running"))
    with pytest.raises(grpc.RpcError) as e:
        allocate(agent.stub("gts-gpu.sock"), [uuid(0)])
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_unknown_device_id_is_invalid_argument(agent: Agent) -> None:
    with pytest.raises(grpc.RpcError) as e:
        allocate(agent.stub("gts-gpu.sock"), ["GPU-not-here"])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_exact_device_match_picks_the_pod_kubelet_is_admitting(agent: Agent) -> None:
    agent.pods.append(pod("older", gpus=(0, 3)))
    agent.pods.append(pod("newer", gpus=(4, 7), created="2026-01-01T00:00:05Z"))
    stub = agent.stub("gts-gpu.sock")
    assert visible(allocate(stub, [uuid(4), uuid(7)])) == {uuid(4), uuid(7)}
    assert visible(allocate(stub, [uuid(1), uuid(2)])) == {uuid(0), uuid(3)}


def test_two_concurrent_allocates_get_their_own_gpus(agent: Agent) -> None:
    stub = agent.stub("gts-gpu.sock")
    # A slow pod list widens the window in which both calls look at the same pods.
    real = agent.whole._pods

    def slow_pods() -> Sequence[Mapping[str, Any]]:
        time.sleep(0.05)
        return real()

    agent.whole._pods = slow_pods
    for round_ in range(3):
        a, b = (0, 3), (5, 6)
        agent.pods[:] = [pod(f"a{round_}", gpus=a), pod(f"b{round_}", gpus=b)]
        barrier = threading.Barrier(2)
        results: list[set[str]] = []

        def call(barrier: threading.Barrier = barrier, results: list[set[str]] = results) -> None:
            barrier.wait()
            # identical device ids: neither call matches a pod exactly, both race for the oldest
            results.append(visible(allocate(stub, [uuid(1), uuid(2)])))

        threads = [threading.Thread(target=call) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        assert sorted(results, key=sorted) == [{uuid(0), uuid(3)}, {uuid(5), uuid(6)}]


def test_claim_book_under_many_threads_hands_each_pod_out_once() -> None:
    pods = [pod(f"p{i}", gpus=(i,), created=f"2026-01-01T00:00:{i:02d}Z") for i in range(8)]
    node_pods = read_node_pods(pods, NODE, check)
    book = ClaimBook()
    got: list[tuple[int, ...]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def take() -> None:
        barrier.wait()
        slots = book.claim(GPU_RESOURCE, [Want(1, frozenset())], node_pods)
        with lock:
            got.append(slots[0].gpus)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == [(i,) for i in range(8)]
    # a pod that left the node is forgotten
    assert book._used.get(("uid-p0", GPU_RESOURCE), 0) == 1
    book.claim(GPU_RESOURCE, [], read_node_pods(pods[1:], NODE, check))
    assert book._used.get(("uid-p0", GPU_RESOURCE), 0) == 0


def test_multi_container_pod_is_served_container_by_container(agent: Agent) -> None:
    # init container with 2 GPUs (reused), app containers with 1 and 2 GPUs
    agent.pods.append(pod("multi", gpus=(0, 1, 2), sizes=(1, 2), init_sizes=(2,)))
    stub = agent.stub("gts-gpu.sock")
    assert visible(allocate(stub, [uuid(6), uuid(7)])) == {uuid(0), uuid(1)}  # init
    assert visible(allocate(stub, [uuid(6)])) == {uuid(0)}
    assert visible(allocate(stub, [uuid(6), uuid(7)])) == {uuid(1), uuid(2)}


def test_assignment_that_does_not_match_the_pods_request_is_refused(agent: Agent) -> None:
    agent.pods.append(pod("odd", gpus=(0, 1), sizes=(3,)))
    with pytest.raises(grpc.RpcError) as e:
        allocate(agent.stub("gts-gpu.sock"), [uuid(0), uuid(1), uuid(2)])
    assert "asks for 3 GPUs" in e.value.details()


def test_pod_list_lag_is_retried(tmp_path: Path) -> None:
    topo = dgx1()
    calls: list[int] = []
    slept: list[float] = []

    def lagging() -> list[dict[str, Any]]:
        calls.append(1)
        return [pod("late", gpus=(2,))] if len(calls) >= 3 else []

    svc = DevicePluginService(whole_gpu_devices(topo), topo, lagging, check,
                              PluginConfig(NODE, retry_delays=(0.1, 0.2, 0.4)),
                              sleep=slept.append)  # fmt: skip
    slots = svc.claim([Want(1, frozenset({2}))])
    assert slots[0].gpus == (2,) and slept == [0.1, 0.2]


def test_share_pod_gets_its_gpu_and_the_mps_limits(agent: Agent) -> None:
    agent.pods.append(pod("notebook", gpus=(5,), milli=250, mem=8192))
    stub = agent.stub("gts-gpu-milli.sock")
    available = [share_device_id(uuid(g), k) for g in (0, 5) for k in range(0, 1000, 2)]
    ids = preferred(stub, available, 250)
    assert len(ids) == 250 and all(i.startswith(uuid(5)) for i in ids)
    resp = allocate(stub, ids)
    envs = dict(resp.container_responses[0].envs)
    assert envs["NVIDIA_VISIBLE_DEVICES"] == uuid(5)
    assert envs["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "25"
    assert envs["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=8192M"
    assert envs["GTS_GPU_MILLI"] == "250" and envs["GTS_GPU_MEMORY_MIB"] == "8192"


def test_share_request_is_not_served_by_a_whole_gpu_pod(agent: Agent) -> None:
    agent.pods.append(pod("whole", gpus=(1,)))
    with pytest.raises(grpc.RpcError):
        allocate(agent.stub("gts-gpu-milli.sock"), [share_device_id(uuid(1), 0)])


def test_volume_mounts_strategy_and_mps_pipe_dir() -> None:
    topo = dgx1()
    cfg = PluginConfig(NODE, device_list_strategy="volume-mounts", mps_pipe_dir="/run/mps")
    node_pods = read_node_pods([pod("s", gpus=(3,), milli=500)], NODE, check)
    slot = node_pods.pending[0].slots[0]
    resp = container_response(slot, whole_gpu_devices(topo), cfg)
    assert resp.envs["NVIDIA_VISIBLE_DEVICES"] == VOLUME_MOUNT_ROOT
    mounts = {(m.container_path, m.host_path) for m in resp.mounts}
    assert (f"{VOLUME_MOUNT_ROOT}/{uuid(3)}", "/dev/null") in mounts
    assert ("/tmp/nvidia-mps", "/run/mps") in mounts
    assert resp.envs["CUDA_MPS_PIPE_DIRECTORY"] == "/tmp/nvidia-mps"
    assert resp.envs["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50"
    with pytest.raises(ValueError, match="device_list_strategy"):
        PluginConfig(NODE, device_list_strategy="cdi")


def test_pod_source_failure_is_unavailable(tmp_path: Path) -> None:
    topo = dgx1()

    def broken() -> list[dict[str, Any]]:
        raise ConnectionError("apiserver unreachable")

    svc = DevicePluginService(whole_gpu_devices(topo), topo, broken, check,
                              PluginConfig(NODE, retry_delays=()))  # fmt: skip
    server = PluginServer(svc, str(tmp_path), "p.sock")
    server.start()
    try:
        with grpc.insecure_channel(socket_target(server.path)) as ch:
            stub = pb_grpc.DevicePluginStub(ch)
            with pytest.raises(grpc.RpcError) as e:
                allocate(stub, [uuid(0)])
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "apiserver unreachable" in e.value.details()
            # the hint still works without the pod list
            assert len(preferred(stub, [uuid(0), uuid(3)], 2)) == 2
    finally:
        server.stop(0)


class HealthNvml:
    """The NVML calls the health probe makes; `lost` GPUs fail, `driver_gone` fails init."""

    class NVMLError(Exception):
        pass

    def __init__(self, lost: set[str], driver_gone: bool = False) -> None:
        self.lost, self.driver_gone = lost, driver_gone

    def nvmlInit(self) -> None:
        if self.driver_gone:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetHandleByUUID(self, u: str) -> str:
        if u in self.lost:
            raise self.NVMLError("GPU is lost")
        return u

    def nvmlDeviceGetMemoryInfo(self, h: str) -> object:
        return object()


def test_nvml_health_probe_reports_lost_gpus() -> None:
    uuids = [uuid(i) for i in range(4)]
    assert nvml_health_probe(HealthNvml(set()), uuids)() == frozenset()
    assert nvml_health_probe(HealthNvml({uuid(2)}), uuids)() == frozenset({2})
    assert nvml_health_probe(HealthNvml(set(), driver_gone=True), uuids)() == frozenset(range(4))


def test_runner_polls_health_on_its_interval(agent: Agent) -> None:
    now = [100.0]
    bad = [frozenset({3})]
    agent.runner.health = lambda: bad[0]
    agent.runner.health_every_s = 30.0
    agent.runner.clock = lambda: now[0]
    agent.runner.step()
    assert agent.whole.device_list().devices[3].health == "Unhealthy"
    assert agent.share.device_list().devices[3000].health == "Unhealthy"
    bad[0] = frozenset()
    now[0] += 10  # not yet due
    agent.runner.step()
    assert agent.whole.device_list().devices[3].health == "Unhealthy"
    now[0] += 25
    agent.runner.step()
    assert agent.whole.device_list().devices[3].health == "Healthy"


def test_share_memory_limit_must_be_the_signed_one(agent: Agent) -> None:
    # Signed for 1 MiB of GPU memory; the container's limit asks 40,000 MiB: refused, since
    # the MPS limit would come from the limit, not from what the scheduler signed.
    p = pod("greedy", gpus=(5,), milli=250, mem=1)
    p["spec"]["containers"][0]["resources"]["limits"][GPU_MEMORY_RESOURCE] = "40000"
    agent.pods.append(p)
    with pytest.raises(grpc.RpcError) as e:
        allocate(agent.stub("gts-gpu-milli.sock"), [share_device_id(uuid(5), k)
                                                    for k in range(250)])
    assert "40000 MiB" in e.value.details() and "1 MiB" in e.value.details()


def test_whole_gpu_assignment_with_a_signed_memory_share_is_refused(agent: Agent) -> None:
    a = Assignment(pod="default/odd", node=NODE, gpus=(2,), gpu_milli=1000, gpu_memory_mib=5)
    p = pod("odd")
    p["metadata"]["annotations"] = assignment_annotations(a, Signer(KEY), uid="uid-odd")
    agent.pods.append(p)
    with pytest.raises(grpc.RpcError) as e:
        allocate(agent.stub("gts-gpu.sock"), [uuid(2)])
    assert "names a share" in e.value.details()
