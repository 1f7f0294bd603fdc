"""Study cebench_published: CE-Bench's published claims on its shipped numbers."""

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from groundtruth.cli import main
from groundtruth.studies.cebench_published import (
    GEMMA_SCOPE_TABLE,
    PLOT_ALPHA,
    PLOT_WIDTH,
    SAEBENCH_TABLE,
    load_gemma_scope_results,
    load_saebench_table,
    run_cebench_published,
)
from groundtruth.study import load_study

DATA_DIR = Path(__file__).parents[3] / "experiments" / "data" / "cebench-published"
N_BOOT = 200


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One study run on the shipped data: (returned report, output folder)."""
    out = tmp_path_factory.mktemp("published")
    return run_cebench_published(DATA_DIR, out, n_boot=N_BOOT, seed=0), out


def _numbers(value, where="report"):
    """Every (path, number) in a nested report."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{where}.{k}")
    elif isinstance(value, list):
        for k, v in enumerate(value):
            yield from _numbers(v, f"{where}[{k}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield where, value


# --------------------------------------------------------------------------------------------
# The headline and its uncertainty
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("predictor", "published", "digits"),
    [("C + I", 0.7012, 4), ("C + I - 0.25 L0", 0.7730, 4), ("-L0", 0.709, 3)],
)
def test_reproduces_the_published_ranking_agreements(run, predictor, published, digits):
    entry = run[0]["headline"][predictor]
    assert round(entry["agreement"], digits) == published
    assert entry["published_agreement"] == published
    assert entry["matches_published"] is True


def test_every_report_number_is_finite_and_the_json_round_trips(run):
    report, out = run
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    numbers = list(_numbers(on_disk))
    assert len(numbers) > 100
    bad = [(where, x) for where, x in numbers if not math.isfinite(x)]
    assert not bad


def test_bootstrap_intervals_contain_their_point_estimates(run):
    report = run[0]
    checked = []
    for name, e in report["headline"].items():
        checked += [(name, e["agreement"], e["agreement_ci95"]),
                    (name, e["spearman"], e["spearman_ci95"])]
    for name, e in report["paired_differences"].items():
        checked.append((name, e["difference"], e["difference_ci95"]))
    for name, e in report["width_confound"]["scores"].items():
        checked += [(name, e["spearman_with_width"], e["spearman_with_width_ci95"]),
                    (name, e["ratio_spearman_with_width"], e["ratio_spearman_with_width_ci95"]),
                    (name, e["log_slope"], e["log_slope_ci95"])]
    assert len(checked) == 7 * 2 + 3 + 2 * 3
    for name, point, (low, high) in checked:
        assert low <= point <= high, (name, point, low, high)
        assert low < high, name


# --------------------------------------------------------------------------------------------
# alpha and the leave-one-architecture-out test
# --------------------------------------------------------------------------------------------


def test_held_out_folds_cover_every_architecture_exactly_once(run):
    report = run[0]
    table = load_saebench_table(DATA_DIR / SAEBENCH_TABLE)
    folds = report["holdout"]["folds"]
    held_out = [f["architecture"] for f in folds]
    assert sorted(held_out) == sorted(set(table["architecture"]))
    assert len(held_out) == len(set(held_out))
    for f in folds:
        assert f["n_saes"] == table["architecture"].count(f["architecture"])
        assert f["n_pairs"] == f["n_saes"] * (f["n_saes"] - 1) // 2
    assert sum(f["n_saes"] for f in folds) == 48


def test_pair_weighted_means_and_width_split_are_consistent(run):
    holdout = run[0]["holdout"]
    folds = holdout["folds"]
    pairs = sum(f["n_pairs"] for f in folds)
    assert holdout["n_pairs_within_architectures"] == pairs == 5 * 15 + 153
    split = holdout["same_vs_cross_width"]
    assert split["same_width"]["n_pairs"] == 8 * 15  # 8 (architecture, width) cells of 6 SAEs
    assert split["cross_width"]["n_pairs"] == pairs - 8 * 15
    assert split["cross_width"]["architectures"] == ["jump_relu"]
    for name, mean in holdout["pair_weighted_mean"].items():
        assert mean == pytest.approx(
            sum(f["agreement"][name] * f["n_pairs"] for f in folds) / pairs)
        recombined = (split["same_width"]["pair_weighted_mean"][name] * 120
                      + split["cross_width"]["pair_weighted_mean"][name] * 108) / pairs
        assert recombined == pytest.approx(mean)


def test_alpha_star_is_the_best_point_of_the_in_sample_curve(run):
    ins = run[0]["holdout"]["in_sample"]
    grid = np.array(run[0]["holdout"]["alpha_grid"])
    curve = np.array(ins["curve"])
    assert ins["alpha_star_agreement"] == curve.max()
    assert curve[np.argmin(np.abs(grid - ins["alpha_star"]))] == curve.max()
    assert ins["alpha_star_range"][0] <= ins["alpha_star"] <= ins["alpha_star_range"][1]
    assert ins["alpha_star_agreement"] >= ins["paper_alpha_agreement"]


