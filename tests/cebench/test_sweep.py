import json

import numpy as np
import pytest
import torch

from cebench.cli import main
from cebench.datasets import load_contrastive_dataset, tokenize_dataset
from cebench.models import load_model
from cebench.reference import reference_pipeline
from cebench.saes import load_sae
from cebench.sweep import SAESource, ScoreConfig, result_path, run_sweep


def score_cli(demo, out, *extra):
    args = ["score", "--dataset", str(demo.dataset_v1), "--output-folder", str(out),
            "--model", str(demo.model), "--no-progress", *extra]
    return main(args)


def test_cebench_score_writes_saebench_style_results(demo, tmp_path):
    sae_args = [a for path in demo.sae_dirs for a in ("--sae", str(path))]
    assert score_cli(demo, tmp_path, *sae_args) == 0
    files = sorted(tmp_path.glob("*_eval_results.json"))
    assert len(files) == len(demo.sae_dirs)
    result = json.loads(files[0].read_text())
    assert result["eval_type_id"] == "ce_bench"
    metrics = result["eval_result_metrics"]["ce_bench"]
    for key in ("contrastive_score", "independent_score", "interpretability_score",
                "sparsity_aware_score", "l0", "contrastive_score_calibrated"):
        assert np.isfinite(metrics[key])
    for key in ("eval_config", "eval_id", "datetime_epoch_millis", "eval_result_details",
                "sae_lens_id", "sae_lens_release_id", "sae_lens_version", "sae_cfg_dict",
                "contrastive_dataset", "sae_release", "sae_id", "contrastive_score_mean",
                "independent_score_mean", "interpretability_score_mean", "total_rows",
                "sae_config", "date"):
        assert key in result, key
    assert result["eval_config"]["variant"] == "v1"  # the tagged dataset
    assert result["contrastive_score_mean"]["max"] == metrics["contrastive_score"]
    assert len(result["eval_result_details"]) == result["total_rows"] == 24
    assert "NaN" not in files[0].read_text()


def test_scores_equal_the_reference_pipeline(demo, tmp_path):
    """Ours (batched, cached, JAX core) against the reference's loop, for every SAE format."""
    dataset = load_contrastive_dataset(demo.dataset_v1, limit=8)
    model = load_model(demo.model)
    pairs = tokenize_dataset(dataset, model.tokenizer)
    sources = [SAESource(str(p)) for p in demo.sae_dirs[:3]] + [SAESource(str(demo.gemma_scope_npz))]
    for variant in ("v1", "v4"):
        results = run_sweep(sources, dataset_path=demo.dataset_v1, output_folder=tmp_path / variant,
                            model=str(demo.model), hook_name=demo.hook_name,
                            config=ScoreConfig(variant=variant, limit=8), progress=False)
        for spec, result in zip(sources, results, strict=True):
            sae = load_sae(spec.source, hook_name=demo.hook_name, model_name=str(demo.model)) \
                if spec.source.endswith(".npz") else load_sae(spec.source)
            expected = reference_pipeline(lambda: model, sae, pairs, variant=variant)
            for score in ("contrastive", "independent", "interpretability"):
                for pooling, value in expected[score].items():
                    got = result.scores.pooled[score][pooling]
                    assert got == pytest.approx(value, rel=1e-4, abs=1e-4), (spec, score, pooling)
            assert result.scores.l0 == pytest.approx(expected["l0"], rel=1e-6)


