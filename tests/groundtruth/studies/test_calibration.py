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


@pytest.fixture(scope="module")
def shape():
    """The default audit's shape, with a smaller bootstrap for speed."""
    study = shaped_like(load_study("experiments/calibration.toml"))
    return dataclasses.replace(study, lenses=dataclasses.replace(study.lenses, n_boot=200))


def test_the_simulated_population_has_the_default_audits_design(shape):
    members, truth = simulate_population(shape, 0)
    design = AuditDesign.of(members, plan_evaluations(shape, members), shape.lenses.reseed_seeds)
    assert len(design.population) == 5 + 16 + 54  # controls, family members, trained finals
    assert len(set(design.clusters)) == 1 + 18 and len(design.runs) == 18
    assert len({s for s in design.strata if s is not None}) == 4 + 6
    assert len(design.reseed_ids) == 2 + 18
    assert all("q" in truth[m.id] for m in members)


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
    assert (tmp_path / "report.md").read_text().splitlines()[2].startswith("**The answer.**")
    with pytest.raises(ValueError, match="must be an audit study"):
        run_study(study_from_dict({"study": {"name": "c", "kind": "calibration"}, "options": {
            "source_study": "experiments/cebench_published.toml"}}), tmp_path / "x")
