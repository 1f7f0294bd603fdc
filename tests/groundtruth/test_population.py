import numpy as np

from groundtruth.population import _batches, trained_saes, training_configs
from groundtruth.study import study_from_dict
from synthetic_saes.rng import derive_seed
from synthetic_saes.training import train_population

PLAN = {"architectures": ["topk", "matryoshka_batchtopk", "relu_l1"], "widths": [16],
        "seeds": [0, 1], "n_checkpoints": 2, "training_samples": 256 * 6, "batch_size": 256,
        "sparsity": {"topk": [2, 4], "matryoshka_batchtopk": [2], "relu_l1": [1.0]},
        "matryoshka_fractions": [0.5, 1.0]}


def test_trained_saes_trains_every_run_once_and_each_equals_its_run_alone(tiny_world, tmp_path):
    plan = study_from_dict({"study": {"name": "t"}, "world": {"preset": "tiny"},
                            "training": PLAN}).training
    members = trained_saes(tiny_world, plan, tmp_path)
    runs = training_configs(plan)
    assert len(members) == len(runs) * 2 * 2  # runs x seeds x checkpoints
    assert {m.run for m in members} == {key for key, *_ in runs}
    assert {m.architecture for m in members if m.origin == "matryoshka_batchtopk"} == {"jumprelu"}
    # the topk k=4 run equals training it alone on the same buffer
    key, config, _, _ = next(r for r in runs if r[0] == "topk/k=4/w16")
    buffer = tiny_world.sample(plan.training_samples,
                               seed=derive_seed(plan.data_seed, "training-data")).hidden
    alone = train_population(_batches(buffer, plan.batch_size), config, seeds=plan.seeds,
                             progress=False)
    final = {m.seed: m.params for m in members if m.run == key and m.final}
    for s_index, seed in enumerate(plan.seeds):
        np.testing.assert_allclose(final[seed].W_enc, alone.params(s_index).W_enc,
                                   rtol=1e-5, atol=1e-6)
    # a resumed audit loads every saved run instead of training again
    again = trained_saes(tiny_world, plan, tmp_path)
    for a, b in zip(members, again, strict=True):
        assert a.id == b.id and np.array_equal(a.params.W_dec, b.params.W_dec)


def test_a_crash_mid_training_keeps_every_group_that_finished(tiny_world, tmp_path,
                                                              monkeypatch, capsys):
    import groundtruth.population as population

    plan = study_from_dict({"study": {"name": "t"}, "world": {"preset": "tiny"},
                            "training": PLAN}).training
    real, calls = population.train_runs, []

    def crash_on_second_group(*args, **kwargs):
        calls.append([c.architecture for c in args[1]])
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user (or the machine) stops the run
        return real(*args, **kwargs)

    monkeypatch.setattr(population, "train_runs", crash_on_second_group)
    try:
        trained_saes(tiny_world, plan, tmp_path, progress=True)
    except KeyboardInterrupt:
        pass
    assert calls[0] == ["topk", "topk"]  # one group: one architecture and width
    saved = sorted(p.name for p in (tmp_path / "populations").iterdir())
    assert saved == ["topk__k=2__w16", "topk__k=4__w16"]
    assert "group 1/3: topk w16, 2 runs" in capsys.readouterr().err
    monkeypatch.setattr(population, "train_runs", real)
    calls.clear()

    def count(*args, **kwargs):
        calls.append([c.architecture for c in args[1]])
        return real(*args, **kwargs)

    monkeypatch.setattr(population, "train_runs", count)
    members = trained_saes(tiny_world, plan, tmp_path)
    assert calls == [["matryoshka_batchtopk"], ["relu_l1"]]  # the finished group is loaded
    assert len(members) == len(training_configs(plan)) * 2 * 2
