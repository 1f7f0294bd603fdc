"""groundtruth noise-floor: reseed noise of a metric on synthetic and real SAEs."""

import pytest

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


def test_a_real_noise_floor_seed_scores_a_fresh_corpus_of_the_full_size(tmp_path):
    """Seed s scores the dataset's rows drawn with replacement at the full size: the value
    equals CE-Bench on exactly those rows, and no knob sets how many rows are drawn."""
    import numpy as np

    from cebench.activations import cached_activations
    from cebench.core import score_activations
    from cebench.datasets import load_contrastive_dataset
    from cebench.demo import build_demo
    from cebench.saes import load_sae
    from groundtruth.studies.noise_floor import real_noise_floor
    from synthetic_saes.rng import derive_seed

    demo = build_demo(tmp_path / "demo", n_pairs=12)
    floor, = real_noise_floor(["ce_contrastive"], str(demo.sae_dirs[0]), model=str(demo.model),
                              dataset=demo.dataset_v4, seeds=3, cache_dir=tmp_path / "cache")
    sae = load_sae(str(demo.sae_dirs[0]))
    acts = cached_activations(str(demo.model), sae.cfg.metadata.hook_name,
                              load_contrastive_dataset(demo.dataset_v4),
                              cache_dir=tmp_path / "cache")
    pairs = acts.pairs()
    for seed, value in enumerate(floor.values):
        rows = np.sort(np.random.default_rng(derive_seed(seed, "noise-floor-corpus"))
                       .integers(0, len(pairs), len(pairs)))
        assert len(rows) == 12 and len(set(rows)) < 12  # full size, with repeats
        expected = score_activations(sae, [pairs[r] for r in rows]).contrastive
        assert value == pytest.approx(expected, rel=1e-5)
    assert floor.noise.std > 0


def test_a_real_v1_noise_floor_skips_the_rows_cebench_score_skips(tmp_path):
    """On v1 the resampled corpora come from the rows `cebench score` scores: none of the
    'relevance to' rows, unless they are kept."""
    import numpy as np

    from cebench.activations import cached_activations
    from cebench.core import score_activations
    from cebench.datasets import load_contrastive_dataset, write_contrastive_dataset
    from cebench.demo import build_demo, demo_rows
    from cebench.saes import load_sae
    from groundtruth.studies.noise_floor import real_noise_floor
    from synthetic_saes.rng import derive_seed

    demo = build_demo(tmp_path / "demo", n_pairs=8)
    rows = demo_rows(8, schema="v1", seed=0)
    rows[1] = {**rows[1], "subject": "relevance to the golden gate bridge"}
    dataset_path = write_contrastive_dataset(rows, tmp_path / "stories.jsonl")
    args = dict(model=str(demo.model), dataset=dataset_path, seeds=2, cache_dir=tmp_path / "c")
    skipped, = real_noise_floor(["ce_contrastive_v1"], str(demo.sae_dirs[0]), **args)
    kept, = real_noise_floor(["ce_contrastive_v1"], str(demo.sae_dirs[0]), **args,
                             keep_relevance_rows=True)
    sae = load_sae(str(demo.sae_dirs[0]))
    acts = cached_activations(str(demo.model), sae.cfg.metadata.hook_name,
                              load_contrastive_dataset(dataset_path), cache_dir=tmp_path / "c")
    pairs, marks = acts.pairs(), acts.marks()
    for floor, eligible in ((skipped, np.array([0, 2, 3, 4, 5, 6, 7])), (kept, np.arange(8))):
        for seed, value in enumerate(floor.values):
            rng = np.random.default_rng(derive_seed(seed, "noise-floor-corpus"))
            chosen = np.sort(eligible[rng.integers(0, len(eligible), len(eligible))])
            expected = score_activations(sae, [pairs[r] for r in chosen], variant="v1",
                                         marked=[marks[r] for r in chosen]).contrastive
            assert value == pytest.approx(expected, rel=1e-5)