# --------------------------------------------------------------------------------------------
# The width confound
# --------------------------------------------------------------------------------------------


def test_raw_contrastive_score_tracks_width(run):
    width = run[0]["width_confound"]
    assert width["selection"]["n_saes"] == 31
    assert width["selection"]["total_rows"] == 80
    assert width["rows_by_total_rows"]["500"] == width["other_groups_not_used"]["n_rows_500"]
    contrastive = width["scores"]["contrastive_score"]
    assert contrastive["spearman_with_width"] > 0.8
    assert 0.3 < contrastive["log_slope"] < 0.7


# --------------------------------------------------------------------------------------------
# Outputs and determinism
# --------------------------------------------------------------------------------------------


def test_report_markdown_and_plots_are_written(run):
    out = run[1]
    markdown = (out / "report.md").read_text()
    for text in ("0.7012", "0.7730", "0.709", "Leave one architecture out", "width confound",
                 f"]({PLOT_ALPHA})", f"]({PLOT_WIDTH})"):
        assert text in markdown
    for plot in (PLOT_ALPHA, PLOT_WIDTH):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_gives_an_identical_report_json(run, tmp_path):
    run_cebench_published(DATA_DIR, tmp_path, n_boot=N_BOOT, seed=0)
    assert (tmp_path / "report.json").read_bytes() == (run[1] / "report.json").read_bytes()


# --------------------------------------------------------------------------------------------
# Invalid inputs
# --------------------------------------------------------------------------------------------


def _rewrite(source: Path, target: Path, edit) -> None:
    with source.open(newline="") as handle:
        rows = list(csv.reader(handle))
    rows = edit(rows)
    with target.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def _drop_column(name):
    def edit(rows):
        k = rows[0].index(name)
        return [row[:k] + row[k + 1:] for row in rows]
    return edit


def _set_value(line, name, value):
    def edit(rows):
        rows[line - 1][rows[0].index(name)] = value
        return rows
    return edit


def test_missing_column_is_named(tmp_path):
    bad = tmp_path / SAEBENCH_TABLE
    _rewrite(DATA_DIR / SAEBENCH_TABLE, bad, _drop_column("saebench_target"))
    with pytest.raises(ValueError, match=r"missing column\(s\) saebench_target"):
        load_saebench_table(bad)


@pytest.mark.parametrize("value", ["abc", "", "nan", "inf"])
def test_non_numeric_value_names_its_line_and_column(tmp_path, value):
    bad = tmp_path / SAEBENCH_TABLE
    _rewrite(DATA_DIR / SAEBENCH_TABLE, bad, _set_value(3, "l0", value))
    with pytest.raises(ValueError, match=rf"line 3 .*column l0 must be a finite number, got "
                                         rf"'{value}'"):
        load_saebench_table(bad)


def test_gemma_scope_table_is_validated_too(tmp_path):
    bad = tmp_path / GEMMA_SCOPE_TABLE
    _rewrite(DATA_DIR / GEMMA_SCOPE_TABLE, bad, _drop_column("d_sae"))
    with pytest.raises(ValueError, match=r"missing column\(s\) d_sae"):
        load_gemma_scope_results(bad)
    _rewrite(DATA_DIR / GEMMA_SCOPE_TABLE, bad, _set_value(5, "contrastive_score", "n/a"))
    with pytest.raises(ValueError, match=r"line 5 .*column contrastive_score"):
        load_gemma_scope_results(bad)


def test_study_refuses_a_bad_table_before_writing(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(DATA_DIR / GEMMA_SCOPE_TABLE, data / GEMMA_SCOPE_TABLE)
    _rewrite(DATA_DIR / SAEBENCH_TABLE, data / SAEBENCH_TABLE, _drop_column("l0"))
    with pytest.raises(ValueError, match=r"missing column\(s\) l0"):
        run_cebench_published(data, tmp_path / "out", n_boot=N_BOOT)
    assert not (tmp_path / "out").exists()


def test_loaders_read_the_shipped_tables():
    table = load_saebench_table(DATA_DIR / SAEBENCH_TABLE)
    assert len(table["sae_id"]) == 48
    assert table["l0"].dtype == np.float64 and table["l0"].shape == (48,)
    results = load_gemma_scope_results(DATA_DIR / GEMMA_SCOPE_TABLE)
    assert len(results["sae_id"]) == 399


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n_boot": 0}, "n_boot"), ({"seed": -1}, "seed"), ({"alpha_grid": [0.25]}, "alpha_grid"),
     ({"alpha_grid": [0.0, np.nan]}, "alpha_grid")],
)
def test_bad_arguments_raise(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run_cebench_published(DATA_DIR, tmp_path, **kwargs)


def test_cebench_published_via_the_command(tmp_path, capsys):
    config = load_study("experiments/cebench_published.toml")
    assert config.kind == "cebench_published"
    assert main(["audit", "--config", "experiments/cebench_published.toml", "--out",
                 str(tmp_path), "--no-progress"]) == 0
    assert "report" in capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    assert json.dumps(report).count("0.701") >= 1
