"""The groundtruth command: every bad input is a one-line error naming the problem, exit code
2, no traceback, and no run folder left behind."""

import pytest

from groundtruth.cli import main

TINY = """
[study]
name = "bad"
kind = "audit"
seed = 0
[world]
preset = "tiny"
[families]
names = ["decoder_noise"]
controls = true
[training]
architectures = ["topk"]
widths = [16]
seeds = [0, 1]
lr = 0.003
[training.sparsity]
topk = [2, 4]
[lenses]
reseed_seeds = 3
[verdict]
track_low = 0.5
"""


def _with(old: str, new: str) -> str:
    assert old in TINY, old
    return TINY.replace(old, new, 1)


BAD_CONFIGS = {
    "lr is a word": (_with("lr = 0.003", 'lr = "fast"'),
                     "[training] lr must be a number, got 'fast'"),
    "a count is a string": (_with("reseed_seeds = 3", 'reseed_seeds = "5"'),
                            "[lenses] reseed_seeds must be an integer, got '5'"),
    "a threshold is a word": (_with("track_low = 0.5", 'track_low = "high"'),
                              "[verdict] track_low must be a number, got 'high'"),
    "a threshold is out of range": (_with("track_low = 0.5", "track_low = 5.0"),
                                    "verdict.track_low is a Spearman correlation, in [-1, 1]"),
    "a switch is a word": (_with("controls = true", 'controls = "yes"'),
                           "[families] controls must be true or false, got 'yes'"),
    "a list is a string": (_with('names = ["decoder_noise"]', 'names = "decoder_noise"'),
                           "[families] names must be a list of a string"),
    "the seed is a word": (_with("seed = 0", 'seed = "abc"'),
                           "[study] seed must be a non-negative integer, got 'abc'"),
    "a negative learning rate": (_with("lr = 0.003", "lr = -0.003"),
                                 "training.lr must be a positive number, got -0.003"),
    "a negative k": (_with("topk = [2, 4]", "topk = [-8]"),
                     "training.sparsity levels must be positive numbers"),
    "k above the width": (_with("topk = [2, 4]", "topk = [100000]"),
                          "topk needs 1 <= k <= d_sae=16, got 100000"),
    "metrics names is a string": (TINY + '[metrics]\nnames = "gt_f1"\n',
                                  '[metrics] names must be "all" or a list of metric names'),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_a_bad_config_is_one_line_before_any_work(name, tmp_path, capsys):
    text, message = BAD_CONFIGS[name]
    config = tmp_path / "study.toml"
    config.write_text(text)
    out = tmp_path / "run"
    assert main(["audit", "--config", str(config), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err, err
    assert not (out / "study.json").exists() and not out.exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["noise-floor", "--metric", "ce_contrast", "--control", "oracle"],
     "unknown metric 'ce_contrast'"),
    (["noise-floor", "--metric", "gt_f1", "--world", "tiny"], "name SAEs"),
    (["noise-floor", "--metric", "gt_f1", "--world", "tiny", "--family", "noisy:1"],
     "unknown family 'noisy'"),
    (["noise-floor", "--metric", "gt_f1", "--world", "tiny", "--family", "decoder_noise:abc"],
     "--family decoder_noise:abc: the knob value must be a number"),
    (["audit", "--confg", "x.toml"], "unrecognized arguments: --confg x.toml"),
])
def test_command_errors_are_one_line(argv, message, capsys):
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse's own errors exit from inside main
        code = exit_info.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err


def test_out_pointing_at_a_file_is_refused(tmp_path, capsys):
    existing = tmp_path / "a_file"
    existing.write_text("")
    assert main(["audit", "--out", str(existing), "--no-progress"]) == 2
    assert "is a file; a run folder is a directory" in capsys.readouterr().err


def test_command_errors_are_clear(capsys, tmp_path):
    assert main(["noise-floor", "--metric", "ce_contrast", "--control", "oracle"]) == 2
    assert "unknown metric 'ce_contrast'" in capsys.readouterr().err
    assert main(["noise-floor", "--metric", "gt_f1", "--world", "tiny"]) == 2
    assert "name SAEs" in capsys.readouterr().err
    assert main(["noise-floor", "--metric", "gt_f1", "--world", "tiny", "--family", "noisy:1"]) == 2
    assert "unknown family 'noisy'" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('[study]\nname = "x"\nkind = "audit"\n[trainin]\nwidths = [1]\n')
    assert main(["audit", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "unknown study sections ['trainin']" in capsys.readouterr().err


PLUGIN = """
from groundtruth import register_metric

@register_metric("{metric}", seed_changes="the evaluation samples")
def fraction_active(sae, data, seed):
    return float((sae.encode(data.eval_sample(seed).hidden) > 0).mean())
"""


@pytest.mark.parametrize("how", ["flag", "toml"])
def test_a_registered_metric_reaches_the_command(how, tmp_path, monkeypatch, capsys):
    """A study names a metric that a user's module registers, imported by --plugin or by
    [metrics] modules. The run is stopped by a bad threshold checked after the metric names,
    so its error proves the metric was known."""
    module, metric = f"user_metrics_{how}", f"user_fraction_active_{how}"
    (tmp_path / f"{module}.py").write_text(PLUGIN.format(metric=metric))
    monkeypatch.chdir(tmp_path)
    modules = f'\nmodules = ["{module}"]' if how == "toml" else ""
    config = tmp_path / "study.toml"
    config.write_text(_with("track_low = 0.5", "track_low = 5.0")
                      + f'[metrics]\nnames = ["{metric}", "gt_f1"]{modules}\n')
    argv = ["audit", "--config", str(config), "--out", str(tmp_path / "o")]
    if how == "flag":
        assert main(argv) == 2  # without the plugin the study cannot name the metric
        assert f"unknown metric '{metric}'" in capsys.readouterr().err
        argv += ["--plugin", module]
    assert main(argv) == 2
    assert "verdict.track_low is a Spearman correlation" in capsys.readouterr().err
    assert main(argv + ["--plugin", "no_such_module_here"]) == 2
    assert "cannot import metric module 'no_such_module_here'" in capsys.readouterr().err
