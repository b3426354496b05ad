"""Kubernetes Events as a port: the extender and the cache report what an operator must see.

The core and the cache never talk to the API directly; they are handed an `EventSink`. The
Kubernetes implementation lives with the API client (cluster/kube_events.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """The object an event is about (core/v1 Pod or Node)."""

    kind: Literal["Pod", "Node"]
    name: str
    namespace: str = ""  # empty for Nodes
    uid: str = ""


@dataclass(frozen=True, slots=True)
class Event:
    """One event: reason is CamelCase and stable (alerts key on it), message is for people."""

    about: ObjectRef
    reason: str
    message: str
    type: EventType = "Normal"


class EventSink(Protocol):
    """Where events go; implementations must never raise and never block for long."""

    def emit(self, event: Event) -> None: ...


class NoEvents:
    """Drops every event (static mode, benchmarks)."""

    def emit(self, event: Event) -> None:
        """Ignore the event."""
