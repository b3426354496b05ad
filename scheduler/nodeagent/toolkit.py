"""The NVIDIA container toolkit settings the node agent relies on, checked at start-up.

With `--device-list-strategy=volume-mounts` the device plugin tells the toolkit which GPUs a
container gets through volume mounts under /var/run/nvidia-container-devices, which a pod spec
cannot forge. That protects anything only if the toolkit (nvidia-container-runtime, config in
/etc/nvidia-container-runtime/config.toml on the node) is set to

    accept-nvidia-visible-devices-envvar-when-unprivileged = false   (default true)
    accept-nvidia-visible-devices-as-volume-mounts = true            (default false)

With the first left at its default, any unprivileged pod could set NVIDIA_VISIBLE_DEVICES=all
and use every GPU of the node unscheduled; with the second, the plugin's mounts are ignored and
containers get no GPU. The GPU Operator sets them through the toolkit's environment
(ACCEPT_NVIDIA_VISIBLE_DEVICES_ENVVAR_WHEN_UNPRIVILEGED=false,
ACCEPT_NVIDIA_VISIBLE_DEVICES_AS_VOLUME_MOUNTS=true).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ToolkitSetting:
    """One top-level key of config.toml the agent needs, its default and the Operator's env."""

    key: str
    required: bool
    default: bool
    operator_env: str


VOLUME_MOUNT_SETTINGS = (
    ToolkitSetting("accept-nvidia-visible-devices-envvar-when-unprivileged", False, True,
                   "ACCEPT_NVIDIA_VISIBLE_DEVICES_ENVVAR_WHEN_UNPRIVILEGED"),
    ToolkitSetting("accept-nvidia-visible-devices-as-volume-mounts", True, False,
                   "ACCEPT_NVIDIA_VISIBLE_DEVICES_AS_VOLUME_MOUNTS"),
)
HOST_CONFIG = "/etc/nvidia-container-runtime/config.toml"


def _toml(value: bool) -> str:
    return "true" if value else "false"


def toolkit_problems(text: str | None, path: str, strategy: str) -> list[str]:
    """What is wrong with the toolkit's config.toml (`text`, None when unreadable) for the
    device list strategy; each problem one actionable sentence. Empty when all is well."""
    if strategy != "volume-mounts":
        return []
    if text is None:
        return [f"{path} does not exist or cannot be read: mount the node's "
                f"{HOST_CONFIG.rsplit('/', 1)[0]} there (Helm: nodeAgent.toolkitConfigDir) so "
                "the agent can check the NVIDIA container toolkit's settings"]
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        return [f"{path} is not valid TOML ({e}); the toolkit cannot read it either"]
    out = []
    for s in VOLUME_MOUNT_SETTINGS:
        value = doc.get(s.key, s.default)
        if not isinstance(value, bool):
            out.append(f"{path}: {s.key} = {value!r} is not a boolean")
        elif value != s.required:
            now = f"{s.key} = {_toml(value)}" if s.key in doc else \
                f"{s.key} is unset (default {_toml(s.default)})"
            out.append(f"{path}: {now}; --device-list-strategy=volume-mounts needs "
                       f"`{s.key} = {_toml(s.required)}` at the top of {HOST_CONFIG} on the "
                       f"node (GPU Operator: toolkit env {s.operator_env}="
                       f"{_toml(s.required)}), then restart the container runtime")
    return out


def read_config(path: str) -> str | None:
    """The file's text, None when it does not exist or cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None