def test_an_interrupted_sweep_resumes_without_rescoring(demo, tmp_path, monkeypatch):
    import cebench.sweep as sweep

    sources = [SAESource(str(p)) for p in demo.sae_dirs]
    real = sweep.segment_sums
    calls = []

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep, "segment_sums", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(sources, dataset_path=demo.dataset_v4, output_folder=tmp_path,
                  model=str(demo.model), progress=False)
    done = sorted(tmp_path.glob("*.json"))
    assert len(done) == 2
    stamps = {p: p.stat().st_mtime_ns for p in done}
    monkeypatch.setattr(sweep, "segment_sums", real)
    results = run_sweep(sources, dataset_path=demo.dataset_v4, output_folder=tmp_path,
                        model=str(demo.model), progress=False)
    assert [r.status for r in results] == ["skipped", "skipped", "scored", "scored"]
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    forced = run_sweep(sources[:1], dataset_path=demo.dataset_v4, output_folder=tmp_path,
                       model=str(demo.model), progress=False, force=True)
    assert forced[0].status == "scored"
    changed = run_sweep(sources[:1], dataset_path=demo.dataset_v4, output_folder=tmp_path,
                        model=str(demo.model), progress=False, config=ScoreConfig(alpha=1.0))
    assert changed[0].status == "scored", "new settings must not reuse an old result"


def test_a_pretrained_release_goes_through_sae_lens_from_pretrained(demo, tmp_path, monkeypatch):
    from sae_lens import SAE

    local = SAE.load_from_disk(demo.sae_dirs[1])
    seen = []

    def fake_from_pretrained(release, sae_id, **kwargs):
        seen.append((release, sae_id))
        return local

    monkeypatch.setattr(SAE, "from_pretrained", staticmethod(fake_from_pretrained))
    code = main(["score", "--sae-regex", "gpt2-small-res-jb", "--sae-block",
                 "blocks.0.hook_resid_pre", "--dataset", str(demo.dataset_v4),
                 "--model", str(demo.model), "--output-folder", str(tmp_path), "--no-progress"])
    assert code == 0 and seen == [("gpt2-small-res-jb", "blocks.0.hook_resid_pre")]
    assert result_path(tmp_path, "gpt2-small-res-jb", "blocks.0.hook_resid_pre").exists()


def test_bad_input_gives_clear_errors(demo, tmp_path, capsys):
    from cebench.datasets import write_contrastive_dataset
    from synthetic_saes.sae_params import SAEParams

    assert score_cli(demo, tmp_path, "--sae", "no-such-sae") == 2
    assert "unknown SAE 'no-such-sae'" in capsys.readouterr().err
    assert score_cli(demo, tmp_path) == 2
    assert "choose SAEs" in capsys.readouterr().err
    rng = np.random.default_rng(0)
    wrong = SAEParams(W_enc=rng.standard_normal((7, 16)), b_enc=np.zeros(16),
                      W_dec=rng.standard_normal((16, 7)), b_dec=np.zeros(7))
    wrong.save(tmp_path / "wrong", model_name=str(demo.model), hook_name=demo.hook_name)
    assert score_cli(demo, tmp_path / "out", "--sae", str(tmp_path / "wrong")) == 2
    assert "has d_in=7 but the model's activations" in capsys.readouterr().err
    broken = write_contrastive_dataset([{"story1": "a b c"}], tmp_path / "broken.jsonl")
    assert main(["score", "--dataset", str(broken), "--sae", str(demo.sae_dirs[0]),
                 "--output-folder", str(tmp_path), "--no-progress"]) == 2
    assert "story2" in capsys.readouterr().err
    assert main(["score", "--dataset", str(demo.dataset_v4), "--variant", "v1",
                 "--sae", str(demo.sae_dirs[0]), "--output-folder", str(tmp_path),
                 "--no-progress"]) == 2
    assert "needs a dataset with <subject> marks" in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("*.json")), "no result file for a failed SAE"


