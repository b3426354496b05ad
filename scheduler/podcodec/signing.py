"""HMAC signature over an assignment, so the node agent honours only what the scheduler chose.

A user can write our annotations on their own pod; without the key, shared only by the
scheduler and the node agents, they cannot produce a signature that verifies.

Keys form a ring: each has a key id, one signs, all verify. The signature annotation is
`<key id>:<hex HMAC-SHA256>`, so the verifier knows which key to use; a bare hex signature
(written before key ids existed) is tried against every key. Rotation without a restart
storm: add the new key to every ring (extender and node agents), switch the signing id,
drop the old key once no running pod carries a signature made with it.

Every MAC computed (by `sign` or `verify`) is kept in a bounded memo keyed by the key id and
the exact signed message, so the pod event that follows our own Binding, and every later event
of the pod, checks its signature by one comparison instead of a new HMAC. The memo maps a
message to its true MAC under that key, whatever signature was presented, so a check against
it is the same check: a tampered value is a different message, a tampered signature still
compares unequal, and a signature no key of the ring made never verifies.

Key files (one per key id in a directory, or one file) must hold at least 32 bytes and look
random: a key of few distinct bytes (16 identical bytes, "aaaa...") is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

MIN_KEY_BYTES = 16  # for keys handed over in memory (tests); files need MIN_FILE_KEY_BYTES
MIN_FILE_KEY_BYTES = 32
MIN_DISTINCT_BYTES = 10
MIN_BITS_PER_BYTE = 3.0  # `openssl rand -hex 32` gives ~3.8; base64 ~5; raw ~7.9
KEY_ID_RE = re.compile(r"[a-z0-9-]{1,32}")
# MACs kept by a Signer (about 300 bytes each): every pod of a large cluster, a few MB at most.
MAC_MEMO_SIZE = 16384
# Longer messages are checked without the memo: a real assignment's is under 400 bytes, but a
# hand-written one may list up to 1,000 GPU indices (about 4 KB), and 16,384 of those would
# hold 70 MB.
MAC_MEMO_MAX_MESSAGE = 1024
# Bumped if the signed message ever changes, so old signatures stop verifying.
_VERSION = "gts-assign-v1"


class SigningKeyError(ValueError):
    """A signing key that cannot be used; the message names the file (or directory)."""


def key_weakness(key: bytes) -> str:
    """Why `key` is too weak to sign with ("" when it is fine): too short, or too regular."""
    if len(key) < MIN_FILE_KEY_BYTES:
        return f"{len(key)} bytes; need at least {MIN_FILE_KEY_BYTES}"
    counts = Counter(key)
    bits = -sum(c / len(key) * math.log2(c / len(key)) for c in counts.values())
    if len(counts) < MIN_DISTINCT_BYTES or bits < MIN_BITS_PER_BYTE:
        return (f"low entropy ({len(counts)} distinct bytes, {bits:.1f} bits per byte; "
                f"need {MIN_DISTINCT_BYTES} and {MIN_BITS_PER_BYTE:g})")
    return ""


def _read_key(path: Path) -> bytes:
    try:
        key = path.read_bytes().rstrip()
    except OSError as e:
        raise SigningKeyError(f"signing key file {path}: {e.strerror}") from None
    weak = key_weakness(key)
    if weak:
        raise SigningKeyError(
            f"signing key file {path}: {weak} (e.g. `openssl rand -hex 32 > {path}`)")
    return key


def load_signing_key(path: str) -> bytes:
    """The HMAC key in `path`, trailing whitespace (a newline from an editor) removed."""
    return _read_key(Path(path))


def load_key_dir(path: str) -> dict[str, bytes]:
    """Every key in directory `path`: file name = key id ([a-z0-9-]{1,32}).

    Hidden entries are skipped (a mounted Secret keeps its data under `..data` and links
    each key to it), so are sub-directories; anything else named badly is an error.
    """
    d = Path(path)
    try:
        entries = sorted(os.listdir(d))
    except OSError as e:
        raise SigningKeyError(f"signing key directory {path}: {e.strerror}") from None
    keys: dict[str, bytes] = {}
    for name in entries:
        p = d / name
        if name.startswith(".") or p.is_dir():
            continue
        if not KEY_ID_RE.fullmatch(name):
            raise SigningKeyError(f"signing key file {p}: the file name is the key id and "
                                  f"must match [a-z0-9-]{{1,32}}")
        keys[name] = _read_key(p)
    if not keys:
        raise SigningKeyError(f"signing key directory {path}: holds no key file")
    return keys


def derived_key_id(key: bytes) -> str:
    """The key id of a key given alone (`--signing-key-file`): a short fingerprint.

    12 hex digits of SHA-256 reveal nothing usable about a 32-byte random key.
    """
    return "k" + hashlib.sha256(b"gts-key-id\n" + key).hexdigest()[:12]


class Signer:
    """Signs with one key of a ring and verifies with any of them (HMAC-SHA256).

    Signer(key) is a one-key ring whose id is derived from the key;
    Signer(keys={id: key, ...}, key_id=id) a ring that signs with `key_id`.
    """

    def __init__(self, key: bytes | None = None, *, keys: Mapping[str, bytes] | None = None,
                 key_id: str | None = None) -> None:
        ring: dict[str, bytes] = dict(keys or {})
        if key is not None:
            ring[key_id or derived_key_id(key)] = key
        if not ring:
            raise ValueError("signing: no key")
        for kid, k in ring.items():
            if not KEY_ID_RE.fullmatch(kid):
                raise ValueError(f"signing key id {kid!r}: must match [a-z0-9-]{{1,32}}")
            if not isinstance(k, bytes) or len(k) < MIN_KEY_BYTES:
                raise ValueError(f"signing key {kid}: need at least {MIN_KEY_BYTES} bytes")
        if key_id is None:
            if len(ring) > 1:
                raise ValueError(f"signing: {len(ring)} keys ({', '.join(sorted(ring))}); "
                                 "say which one signs (signing-key-id)")
            key_id = next(iter(ring))
        if key_id not in ring:
            raise ValueError(f"signing key id {key_id!r} is not among the keys: "
                             f"{', '.join(sorted(ring))}")
        self._keys = ring
        self.key_id = key_id
        # (key id, message) -> hex MAC, oldest first (see the module doc); the lock guards
        # the eviction, since binds sign on their own threads while the watch verifies.
        self._macs: dict[tuple[str, bytes], str] = {}
        self._macs_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r}, keys={sorted(self._keys)}, <keys hidden>)"

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of every verification key."""
        return tuple(sorted(self._keys))

    def sign(self, uid: str, node: str, gpus: Sequence[int], milli: int, mem: int) -> str:
        """`<key id>:<hex HMAC-SHA256>` of the canonical message."""
        msg = _message(uid, node, gpus, milli, mem)
        return f"{self.key_id}:{self._mac_of(self.key_id, msg)}"

    def verify(
        self, signature: str, uid: str, node: str, gpus: Sequence[int], milli: int, mem: int
    ) -> bool:
        """True if `signature` was made by a key of this ring over exactly these values."""
        if not isinstance(signature, str) or not uid:
            return False
        kid, sep, mac = signature.rpartition(":")
        candidates = ([kid] if kid in self._keys else []) if sep else list(self._keys)
        try:
            msg = _message(uid, node, gpus, milli, mem)
        except ValueError:
            return False  # a field with a newline: nothing we ever signed
        ok = False
        for k in candidates:
            ok |= hmac.compare_digest(self._mac_of(k, msg).encode(), mac.encode())
        return ok

    def memo_size(self) -> int:
        """How many MACs are kept (at most MAC_MEMO_SIZE)."""
        return len(self._macs)

    def _mac_of(self, kid: str, msg: bytes) -> str:
        """The MAC of `msg` under key `kid`, from the memo when it was computed before."""
        if len(msg) > MAC_MEMO_MAX_MESSAGE:
            return _mac(self._keys[kid], msg)
        memo_key = (kid, msg)
        mac = self._macs.get(memo_key)
        if mac is None:
            mac = _mac(self._keys[kid], msg)
            with self._macs_lock:
                while len(self._macs) >= MAC_MEMO_SIZE:
                    del self._macs[next(iter(self._macs))]
                self._macs[memo_key] = mac
        return mac


def _mac(key: bytes, msg: bytes) -> str:
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def _message(uid: str, node: str, gpus: Sequence[int], milli: int, mem: int) -> bytes:
    # Newline-separated fields: none of uid, node name or integers can contain a newline, so
    # two different assignments never produce the same message.
    if not uid:
        raise ValueError("signing: pod uid must not be empty")
    fields = (_VERSION, uid, node, ",".join(str(int(g)) for g in gpus), str(int(milli)),
              str(int(mem)))
    if any("\n" in f for f in fields):
        raise ValueError("signing: fields must not contain newlines")
    return "\n".join(fields).encode()
