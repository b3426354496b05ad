"""`gts agent`: the node agent that runs on every GPU node (a DaemonSet).

    gts agent discover [--json] [--source auto|nvml|smi]
    gts agent publish --node NAME [--kubeconfig F] [--interval S]
    gts agent plugin --node NAME (--signing-key-dir D [--signing-key-id ID] | --signing-key-file F)
                     [--socket-dir D] [--kubeconfig F]
                     [--no-share] [--no-publish] [--device-list-strategy envvar|volume-mounts]
                     [--mps-pipe-dir DIR] [--health-interval S]

`discover` prints this node's GPU topology (NVML through the `nvml` extra, else
`nvidia-smi topo -m`). `publish` writes it to the Node annotation the scheduler reads, and the
GPU model label. `plugin` publishes once, then serves the kubelet device plugin for
nvidia.com/gpu (and gts.dev/gpu-milli unless --no-share) until SIGTERM, handing each pod exactly
the GPUs of its assignment signed by the scheduler (same key file as `gts serve`).
--node defaults to $NODE_NAME (set it from the downward API: spec.nodeName).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from typing import Any

from scheduler.nodeagent.discovery import DiscoveryError, discover
from scheduler.nodeagent.plugin import DEFAULT_SOCKET_DIR, STRATEGIES
from topology.command_group import EXIT_USAGE, add_command_group
from topology.model import NodeTopology

log = logging.getLogger(__name__)
EXIT_ERROR = 1


def add_parser(subparsers: Any) -> None:
    """Register `gts agent` and its subcommands on the `gts` dispatcher's subparsers."""
    sub = add_command_group(subparsers, "agent", "node agent: topology publisher and device plugin",
                            __doc__, "agent_command")

    d = sub.add_parser("discover", help="print this node's GPU topology")
    d.add_argument("--json", action="store_true", help="print the annotation JSON")
    _source_arg(d)
    d.set_defaults(func=cmd_discover)

    p = sub.add_parser("publish", help="write the topology to this node's annotation")
    _node_args(p)
    p.add_argument("--interval", type=float, default=0.0, metavar="S",
                   help="re-discover and publish every S seconds (default: once)")  # fmt: skip
    p.set_defaults(func=cmd_publish)

    g = sub.add_parser("plugin", help="serve the kubelet device plugin")
    _node_args(g)
    g.add_argument(
        "--signing-key-file",
        metavar="F",
        help="one HMAC key shared with `gts serve` (assignments are verified with it)",
    )
    g.add_argument(
        "--signing-key-dir",
        metavar="D",
        help="directory of HMAC keys shared with `gts serve`, one file per key id; every "
        "key verifies (a key can be rotated without restarting pods)",
    )
    g.add_argument(
        "--signing-key-id",
        metavar="ID",
        help="the key of --signing-key-dir that signs (the agent only verifies; optional)",
    )
    g.add_argument(
        "--socket-dir",
        default=DEFAULT_SOCKET_DIR,
        metavar="D",
        help=f"kubelet's device plugin directory (default {DEFAULT_SOCKET_DIR})",
    )
    g.add_argument(
        "--no-share", action="store_true", help="do not serve gts.dev/gpu-milli (GPU shares)"
    )
    g.add_argument(
        "--no-publish", action="store_true", help="do not publish the topology annotation at start"
    )
    g.add_argument(
        "--device-list-strategy",
        choices=STRATEGIES,
        default="envvar",
        help="how containers learn their GPUs: NVIDIA_VISIBLE_DEVICES=UUIDs, or "
        "volume mounts under /var/run/nvidia-container-devices (set the "
        "toolkit to accept only those; a pod cannot forge them)",
    )
    g.add_argument(
        "--mps-pipe-dir",
        default="",
        metavar="DIR",
        help="host directory of the MPS control daemon's pipes, mounted into share containers",
    )
    g.add_argument(
        "--health-interval",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds between GPU health probes through NVML (default 30)",
    )
    g.add_argument(
        "--toolkit-config",
        default="",
        metavar="F",
        help="the node's NVIDIA container toolkit config.toml (mounted read-only): refuse to "
        "start when its settings do not protect volume-mounts (default: not checked)",
    )
    g.add_argument(
        "--no-health-check",
        action="store_true",
        help="run without NVML GPU health checks (default: refuse to start without NVML)",
    )
    g.set_defaults(func=cmd_plugin)  # fmt: skip


def _source_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", choices=("auto", "nvml", "smi"), default="auto",
                   help="where the topology comes from (auto: NVML, else nvidia-smi)")  # fmt: skip


def _node_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node", default=os.environ.get("NODE_NAME"),
                   help="this node's name (default: $NODE_NAME)")  # fmt: skip
    p.add_argument("--kubeconfig", metavar="F",
                   help="kubeconfig (default: the in-cluster service account)")  # fmt: skip
    _source_arg(p)


def _fail(command: str, message: str, code: int = EXIT_ERROR) -> int:
    print(f"gts agent {command}: {message}", file=sys.stderr)
    return code


def describe(topo: NodeTopology) -> str:
    """A human summary: the GPUs, then the link matrix as nvidia-smi prints it."""
    lines = [f"{topo.n} GPUs, model {topo.model}"]
    for g in topo.gpus:
        numa = "-" if g.numa_node is None else str(g.numa_node)
        lines.append(
            f"  GPU{g.index}  {g.uuid or '(no uuid)'}  {g.memory_mib} MiB  NUMA {numa}  "
            f"{g.pci_bus_id or ''}".rstrip()
        )
    width = max(4, *(len(x) for row in topo.links for x in row)) + 1
    lines.append("")
    lines.append(" " * 6 + "".join(f"GPU{j}".ljust(width) for j in range(topo.n)))
    for i, row in enumerate(topo.links):
        lines.append(f"GPU{i}".ljust(6) + "".join(x.ljust(width) for x in row))
    return "\n".join(line.rstrip() for line in lines)


