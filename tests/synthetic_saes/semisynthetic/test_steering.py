import numpy as np
import pytest

from synthetic_saes.semisynthetic.steering import (
    best_matching_latent, compare_steering, steering_effect, steering_targets,
)
from synthetic_saes.semisynthetic.steering_rows import SteeringRow, read_steering_csv


def test_best_matching_latent_is_the_closest_decoder_row(tiny_language_controls):
    oracle = tiny_language_controls["oracle"]
    for k in (0, 7, oracle.d_sae - 1):
        latent, cos = best_matching_latent(oracle, 3.0 * oracle.W_dec[k])
        assert latent == k and cos == pytest.approx(1.0, abs=1e-5)


def test_steering_with_the_dictionary_flips_the_pole_and_keeps_the_axis(
        tiny_language_world, tiny_language_controls, tmp_path):
    world = tiny_language_world
    oracle = tiny_language_controls["oracle"]
    saes = {"dictionary": (oracle, oracle.save(tmp_path / "oracle",
                                               hook_name=world.config.hook_name)),
            "random": (tiny_language_controls["random_init"],
                       tiny_language_controls["random_init"].save(
                           tmp_path / "random", hook_name=world.config.hook_name))}
    report = compare_steering(world, saes, tmp_path / "csv", multipliers=(0.0, 4.0),
                              n_stories=6)
    assert len(report["targets"]) == len(steering_targets()) == 12
    dictionary = report["steerers"]["dictionary"]["by_multiplier"]
    assert dictionary["0"]["success_rate"] == report["unsteered"]["success_rate"] < 0.1
    assert dictionary["0"]["other_kl"] == pytest.approx(0.0, abs=1e-9)
    assert dictionary["4"]["success_rate"] > 0.5  # the tiny model; the default one: 1.0
    assert dictionary["4"]["axis_accuracy"] > 0.5  # default model: 1.0
    random = report["steerers"]["random"]
    assert max(c for _, c in random["latents"].values()) < 0.6
    rows = read_steering_csv(tmp_path / "csv" / "steering_dictionary_x4.csv")
    assert len(rows) == 12 and {r.hookpoint for r in rows} == {world.config.hook_name}
    names = world.feature_names
    assert {names[r.feature_index].split("=")[0] for r in rows} == {"story_sense"}


def test_steering_needs_stories_of_one_pole(tiny_language_world, tmp_path):
    world = tiny_language_world
    stories = world.language.stories(8, seed=0)
    row = SteeringRow(loader="sae_lens", sparse_model=str(tmp_path), feature_index=0,
                      steering_coefficient=1.0)
    with pytest.raises(ValueError, match="one pole"):
        steering_effect(world, [row], stories)
    with pytest.raises(ValueError, match="dictionary"):
        compare_steering(world, {}, tmp_path)
    assert np.isfinite(steering_effect(world, [], [s for s in stories if s.pole == "high"])
                       .other_kl)
