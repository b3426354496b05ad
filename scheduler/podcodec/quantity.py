"""Kubernetes resource.Quantity strings ("250m", "16Gi", "1e3") as exact integers.

Grammar of k8s.io/apimachinery/pkg/api/resource/quantity.go:
    <quantity> ::= <sign>? <number> <suffix>
    <number>   ::= <digits> | <digits>. | <digits>.<digits> | .<digits>
    <suffix>   ::= Ki|Mi|Gi|Ti|Pi|Ei | n|u|m|""|k|M|G|T|P|E | (e|E)<sign>?<digits>
Values are kept as exact fractions (no float rounding) and converted to the integer unit the
scheduler counts in. Stricter than the apiserver in one way: a bare sign ("+", "-") is an
error here, and every negative quantity is rejected, because no capacity or request is < 0.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache

_BINARY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_RE = re.compile(
    r"(?P<sign>[+-]?)(?P<num>[0-9]+\.?[0-9]*|\.[0-9]+)"
    r"(?P<suffix>[KMGTPE]i|[numkMGTPE]?|[eE][+-]?[0-9]+)"
)
# The apiserver keeps quantities in int64 (with a 10^-9 scale); anything beyond is not a
# real capacity and would only let a huge exponent cost us time.
_MAX_VALUE = Fraction(2**63 - 1)
_MAX_TEXT = 64
_MAX_EXPONENT = 30
MIB = 1 << 20


class QuantityError(ValueError):
    """A string that is not a valid, non-negative Kubernetes quantity."""

    def __init__(self, value: object, message: str) -> None:
        super().__init__(f"quantity {value!r}: {message}")
        self.value = value


def parse_quantity(value: object) -> Fraction:
    """The exact value of a quantity (a JSON string, or a plain JSON number)."""
    if type(value) is str:
        return _parse_text(value)
    return _parse(value)


# A cluster's pods and nodes use a few dozen distinct quantity strings ("100m", "64Mi", "8"),
# read again on every pod and node event: their exact values (immutable Fractions) are kept.
# Bounded, so a stream of distinct strings costs memory only up to maxsize; errors are not
# cached (they raise every time).
@lru_cache(maxsize=4096)
def _parse_text(text: str) -> Fraction:
    return _parse(text)


def _parse(value: object) -> Fraction:
    if isinstance(value, bool):
        raise QuantityError(value, "expected a string such as '2', '500m' or '16Gi'")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        # JSON numbers are accepted by the apiserver too; repr is the shortest exact decimal.
        if value != value or value in (float("inf"), float("-inf")):
            raise QuantityError(value, "not a finite number")
        text = repr(value)
    elif isinstance(value, str):
        text = value
    else:
        raise QuantityError(value, f"expected a string, got {type(value).__name__}")
    if not text or len(text) > _MAX_TEXT:
        raise QuantityError(value, f"must be 1..{_MAX_TEXT} characters")
    m = _RE.fullmatch(text)
    if m is None:
        raise QuantityError(
            value, "not a Kubernetes quantity (number with optional suffix n, u, m, k, M, G, "
            "T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent like 1e3)"
        )
    num = Fraction(m["num"] + ("0" if m["num"].endswith(".") else ""))
    suffix = m["suffix"]
    if suffix in _BINARY:
        q = num * _BINARY[suffix]
    else:
        exp = int(suffix[1:]) if suffix[:1] in ("e", "E") and len(suffix) > 1 else _DECIMAL[suffix]
        if abs(exp) > _MAX_EXPONENT:
            raise QuantityError(value, f"exponent {exp} is out of range")
        q = num * Fraction(10) ** exp
    if m["sign"] == "-" and q != 0:
        raise QuantityError(value, "must not be negative")
    if q > _MAX_VALUE:
        raise QuantityError(value, "is too large")
    return q


def _ceil(q: Fraction) -> int:
    return -((-q.numerator) // q.denominator)


def _floor(q: Fraction) -> int:
    return q.numerator // q.denominator


def parse_cpu_milli(value: object, *, round_up: bool = True) -> int:
    """CPU in thousandths of a core ("250m" -> 250, "2" -> 2000).

    Requests round up (as kube-scheduler's MilliValue does); capacities pass round_up=False
    so a node never promises more than it has.
    """
    q = parse_quantity(value) * 1000
    return _ceil(q) if round_up else _floor(q)


def parse_bytes_mib(value: object, *, round_up: bool = True) -> int:
    """Bytes as whole MiB ("1Gi" -> 1024); requests round up, capacities round down."""
    q = parse_quantity(value) / MIB
    return _ceil(q) if round_up else _floor(q)


def parse_count(value: object) -> int:
    """A whole count (GPUs, extended resources): "2" -> 2; "1.5" or "500m" is an error."""
    q = parse_quantity(value)
    if q.denominator != 1:
        raise QuantityError(value, "must be a whole number")
    return q.numerator
