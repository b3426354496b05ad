"""Kubernetes resource.Quantity parsing: the apiserver's grammar, exact values, strict errors."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.podcodec.quantity import (
    QuantityError,
    parse_bytes_mib,
    parse_count,
    parse_cpu_milli,
    parse_quantity,
)


@pytest.mark.parametrize(("text", "value"), [
    ("0", Fraction(0)),
    ("1", Fraction(1)),
    ("+1", Fraction(1)),
    ("-0", Fraction(0)),
    ("007", Fraction(7)),
    ("250m", Fraction(1, 4)),
    ("1.5", Fraction(3, 2)),
    ("1.", Fraction(1)),
    (".5", Fraction(1, 2)),
    ("100n", Fraction(1, 10_000_000)),
    ("3u", Fraction(3, 1_000_000)),
    ("2k", Fraction(2000)),
    ("1M", Fraction(10**6)),
    ("1G", Fraction(10**9)),
    ("1T", Fraction(10**12)),
    ("1P", Fraction(10**15)),
    ("1E", Fraction(10**18)),
    ("1Ki", Fraction(1024)),
    ("1Mi", Fraction(1 << 20)),
    ("1.5Gi", Fraction(3 << 29)),
    ("1Ti", Fraction(1 << 40)),
    ("1Pi", Fraction(1 << 50)),
    ("7Ei", Fraction(7 << 60)),
    ("1e3", Fraction(1000)),
    ("1E3", Fraction(1000)),
    ("1e-3", Fraction(1, 1000)),
    ("12e+2", Fraction(1200)),
    ("0.1e1", Fraction(1)),
    (2, Fraction(2)),
    (0.5, Fraction(1, 2)),
])
def test_parse_quantity_grammar(text: object, value: Fraction) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", [
    "", " ", "1 ", " 1", "+", "-", ".", "1..2", "1.2.3", "Gi", "1gi", "1GI", "1Kb", "1K",
    "1e", "1e+", "1e1.5", "1ee3", "0x10", "1_000", "١", "1Gi ", "--1", "1mi", "NaN", "inf",
    "-1", "-1m", "-0.5Gi", "1e31", "1e-31", "10E", "9" * 65, True, None, [], {}, float("nan"),
    float("inf"), -3,
])
def test_parse_quantity_rejects(text: object) -> None:
    with pytest.raises(QuantityError) as e:
        parse_quantity(text)
    assert repr(text)[:20] in str(e.value) or "quantity" in str(e.value)


def test_error_names_the_value() -> None:
    with pytest.raises(QuantityError, match=r"'12 cores'"):
        parse_cpu_milli("12 cores")


def test_too_large_is_rejected() -> None:
    with pytest.raises(QuantityError, match="too large"):
        parse_quantity("9Ei")  # above int64, like the apiserver's limit
    assert parse_quantity("7Ei") == 7 << 60


def test_cpu_milli_rounding() -> None:
    assert parse_cpu_milli("4") == 4000
    assert parse_cpu_milli("3500m") == 3500
    assert parse_cpu_milli("0.1") == 100
    assert parse_cpu_milli("100u") == 1  # requests round up, as MilliValue does
    assert parse_cpu_milli("100u", round_up=False) == 0  # capacities round down
    assert parse_cpu_milli("1.0005", round_up=False) == 1000


def test_bytes_mib() -> None:
    assert parse_bytes_mib("16Gi") == 16384
    assert parse_bytes_mib("1024Mi") == 1024
    assert parse_bytes_mib("1048576") == 1
    assert parse_bytes_mib("1G") == 954  # 10^9 bytes is 953.67 MiB, a request rounds up
    assert parse_bytes_mib("1G", round_up=False) == 953
    assert parse_bytes_mib("1") == 1
    assert parse_bytes_mib("1", round_up=False) == 0


def test_count() -> None:
    assert parse_count("8") == 8
    assert parse_count("1k") == 1000
    assert parse_count("2e1") == 20
    for bad in ("1.5", "500m", "1Ki1"):
        with pytest.raises(QuantityError):
            parse_count(bad)


@given(st.integers(min_value=0, max_value=10**9),
       st.sampled_from(["", "k", "M", "G", "Ki", "Mi", "Gi", "m"]))
def test_integer_with_suffix_is_exact(n: int, suffix: str) -> None:
    scales: dict[str, int | Fraction] = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9,
                                         "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30,
                                         "m": Fraction(1, 1000)}
    scale = scales[suffix]
    assert parse_quantity(f"{n}{suffix}") == n * scale


@given(st.text(max_size=12))
def test_any_text_parses_or_raises_quantity_error(text: str) -> None:
    try:
        q = parse_quantity(text)
    except QuantityError:
        return
    assert q >= 0
