"""Configuration of an SAE training run (one architecture, many seeds)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from synthetic_saes.validation import reject_unknown_keys, require_positive_int

__all__ = ["TrainingConfig", "TRAINING_ARCHITECTURES", "K_ARCHITECTURES", "SPARSITY_KNOBS",
           "checkpoint_steps"]

TRAINING_ARCHITECTURES: tuple[str, ...] = (
    "relu_l1", "topk", "batchtopk", "jumprelu", "matryoshka_batchtopk")

K_ARCHITECTURES: tuple[str, ...] = ("topk", "batchtopk", "matryoshka_batchtopk")
"""Architectures whose sparsity is set by k (active latents per sample)."""

SPARSITY_KNOBS: dict[str, str] = {
    "relu_l1": "l1_coefficient", "topk": "k", "batchtopk": "k", "jumprelu": "l0_coefficient",
    "matryoshka_batchtopk": "k"}
"""The config field that sets each architecture's sparsity (the knob a population sweeps)."""


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """How to train SAEs of one shape on a world; validated on construction.

    Attributes:
        architecture: "relu_l1" (ReLU + L1 penalty), "topk", "batchtopk" (k active per
            sample on average over the batch), "jumprelu" (L0 penalty, straight-through
            threshold gradients) or "matryoshka_batchtopk" (batchtopk whose loss adds the
            reconstruction error of every nested prefix of latents, Bussmann et al. 2025).
        d_sae: SAE width.
        k: active latents per sample (topk, batchtopk, matryoshka_batchtopk).
        l1_coefficient: L1 penalty weight (relu_l1).
        l0_coefficient: L0 penalty weight (jumprelu).
        jumprelu_init_threshold, jumprelu_bandwidth: initial threshold and the width of the
            rectangle kernel of the pseudo-derivatives (jumprelu).
        training_samples: samples seen by each seed.
        batch_size: samples per step (one batch is shared by every seed).
        lr, adam_beta1, adam_beta2: Adam with a constant learning rate.
        n_checkpoints: checkpoints kept per seed, at log-spaced steps ending at the last step.
        first_checkpoint_fraction: the first checkpoint's step as a fraction of all steps.
        dead_window_steps: a latent silent for more steps than this is dead (topk/batchtopk
            then train dead latents with the AuxK loss).
        aux_k_coefficient: weight of the AuxK loss (0 disables it).
        aux_k: dead latents used by AuxK (default d_in // 2, set at training time).
        batchtopk_threshold_lr: EMA rate of the inference threshold of batchtopk.
        encoder_init_scale: the encoder starts as this times the transposed decoder.
        matryoshka_widths: the nested prefix widths of matryoshka_batchtopk, strictly
            increasing and ending at d_sae (as sae_lens's `matryoshka_widths`); None for every
            other architecture.

    Decoder rows are kept at unit norm after every step, so sparsity penalties act on latent
    values directly and exported SAEs need no norm folding.
    """

    architecture: Literal["relu_l1", "topk", "batchtopk", "jumprelu",
                          "matryoshka_batchtopk"] = "topk"
    d_sae: int = 512
    k: int | None = 16
    l1_coefficient: float = 1.0
    l0_coefficient: float = 1.0
    jumprelu_init_threshold: float = 0.5
    jumprelu_bandwidth: float = 0.5
    training_samples: int = 1_000_000
    batch_size: int = 1024
    lr: float = 3e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    n_checkpoints: int = 6
    first_checkpoint_fraction: float = 1 / 32
    dead_window_steps: int = 1000
    aux_k_coefficient: float = 1.0
    aux_k: int | None = None
    batchtopk_threshold_lr: float = 0.01
    encoder_init_scale: float = 1.0
    matryoshka_widths: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.matryoshka_widths, list):  # from JSON / TOML: keep it hashable
            object.__setattr__(self, "matryoshka_widths", tuple(self.matryoshka_widths))
        if self.architecture not in TRAINING_ARCHITECTURES:
            raise ValueError(
                f"unknown architecture {self.architecture!r}; known: {list(TRAINING_ARCHITECTURES)}"
            )
        for name in ("d_sae", "training_samples", "batch_size", "n_checkpoints",
                     "dead_window_steps"):
            require_positive_int(name, getattr(self, name))
        if self.architecture in K_ARCHITECTURES:
            if self.k is None or not 1 <= self.k <= self.d_sae:
                raise ValueError(f"{self.architecture} needs 1 <= k <= d_sae={self.d_sae}, got {self.k}")
        if self.training_samples < self.batch_size:
            raise ValueError(
                f"training_samples ({self.training_samples}) must be at least one batch "
                f"({self.batch_size})"
            )
        for name in ("lr", "jumprelu_init_threshold", "jumprelu_bandwidth", "encoder_init_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("l1_coefficient", "l0_coefficient", "aux_k_coefficient"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("adam_beta1", "adam_beta2", "batchtopk_threshold_lr"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 < self.first_checkpoint_fraction <= 1:
            raise ValueError(
                f"first_checkpoint_fraction must be in (0, 1], got {self.first_checkpoint_fraction}"
            )
        if self.aux_k is not None and self.aux_k < 1:
            raise ValueError(f"aux_k must be >= 1, got {self.aux_k}")
        self._check_matryoshka_widths()

    def _check_matryoshka_widths(self) -> None:
        widths = self.matryoshka_widths
        if self.architecture != "matryoshka_batchtopk":
            if widths is not None:
                raise ValueError(f"matryoshka_widths is only for matryoshka_batchtopk, not "
                                 f"{self.architecture} (got {widths})")
            return
        if not widths:
            raise ValueError("matryoshka_batchtopk needs matryoshka_widths, e.g. "
                             f"({self.d_sae // 4}, {self.d_sae // 2}, {self.d_sae}); got {widths}")
        if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"matryoshka_widths must be positive ints, got {widths}")
        if any(b <= a for a, b in zip(widths, widths[1:])):
            raise ValueError(f"matryoshka_widths must be strictly increasing, got {widths}")
        if widths[-1] != self.d_sae:
            raise ValueError(f"matryoshka_widths must end at d_sae={self.d_sae}, got {widths}")

    @property
    def total_steps(self) -> int:
        return self.training_samples // self.batch_size

    @property
    def inference_architecture(self) -> str:
        """The architecture of the exported SAE: batchtopk (matryoshka too) is exported as
        jumprelu with one shared threshold, as sae_lens does."""
        return {"relu_l1": "relu", "topk": "topk", "batchtopk": "jumprelu", "jumprelu": "jumprelu",
                "matryoshka_batchtopk": "jumprelu"}[self.architecture]

    @property
    def sparsity_knob(self) -> str:
        """The field that sets this architecture's sparsity: "k", "l1_coefficient" or
        "l0_coefficient" (runs differing only in it train together, see `train_runs`)."""
        return SPARSITY_KNOBS[self.architecture]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingConfig:
        reject_unknown_keys(cls, data)
        return cls(**data)


def checkpoint_steps(total_steps: int, n_checkpoints: int, first_fraction: float) -> tuple[int, ...]:
    """Log-spaced steps from first_fraction * total_steps to total_steps (distinct, >= 1).

    Examples:
        >>> checkpoint_steps(1000, 6, 1 / 32)
        (31, 62, 125, 250, 500, 1000)
    """
    if total_steps < 1 or n_checkpoints < 1:
        raise ValueError("total_steps and n_checkpoints must be >= 1")
    first = max(1.0, first_fraction * total_steps)
    raw = np.geomspace(first, total_steps, n_checkpoints) if n_checkpoints > 1 else [total_steps]
    steps = sorted({max(1, min(total_steps, int(round(s)))) for s in raw})
    steps[-1] = total_steps
    return tuple(steps)

