"""bench.weight_sweep --compare: a paired A/B of one PolicyConfig weight on the heterogeneous
scenario (both halves of the traces, the same seeds for both values)."""

from __future__ import annotations

import io

import pytest

from bench.heterogeneous import TRACES
from bench.weight_sweep import TUNING_SEEDS_FROM, compare, main, parse_compare

needs_traces = pytest.mark.skipif(
    not (TRACES / "philly" / "philly_trace.csv").is_file(),
    reason=f"{TRACES} (../shared/traces) is absent: the scenario draws its jobs from it")


def test_parse_compare_takes_one_weight_and_two_values() -> None:
    assert parse_compare("pattern_weight=0.5,10") == ("pattern_weight", (0.5, 10.0))


@pytest.mark.parametrize(("text", "says"), [
    ("pattern_weight=0.5", "NAME=A,B"),
    ("pattern_weight=1,2,3", "NAME=A,B"),
    ("nosuch=1,2", "'nosuch=1'"),
    ("pattern_weight=1,x", "'x' is not a number"),
    ("pattern_weight=-1,2", "pattern_weight=-1.0"),
    ("pattern_weight=2,-1", "pattern_weight=-1.0"),
])
def test_parse_compare_names_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says.replace("(", r"\(").replace(".", r"\.")):
        parse_compare(text)


def test_command_line_refuses_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--compare", "pattern_weight=-1,2"])
    assert "--compare: PolicyConfig.pattern_weight=-1.0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--compare", "pattern_weight=1,2", "--seeds", "0"])
    assert "--seeds=0" in capsys.readouterr().err


@needs_traces
def test_same_value_twice_changes_nothing_on_either_half() -> None:
    # Pairing: both runs of a seed replay the same jobs, so equal weights give equal rows.
    out = io.StringIO()
    diffs = compare("pattern_weight", (10.0, 10.0), 1, 120, 1.2, out)
    assert [(d[0], d[1]) for d in diffs] == [("report", 0), ("tune", TUNING_SEEDS_FROM)]
    assert all(d[2] == 0 and d[3] == 0 for d in diffs)
    text = out.getvalue()
    assert text.count("pattern_weight=10:") == 4
    assert "0 up, 0 down, 2 equal" in text


@needs_traces
def test_the_reported_change_is_second_value_minus_first() -> None:
    out = io.StringIO()
    diffs = compare("pattern_weight", (0.0, 10.0), 1, 120, 1.2, out)
    placed: dict[tuple[str, str], float] = {}
    for line in out.getvalue().splitlines()[:-1]:
        head, _, rest = line.partition(": placed ")
        split, _, value = head.partition(" seed ")
        placed[(split + " " + value.split()[0], value.split()[1])] = float(rest.split(",")[0])
    for split, seed, d_placed, _ in diffs:
        key = f"{split} {seed}"
        assert d_placed == placed[(key, "pattern_weight=10")] - placed[(key, "pattern_weight=0")]
