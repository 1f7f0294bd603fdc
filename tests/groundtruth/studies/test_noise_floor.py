"""groundtruth noise-floor: reseed noise of a metric on synthetic and real SAEs."""

from groundtruth.cli import main


def test_noise_floor_on_synthetic_saes(capsys):
    code = main(["noise-floor", "--metric", "ce_contrastive", "--metric", "gt_mcc",
                 "--world", "tiny", "--control", "oracle", "--family", "dropped:0.5",
                 "--seeds", "3"])
    assert code == 0
    out = capsys.readouterr().out
    assert "ce_contrastive on oracle/seed=0" in out and "MDD" in out
    assert "gt_mcc on dropped/fraction=0.5/seed=0" in out and "std 0 " in out


def test_noise_floor_on_a_real_sae(tmp_path, capsys):
    from cebench.demo import build_demo

    demo = build_demo(tmp_path / "demo", n_pairs=12)
    code = main(["noise-floor", "--metric", "ce_contrastive", "--metric", "ce_independent_v1",
                 "--sae", str(demo.sae_dirs[0]), "--model", str(demo.model),
                 "--dataset", str(demo.dataset_v1), "--seeds", "4",
                 "--cache-dir", str(tmp_path / "cache")])
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.count("MDD") == 2 and "over 4 seeds" in out
