"""The audit end to end on a small study of the tiny world (about a minute)."""

import json
import signal
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pytest

from groundtruth.audit import plan_evaluations, run_audit
from groundtruth.convergence import last_doubling_gain
from groundtruth.study import study_from_dict

RAW = {
    "study": {"name": "tiny_audit", "seed": 0},
    "world": {"preset": "tiny"},
    "data": {"eval_samples": 1024, "probe_tasks": 3, "probe_examples": 64, "probe_pool": 4096,
             "probe_min_rate": 0.05,
             "corpus": {"n_subjects": 6, "pairs_per_subject": 2, "story_length": [8, 16]}},
    "metrics": {"names": ["ce_contrastive", "ce_independent_v1", "ce_width_calibrated",
                          "gt_f1", "gt_mcc", "probe_k1", "explained_variance"]},
    "families": {"names": ["decoder_noise", "dropped"], "oracle_training_samples": 20480},
    "training": {"architectures": ["topk", "relu_l1"], "widths": [16, 32], "seeds": [0, 1],
                 "n_checkpoints": 3, "training_samples": 12800, "batch_size": 256,
                 "sparsity": {"topk": [2, 4], "relu_l1": [0.3, 1.0]}},
    "lenses": {"reseed_seeds": 3, "decomposition_seeds": 2, "n_boot": 200},
}


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    out = tmp_path_factory.mktemp("audit")
    path = run_audit(study_from_dict(RAW), out, progress=False)
    return out, json.loads(path.read_text())


def test_report_has_the_promised_shape(audited):
    out, report = audited
    assert (out / "report.md").exists()
    for png in ("scatter_vs_ground_truth.png", "reseed_spread.png", "trajectories.png"):
        assert (out / png).stat().st_size > 1000
    assert set(report) >= {"config", "saes", "metrics", "sanity"}
    sae = report["saes"][0]
    assert set(sae) >= {"id", "family", "architecture", "width", "l0", "scores"}
    for name, m in report["metrics"].items():
        assert set(m["reseed"]) >= {"std", "cv", "mdd_unpaired", "paired", "n_seeds"}
        assert set(m["reseed"]["paired"]) == {"16", "32", "64"}  # trained widths, controls
        for gt in ("gt_f1", "gt_mcc"):
            c = m["gt_correlation"][gt]
            assert set(c) >= {"spearman", "spearman_ci95", "kendall", "n_saes", "n_units"}
            assert c["n_units"] == 1 + 8  # one oracle, eight training configurations
            assert c["spearman_ci95"][0] - 1e-9 <= c["spearman"] <= c["spearman_ci95"][1] + 1e-9
            within = m["within_strata"][gt]
            assert set(within["strata"]) == {"family/decoder_noise", "family/dropped",
                                             "relu_l1/w16", "relu_l1/w32", "topk/w16", "topk/w32"}
        assert set(m["trajectory"]) >= {"snr", "discriminability", "n_pairs"}
        assert m["verdict"]["overall"] in ("trustworthy", "not trustworthy", "ground truth")
    text = (out / "report.json").read_text()
    assert "NaN" not in text and "Infinity" not in text and "1000000000.0" not in text
    assert report["metrics"]["gt_f1"]["verdict"]["overall"] == "ground truth"  # the yardstick
    cards = json.loads((out / "card.json").read_text())
    assert set(cards) == set(report["metrics"])
    assert cards["gt_f1"]["tracking"]["within_strata"]["n_units"] == 1 + 8


def test_sanity_rows(audited):
    _, report = audited
    checks = report["sanity"]["checks"]
    assert checks["planted_truth tracks and is precise"]
    assert checks["planted_noise is noisy and does not track"]
    assert report["metrics"]["gt_f1"]["gt_correlation"]["gt_f1"]["spearman"] == pytest.approx(1.0)
    assert report["sanity"]["control_ranks_on_ground_truth"]["gt_f1"]["oracle"] == 1
    assert report["sanity"]["control_ranks_on_ground_truth"]["gt_mcc"]["random_init"] >= \
        report["population"]["n_correlation"] - 2
    # deterministic metrics carry no reseed noise
    assert report["metrics"]["gt_mcc"]["reseed"]["std"] == 0.0


def test_trajectories_cover_every_run_and_checkpoint(audited):
    _, report = audited
    trained = [s for s in report["saes"] if s["kind"] == "trained"]
    assert len(trained) == 2 * 2 * 2 * 2 * 3  # arch x sparsity x width x seeds x checkpoints
    assert report["metrics"]["gt_f1"]["trajectory"]["n_pairs"] == 8 * 2 * 3
    decomposition = report["metrics"]["ce_contrastive"]["variance_decomposition"]
    assert decomposition["n_runs"] == 2
    assert sum(decomposition[k] for k in ("checkpoint", "training_seed", "metric_seed")) == \
        pytest.approx(1.0)
    # gt_f1 rises along training: the checkpoint carries most of its variance (with the
    # seeds and checkpoints axes swapped, as before, this share came out as 0).
    assert report["metrics"]["gt_f1"]["variance_decomposition"]["checkpoint"] > 0.5
    assert report["metrics"]["gt_mcc"]["variance_decomposition"]["metric_seed"] == 0.0


