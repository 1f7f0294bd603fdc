import numpy as np
import pytest

from cebench.datasets import load_contrastive_dataset, parse_tagged_story, write_contrastive_dataset
from synthetic_saes.semisynthetic.language import (
    ATTRIBUTES, AXES, ENTITIES, Language, LanguageConfig, Story,
)


@pytest.fixture(scope="module")
def language():
    return Language()


def test_same_seed_same_stories(language):
    a = language.stories(20, seed=3)
    b = language.stories(20, seed=3)
    c = language.stories(20, seed=4)
    assert [s.words for s in a] == [s.words for s in b]
    assert [s.words for s in a] != [s.words for s in c]


def test_every_token_carries_its_labels(language):
    for story in language.stories(50, seed=0):
        n = len(story.words)
        assert set(story.labels) == {"word", *ATTRIBUTES}
        assert all(len(v) == n for v in story.labels.values())
        assert story.labels["word"] == story.words
        for attribute, values in ATTRIBUTES.items():
            assert {v for v in story.labels[attribute] if v is not None} <= set(values)
        mentions = [i for i, w in enumerate(story.words) if w == story.entity]
        assert len(mentions) >= 2
        # the first mention carries no recalled attributes, every later one does
        assert story.labels["story_pole"][mentions[0]] is None
        for i in mentions[1:]:
            assert story.labels["story_pole"][i] == story.pole
            assert story.labels["story_axis"][i] == story.axis
            assert story.labels["story_sense"][i] == f"{story.axis}:{story.pole}"
            assert story.labels["category"][i] == ENTITIES[story.entity]
            assert story.words[i - 1] == "the"
            assert story.labels["story_entity"][i - 1] == story.entity
        phrases = AXES[story.axis][0 if story.pole == "high" else 1]
        marked = " ".join(w for w, m in zip(story.words, story.marked) if m)
        assert any(p in marked for p in phrases)
        for i, mark in enumerate(story.marked):
            # a phrase word carries the pole once its phrase prefix tells the pole
            if story.labels["pole"][i] is not None:
                assert mark and story.labels["pole"][i] == story.pole
            if story.labels["axis"][i] is not None:
                assert mark and story.labels["axis"][i] == story.axis
        assert any(p is not None for p in story.labels["pole"])


def test_pole_labels_start_where_the_prefix_tells_the_pole(language):
    rng = np.random.default_rng(0)
    for _ in range(40):
        story = language.story("fox", "temperature", "low", rng)
        for i, word in enumerate(story.words):
            if word == "was" and story.marked[i]:  # "was freezing cold" / "was scorching hot"
                assert story.labels["axis"][i] == "temperature"
                assert story.labels["pole"][i] is None
            if word in ("freezing", "shivered", "froze"):
                assert story.labels["pole"][i] == "low"


def test_tags_mark_exactly_the_pole_phrases(language):
    story = language.stories(1, seed=7)[0]
    text, spans = parse_tagged_story(story.tagged_text())
    assert text == story.text
    starts = np.cumsum([0] + [len(w) + 1 for w in story.words[:-1]])
    marked = {int(s) for s, m in zip(starts, story.marked) if m}
    covered = {int(s) for s in starts if any(a <= s < b for a, b in spans)}
    assert covered == marked


@pytest.mark.parametrize("schema", ["v1", "v4"])
def test_dataset_rows_load_in_both_schemas(language, tmp_path, schema):
    rows = language.dataset_rows(5, seed=1, schema=schema)
    path = write_contrastive_dataset(rows, tmp_path / f"stories_{schema}.jsonl")
    dataset = load_contrastive_dataset(path)
    assert dataset.schema == schema and len(dataset) == 5
    pairs = language.contrastive_pairs(5, seed=1)
    for row, (high, low) in zip(dataset, pairs):
        assert row.story_a == high.text and row.story_b == low.text
        assert high.entity == low.entity and high.axis == low.axis
        assert (high.pole, low.pole) == ("high", "low")
        assert row.is_marked == (schema == "v1")


def test_tokenizer_maps_one_word_to_one_token(language, tmp_path):
    tokenizer = language.build_tokenizer(tmp_path)
    for story in language.stories(10, seed=2):
        ids = language.encode(story, tokenizer)
        assert len(ids) == len(story.words)
        assert tokenizer.unk_token_id not in ids.tolist()
    assert len(tokenizer) == len(language.vocabulary) + 4


def test_words_outside_the_vocabulary_are_errors(language, tmp_path):
    tokenizer = language.build_tokenizer(tmp_path)
    good = language.stories(1, seed=0)[0]
    bad = Story(good.entity, good.axis, good.pole, good.words[:-1] + ("dragon",), good.labels,
                good.marked)
    with pytest.raises(ValueError, match="dragon"):
        language.encode(bad, tokenizer)
    with pytest.raises(ValueError, match="vocabulary"):
        language.check_words(["the", "unicorn"])


def test_bad_story_requests_are_errors(language):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="entity"):
        language.story("dragon", "mood", "high", rng)
    with pytest.raises(ValueError, match="axis"):
        language.story("fox", "colour", "high", rng)
    with pytest.raises(ValueError, match="pole"):
        language.story("fox", "mood", "middle", rng)
    with pytest.raises(ValueError, match="schema"):
        language.dataset_rows(2, seed=0, schema="v2")
    with pytest.raises(ValueError, match="sentences"):
        LanguageConfig(sentences=(3, 2))


def test_config_round_trips():
    config = LanguageConfig(sentences=(2, 5), seed=3)
    assert LanguageConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown"):
        LanguageConfig.from_dict({"sentence": [1, 2]})


def test_counterfactual_pairs_differ_only_on_pole_phrases(language):
    pairs = language.counterfactual_pairs(30, seed=2)
    assert {s.pole for s, _ in pairs} == {"high", "low"}
    for source, target in pairs:
        assert (source.entity, source.axis) == (target.entity, target.axis)
        assert {source.pole, target.pole} == {"high", "low"}
        assert len(source.words) == len(target.words) and source.marked == target.marked
        for i, (a, b) in enumerate(zip(source.words, target.words)):
            if not source.marked[i]:
                assert a == b
        assert source.words != target.words
        assert source.labels["story_pole"] != target.labels["story_pole"]
    again = language.counterfactual_pairs(30, seed=2)
    assert [p[0].words for p in again] == [p[0].words for p in pairs]