def test_gemma_scope_shaped_sae_scored_end_to_end(tmp_path):
    """A jumprelu SAE of Gemma Scope's shape (d_in 2304, d_sae 16384) in a params.npz, on a
    one-layer model of width 2304, through `cebench score`."""
    from cebench.datasets import write_contrastive_dataset
    from cebench.demo import demo_rows
    from cebench.models import make_tiny_model, save_model
    from cebench.saes import write_gemma_scope_npz
    from cebench.tokenizer import build_local_tokenizer
    from synthetic_saes.sae_params import SAEParams

    rows = demo_rows(6, schema="v4", seed=3)
    dataset = write_contrastive_dataset(rows, tmp_path / "stories.jsonl")
    tokenizer = build_local_tokenizer([r[k] for r in rows for k in ("story1", "story2")],
                                      tmp_path / "model", vocab_size=300)
    model = make_tiny_model(tokenizer, n_layers=1, d_model=2304, n_heads=2, d_mlp=64)
    save_model(model, tmp_path / "model")
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((2304, 16384)) * 0.02).astype(np.float32)
    params = SAEParams(W_enc=W, b_enc=np.zeros(16384), W_dec=W.T, b_dec=np.zeros(2304),
                       architecture="jumprelu", threshold=np.full(16384, 0.05, np.float32),
                       apply_b_dec_to_input=False)
    npz = write_gemma_scope_npz(params, tmp_path / "gemma-scope-2b-pt-res" / "layer_0"
                                / "width_16k" / "average_l0_50" / "params.npz")
    code = main(["score", "--sae", str(npz), "--model", str(tmp_path / "model"),
                 "--dataset", str(dataset), "--output-folder", str(tmp_path / "out"),
                 "--max-tokens", "24", "--no-progress"])
    assert code == 0
    path = result_path(tmp_path / "out", "gemma-scope-2b-pt-res", "layer_0/width_16k/average_l0_50")
    result = json.loads(path.read_text())
    assert result["sae_cfg_dict"]["d_sae"] == 16384 and result["sae_cfg_dict"]["d_in"] == 2304
    assert result["sae_cfg_dict"]["architecture"] == "jumprelu"
    metrics = result["eval_result_metrics"]["ce_bench"]
    assert 0 < metrics["contrastive_score"] <= (16384 - 1) / np.sqrt(16384)
    assert metrics["l0"] > 0


def test_shards_split_the_saes_between_machines(demo, tmp_path):
    sae_args = [a for path in demo.sae_dirs for a in ("--sae", str(path))]
    for k in range(3):
        assert score_cli(demo, tmp_path, *sae_args, "--shard", f"{k}/3") == 0
    assert len(list(tmp_path.glob("*_eval_results.json"))) == len(demo.sae_dirs)
    assert score_cli(demo, tmp_path, *sae_args, "--shard", "3/3") == 2


