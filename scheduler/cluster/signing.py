"""HMAC signature over an assignment, so the node agent honours only what the scheduler chose.

A user can write our annotations on their own pod; without the key, shared only by the
scheduler and the node agents, they cannot produce a signature that verifies.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from pathlib import Path

MIN_KEY_BYTES = 16
# Bumped if the signed message ever changes, so old signatures stop verifying.
_VERSION = "gts-assign-v1"


class SigningKeyError(ValueError):
    """A signing key file that cannot be read or is too short; the message names the path."""


def load_signing_key(path: str) -> bytes:
    """The HMAC key in `path`, trailing whitespace (a newline from an editor) removed."""
    try:
        key = Path(path).read_bytes().rstrip()
    except OSError as e:
        raise SigningKeyError(f"signing key file {path}: {e.strerror}") from None
    if len(key) < MIN_KEY_BYTES:
        raise SigningKeyError(
            f"signing key file {path}: {len(key)} bytes; need at least {MIN_KEY_BYTES} "
            f"(e.g. `openssl rand -hex 32 > {path}`)")
    return key


class Signer:
    """Signs and verifies (pod uid, node, GPU indices, share, GPU memory) with HMAC-SHA256."""

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
            raise ValueError(f"signing key: need at least {MIN_KEY_BYTES} bytes")
        self._key = key

    def __repr__(self) -> str:
        return "Signer(<key hidden>)"

    def sign(self, uid: str, node: str, gpus: Sequence[int], milli: int, mem: int) -> str:
        """Hex HMAC-SHA256 of the canonical message."""
        msg = _message(uid, node, gpus, milli, mem)
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def verify(
        self, signature: str, uid: str, node: str, gpus: Sequence[int], milli: int, mem: int
    ) -> bool:
        """True if `signature` was made with this key over exactly these values (constant time)."""
        if not isinstance(signature, str):
            return False
        expected = self.sign(uid, node, gpus, milli, mem)
        return hmac.compare_digest(expected.encode(), signature.encode())


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
