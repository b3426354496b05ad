"""One pod's scheduling cycle (filter -> prioritize -> bind) as an explicit value.

kube-scheduler sends the whole pod to filter and prioritize but only its name, uid and the
chosen node to bind. Everything bind must know comes from the pod's `Cycle`, made at filter:

- the request, parsed once (prioritize and bind never parse the pod again);
- the nodes filter approved (bind refuses any other node: a caller cannot steer a pod to a
  node the filter never passed for it);
- the pod's schedulerName (bind refuses pods of other schedulers);
- from prioritize, the GPUs each node's score assumed, so bind assigns exactly those GPUs
  (re-checked against the cluster as it is then) or fails with a reason;
- the first bind's result: binds of one pod are serialized on the cycle's lock and a repeat
  returns the first result, so two concurrent binds never both reserve, post or roll back.

Node names are kept as 64-bit string hashes (8 bytes per node, no reference to the request's
strings), so a cycle over 5,000 candidates costs about 40 KB; `Cycles` bounds the number of
cycles, their total size and their age, oldest dropped first. A bind whose cycle was dropped
fails with a reason and kube-scheduler runs the cycle again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from scheduler.contract.request import PodRequest

DEFAULT_MAX_CYCLES = 20_000
DEFAULT_MAX_CYCLE_BYTES = 128 * 1024 * 1024
DEFAULT_CYCLE_TTL_S = 600.0
_FIXED_BYTES = 600  # the dataclass, its lock, the request: an estimate for the byte budget


def name_hashes(names: Sequence[str]) -> np.ndarray:
    """The hash of each name (str hashes are cached on the string, so this is cheap)."""
    return np.fromiter(map(hash, names), dtype=np.int64, count=len(names))


@dataclass(frozen=True, slots=True)
class BindOutcome:
    """The answer a bind gave: the node and the error ("" = bound)."""

    node: str
    error: str


@dataclass(slots=True)
class Cycle:
    """What filter, prioritize and bind of one pod share (see the module docstring)."""

    uid: str
    namespace: str
    name: str
    req: PodRequest
    scheduler_name: str
    started: float
    approved: np.ndarray  # name hashes of the nodes filter passed
    # From prioritize: name hashes of the scored nodes and, aligned, the GPUs each score
    # assumed: a GPU bitmask (whole GPUs) or a GPU index (a share); -1 = none.
    scored: np.ndarray | None = None
    assumed: np.ndarray | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    outcome: BindOutcome | None = None

    @property
    def key(self) -> str:
        """`namespace/name`."""
        return f"{self.namespace}/{self.name}"

    @property
    def nbytes(self) -> int:
        """Approximate memory held, for the byte budget."""
        extra = sum(a.nbytes for a in (self.scored, self.assumed) if a is not None)
        return _FIXED_BYTES + int(self.approved.nbytes) + extra

    def approves(self, node: str) -> bool:
        """True if filter passed `node` for this pod."""
        return bool(np.any(self.approved == hash(node)))

    def assumed_on(self, node: str) -> int | None:
        """What prioritize's score assumed on `node` (mask or GPU index), None if not scored."""
        if self.scored is None or self.assumed is None:
            return None
        hit = np.flatnonzero(self.scored == hash(node))
        return int(self.assumed[int(hit[0])]) if hit.size else None


class Cycles:
    """Thread-safe bounded map pod uid -> Cycle (plus pod key -> uid for binds without one)."""

    def __init__(self, clock: Callable[[], float], *, max_cycles: int = DEFAULT_MAX_CYCLES,
                 max_bytes: int = DEFAULT_MAX_CYCLE_BYTES,
                 ttl_s: float = DEFAULT_CYCLE_TTL_S) -> None:
        self._clock = clock
        self._max = max_cycles
        self._max_bytes = max_bytes
        self._ttl = ttl_s
        self._items: OrderedDict[str, Cycle] = OrderedDict()
        self._by_key: dict[str, str] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def id_of(uid: str, key: str) -> str:
        """The map key: the uid, or the pod key for a hand-made pod without one."""
        return uid or f"no-uid:{key}"

    def start(self, cycle: Cycle) -> bool:
        """Record a new cycle (a new filter of the pod); True if this pod uid is new here.

        A cycle whose bind is running or succeeded is kept: kube-scheduler does not filter a
        pod it is binding, so such a filter is a hand-made replay and must not reset the
        first bind's result.
        """
        cid = self.id_of(cycle.uid, cycle.key)
        now = self._clock()
        with self._lock:
            old = self._items.get(cid)
            if old is not None and (old.lock.locked() or (
                    old.outcome is not None and not old.outcome.error)):
                self._items.move_to_end(cid)
                return False
            if old is not None:
                self._drop_locked(cid)
            self._items[cid] = cycle
            self._by_key[cycle.key] = cid
            self._bytes += cycle.nbytes
            self._trim_locked(now)
            return old is None

    def scored(self, cycle: Cycle, scored: np.ndarray, assumed: np.ndarray) -> None:
        """Attach prioritize's results to `cycle`."""
        with self._lock:
            live = self._items.get(self.id_of(cycle.uid, cycle.key)) is cycle
            before = cycle.nbytes
            cycle.scored, cycle.assumed = scored, assumed
            if live:
                self._bytes += cycle.nbytes - before
                self._trim_locked(self._clock())

    def get(self, uid: str, key: str) -> Cycle | None:
        """The live cycle of the pod: by uid, or by key when the caller sent no uid."""
        now = self._clock()
        with self._lock:
            cid = self.id_of(uid, key) if uid else self._by_key.get(key, self.id_of("", key))
            c = self._items.get(cid)
            if c is None:
                return None
            if now - c.started > self._ttl and not c.lock.locked():
                self._drop_locked(cid)
                return None
            if c.key != key:
                return None  # a uid sent with another pod's name: not this pod's cycle
            return c

    def finish(self, cycle: Cycle, outcome: BindOutcome) -> None:
        """Record the first bind's outcome; a bound pod's cycle shrinks to just that outcome
        (kept until it ages out, so a repeated bind still gets the first answer)."""
        with self._lock:
            live = self._items.get(self.id_of(cycle.uid, cycle.key)) is cycle
            before = cycle.nbytes
            cycle.outcome = outcome
            if not outcome.error:
                cycle.approved = name_hashes([outcome.node])
                cycle.scored = cycle.assumed = None
            if live:
                self._bytes += cycle.nbytes - before

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def nbytes(self) -> int:
        """Approximate bytes held by all cycles."""
        with self._lock:
            return self._bytes

    def _drop_locked(self, cid: str) -> None:
        c = self._items.pop(cid)
        self._bytes -= c.nbytes
        if self._by_key.get(c.key) == cid:
            del self._by_key[c.key]

    def _trim_locked(self, now: float) -> None:
        while self._items and (len(self._items) > self._max or self._bytes > self._max_bytes):
            self._drop_locked(next(iter(self._items)))
        while self._items:
            cid, first = next(iter(self._items.items()))
            if now - first.started <= self._ttl:
                break
            self._drop_locked(cid)
