"""The studies: one file per study kind, named as the kind in its TOML (`[study] kind`).

    audit                 `groundtruth.audit` (the audit core runs it)
    contrastive_siblings  do CE scores reward or punish representing a shared parent?
    width_confound        do CE scores grow with width at equal quality?
    regression_holdout    does C + I - alpha L0 (and a linear predictor) generalise?
    cebench_published     CE-Bench's published claims on its published numbers
    calibration           the auditor on planted metrics: coverage, MDD, verdicts
    sage                  located points, sublayer reconstruction, compiled vs SIIT worlds
Beside them: `predictors` (fitted predictors shared by cebench_published and
regression_holdout) and `noise_floor` (reseed noise of a metric on given SAEs, the
`groundtruth noise-floor` command).

`STUDIES` maps every kind of `groundtruth.study.STUDY_KINDS` to its runner
run(study, out, *, progress) -> the path of its report.json.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from groundtruth.audit import run_audit
from groundtruth.studies import (
    calibration, cebench_published, contrastive_siblings, regression_holdout, sage,
    width_confound,
)
from groundtruth.study import StudyConfig

__all__ = ["STUDIES", "run_study"]

STUDIES: dict[str, Callable[..., Path]] = {
    "audit": run_audit,
    "contrastive_siblings": contrastive_siblings.run,
    "regression_holdout": regression_holdout.run,
    "width_confound": width_confound.run,
    "cebench_published": cebench_published.run,
    "calibration": calibration.run,
    "sage": sage.run,
}


def run_study(study: StudyConfig, out: str | Path, *, progress: bool = True) -> Path:
    """Run any study into `out`; returns its report.json."""
    if study.kind not in STUDIES:  # StudyConfig checks kinds; this catches one without a runner
        raise ValueError(f"no runner for study kind {study.kind!r}")
    return STUDIES[study.kind](study, Path(out), progress=progress)
