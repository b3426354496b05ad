"""The kubelet device plugin (API v1beta1) that hands pods exactly the GPUs the scheduler chose.

Two DevicePlugin services, each on its own unix socket in the device-plugin directory and
registered with kubelet's Registration service (kubelet.sock):
- `nvidia.com/gpu`, one device per GPU (its UUID). Allocate answers with
  NVIDIA_VISIBLE_DEVICES = the UUIDs of the GPUs in the pod's signed assignment.
- `gts.dev/gpu-milli` (optional), 1000 share units per GPU. Allocate answers a share pod with
  NVIDIA_VISIBLE_DEVICES = the UUID of its assigned GPU, plus
  CUDA_MPS_ACTIVE_THREAD_PERCENTAGE = ceil(thousandths / 10), and when the pod asked for GPU
  memory CUDA_MPS_PINNED_DEVICE_MEM_LIMIT = "0=<MiB>M"; GTS_GPU_MILLI and GTS_GPU_MEMORY_MIB
  carry the raw figures for the workload or a sharing layer. With --mps-pipe-dir the host's
  MPS pipe directory is mounted and CUDA_MPS_PIPE_DIRECTORY set.
  What this does and does not guarantee: the scheduler never over-commits a GPU (the shares
  and memory placed on one GPU never exceed it), but nothing here enforces a share at run
  time. The MPS variables take effect only if an MPS control daemon serves that GPU, and a
  process can still lower or unset them; a hard limit needs MPS configured on the node side or
  a layer such as HAMi-core. Isolation at run time is their job, not this plugin's.
The pod behind an allocation is found, and claimed without races, as claims.py describes;
an assignment that is not signed with the shared key gets a FAILED_PRECONDITION error, so kubelet
rejects the pod instead of starting it without (or with someone else's) GPUs.

kubelet deletes plugin sockets when it restarts and re-creates kubelet.sock: PluginRunner
watches both and restarts and re-registers the servers when either changes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc

from scheduler.constants import GPU_RESOURCE, SCHEDULER_NAME
from scheduler.contract.units import MILLI_PER_GPU
from scheduler.nodeagent.claims import (
    ClaimBook,
    ClaimError,
    NodePods,
    SignatureCheck,
    Slot,
    Want,
    read_node_pods,
)
from scheduler.nodeagent.devices import DeviceSet
from scheduler.nodeagent.preferred import best_gpu_set, best_share_units
from scheduler.nodeagent.proto import deviceplugin_pb2 as _pb2
from scheduler.nodeagent.proto import deviceplugin_pb2_grpc as _pb2_grpc
from topology.model import NodeTopology
from topology.tables import EXACT_MAX_GPUS, SubsetTables, build_tables

log = logging.getLogger(__name__)

API_VERSION = "v1beta1"
DEFAULT_SOCKET_DIR = "/var/lib/kubelet/device-plugins/"
KUBELET_SOCKET = "kubelet.sock"
HEALTHY, UNHEALTHY = "Healthy", "Unhealthy"
VISIBLE_DEVICES = "NVIDIA_VISIBLE_DEVICES"
# NVIDIA container toolkit's "volume-mounts" device list: the runtime reads the GPU list from
# mounts under this root instead of trusting an env var a user can set in the pod spec.
VOLUME_MOUNT_ROOT = "/var/run/nvidia-container-devices"
MPS_PIPE_IN_CONTAINER = "/tmp/nvidia-mps"
STRATEGIES = ("envvar", "volume-mounts")

PodSource = Callable[[], Sequence[Mapping[str, Any]]]

# The generated modules build their message classes at import time, so a type checker sees no
# attributes on them: they are used as Any, and messages are typed as Message below.
pb: Any = _pb2
pb_grpc: Any = _pb2_grpc
Message = Any


@dataclass(frozen=True, slots=True)
class PluginConfig:
    """How the plugin answers: node name, device list strategy, MPS pipe dir, retry delays."""

    node: str
    device_list_strategy: str = "envvar"
    mps_pipe_dir: str = ""  # host directory of the MPS control daemon's pipes; "" = none
    # The pod list may lag the bind by a moment: look again after these delays before failing.
    retry_delays: tuple[float, ...] = (0.2, 0.5, 1.0)

    def __post_init__(self) -> None:
        if not self.node:
            raise ValueError("node name must not be empty")
        if self.device_list_strategy not in STRATEGIES:
            raise ValueError(
                f"device_list_strategy must be one of {STRATEGIES}, got "
                f"{self.device_list_strategy!r}"
            )


def container_response(slot: Slot, devices: DeviceSet, config: PluginConfig) -> Message:
    """What kubelet passes to the container runtime for one container."""
    uuids = [devices.uuids[g] for g in slot.gpus]
    resp = pb.ContainerAllocateResponse()
    if config.device_list_strategy == "volume-mounts":
        resp.envs[VISIBLE_DEVICES] = VOLUME_MOUNT_ROOT
        for u in uuids:
            resp.mounts.add(container_path=f"{VOLUME_MOUNT_ROOT}/{u}", host_path="/dev/null")
    else:
        resp.envs[VISIBLE_DEVICES] = ",".join(uuids)
    if slot.milli < MILLI_PER_GPU:
        resp.envs["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(max(1, math.ceil(slot.milli / 10)))
        resp.envs["GTS_GPU_MILLI"] = str(slot.milli)
        if slot.memory_mib:
            # device ordinal 0: the container sees exactly one GPU
            resp.envs["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = f"0={slot.memory_mib}M"
            resp.envs["GTS_GPU_MEMORY_MIB"] = str(slot.memory_mib)
        if config.mps_pipe_dir:
            resp.envs["CUDA_MPS_PIPE_DIRECTORY"] = MPS_PIPE_IN_CONTAINER
            resp.mounts.add(container_path=MPS_PIPE_IN_CONTAINER, host_path=config.mps_pipe_dir)
    return resp


class DevicePluginService:
    """One resource's DevicePlugin service: devices, health, preferred sets, allocation."""

    def __init__(
        self,
        devices: DeviceSet,
        topology: NodeTopology,
        pods: PodSource,
        check: SignatureCheck,
        config: PluginConfig,
        *,
        book: ClaimBook | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.devices = devices
        self.resource = devices.resource
        self.config = config
        self._pods = pods
        self._check = check
        self._book = book or ClaimBook()
        self._sleep = sleep
        self._tables: SubsetTables | None = None
        self._bandwidth = topology.bandwidth()
        if self.resource == GPU_RESOURCE and 0 < topology.n <= EXACT_MAX_GPUS:
            self._tables = build_tables(topology)
        self._cond = threading.Condition()
        self._unhealthy: frozenset[int] = frozenset()
        self._version = 0
        self._stopped = False

    # --- state shared with ListAndWatch streams -------------------------------------------

    def set_unhealthy(self, gpus: frozenset[int]) -> None:
        """Mark these GPU indices unhealthy (and the rest healthy); streams send the change."""
        with self._cond:
            if gpus != self._unhealthy:
                self._unhealthy = gpus
                self._version += 1
                self._cond.notify_all()

    def stop(self) -> None:
        """End every ListAndWatch stream."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def device_list(self) -> Message:
        """The current device list with health and NUMA node."""
        with self._cond:
            bad = self._unhealthy
        out = pb.ListAndWatchResponse()
        for d in self.devices.ids:
            g = self.devices.gpu_of[d]
            dev = out.devices.add(ID=d, health=UNHEALTHY if g in bad else HEALTHY)
            numa = self.devices.numa[g]
            if numa is not None:
                dev.topology.nodes.add(ID=numa)
        return out

    # --- the DevicePlugin service ------------------------------------------------------------

    def GetDevicePluginOptions(self, request: Message, context: grpc.ServicerContext) -> Message:
        return pb.DevicePluginOptions(
            pre_start_required=False, get_preferred_allocation_available=True
        )

    def ListAndWatch(self, request: Message, context: grpc.ServicerContext) -> Iterator[Message]:
        seen = -1
        while context.is_active():
            with self._cond:
                if self._stopped:
                    return
                if self._version == seen:
                    self._cond.wait(timeout=1.0)
                    continue
                seen = self._version
            yield self.device_list()

    def GetPreferredAllocation(self, request: Message, context: grpc.ServicerContext) -> Message:
        try:
            pods: NodePods | None = read_node_pods(self._pods(), self.config.node, self._check)
        except Exception as e:  # a hint only: fall back to the topology's choice
            log.warning("preferred allocation without the pod list: %s", e)
            pods = None
        out = pb.PreferredAllocationResponse()
        for creq in request.container_requests:
            ids = self._preferred(
                list(creq.available_deviceIDs),
                list(creq.must_include_deviceIDs),
                int(creq.allocation_size),
                pods,
            )
            out.container_responses.add(deviceIDs=ids)
        return out

    def _preferred(
        self, available: list[str], must: list[str], size: int, pods: NodePods | None
    ) -> list[str]:
        known = self.devices.gpu_of
        available = [d for d in available if d in known]
        must = [d for d in must if d in known]
        if self.resource == GPU_RESOURCE:
            avail_g = {known[d] for d in available}
            must_g = {known[d] for d in must}

            def fits(s: Slot) -> bool:
                return set(s.gpus) <= avail_g | must_g and must_g <= set(s.gpus)

            slot = None if pods is None else self._book.preferred(self.resource, size, fits, pods)
            gpus = slot.gpus if slot else best_gpu_set(
                self._tables, self._bandwidth, avail_g, must_g, size
            )  # fmt: skip
            return [self.devices.uuids[g] for g in sorted(gpus)]
        on_gpu: dict[int, list[str]] = {}
        for d in dict.fromkeys(must + available):
            on_gpu.setdefault(known[d], []).append(d)

        def share_fits(s: Slot) -> bool:
            g = s.gpus[0]
            return len(on_gpu.get(g, [])) >= size and all(known[d] == g for d in must)

        slot = None if pods is None else self._book.preferred(self.resource, size, share_fits, pods)
        if slot is not None:
            rest = [d for d in on_gpu[slot.gpus[0]] if d not in must]
            return must + rest[: size - len(must)]
        return list(best_share_units(available, must, size, dict(known)))

    def Allocate(self, request: Message, context: grpc.ServicerContext) -> Message:
        try:
            wants = [
                Want(len(c.devices_ids), self.devices.gpus(list(c.devices_ids)))
                for c in request.container_requests
            ]
        except KeyError as e:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(e.args[0]))
        where = f"{SCHEDULER_NAME} device plugin on node {self.config.node}"
        try:
            slots = self.claim(wants)
        except ClaimError as e:
            log.warning("Allocate refused: %s", e)
            _abort(context, grpc.StatusCode.FAILED_PRECONDITION, f"{where}: {e}")
        except Exception as e:
            log.exception("Allocate: cannot list this node's pods")
            _abort(context, grpc.StatusCode.UNAVAILABLE, f"{where}: cannot list pods: {e}")
        resp = pb.AllocateResponse()
        for w, s in zip(wants, slots, strict=True):
            if self.resource == GPU_RESOURCE and frozenset(s.gpus) != w.gpus:
                # kubelet's bookkeeping now differs from what runs; the assignment wins.
                log.info("kubelet picked GPUs %s, the assignment says %s", sorted(w.gpus), s.gpus)
            resp.container_responses.append(container_response(s, self.devices, self.config))
        return resp

    def claim(self, wants: Sequence[Want]) -> list[Slot]:
        """Claim a slot per want, looking at the pod list again (after a delay) on a miss."""
        delays = (0.0, *self.config.retry_delays)
        for i, delay in enumerate(delays):
            if delay:
                self._sleep(delay)
            pods = read_node_pods(self._pods(), self.config.node, self._check)
            try:
                return self._book.claim(self.resource, wants, pods)
            except ClaimError:
                if i == len(delays) - 1:
                    raise
        raise AssertionError("unreachable")

    def PreStartContainer(self, request: Message, context: grpc.ServicerContext) -> Message:
        return pb.PreStartContainerResponse()


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("context.abort returned")  # it raises; this keeps the types honest


def socket_target(path: str) -> str:
    """gRPC target of a unix socket path."""
    return f"unix:{os.path.abspath(path)}"


class PluginServer:
    """One DevicePlugin service served on `<socket_dir>/<endpoint>`."""

    def __init__(self, service: DevicePluginService, socket_dir: str, endpoint: str) -> None:
        self.service = service
        self.socket_dir = socket_dir
        self.endpoint = endpoint
        self.path = os.path.join(socket_dir, endpoint)
        self._server: grpc.Server | None = None

    def start(self) -> None:
        """(Re)create the socket and serve on it."""
        self.stop()
        with contextlib.suppress(FileNotFoundError):  # kubelet may remove it at any moment
            os.unlink(self.path)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        pb_grpc.add_DevicePluginServicer_to_server(self.service, server)
        if server.add_insecure_port(socket_target(self.path)) == 0:
            raise OSError(f"cannot listen on {self.path}")
        server.start()
        self._server = server

    def stop(self, grace: float = 0.5) -> None:
        """Stop serving; open ListAndWatch streams end."""
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None

    def register(self, kubelet_socket: str, timeout: float = 5.0) -> None:
        """Register this plugin's resource and endpoint with kubelet (grpc.RpcError if refused)."""
        with grpc.insecure_channel(socket_target(kubelet_socket)) as channel:
            grpc.channel_ready_future(channel).result(timeout=timeout)
            stub = pb_grpc.RegistrationStub(channel)
            stub.Register(
                pb.RegisterRequest(
                    version=API_VERSION,
                    endpoint=self.endpoint,
                    resource_name=self.service.resource,
                    options=pb.DevicePluginOptions(get_preferred_allocation_available=True),
                ),
                timeout=timeout,
            )


def _identity(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_ctime_ns)


HealthProbe = Callable[[], frozenset[int]]


class PluginRunner:
    """Serve the plugins and register them; again whenever kubelet restarts. Poll health."""

    def __init__(
        self,
        servers: Sequence[PluginServer],
        socket_dir: str,
        *,
        poll_s: float = 1.0,
        health: HealthProbe | None = None,
        health_every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.servers = list(servers)
        self.kubelet_socket = os.path.join(socket_dir, KUBELET_SOCKET)
        self.poll_s = poll_s
        self.health = health
        self.health_every_s = health_every_s
        self.clock = clock
        self.registrations = 0
        self._registered_as: tuple[int, int, int] | None = None
        self._next_health = 0.0

    def step(self) -> None:
        """One round: (re)start and (re)register if kubelet or a socket changed; check health."""
        ident = _identity(self.kubelet_socket)
        if ident is None:
            # kubelet.sock is gone: the next one is a new kubelet even if it gets the same
            # identity (a filesystem may reuse the inode, a coarse clock the ctime).
            self._registered_as = None
        lost = any(not os.path.exists(s.path) for s in self.servers)
        if ident is not None and (ident != self._registered_as or lost):
            try:
                for s in self.servers:
                    s.start()
                    s.register(self.kubelet_socket)
                self._registered_as = ident
                self.registrations += 1
                log.info("registered %s with kubelet", [s.service.resource for s in self.servers])
            except (grpc.RpcError, grpc.FutureTimeoutError, OSError) as e:
                log.warning("registration with kubelet failed (will retry): %r", e)
        if self.health is not None and self.clock() >= self._next_health:
            self._next_health = self.clock() + self.health_every_s
            bad = self.health()
            for s in self.servers:
                s.service.set_unhealthy(bad)

    def run(self, stop: threading.Event) -> None:
        """Loop until `stop` is set, then stop every server."""
        try:
            while not stop.is_set():
                self.step()
                stop.wait(self.poll_s)
        finally:
            for s in self.servers:
                s.service.stop()
                s.stop()
