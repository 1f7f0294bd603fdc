"""A templated language whose every token is labelled with the attributes it carries.

A story is about one entity and one axis (a concept with a "high" and a "low" pole, like
victory / defeat under "outcome"); every sentence mentions the entity and a phrase of the
story's pole, with filler around it:

    "the knight won the final . later the knight celebrated the victory again ."

Token attributes (None where a token does not carry the attribute):
    word          the token itself, on every token
    category      the entity's category (person, animal, place, object), on entity words
    axis          the axis a pole phrase expresses, on the words of a pole phrase from the
                  first word whose phrase prefix belongs to one axis only
    pole          high / low, likewise from the first word whose prefix belongs to one pole
                  only (a causal model cannot know the pole of "was" in "was freezing cold")
    story_axis    the story's axis and pole, on every later mention of the entity (the
    story_pole    sentences after the first), where the model must recall them from the
                  context to predict the pole phrase that follows
    story_sense   both at once, "axis:pole", on the same tokens
    story_entity  the story's entity, on the "the" before every later mention, where the
                  model must recall it to predict the entity word

What a model represents at a later mention is the joint story_sense: measured at
blocks.0.hook_resid_post of the default model, the activation difference between a story and
its counterfactual at a mention has cosine 0.95 with the mean difference of its own
(axis, pole) and 0.08 with the mean over all axes, so there is no axis-free "pole" direction
there. Supervised dictionaries therefore use story_sense, not story_axis + story_pole
(`synthetic_saes.semisynthetic.world.DICTIONARY_ATTRIBUTES`).

The context attributes are placed where the next word depends on them, because that is where
a trained model is forced to carry them: a linear probe reads them there with near-perfect
accuracy, while on other tokens of the story they fade (measured: ~0.7 for story_pole).

Contrastive pairs (the same entity and axis, high vs low) are written in both
contrastive-stories schemas: v1 (pole phrases inside <subject> tags) and v4. Words are
separated by single spaces; a word-level tokenizer (`build_tokenizer`, the `tokenizers`
library) maps every word to one token, so labels are per token. A word outside the vocabulary
is an error, never an unknown token.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synthetic_saes.validation import reject_unknown_keys, require_positive_int, require_seed

__all__ = [
    "ATTRIBUTES", "LanguageConfig", "Language", "Story", "ENTITIES", "AXES",
]

# entity -> category
ENTITIES: dict[str, str] = {
    "knight": "person", "farmer": "person", "captain": "person", "child": "person",
    "merchant": "person", "baker": "person",
    "fox": "animal", "horse": "animal", "owl": "animal", "wolf": "animal", "bear": "animal",
    "heron": "animal",
    "village": "place", "harbour": "place", "castle": "place", "forest": "place",
    "market": "place", "valley": "place",
    "lantern": "object", "wagon": "object", "bell": "object", "clock": "object",
    "kettle": "object", "boat": "object",
}
CATEGORIES: tuple[str, ...] = ("person", "animal", "place", "object")

# axis -> (high phrases, low phrases); the i-th phrases of both poles have as many words, so a
# story and its counterfactual (`Language.counterfactual_pairs`) align token by token
AXES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "outcome": (("won the final", "celebrated the victory", "took the prize"),
                ("lost the final", "mourned the defeat", "missed the prize")),
    "temperature": (("was scorching hot", "melted in the heat", "burned in the sun"),
                    ("was freezing cold", "shivered in the frost", "froze in the snow")),
    "mood": (("laughed with joy", "felt delighted", "sang a happy song"),
             ("wept with sorrow", "felt miserable", "sang a sad song")),
    "speed": (("raced ahead quickly", "sprinted at full speed", "flew past everyone"),
              ("crawled along slowly", "dragged its tired feet", "lagged behind everyone")),
    "wealth": (("grew rich", "counted gold coins", "bought a fine coat"),
               ("grew poor", "begged for coins", "sold its last coat")),
    "light": (("shone very brightly", "glowed in the sunshine", "sparkled at noon"),
              ("sat in darkness", "vanished into the shadows", "faded at midnight")),
}
_OPENINGS = ("on a quiet morning", "late one evening", "after a long journey", "during the festival",
             "before the storm", "in the old days")
_LINKS = ("later", "then", "soon", "once more", "after that")
_ENDINGS = ("everyone talked about it", "nobody expected that", "the town remembered it",
            "it was a day like no other", "the bells rang")

# phrase prefix -> (axes, poles) of the phrases that start with it
_PREFIX_SENSES: dict[str, tuple[set[str], set[str]]] = {}
for _axis, _phrases in AXES.items():
    for _pole, _group in zip(("high", "low"), _phrases):
        for _phrase in _group:
            _words = _phrase.split()
            for _n in range(1, len(_words) + 1):
                _entry = _PREFIX_SENSES.setdefault(" ".join(_words[:_n]), (set(), set()))
                _entry[0].add(_axis)
                _entry[1].add(_pole)

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "category": CATEGORIES,
    "axis": tuple(AXES),
    "pole": ("high", "low"),
    "story_axis": tuple(AXES),
    "story_pole": ("high", "low"),
    "story_sense": tuple(f"{a}:{p}" for a in AXES for p in ("high", "low")),
    "story_entity": tuple(ENTITIES),
}
"""The attributes other than `word`, and their values."""


@dataclass(frozen=True, kw_only=True)
class LanguageConfig:
    """How stories are generated.

    Attributes:
        sentences: (min, max) sentences per story; each mentions the entity and a pole phrase.
        seed: the language's seed (chooses nothing by itself; kept with the model).
    """

    sentences: tuple[int, int] = (2, 4)
    seed: int = 0

    def __post_init__(self) -> None:
        lo, hi = self.sentences
        require_positive_int("sentences[0]", lo)
        if hi < lo:
            raise ValueError(f"sentences must be (min, max) with min <= max, got {self.sentences}")
        require_seed(self.seed)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["sentences"] = list(self.sentences)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LanguageConfig:
        reject_unknown_keys(cls, data)
        data = dict(data)
        if "sentences" in data:
            data["sentences"] = tuple(data["sentences"])
        return cls(**data)


@dataclass(frozen=True)
class Story:
    """A generated story: words and, per word, the value of every attribute (or None).

    Attributes:
        entity, axis, pole: what the story is about.
        words: tuple of words.
        labels: "word" and every attribute of ATTRIBUTES -> tuple (one value or None per
            word).
        marked: bool per word, True on the words of pole phrases (the v1 marks).
    """

    entity: str
    axis: str
    pole: str
    words: tuple[str, ...]
    labels: dict[str, tuple[str | None, ...]]
    marked: tuple[bool, ...]

    @property
    def text(self) -> str:
        return " ".join(self.words)

    def tagged_text(self) -> str:
        """The text with marked runs inside <subject> tags (schema v1)."""
        out, inside = [], False
        for word, mark in zip(self.words, self.marked):
            if mark and not inside:
                out.append("<subject>" + word)
                inside = True
            elif not mark and inside:
                out[-1] += "</subject>"
                out.append(word)
                inside = False
            else:
                out.append(word)
        if inside:
            out[-1] += "</subject>"
        return " ".join(out)


class Language:
    """The story generator and its vocabulary."""

    def __init__(self, config: LanguageConfig | None = None):
        self.config = config or LanguageConfig()
        words = {"the", ".", "again"}
        for text in (*_OPENINGS, *_LINKS, *_ENDINGS):
            words.update(text.split())
        for high, low in AXES.values():
            for phrase in (*high, *low):
                words.update(phrase.split())
        words.update(ENTITIES)
        self.vocabulary: tuple[str, ...] = tuple(sorted(words))

    def story(self, entity: str, axis: str, pole: str, rng: np.random.Generator) -> Story:
        """One story about `entity` on `axis` at `pole` ("high" or "low")."""
        if entity not in ENTITIES:
            raise ValueError(f"unknown entity {entity!r}; known: {sorted(ENTITIES)}")
        if axis not in AXES:
            raise ValueError(f"unknown axis {axis!r}; known: {sorted(AXES)}")
        if pole not in ("high", "low"):
            raise ValueError(f"pole must be 'high' or 'low', got {pole!r}")
        phrases = AXES[axis][0 if pole == "high" else 1]
        lo, hi = self.config.sentences
        n_sentences = int(rng.integers(lo, hi + 1))
        words: list[str] = []
        labels: dict[str, list[str | None]] = {name: [] for name in ("word", *ATTRIBUTES)}
        marked: list[bool] = []

        def add(text: str, *, entity_word: bool = False, pole_phrase: bool = False,
                later: bool = False) -> None:
            for i, word in enumerate(text.split()):
                words.append(word)
                labels["word"].append(word)
                labels["category"].append(ENTITIES[entity] if entity_word else None)
                prefix = " ".join(text.split()[:i + 1])
                axes, poles = _PREFIX_SENSES.get(prefix, (set(), set()))
                known_axis = pole_phrase and len(axes) == 1
                labels["axis"].append(axis if known_axis else None)
                labels["pole"].append(pole if known_axis and len(poles) == 1 else None)
                recall = entity_word and later
                labels["story_axis"].append(axis if recall else None)
                labels["story_pole"].append(pole if recall else None)
                labels["story_sense"].append(f"{axis}:{pole}" if recall else None)
                labels["story_entity"].append(entity if later and word == "the" else None)
                marked.append(pole_phrase)

        for s in range(n_sentences):
            lead = _OPENINGS[rng.integers(len(_OPENINGS))] if s == 0 else _LINKS[
                rng.integers(len(_LINKS))]
            add(lead)
            add("the", later=s > 0)
            add(entity, entity_word=True, later=s > 0)
            add(phrases[rng.integers(len(phrases))], pole_phrase=True)
            if s > 0 and rng.random() < 0.5:
                add("again")
            add(".")
        add(_ENDINGS[rng.integers(len(_ENDINGS))])
        add(".")
        return Story(entity, axis, pole, tuple(words), {k: tuple(v) for k, v in labels.items()},
                     tuple(marked))

    def random_story(self, rng: np.random.Generator) -> Story:
        entity = str(rng.choice(sorted(ENTITIES)))
        axis = str(rng.choice(sorted(AXES)))
        return self.story(entity, axis, "high" if rng.random() < 0.5 else "low", rng)

    def stories(self, n: int, *, seed: int) -> list[Story]:
        rng = np.random.default_rng(seed)
        return [self.random_story(rng) for _ in range(n)]

    def contrastive_pairs(self, n_pairs: int, *, seed: int) -> list[tuple[Story, Story]]:
        """Pairs (high, low) about the same entity and axis."""
        rng = np.random.default_rng(seed)
        pairs = []
        for _ in range(n_pairs):
            entity = str(rng.choice(sorted(ENTITIES)))
            axis = str(rng.choice(sorted(AXES)))
            pairs.append((self.story(entity, axis, "high", rng),
                          self.story(entity, axis, "low", rng)))
        return pairs

    def counterfactual_pairs(self, n_pairs: int, *, seed: int) -> list[tuple[Story, Story]]:
        """Minimal pairs: a story and the same story at the other pole (the same template
        choices, the pole phrases swapped), so both have the same length and differ only on
        pole phrase words. The first story's pole is drawn at random."""
        rng = np.random.default_rng(seed)
        pairs = []
        for _ in range(n_pairs):
            entity = str(rng.choice(sorted(ENTITIES)))
            axis = str(rng.choice(sorted(AXES)))
            pole, other = ("high", "low") if rng.random() < 0.5 else ("low", "high")
            state = rng.bit_generator.state
            source = self.story(entity, axis, pole, rng)
            rng.bit_generator.state = state  # the same draws: only the pole differs
            target = self.story(entity, axis, other, rng)
            if len(source.words) != len(target.words):
                raise AssertionError("pole phrases must have as many words at each index")
            pairs.append((source, target))
        return pairs

    def dataset_rows(self, n_pairs: int, *, seed: int, schema: str = "v4") -> list[dict]:
        """Contrastive rows in a contrastive-stories schema ("v1" tagged, or "v4")."""
        if schema not in ("v1", "v4"):
            raise ValueError(f"schema must be 'v1' or 'v4', got {schema!r}")
        rows = []
        for i, (a, b) in enumerate(self.contrastive_pairs(n_pairs, seed=seed)):
            if schema == "v1":
                rows.append({"story1": a.tagged_text(), "story2": b.tagged_text(),
                             "subject": a.axis})
            else:
                rows.append({"story1": a.text, "story2": b.text, "subject1": f"{a.axis} high",
                             "subject2": f"{a.axis} low", "subject_id": f"{a.axis}",
                             "subject_title": a.axis})
        return rows

    def check_words(self, words) -> None:
        """Raise ValueError naming any word outside the vocabulary."""
        vocab = set(self.vocabulary)
        unknown = sorted({w for w in words if w not in vocab})
        if unknown:
            raise ValueError(f"words outside the language's vocabulary: {unknown[:10]}")

    def build_tokenizer(self, directory: str | Path):
        """A word-level tokenizer of the vocabulary (one token per word), saved to `directory`
        and returned as a transformers PreTrainedTokenizerFast with <bos>, <eos>, <pad>."""
        from tokenizers import Tokenizer, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        specials = ["<bos>", "<eos>", "<pad>", "<unk>"]
        vocab = {token: i for i, token in enumerate([*specials, *self.vocabulary])}
        tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
        tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<bos>",
                                       eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")
        fast.save_pretrained(directory)
        return PreTrainedTokenizerFast.from_pretrained(directory)

    def encode(self, story: Story, tokenizer) -> np.ndarray:
        """Token ids [len(words)] of a story (no BOS); raises on words outside the vocabulary."""
        self.check_words(story.words)
        ids = tokenizer(story.text, add_special_tokens=False)["input_ids"]
        if len(ids) != len(story.words):
            raise ValueError("the tokenizer does not map one word to one token")
        return np.asarray(ids, dtype=np.int64)
