"""Study calibration: the auditor on planted metrics (a fast version of the study)."""

import dataclasses
import json

import pytest

from groundtruth import lenses, stats
from groundtruth.audit import plan_evaluations
from groundtruth.design import AuditDesign
from groundtruth.studies import run_study
from groundtruth.studies.calibration import calibrate, shaped_like, simulate_population
from groundtruth.study import load_study, study_from_dict


def _shape(source: str):
    calibration = load_study("experiments/calibration.toml")
    study = shaped_like(dataclasses.replace(
        calibration, options={**calibration.options, "source_study": source}))
    return dataclasses.replace(study, lenses=dataclasses.replace(study.lenses, n_boot=200))


@pytest.fixture(scope="module")
def shape():
    """The shape of the cpu_short_training audit (19 units), with a smaller bootstrap for
    speed: the fast checks below were sized on it."""
    return _shape("experiments/cpu_short_training.toml")


def test_the_simulated_population_has_the_source_audits_design(shape):
    members, truth = simulate_population(shape, 0)
    design = AuditDesign.of(members, plan_evaluations(shape, members), shape.lenses.reseed_seeds)
    assert len(design.population) == 5 + 16 + 54  # controls, family members, trained finals
    assert len(set(design.clusters)) == 1 + 18 and len(design.runs) == 18
    assert len({s for s in design.strata if s is not None}) == 4 + 6
    assert len(design.reseed_ids) == 2 + 18
    assert all("q" in truth[m.id] for m in members)
    default = _shape("experiments/ce_vs_groundtruth.toml")  # what calibration.toml calibrates
    members, _ = simulate_population(default, 0)
    design = AuditDesign.of(members, plan_evaluations(default, members),
                            default.lenses.reseed_seeds)
    assert len(design.population) == 5 + 16 + 36
    assert len(set(design.clusters)) == 1 + 12 and len(design.runs) == 12
    assert len({s for s in design.strata if s is not None}) == 4 + 4


def test_a_fast_calibration_meets_the_targets(shape):
    summary = calibrate(shape, populations=20)
    assert all(summary["expected_verdicts"].values()), summary["expected_verdicts"]
    for name, entry in summary["mdd"].items():
        assert abs(entry["relative_error"]) <= 0.1, name
    for source, entry in summary["variance_components"].items():
        assert abs(entry["relative_error"]) <= 0.15, source
    assert abs(summary["slope_over_noise"]["relative_error"]) <= 0.1
    for name, entry in summary["coverage"].items():
        assert entry["coverage"] >= 0.85, name


def test_calibration_catches_intervals_that_ignore_dependence(shape, monkeypatch):
    """Break the auditor: resample SAEs one by one, as if independent. The null metric's
    pooled intervals then miss 0 far too often, and calibration says so."""
    original = stats.rank_correlation
    monkeypatch.setattr(lenses.stats, "rank_correlation",
                        lambda x, y, clusters=None, **kw: original(x, y, **kw))
    summary = calibrate(shape, populations=20)
    assert summary["coverage"]["null_clustered: pooled Spearman"]["coverage"] <= 0.85
    assert summary["passed"] is False


def test_the_study_writes_a_report_that_answers_first(tmp_path):
    study = study_from_dict({"study": {"name": "cal", "kind": "calibration"},
                             "options": {"populations": 2}})
    report = json.loads(run_study(study, tmp_path, progress=False).read_text())
    assert report["n_populations"] == 2 and report["shape"]["name"] == "ce_vs_groundtruth"
    answer = (tmp_path / "report.md").read_text().splitlines()[2]
    assert answer.startswith("**The answer.**")
    observed = [c["coverage"] for c in report["coverage"].values() if c["coverage"] is not None]
    if observed:  # the answer gives what was observed, not only the target
        assert f"{min(observed):.3f}-{max(observed):.3f} of the time" in answer
    assert f"{sum(report['expected_verdicts'].values())} of " in answer
    from groundtruth.studies.calibration import _answer

    for value, says in ((0.99, "too often"), (0.5, "too rarely"), (0.95, "target 0.93-0.97)")):
        shifted = {**report, "coverage": {k: {**c, "coverage": value}
                                          for k, c in report["coverage"].items()}}
        assert says in _answer(shifted), value
    with pytest.raises(ValueError, match="must be an audit study"):
        run_study(study_from_dict({"study": {"name": "c", "kind": "calibration"}, "options": {
            "source_study": "experiments/cebench_published.toml"}}), tmp_path / "x")