def cmd_discover(args: argparse.Namespace) -> int:
    """Print the discovered topology."""
    try:
        topo = discover(args.source)
    except DiscoveryError as e:
        return _fail("discover", str(e))
    if args.json:
        from topology.annotation import to_dict

        print(json.dumps(to_dict(topo), indent=2))
    else:
        print(describe(topo))
    return 0


def _core_v1(kubeconfig: str | None) -> Any:
    from kubernetes import client
    from kubernetes import config as kube_config

    config: Any = kube_config  # the kubernetes package is untyped
    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        config.load_incluster_config(client_configuration=configuration)
    return client.CoreV1Api(client.ApiClient(configuration))


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("stopping on %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return stop


def cmd_publish(args: argparse.Namespace) -> int:
    """Publish the topology once, or every --interval seconds until stopped."""
    from scheduler.nodeagent.publisher import publish

    if not args.node:
        return _fail("publish", "--node is required (or set $NODE_NAME)", EXIT_USAGE)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        core = _core_v1(args.kubeconfig)
    except Exception as e:
        return _fail("publish", f"cannot reach the API server: {e}")
    stop = _stop_on_signals() if args.interval > 0 else threading.Event()
    while True:
        try:
            changed = publish(core, args.node, discover(args.source))
            log.info("node %s: topology %s", args.node, "published" if changed else "unchanged")
        except DiscoveryError as e:
            return _fail("publish", str(e))
        except Exception as e:
            if args.interval <= 0:
                return _fail("publish", f"cannot patch node {args.node}: {e}")
            log.warning("cannot patch node %s (will retry): %s", args.node, e)
        if args.interval <= 0 or stop.wait(args.interval):
            return 0


def cmd_plugin(args: argparse.Namespace) -> int:
    """Serve the device plugin until SIGTERM or SIGINT."""
    from scheduler.nodeagent.claims import ClaimBook
    from scheduler.nodeagent.devices import share_devices, whole_gpu_devices
    from scheduler.nodeagent.discovery import load_nvml
    from scheduler.nodeagent.health import nvml_health_probe
    from scheduler.nodeagent.plugin import (
        DevicePluginService,
        HealthProbe,
        PluginConfig,
        PluginRunner,
        PluginServer,
    )
    from scheduler.nodeagent.podsource import kube_pod_source
    from scheduler.nodeagent.publisher import publish
    from scheduler.podcodec.assignment import assignment_signature_ok
    from scheduler.podcodec.signing import Signer, load_key_dir, load_signing_key

    if not args.node:
        return _fail("plugin", "--node is required (or set $NODE_NAME)", EXIT_USAGE)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        if args.signing_key_dir:
            keys = load_key_dir(args.signing_key_dir)
            # The agent only verifies: any key may stand as the signing one.
            signer = Signer(keys=keys, key_id=args.signing_key_id or min(keys))
        elif args.signing_key_file:
            signer = Signer(load_signing_key(args.signing_key_file))
        else:
            raise ValueError("--signing-key-dir (or --signing-key-file) is required")
        config = PluginConfig(args.node, args.device_list_strategy, args.mps_pipe_dir)
    except ValueError as e:  # SigningKeyError, or a bad plugin option
        return _fail("plugin", str(e), EXIT_USAGE)
    if args.toolkit_config:
        from scheduler.nodeagent.toolkit import read_config, toolkit_problems

        problems = toolkit_problems(read_config(args.toolkit_config), args.toolkit_config,
                                    args.device_list_strategy)
        if problems:
            return _fail("plugin", "; ".join(problems))
    try:
        topo = discover(args.source)
        core = _core_v1(args.kubeconfig)
    except DiscoveryError as e:
        return _fail("plugin", str(e))
    except Exception as e:
        return _fail("plugin", f"cannot reach the API server: {e}")
    if not args.no_publish:
        try:
            publish(core, args.node, topo)
        except Exception as e:  # the plugin is still useful; the scheduler falls back
            log.warning("cannot publish the topology of %s: %s", args.node, e)

    health: HealthProbe | None = None
    if not args.no_health_check:
        try:
            health = nvml_health_probe(load_nvml(), [g.uuid for g in topo.gpus])
        except DiscoveryError as e:
            # Without NVML a failed GPU stays Healthy and keeps getting pods: say so loudly.
            return _fail("plugin", f"no GPU health checks: {e}; the container needs the NVIDIA "
                         "driver library (runtimeClassName nvidia, and its request for every "
                         "GPU: NVIDIA_VISIBLE_DEVICES=all or a /dev/null mount at "
                         "/var/run/nvidia-container-devices/all); --no-health-check runs "
                         "without them")

    def check(pod: Any, a: Any) -> bool:
        return assignment_signature_ok(pod, a, signer)

    pods = kube_pod_source(core, args.node)
    book = ClaimBook()
    device_sets = [whole_gpu_devices(topo)] + ([] if args.no_share else [share_devices(topo)])
    endpoints = ["gts-gpu.sock", "gts-gpu-milli.sock"]
    servers = [
        PluginServer(
            DevicePluginService(ds, topo, pods, check, config, book=book), args.socket_dir, ep
        )
        for ds, ep in zip(device_sets, endpoints, strict=False)
    ]
    runner = PluginRunner(
        servers, args.socket_dir, health=health, health_every_s=args.health_interval
    )
    log.info("serving %s for node %s in %s", [s.endpoint for s in servers], args.node,
             args.socket_dir)  # fmt: skip
    runner.run(_stop_on_signals())
    return 0