def test_convergence_is_judged_per_run_from_the_stored_curves(audited):
    out, report = audited
    convergence = report["convergence"]
    assert set(convergence["per_run"]) == set(report["trajectories"]["gt_f1"])
    for run, judged in convergence["per_run"].items():
        assert len(judged["seed_gains"]) == 2  # one gain per training seed
        curve = report["trajectories"]["gt_f1"][run]
        assert last_doubling_gain(curve["steps"], curve["mean"]) is not None
        lo, hi = min(judged["seed_gains"]), max(judged["seed_gains"])
        assert lo - 1e-9 <= judged["gain"] <= hi + 1e-9  # the median of the seeds' gains
    assert "**Convergence.**" in (out / "report.md").read_text()


def test_training_trend_and_variants_are_measured_for_every_metric(audited):
    _, report = audited
    gt = report["metrics"]["gt_f1"]
    assert gt["training_trend"]["mean_spearman"] > 0.5  # gt_f1 rises along training
    assert gt["training_trend"]["n_runs"] == 8
    # each architecture x width has two sparsities: 4 groups of one pair each
    for name, m in report["metrics"].items():
        assert m["variants"]["n_pairs"] <= 4, name
    assert gt["variants"]["n_pairs"] == 4


def test_same_seed_same_report(audited, tmp_path):
    _, first = audited
    second = json.loads(run_audit(study_from_dict(RAW), tmp_path, progress=False).read_text())
    assert second["metrics"] == first["metrics"]
    assert second["saes"] == first["saes"]


def test_reseed_and_decomposition_plans(audited):
    study = study_from_dict(RAW)
    out, report = audited
    from groundtruth.population import PopulationMember

    members = [PopulationMember(origin=s["family"], params=None, **{
        k: s[k] for k in ("id", "kind", "architecture", "width", "knobs", "seed", "run",
                          "checkpoint", "step", "final")}) for s in report["saes"]]
    plan = plan_evaluations(study, members)
    reseeded = [i for i, seeds in plan.items() if seeds == [0, 1, 2]]
    assert any("oracle" in i for i in reseeded)
    assert all(seeds[0] == 0 for seeds in plan.values())


