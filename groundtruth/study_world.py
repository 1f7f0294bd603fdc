"""The world a study runs on, built from its `[world]` section.

A synthetic preset is built from its seed; a language world (`[world] kind = "language"`)
needs a trained model, which is trained once into the run folder (`<out>/language_model/`)
and loaded from there when the run resumes.
"""

from __future__ import annotations

from pathlib import Path

from synthetic_saes.base_world import BaseWorld
from synthetic_saes.semisynthetic.world import LanguageWorld, LanguageWorldConfig
from synthetic_saes.worlds import WorldConfig, build_world

__all__ = ["build_study_world", "LANGUAGE_MODEL_FOLDER"]

LANGUAGE_MODEL_FOLDER = "language_model"


def build_study_world(config: WorldConfig | LanguageWorldConfig, out: str | Path, *,
                      progress: bool = False) -> BaseWorld:
    """The study's world; a language world's model lives in `out`/language_model."""
    if isinstance(config, LanguageWorldConfig):
        return LanguageWorld.build(config, Path(out) / LANGUAGE_MODEL_FOLDER, progress=progress)
    return build_world(config)
