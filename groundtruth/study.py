"""Study configurations: one TOML file per study, validated before any work starts.

An audit study (`[study] kind = "audit"`) names a world, what metrics are measured on, which
metrics, the SAE population (constructed families and trained populations) and how the
lenses summarise. Every section rejects unknown keys (a typo is an error, not a default).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from groundtruth.metrics.data import DataConfig
from synthetic_saes.families import FAMILIES
from synthetic_saes.semisynthetic.siit_world import SIITWorldConfig
from synthetic_saes.semisynthetic.tracr_world import TracrWorldConfig
from synthetic_saes.semisynthetic.world import LanguageWorldConfig
from synthetic_saes.training.config import SPARSITY_KNOBS, TRAINING_ARCHITECTURES
from synthetic_saes.validation import (
    check_field_types, reject_unknown_keys, require_positive_int, require_seed,
)
from synthetic_saes.worlds import PRESETS, WorldConfig, preset

__all__ = [
    "StudyConfig", "FamiliesConfig", "TrainingPlan", "LensConfig", "VerdictRules",
    "load_study", "study_from_dict", "STUDY_KINDS", "default_study_path", "WORLD_KINDS",
    "REPOSITORY", "repository_path", "import_metric_modules",
]

WORLD_KINDS = ("synthetic", "language", "tracr", "siit")
"""`[world] kind`: a synthetic preset (default), the language model's activations, a
Tracr-compiled model's residual stream (`TracrWorldConfig`'s keys), or a SIIT-trained model's
activations (`SIITWorldConfig`'s keys, its model's under `[world.siit]`)."""

StudyWorldConfig = WorldConfig | LanguageWorldConfig | TracrWorldConfig | SIITWorldConfig

STUDY_KINDS = ("audit", "contrastive_siblings", "regression_holdout", "width_confound",
               "cebench_published", "calibration", "sage")


@dataclass(frozen=True, kw_only=True)
class FamiliesConfig:
    """Constructed SAEs: degradation families (default knob grids) and the controls."""

    names: tuple[str, ...] = ("decoder_noise", "dropped", "merged", "split", "width")
    controls: bool = True
    seed: int = 0
    oracle_training_samples: int = 50_000

    def __post_init__(self) -> None:
        check_field_types(self, "families")
        unknown = [n for n in self.names if n not in FAMILIES]
        if unknown:
            raise ValueError(f"unknown families {unknown}; known: {sorted(FAMILIES)}")
        require_seed(self.seed, "families.seed")
        require_positive_int("oracle_training_samples", self.oracle_training_samples)


@dataclass(frozen=True, kw_only=True)
class TrainingPlan:
    """Trained populations: every architecture x sparsity x width, each with all seeds."""

    architectures: tuple[str, ...] = ("topk", "relu_l1", "jumprelu")
    sparsity: dict[str, tuple[float, ...]] = field(default_factory=lambda: {
        "topk": (8, 16, 32), "batchtopk": (8, 16, 32), "relu_l1": (1.0, 2.0, 4.0),
        "jumprelu": (0.5, 2.0, 8.0), "matryoshka_batchtopk": (8, 16, 32)})
    widths: tuple[int, ...] = (256, 512)
    matryoshka_fractions: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)
    seeds: tuple[int, ...] = (0, 1, 2)
    n_checkpoints: int = 6
    training_samples: int = 61_440
    batch_size: int = 512
    lr: float = 3e-3
    jumprelu_init_threshold: float = 2.0
    jumprelu_bandwidth: float = 1.0
    data_seed: int = 0

    def __post_init__(self) -> None:
        check_field_types(self, "training")
        unknown = [a for a in self.architectures if a not in TRAINING_ARCHITECTURES]
        if unknown:
            raise ValueError(f"unknown architectures {unknown}; known: {list(TRAINING_ARCHITECTURES)}")
        for arch in self.architectures:
            if not self.sparsity.get(arch):
                raise ValueError(f"training.sparsity has no levels for {arch!r}")
            if any(not 0 < level < math.inf for level in self.sparsity[arch]):
                raise ValueError(f"training.sparsity levels must be positive numbers, got "
                                 f"{arch} = {list(self.sparsity[arch])}")
        for name in ("lr", "jumprelu_init_threshold", "jumprelu_bandwidth"):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"training.{name} must be a positive number, got "
                                 f"{getattr(self, name)!r}")
        for width in self.widths:
            require_positive_int("training.widths", width)
        fractions = self.matryoshka_fractions
        if (not fractions or fractions[-1] != 1 or any(not 0 < f <= 1 for f in fractions)
                or any(b <= a for a, b in zip(fractions, fractions[1:]))):
            raise ValueError("training.matryoshka_fractions must increase strictly within "
                             f"(0, 1] and end at 1, got {list(fractions)}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"training.seeds must be distinct, got {self.seeds}")
        for s in self.seeds:
            require_seed(s, "training.seeds")
        for name in ("n_checkpoints", "training_samples", "batch_size"):
            require_positive_int(f"training.{name}", getattr(self, name))
        require_seed(self.data_seed, "training.data_seed")
        from groundtruth.population import training_configs

        try:  # every run's own config, so a k above a width fails now, not after training
            training_configs(self)
        except ValueError as error:
            raise ValueError(f"training: {error}") from None

    @property
    def sparsity_knob(self) -> dict[str, str]:
        return dict(SPARSITY_KNOBS)

    def matryoshka_widths(self, width: int) -> tuple[int, ...]:
        """The nested prefix widths of a matryoshka SAE of this width: round(f * width) for
        each of `matryoshka_fractions`."""
        return tuple(int(round(f * width)) for f in self.matryoshka_fractions)


@dataclass(frozen=True, kw_only=True)
class LensConfig:
    """How the lenses summarise.

    Attributes:
        reseed_seeds: metric seeds 0 .. n-1 for reseed noise.
        decomposition_seeds: metric seeds per trajectory point in the variance decomposition.
        ground_truth: ground-truth metrics the others are correlated with (first: primary).
        n_boot: bootstrap resamples for confidence intervals.
    """

    reseed_seeds: int = 5
    decomposition_seeds: int = 3
    ground_truth: tuple[str, ...] = ("gt_f1", "gt_mcc")
    n_boot: int = 2000

    def __post_init__(self) -> None:
        check_field_types(self, "lenses")
        if self.reseed_seeds < 2:
            raise ValueError(f"reseed_seeds must be >= 2 to measure noise, got {self.reseed_seeds}")
        if self.decomposition_seeds < 2:
            raise ValueError("decomposition_seeds must be >= 2")
        require_positive_int("n_boot", self.n_boot)
        if not self.ground_truth:
            raise ValueError("lenses.ground_truth must name at least one metric")


@dataclass(frozen=True, kw_only=True)
class VerdictRules:
    """Thresholds of the per-metric verdict (each stated in the report; see
    `groundtruth.report.verdict`).

    tracks         the mean within-stratum Spearman with the primary ground truth has its 95%
                   CI lower bound above track_low, over at least min_units independent units
    does not track that CI's upper bound below track_high
    precise        median over strata of paired MDD / within-stratum IQR <= precision_fraction
    separates      discriminability >= discriminability
    confounded     pooled partial Spearman (width, L0) < pooled Spearman - confound_drop, or
                   width and L0 explain the metric's ranks entirely
    """

    track_low: float = 0.5
    track_high: float = 0.3
    precision_fraction: float = 0.1
    discriminability: float = 0.5
    confound_drop: float = 0.3
    min_units: int = 5

    def __post_init__(self) -> None:
        check_field_types(self, "verdict")
        for name in ("track_low", "track_high"):
            if not -1 <= getattr(self, name) <= 1:
                raise ValueError(f"verdict.{name} is a Spearman correlation, in [-1, 1]; got "
                                 f"{getattr(self, name)!r}")
        if self.track_high > self.track_low:
            raise ValueError(f"verdict.track_high ({self.track_high}) must not exceed track_low "
                             f"({self.track_low}): an interval cannot both track and not track")
        if not 0 < self.precision_fraction < math.inf:
            raise ValueError(f"verdict.precision_fraction must be a positive number, got "
                             f"{self.precision_fraction!r}")
        if not 0 <= self.discriminability <= 1:
            raise ValueError(f"verdict.discriminability is a fraction of pairs, in [0, 1]; got "
                             f"{self.discriminability!r}")
        if not 0 <= self.confound_drop <= 2:
            raise ValueError(f"verdict.confound_drop must be in [0, 2], got "
                             f"{self.confound_drop!r}")
        require_positive_int("verdict.min_units", self.min_units)


@dataclass(frozen=True, kw_only=True)
class StudyConfig:
    """A study: what to run and where its options live."""

    name: str
    kind: str = "audit"
    seed: int = 0
    description: str = ""
    world: StudyWorldConfig = field(default_factory=lambda: preset("cpu"))
    data: DataConfig = field(default_factory=DataConfig)
    metrics: tuple[str, ...] = ()
    families: FamiliesConfig = field(default_factory=FamiliesConfig)
    training: TrainingPlan = field(default_factory=TrainingPlan)
    lenses: LensConfig = field(default_factory=LensConfig)
    verdict: VerdictRules = field(default_factory=VerdictRules)
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_field_types(self, "study")
        if self.kind not in STUDY_KINDS:
            raise ValueError(f"unknown study kind {self.kind!r}; known: {list(STUDY_KINDS)}")
        if not self.name or "/" in self.name:
            raise ValueError(f"study name must be a non-empty name without '/', got {self.name!r}")
        require_seed(self.seed, "study.seed")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _section(cls, data: dict[str, Any] | None, where: str, **extra):
    data = dict(data or {})
    try:
        reject_unknown_keys(cls, {**data, **extra})
    except ValueError as error:
        raise ValueError(f"[{where}] {error}") from None
    for key, value in list(data.items()):
        if isinstance(value, list):
            data[key] = tuple(value)
    return cls(**data, **extra)


def _world(section: dict[str, Any] | None) -> StudyWorldConfig:
    section = dict(section or {})
    kind = section.pop("kind", "synthetic")
    if kind not in WORLD_KINDS:
        raise ValueError(f"[world] unknown kind {kind!r}; known: {list(WORLD_KINDS)}")
    if kind == "language":  # LanguageWorldConfig.from_dict turns TOML lists into tuples
        try:
            return LanguageWorldConfig.from_dict(section)
        except (TypeError, ValueError) as error:
            raise ValueError(f"[world] {error}") from None
    if kind in ("tracr", "siit"):
        cls = TracrWorldConfig if kind == "tracr" else SIITWorldConfig
        try:
            return cls.from_dict(section)
        except (TypeError, ValueError) as error:
            raise ValueError(f"[world] {error}") from None
    name = section.pop("preset", "cpu")
    if name not in PRESETS:
        raise ValueError(f"[world] unknown preset {name!r}; known: {sorted(PRESETS)}")
    try:
        return preset(name, **section)
    except (TypeError, ValueError) as error:
        raise ValueError(f"[world] {error}") from None


_TOP_LEVEL = {"study", "world", "data", "metrics", "families", "training", "lenses", "verdict",
              "options"}


def study_from_dict(raw: dict[str, Any]) -> StudyConfig:
    """Build and validate a study from parsed TOML.

    Raises:
        ValueError: unknown sections or keys, unknown metrics, presets, families,
            architectures, or values outside their rules.
    """
    from groundtruth.metrics.registry import get_metric, metric_names

    unknown = sorted(set(raw) - _TOP_LEVEL)
    if unknown:
        raise ValueError(f"unknown study sections {unknown}; known: {sorted(_TOP_LEVEL)}")
    study = dict(raw.get("study", {}))
    allowed = {"name", "kind", "seed", "description"}
    if set(study) - allowed:
        raise ValueError(f"[study] unknown keys {sorted(set(study) - allowed)}; "
                         f"known: {sorted(allowed)}")
    if "name" not in study:
        raise ValueError("[study] needs a name")
    seed = require_seed(study.get("seed", 0), "[study] seed")
    for key in ("name", "kind", "description"):
        if key in study and not isinstance(study[key], str):
            raise ValueError(f"[study] {key} must be a string, got {study[key]!r}")
    metrics_section = dict(raw.get("metrics", {}))
    if set(metrics_section) - {"names", "modules"}:
        raise ValueError(f"[metrics] unknown keys "
                         f"{sorted(set(metrics_section) - {'names', 'modules'})}; "
                         "known: ['modules', 'names']")
    modules = metrics_section.get("modules", [])
    if not (isinstance(modules, list) and all(isinstance(m, str) for m in modules)):
        raise ValueError(f"[metrics] modules must be a list of module names, got {modules!r}")
    import_metric_modules(modules)
    names = metrics_section.get("names", "all")
    if names != "all" and not (isinstance(names, list)
                               and all(isinstance(n, str) for n in names)):
        raise ValueError(f"[metrics] names must be \"all\" or a list of metric names, got "
                         f"{names!r}")
    names = tuple(metric_names()) if names == "all" else tuple(names)
    for name in names:
        get_metric(name)
    training = dict(raw.get("training", {}))
    if "sparsity" in training:
        if not isinstance(training["sparsity"], dict) or not all(
                isinstance(v, list) for v in training["sparsity"].values()):
            raise ValueError("[training.sparsity] must map each architecture to a list of "
                             f"levels, got {training['sparsity']!r}")
        training["sparsity"] = {k: tuple(v) for k, v in training["sparsity"].items()}
    lenses = _section(LensConfig, raw.get("lenses"), "lenses")
    for name in lenses.ground_truth:
        get_metric(name)
    data_section = dict(raw.get("data", {}))
    try:
        data = DataConfig.from_dict({**data_section, "seed": seed})
    except (TypeError, ValueError) as error:
        raise ValueError(f"[data] {error}") from None
    world = _world(raw.get("world"))
    kind = study.get("kind", "audit")
    if not isinstance(world, WorldConfig) and kind not in ("audit", "sage"):
        raise ValueError(f"[world] a language or tracr world runs audit studies (and a language "
                         f"world sage studies); a {kind!r} study needs a synthetic world")
    if kind == "sage" and not isinstance(world, LanguageWorldConfig):
        raise ValueError("[world] a sage study runs on the language model: kind = \"language\"")
    return StudyConfig(
        name=study["name"],
        kind=kind,
        seed=seed,
        description=study.get("description", ""),
        world=world,
        data=data,
        metrics=names,
        families=_section(FamiliesConfig, raw.get("families"), "families"),
        training=_section(TrainingPlan, training, "training"),
        lenses=lenses,
        verdict=_section(VerdictRules, raw.get("verdict"), "verdict"),
        options=_options(raw.get("options", {})),
    )


def _options(section) -> dict[str, Any]:
    if not isinstance(section, dict):
        raise ValueError(f"[options] must be a table, got {section!r}")
    return dict(section)


def import_metric_modules(modules: list[str]) -> None:
    """Import modules that register metrics (`groundtruth.register_metric`), so a study can
    name them: `[metrics] modules = ["my_metrics"]` or `groundtruth audit --plugin my_metrics`.
    The working directory is searched too (as `python -m` does).

    Raises:
        ValueError: a module that cannot be imported, with the reason.
    """
    import importlib
    import sys

    for name in modules:
        if str(Path.cwd()) not in sys.path:
            sys.path.append(str(Path.cwd()))
        try:
            importlib.import_module(name)
        except Exception as error:  # any failure of user code: name it, one line
            raise ValueError(f"cannot import metric module {name!r}: "
                             f"{type(error).__name__}: {error}") from None


def load_study(path: str | Path) -> StudyConfig:
    """Read and validate a study TOML file."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no study file at {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path} is not valid TOML: {error}") from None
    return study_from_dict(raw)


REPOSITORY = Path(__file__).resolve().parents[1]
"""The root of this checkout, where experiments/ lives."""


def repository_path(path: str | Path) -> Path:
    """`path` itself if absolute, else `path` under the repository root (how a study's
    options name shipped files such as experiments/data/...)."""
    path = Path(path)
    return path if path.is_absolute() else REPOSITORY / path


def default_study_path() -> Path:
    """The default study, experiments/ce_vs_groundtruth.toml of this checkout."""
    return repository_path("experiments/ce_vs_groundtruth.toml")