def test_distributed_run_over_two_processes_matches_one(demo, tmp_path):
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    common = ["score", "--sae", str(demo.sae_dirs[1]), "--dataset", str(demo.dataset_v4),
              "--model", str(demo.model), "--no-progress"]
    launcher = ("import os, sys, jax; "
                "os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=2'; "
                "jax.config.update('jax_cpu_collectives_implementation', 'gloo'); "
                "from cebench.cli import main; sys.exit(main(sys.argv[1:]))")
    procs = [subprocess.Popen(
        [sys.executable, "-c", launcher, *common, "--output-folder", str(tmp_path / "multi"),
         "--cache-dir", str(tmp_path / f"cache{i}"), "--distributed",
         "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    assert main([*common, "--output-folder", str(tmp_path / "single")]) == 0
    multi = list((tmp_path / "multi").glob("*_eval_results.json"))
    single = list((tmp_path / "single").glob("*_eval_results.json"))
    assert len(multi) == 1 and len(single) == 1
    got = json.loads(multi[0].read_text())["eval_result_metrics"]["ce_bench"]
    expected = json.loads(single[0].read_text())["eval_result_metrics"]["ce_bench"]
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key


# ---- results that belong to their SAE ---------------------------------------------------------


def _twin_saes(demo, root):
    """Two different SAEs whose folders give the same label (runs_a/saes/final and
    runs_b/saes/final, both labelled saes/final)."""
    import shutil

    twins = []
    for name, source in (("runs_a", demo.sae_dirs[0]), ("runs_b", demo.sae_dirs[1])):
        target = root / name / "saes" / "final"
        shutil.copytree(source, target)
        twins.append(target)
    return twins


def test_two_saes_with_one_label_are_refused_before_any_work(demo, tmp_path):
    a, b = _twin_saes(demo, tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=f"{a} and {b} have the same label saes/final"):
        run_sweep([SAESource(str(a)), SAESource(str(b))], dataset_path=demo.dataset_v4,
                  output_folder=out, model=str(demo.model), progress=False)
    assert not out.exists()


def test_another_saes_result_is_never_replaced_silently(demo, tmp_path):
    a, b = _twin_saes(demo, tmp_path)
    out = tmp_path / "out"
    common = dict(dataset_path=demo.dataset_v4, output_folder=out, model=str(demo.model),
                  config=ScoreConfig(limit=6), progress=False)
    first, = run_sweep([SAESource(str(a))], **common)
    saved = json.loads(first.path.read_text())
    assert saved["sae_identity"]["source"] == str(a.resolve())
    again, = run_sweep([SAESource(str(a))], **common)
    assert again.status == "skipped"  # the same SAE: resumed, not rescored
    with pytest.raises(ValueError, match=f"holds the result of another SAE \\({a.resolve()}\\)"):
        run_sweep([SAESource(str(b))], **common)
    assert json.loads(first.path.read_text()) == saved
    forced, = run_sweep([SAESource(str(b))], **common, force=True)
    assert forced.status == "scored"
    assert json.loads(forced.path.read_text())["sae_identity"]["source"] == str(b.resolve())


def test_results_validate_against_saebench_and_are_ordinary_files(demo, tmp_path):
    import os
    from pathlib import Path

    import jsonschema

    schema = json.loads((Path(__file__).parent / "data" /
                         "saebench_base_eval_output.schema.json").read_text())
    previous = os.umask(0o022)
    try:
        sources = [SAESource(str(demo.sae_dirs[0])), SAESource(str(demo.gemma_scope_npz))]
        results = run_sweep(sources, dataset_path=demo.dataset_v1, output_folder=tmp_path,
                            model=str(demo.model), hook_name=demo.hook_name,
                            config=ScoreConfig(limit=6), progress=False)
    finally:
        os.umask(previous)
    for result in results:
        payload = json.loads(result.path.read_text())
        jsonschema.validate(payload, schema)
        assert payload["sae_bench_commit_hash"] == "Unknown"
        assert result.path.stat().st_mode & 0o777 == 0o644
    broken = {**payload, "sae_bench_commit_hash": None}  # what we used to write
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_v1_skips_relevance_rows_as_the_reference_does(demo, tmp_path):
    from cebench.datasets import write_contrastive_dataset
    from cebench.demo import demo_rows

    rows = demo_rows(6, schema="v1", seed=3)
    rows[2] = {**rows[2], "subject": "relevance to the golden gate bridge"}
    path = write_contrastive_dataset(rows, tmp_path / "stories.jsonl")
    common = dict(dataset_path=path, model=str(demo.model), progress=False)
    skipped, = run_sweep([SAESource(str(demo.sae_dirs[0]))], output_folder=tmp_path / "a",
                         **common)
    kept, = run_sweep([SAESource(str(demo.sae_dirs[0]))], output_folder=tmp_path / "b",
                      config=ScoreConfig(keep_relevance_rows=True), **common)
    assert skipped.scores.n_pairs == 5 and kept.scores.n_pairs == 6
    subjects = [d["subject"] for d in json.loads(skipped.path.read_text())["eval_result_details"]]
    assert not any("relevance to " in s for s in subjects)
    assert json.loads(skipped.path.read_text())["eval_config"]["keep_relevance_rows"] is False
    v4, = run_sweep([SAESource(str(demo.sae_dirs[0]))], output_folder=tmp_path / "c",
                    config=ScoreConfig(variant="v4"), **common)
    assert v4.scores.n_pairs == 6  # the final algorithm scores every row


def test_the_help_says_v1_skips_relevance_rows(capsys):
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    assert "--keep-relevance-rows" in capsys.readouterr().out
