"""What metrics measure SAEs on: a world plus seeded, cached samples, corpora and probe sets.

`AuditData(world, config)` hands every metric the same inputs for the same seed, drawn once and
shared by all SAEs: `eval_sample(seed)` (world samples with true features), `corpus(seed)` (a
contrastive story corpus) and `probe_sets(seed)` (class-balanced train/test splits for k-sparse
probing tasks). A small memo lets metrics that share work (all ground-truth metrics of one SAE
and seed come from one pass) compute it once; `memo_many` does the same for a stack of SAEs
(the batch forms: one pass computes the shared result of every SAE of the stack).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from groundtruth.metrics.probing import ProbeSet, choose_probe_features, sample_probing_data
from synthetic_saes.base_world import BaseWorld, WorldSample
from synthetic_saes.corpora import ContrastiveCorpus, CorpusConfig, make_corpus
from synthetic_saes.rng import derive_seed
from synthetic_saes.validation import (
    check_field_types, reject_unknown_keys, require_positive_int,
)

__all__ = ["DataConfig", "AuditData"]


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Sizes of what metrics are measured on.

    Attributes:
        eval_samples: world samples for ground-truth and reconstruction metrics.
        corpus: the contrastive corpus (its seed is replaced by each metric seed).
        probe_tasks: number of k-sparse probing tasks (true features to detect).
        probe_examples: examples per task and split, half of each class (an odd number is
            rounded down).
        probe_pool: world samples drawn per seed to build the probing sets.
        probe_min_rate, probe_max_rate: firing-probability range of probed features.
        seed: the study seed (chooses the probed features; metric seeds do not change them).
    """

    eval_samples: int = 4096
    corpus: CorpusConfig = field(default_factory=lambda: CorpusConfig(
        n_subjects=16, pairs_per_subject=2, story_length=(32, 64)))
    probe_tasks: int = 8
    probe_examples: int = 256
    probe_pool: int = 16384
    probe_min_rate: float = 0.02
    probe_max_rate: float = 0.3
    seed: int = 0

    def __post_init__(self) -> None:
        check_field_types(self, "data")
        for name in ("eval_samples", "probe_tasks", "probe_examples", "probe_pool"):
            require_positive_int(name, getattr(self, name))
        if not 0 < self.probe_min_rate < self.probe_max_rate <= 1:
            raise ValueError("need 0 < probe_min_rate < probe_max_rate <= 1, got "
                             f"{self.probe_min_rate}, {self.probe_max_rate}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["corpus"] = self.corpus.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataConfig:
        reject_unknown_keys(cls, data)
        data = dict(data)
        if "corpus" in data and isinstance(data["corpus"], dict):
            data["corpus"] = CorpusConfig.from_dict({"seed": 0, **data["corpus"]})
        return cls(**data)


class AuditData:
    """A world and the seeded inputs every metric shares (see the module docstring)."""

    def __init__(self, world: BaseWorld, config: DataConfig | None = None, *, cache_size: int = 64,
                 results_size: int = 4096):
        self.world = world
        self.config = config or DataConfig()
        self._cache: OrderedDict = OrderedDict()
        self._cache_size = cache_size
        self._memo: OrderedDict = OrderedDict()
        self._results: OrderedDict = OrderedDict()
        self._results_size = results_size

    def _cached(self, key, build: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = build()
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return self._cache[key]

    def eval_sample(self, seed: int) -> WorldSample:
        """`eval_samples` world samples for metric seed `seed`."""
        return self._cached(("eval", seed), lambda: self.world.sample(
            self.config.eval_samples, seed=derive_seed(seed, "eval-sample")))

    def corpus(self, seed: int, *, share_parent: bool | None = None) -> ContrastiveCorpus:
        """The contrastive corpus of metric seed `seed`."""
        base = self.config.corpus
        changes = {"seed": int(derive_seed(seed, "corpus") % (2**31))}
        if share_parent is not None:
            changes["share_parent"] = share_parent
        cfg = CorpusConfig.from_dict({**base.to_dict(), **changes})
        # a world with its own stories (a language model) draws them; others plant features
        build = getattr(self.world, "contrastive_corpus", None) or (
            lambda c: make_corpus(self.world, c))
        return self._cached(("corpus", seed, cfg.share_parent), lambda: build(cfg))

    @property
    def probe_features(self) -> np.ndarray:
        """The probed true features (fixed by the study seed), chosen among features whose
        observed firing rate lies in [probe_min_rate, probe_max_rate]."""
        return self._cached(("probe-features",), lambda: choose_probe_features(
            self.world, n_tasks=self.config.probe_tasks, min_rate=self.config.probe_min_rate,
            max_rate=self.config.probe_max_rate, seed=self.config.seed,
            rates=self.world.firing_rates()))

    def probe_sets(self, seed: int) -> list[ProbeSet]:
        """Class-balanced train / test sets of every probing task for metric seed `seed`: the
        seed changes the world samples drawn and the split."""
        return self._cached(("probe", seed), lambda: self._build_probe_sets(seed))

    def _build_probe_sets(self, seed: int) -> list[ProbeSet]:
        cfg = self.config
        examples = 2 * (cfg.probe_examples // 2)  # half of each class
        return sample_probing_data(self.world, features=self.probe_features, n_train=examples,
                                   n_test=examples, seed=seed, pool=cfg.probe_pool).probe_sets()

    def memo(self, sae, tag: str, seed: int, compute: Callable[[], Any]) -> Any:
        """Compute once per (SAE object, tag, seed); keeps the most recent entries only."""
        key = (id(sae), tag, seed)
        if key not in self._memo:
            self._memo[key] = (sae, compute())  # hold the SAE so its id stays unique
            while len(self._memo) > 64:
                self._memo.popitem(last=False)
        return self._memo[key][1]

    def memo_many(self, saes: Sequence, tag: str, seed: int,
                  compute: Callable[[list], Sequence[Any]]) -> list[Any]:
        """[result of each SAE] for (SAE object, tag, seed), calling compute(missing) -> one
        result per SAE once for the SAEs not yet known. Results should be small (scores, not
        latents): up to `results_size` of them are kept, the most recent first.

        Raises:
            ValueError: compute returned a number of results other than len(missing).
        """
        saes = list(saes)
        missing = list({id(s): s for s in saes if (id(s), tag, seed) not in self._results}
                       .values())
        if missing:
            results = list(compute(missing))
            if len(results) != len(missing):
                raise ValueError(f"{tag}: computed {len(results)} results for "
                                 f"{len(missing)} SAEs")
            for sae, result in zip(missing, results):
                self._results[(id(sae), tag, seed)] = (sae, result)  # hold the SAE: its id
        found = [self._results[(id(s), tag, seed)][1] for s in saes]  # stays unique
        while len(self._results) > self._results_size:
            self._results.popitem(last=False)
        return found
