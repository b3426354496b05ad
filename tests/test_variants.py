"""bench.variants: the paired gap ratio, the table, the command line's checks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.variants import (
    HELD_OUT,
    TUNING,
    VARIANTS,
    Cell,
    gap_ratio,
    main,
    markdown,
    parse_overrides,
    run_cell,
    run_table,
    summarize,
)


def test_gap_ratio() -> None:
    assert gap_ratio(4.0, 5.0, 3.0) == pytest.approx(0.5)
    assert gap_ratio(5.0, 5.0, 3.0) == pytest.approx(1.0)
    assert math.isnan(gap_ratio(4.0, 3.0, 3.0))


def test_tuning_and_held_out_split_the_variants() -> None:
    assert set(TUNING) | set(HELD_OUT) == set(VARIANTS)
    assert not set(TUNING) & set(HELD_OUT)
    assert "default" in HELD_OUT


def test_ratio_is_the_median_of_paired_seeds() -> None:
    cells = []
    # seed 0: ours halfway (0.5); seed 1: ours equal to fgd (1.0); seed 2: ours on the bound.
    for seed, ours in ((0, 4.0), (1, 5.0), (2, 3.0)):
        cells += [Cell("default", "topology", seed, (ours, ours)),
                  Cell("default", "fgd", seed, (5.0, 5.0)),
                  Cell("default", "bound", seed, (3.0, 3.0))]
    doc = summarize(cells)
    row = doc["default"]
    assert isinstance(row, dict)
    assert row["gap_ratio"] == {"100": pytest.approx(0.5), "130": pytest.approx(0.5)}
    assert row["topology"] == {"100": 4.0, "130": 4.0}
    assert row["role"] == "held out"
    table = markdown(doc, ["topology", "fgd"])
    assert "| default | held out | 100 % | 4.00 | 5.00 | 3.00 | 0.50 |" in table


def test_unknown_variant_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--variants", "nope"])
    assert "unknown nope" in capsys.readouterr().err


def test_fgd_is_required(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Its own trace dir: the check must not depend on ../shared being there.
    with pytest.raises(SystemExit):
        main(["--policies", "topology", "--trace-dir", str(tmp_path)])
    assert "fgd" in capsys.readouterr().err


def _small_trace(tmp_path: Path) -> None:
    (tmp_path / "openb_node_list_gpu_node.csv").write_text(
        "sn,cpu_milli,memory_mib,gpu,model\n"
        + "".join(f"n{i},32000,131072,2,T4\n" for i in range(4)))
    rows = ["name,cpu_milli,memory_mib,num_gpu,gpu_milli"]
    rows += [f"p{i},4000,8192,1,{[810, 470, 1000, 320][i % 4]}" for i in range(16)]
    (tmp_path / "openb_pod_list_default.csv").write_text("\n".join(rows) + "\n")


def test_one_cell_on_a_small_trace(tmp_path: Path) -> None:
    _small_trace(tmp_path)
    fgd = run_cell(str(tmp_path), "default", "fgd", 0)
    bound = run_cell(str(tmp_path), "default", "bound", 0)
    assert len(fgd.unallocated) == 2
    for b, f in zip(bound.unallocated, fgd.unallocated, strict=True):
        assert 0.0 <= b <= f + 1e-9


def test_resumed_run_reuses_done_cells_and_runs_the_rest_seed_major(tmp_path: Path) -> None:
    _small_trace(tmp_path)
    # Seed 0's cells are "done" with values no replay gives: they must come back untouched.
    done = [Cell("default", p, 0, (99.0, 99.0)) for p in ("fgd", "bound")]
    ran: list[Cell] = []
    cells = run_table(["default"], ["fgd"], range(3), tmp_path, progress=ran.append, done=done)
    assert [(c.policy, c.seed) for c in ran] == [
        ("fgd", 1), ("bound", 1), ("fgd", 2), ("bound", 2)]
    assert [c for c in cells if c.seed == 0] == done
    assert all(c.unallocated != (99.0, 99.0) for c in ran)


def test_table_rows_follow_the_variant_list() -> None:
    cells = [Cell(v, p, 0, (5.0, 5.0)) for v in ("cpu050", "default") for p in ("fgd", "bound")]
    assert list(summarize(cells)) == ["default", "cpu050"]


def test_overrides_name_policy_weights() -> None:
    assert parse_overrides(["share_fit_weight=0.01", "frag_step=20"]) == (
        ("share_fit_weight", 0.01), ("frag_step", 20.0))
    with pytest.raises(ValueError, match="'nope=1'"):
        parse_overrides(["nope=1"])
    with pytest.raises(ValueError, match="'x' is not a number"):
        parse_overrides(["strand_weight=x"])
    with pytest.raises(ValueError, match="strand_weight"):
        parse_overrides(["strand_weight=-1"])


def test_bad_override_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--set", "best_node_only=1"])
    assert "--set" in capsys.readouterr().err


def test_override_changes_ours_only(tmp_path: Path) -> None:
    _small_trace(tmp_path)
    base = run_cell(str(tmp_path), "default", "fgd", 0)
    assert run_cell(str(tmp_path), "default", "fgd", 0, (("frag_step", 0.0),)) == base
    # min_quality is not a weight: a typo'd name must not slip through as a no-op.
    with pytest.raises(ValueError):
        parse_overrides(["min_qualty=0.5"])


def test_processes_give_the_same_cells_as_one(tmp_path: Path) -> None:
    _small_trace(tmp_path)
    one = run_table(["default"], ["fgd"], range(2), tmp_path)
    two = run_table(["default"], ["fgd"], range(2), tmp_path, jobs=2)
    assert sorted(two, key=repr) == sorted(one, key=repr)


def test_variant_names_are_checked_with_the_known_ones_named() -> None:
    from bench.variants import HELD_OUT, TUNING, VARIANTS, parse_variants

    assert parse_variants("default,cpu050") == ["default", "cpu050"]
    assert parse_variants("tuning") == list(TUNING)
    assert parse_variants("held-out") == list(HELD_OUT)
    assert parse_variants("all") == list(VARIANTS)
    for bad, named in (("default,nosuch", "nosuch"), (",", "none given")):
        with pytest.raises(ValueError, match=f"unknown {named}; known: default"):
            parse_variants(bad)


@pytest.mark.parametrize(("argv", "says"), [
    (["--variants", "nosuch"], "--variants: 'nosuch': unknown nosuch; known: tiny"),
    (["--variants", "tiny", "--seeds", "0"], "--seeds=0: expected at least 1"),
    (["--trace-dir", "/nonexistent"], "--trace-dir: /nonexistent is not a directory"),
])
def test_offline_packer_cli_names_the_bad_option(
        argv: list[str], says: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from bench.offline_packer import main

    (tmp_path / "openb_pod_list_tiny.csv").write_text("name\n")
    if "--trace-dir" not in argv:
        argv = [*argv, "--trace-dir", str(tmp_path)]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and says in capsys.readouterr().err
