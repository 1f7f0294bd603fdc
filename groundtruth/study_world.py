"""The world a study runs on, built from its `[world]` section.

A synthetic preset is built from its seed; a Tracr world (`[world] kind = "tracr"`) loads the
compiled model shipped with the package; a SIIT world (`kind = "siit"`) trains its model once
into `<out>/siit_model/`; a language world (`[world] kind = "language"`)
needs a trained model, which is trained once into the run folder (`<out>/language_model/`)
and loaded from there when the run resumes.
"""

from __future__ import annotations

from pathlib import Path

from synthetic_saes.base_world import BaseWorld
from synthetic_saes.semisynthetic.siit_world import SIITWorld, SIITWorldConfig
from synthetic_saes.semisynthetic.tracr_world import TracrWorld, TracrWorldConfig
from synthetic_saes.semisynthetic.world import LanguageWorld, LanguageWorldConfig
from synthetic_saes.worlds import build_world

__all__ = ["build_study_world", "LANGUAGE_MODEL_FOLDER", "SIIT_MODEL_FOLDER"]

LANGUAGE_MODEL_FOLDER = "language_model"
SIIT_MODEL_FOLDER = "siit_model"


def build_study_world(config, out: str | Path, *, progress: bool = False) -> BaseWorld:
    """The study's world; a language world's model lives in `out`/language_model, a SIIT
    world's in `out`/siit_model, a Tracr world loads its shipped fixture."""
    if isinstance(config, SIITWorldConfig):
        return SIITWorld.build(config, Path(out) / SIIT_MODEL_FOLDER, progress=progress)
    if isinstance(config, TracrWorldConfig):
        return TracrWorld(config)
    if isinstance(config, LanguageWorldConfig):
        return LanguageWorld.build(config, Path(out) / LANGUAGE_MODEL_FOLDER, progress=progress)
    return build_world(config)
