"""The groundtruth command: errors a user can act on."""

from groundtruth.cli import main


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