def test_kill_minus_nine_then_resume_gives_the_same_report(audited, tmp_path):
    _, uninterrupted = audited
    out = tmp_path / "killed"
    script = textwrap.dedent("""
        import json, sys
        from groundtruth.audit import run_audit
        from groundtruth.study import study_from_dict
        run_audit(study_from_dict(json.loads(sys.argv[1])), sys.argv[2], progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script, json.dumps(RAW), str(out)])
    deadline = time.time() + 300
    results = out / "results.jsonl"
    while time.time() < deadline:  # kill once some values are stored, before the report
        if results.exists() and results.stat().st_size > 20_000:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "report.json").exists(), "the run should have been killed mid-way"
    stored = results.read_text().count("\n")
    resumed = json.loads(run_audit(study_from_dict(RAW), out, progress=False).read_text())
    assert resumed["metrics"] == uninterrupted["metrics"]
    assert resumed["saes"] == uninterrupted["saes"]
    assert results.read_text().count("\n") >= stored


def test_bad_studies_fail_before_any_work(tmp_path):
    small = {**RAW, "training": {**RAW["training"], "architectures": ["topk"], "widths": [16],
                                 "seeds": [0], "sparsity": {"topk": [2]}},
             "families": {"names": [], "controls": False}}
    with pytest.raises(ValueError, match="correlation population would hold 1 SAEs"):
        run_audit(study_from_dict(small), tmp_path / "small", progress=False)
    assert not (tmp_path / "small").exists()
    other = {**RAW, "study": {"name": "tiny_audit", "seed": 1}}
    run_dir = tmp_path / "reuse"
    (run_dir).mkdir()
    (run_dir / "study.json").write_text(json.dumps({"name": "something else"}))
    with pytest.raises(ValueError, match="holds a run of a different study"):
        run_audit(study_from_dict(other), run_dir, progress=False)


def test_a_metric_the_world_cannot_give_stops_the_audit_before_any_sae_is_built(tmp_path):
    flat = {**RAW, "world": {"preset": "tiny", "hierarchy_roots": 0},
            "metrics": {"names": ["gt_f1", "tpp_top2"]}}
    out = tmp_path / "flat"
    with pytest.raises(ValueError, match="metric tpp_top2 cannot be measured on this world: "
                                         "TPP is not applicable"):
        run_audit(study_from_dict(flat), out, progress=False)
    assert not list(out.iterdir())  # no SAE built, no study.json: the fixed config may reuse it
    fixed = {**flat, "metrics": {"names": ["gt_f1", "gt_mcc"]}}
    assert run_audit(study_from_dict(fixed), out, progress=False).exists()


def test_a_finished_audit_is_rejudged_without_recomputing(audited, tmp_path, capsys):
    import shutil

    from groundtruth.cli import main

    out, report = audited
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    values = (copy / "results.jsonl").read_bytes()
    assert main(["report", "--out", str(copy)]) == 0  # the same rules: the same report
    assert json.loads((copy / "report.json").read_text()) == report
    lenient = tmp_path / "lenient.toml"
    lenient.write_text(textwrap.dedent(f"""
        [study]
        name = "{report['config']['name']}"
        [world]
        preset = "tiny"
        [verdict]
        track_low = -1.0
        track_high = -1.0
        precision_fraction = 100.0
        discriminability = 0.0
        confound_drop = 2.0
        min_units = 1
        """))
    assert main(["report", "--out", str(copy), "--config", str(lenient)]) == 0
    again = json.loads((copy / "report.json").read_text())
    assert again["config"]["verdict"]["precision_fraction"] == 100.0
    for name, entry in again["metrics"].items():
        assert entry["gt_correlation"] == report["metrics"][name]["gt_correlation"]  # kept
        if name != "gt_f1":  # the yardstick is not judged
            assert entry["verdict"]["precise"] is (entry["precision"]["median_ratio"] is not None)
    assert (copy / "results.jsonl").read_bytes() == values  # nothing was measured again
    assert "re-rendered" in capsys.readouterr().out
    assert main(["report", "--out", str(tmp_path / "nothing")]) == 2
    assert "no finished audit" in capsys.readouterr().err


def test_measurements_are_grouped_by_metric_seed_and_width_into_stacks(audited):
    from groundtruth.audit import measurement_groups
    from groundtruth.metrics.registry import get_metric
    from groundtruth.store import ResultStore

    out, report = audited
    widths = {s["id"]: s["width"] for s in report["saes"]}
    members = _members(report, params=lambda s: SimpleNamespace(d_sae=s["width"]))
    plan = plan_evaluations(study_from_dict(RAW), members)
    metrics = list(report["metrics"])
    wanted = {i: [(n, s) for s in plan[i] for n in metrics
                  if not (get_metric(n).deterministic and s != 0)] for i in widths}
    store = ResultStore(out / "results.jsonl")
    try:
        assert measurement_groups(members, wanted, store) == []  # a finished run: nothing
        missing = {k for k in list(store.values)[::3]}
        for key in missing:
            del store.values[key]
        groups = measurement_groups(members, wanted, store, stack_size=5)
    finally:
        store.close()
    covered = [(i, name, seed) for name, seed, ids in groups for i in ids]
    assert sorted(covered) == sorted(missing)  # every missing value, once
    for name, seed, ids in groups:
        assert len(ids) <= 5 and len({widths[i] for i in ids}) == 1, (name, seed, ids)


def _members(report, params=lambda s: None):
    from groundtruth.population import PopulationMember

    return [PopulationMember(origin=s["family"], params=params(s), **{
        k: s[k] for k in ("id", "kind", "architecture", "width", "knobs", "seed", "run",
                          "checkpoint", "step", "final")}) for s in report["saes"]]


def test_a_resumed_run_measures_only_the_values_lost_from_its_groups(audited, tmp_path):
    import shutil

    out, report = audited
    copy = tmp_path / "partial"
    shutil.copytree(out, copy)
    lines = (copy / "results.jsonl").read_text().splitlines()
    kept = lines[: len(lines) // 2] + lines[len(lines) // 2 + 7::2]  # whole and torn groups
    (copy / "results.jsonl").write_text("\n".join(kept) + "\n")
    (copy / "report.json").unlink()
    resumed = json.loads(run_audit(study_from_dict(RAW), copy, progress=False).read_text())
    assert resumed["metrics"] == report["metrics"]
    assert resumed["saes"] == report["saes"]
    values = [json.loads(line) for line in (copy / "results.jsonl").read_text().splitlines()]
    assert len(values) == len(lines)  # each lost value measured once, nothing measured twice
    original = {(r["sae"], r["metric"], r["seed"]): r["value"] for r in map(json.loads, lines)}
    assert {(r["sae"], r["metric"], r["seed"]): r["value"] for r in values} == original
