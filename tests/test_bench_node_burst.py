"""bench.node_burst: both ways end with the same nodes, and bad sizes are refused by name."""

from __future__ import annotations

import pytest

from bench import node_burst


@pytest.mark.parametrize("read_each", [False, True])
def test_a_burst_ends_with_as_many_nodes_as_it_began(read_each: bool) -> None:
    assert node_burst.burst_cpu_s(12, 4, read_each) >= 0.0  # raises if a node went missing


def test_the_table_has_a_row_per_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert node_burst.main(["--nodes", "6,8", "--burst", "2", "--repeats", "1"]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows[2:]] == ["6", "8"]


def test_a_burst_larger_than_the_cluster_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        node_burst.main(["--nodes", "5", "--burst", "10"])
    assert "--burst=10" in capsys.readouterr().err


def test_sizes_that_are_not_numbers_are_refused_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        node_burst.main(["--nodes", "1k"])
    assert "--nodes='1k'" in capsys.readouterr().err
