"""One plain form for an SAE's weights, with sae_lens's encode semantics and file format.

Constructed families, trained checkpoints and loaded SAEs all become `SAEParams`: numpy
arrays plus the few settings that change encoding. `encode` reproduces sae_lens:

    pre = (x - b_dec * apply_b_dec_to_input) @ W_enc + b_enc          [n, d_sae]
    relu:      f = max(pre, 0)
    jumprelu:  f = max(pre, 0) * (pre > threshold)
    topk:      f = max(pre, 0) on each row's k largest pre-activations, 0 elsewhere
    decode:    x_hat = f @ W_dec + b_dec

`to_sae_lens` / `save` give the matching sae_lens SAE ("standard", "jumprelu", "topk"), which
`sae_lens.SAE.load_from_disk` reads back. An `SAEParams` is a `cebench.sae_weights.SAEWeights`,
so cebench scores and writes it without knowing this class.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from cebench.sae_weights import save_sae_lens, to_sae_lens
from synthetic_saes.arrays import readonly

__all__ = ["SAEParams", "ARCHITECTURES"]

Architecture = Literal["relu", "jumprelu", "topk"]
ARCHITECTURES: tuple[str, ...] = ("relu", "jumprelu", "topk")
_SAE_LENS_NAME = {"relu": "standard", "jumprelu": "jumprelu", "topk": "topk"}
_FROM_SAE_LENS = {v: k for k, v in _SAE_LENS_NAME.items()}


@dataclass(frozen=True, eq=False)
class SAEParams:
    """An SAE's weights and encoding settings (float32 numpy, read-only).

    Attributes:
        W_enc: [d_in, d_sae].  b_enc: [d_sae].  W_dec: [d_sae, d_in].  b_dec: [d_in].
        architecture: "relu", "jumprelu" or "topk".
        threshold: [d_sae] for jumprelu (may hold +inf for latents that never fire), else None.
        k: active latents per row for topk, else None.
        apply_b_dec_to_input: subtract b_dec from the input before encoding.
    """

    W_enc: np.ndarray
    b_enc: np.ndarray
    W_dec: np.ndarray
    b_dec: np.ndarray
    architecture: Architecture = "relu"
    threshold: np.ndarray | None = None
    k: int | None = None
    apply_b_dec_to_input: bool = True

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"unknown SAE architecture {self.architecture!r}; known: {list(ARCHITECTURES)}"
            )
        arrays = {}
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            arrays[name] = _frozen_float32(getattr(self, name), name)
        W_enc, b_enc, W_dec, b_dec = (arrays[n] for n in ("W_enc", "b_enc", "W_dec", "b_dec"))
        if W_enc.ndim != 2:
            raise ValueError(f"W_enc must be [d_in, d_sae], got shape {W_enc.shape}")
        d_in, d_sae = W_enc.shape
        expected = {"b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
        for name, shape in expected.items():
            if arrays[name].shape != shape:
                raise ValueError(
                    f"{name} must have shape {shape} to match W_enc {W_enc.shape}, "
                    f"got {arrays[name].shape}"
                )
        for name, array in arrays.items():
            if not np.isfinite(array).all():
                raise ValueError(f"{name} contains NaN or Inf")
            object.__setattr__(self, name, array)
        if self.architecture == "jumprelu":
            if self.threshold is None:
                raise ValueError("a jumprelu SAE needs a threshold of shape [d_sae]")
            threshold = _frozen_float32(self.threshold, "threshold")
            if threshold.shape != (d_sae,):
                raise ValueError(f"threshold must have shape ({d_sae},), got {threshold.shape}")
            if np.isnan(threshold).any():
                raise ValueError("threshold contains NaN")
            object.__setattr__(self, "threshold", threshold)
        elif self.threshold is not None:
            raise ValueError(f"threshold is only for jumprelu SAEs, not {self.architecture}")
        if self.architecture == "topk":
            if self.k is None or not 1 <= int(self.k) <= d_sae:
                raise ValueError(f"a topk SAE needs 1 <= k <= d_sae={d_sae}, got k={self.k}")
            object.__setattr__(self, "k", int(self.k))
        elif self.k is not None:
            raise ValueError(f"k is only for topk SAEs, not {self.architecture}")

    @property
    def d_in(self) -> int:
        return int(self.W_enc.shape[0])

    @property
    def d_sae(self) -> int:
        return int(self.W_enc.shape[1])

    def replace(self, **changes: Any) -> SAEParams:
        return replace(self, **changes)

    # ---- encode / decode ----------------------------------------------------------------

    def pre_activations(self, x: np.ndarray) -> np.ndarray:
        """(x - b_dec?) @ W_enc + b_enc, float32 [n, d_sae] for x [n, d_in]."""
        x = self._check_input(x)
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Latent activations, float32 [n, d_sae] for x [n, d_in]."""
        return self.activate(self.pre_activations(x))

    def activate(self, pre: np.ndarray) -> np.ndarray:
        """The activation function applied to pre-activations [n, d_sae]."""
        if self.architecture == "topk" and self.k < pre.shape[1]:
            # Exactly k per row (ties broken arbitrarily, as torch.topk does).
            top = np.argpartition(pre, pre.shape[1] - self.k, axis=1)[:, -self.k:]
            rows = np.arange(pre.shape[0])[:, None]
            acts = np.zeros_like(pre)
            acts[rows, top] = np.maximum(pre[rows, top], 0.0)
            return acts.astype(np.float32, copy=False)
        acts = np.maximum(pre, 0.0)
        if self.architecture == "jumprelu":
            acts = acts * (pre > self.threshold)
        return acts.astype(np.float32, copy=False)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Reconstruction f @ W_dec + b_dec, float32 [n, d_in] for latents [n, d_sae]."""
        latents = np.asarray(latents, dtype=np.float32)
        if latents.ndim != 2 or latents.shape[1] != self.d_sae:
            raise ValueError(f"latents must be [n, {self.d_sae}], got shape {latents.shape}")
        return latents @ self.W_dec + self.b_dec

    def _check_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"activations must be [n, d_in], got shape {x.shape}")
        if x.shape[1] != self.d_in:
            raise ValueError(f"activations have d_in={x.shape[1]} but the SAE has d_in={self.d_in}")
        return x

    # ---- sae_lens interop -----------------------------------------------------------------

    def to_sae_lens(
        self,
        *,
        model_name: str = "synthetic",
        hook_name: str = "hidden",
        metadata: dict[str, Any] | None = None,
    ):
        """The equivalent inference `sae_lens` SAE (float32, CPU); `metadata` entries are
        stored in its cfg.metadata (and so in cfg.json). See `cebench.sae_weights`."""
        return to_sae_lens(self, model_name=model_name, hook_name=hook_name, metadata=metadata)

    @classmethod
    def from_sae_lens(cls, sae) -> SAEParams:
        """Read an inference sae_lens SAE ("standard", "jumprelu" or "topk")."""
        name = sae.cfg.architecture()
        if name not in _FROM_SAE_LENS:
            raise ValueError(
                f"sae_lens architecture {name!r} is not supported; supported: "
                f"{sorted(_FROM_SAE_LENS)}"
            )
        if getattr(sae.cfg, "normalize_activations", "none") != "none":
            raise ValueError(
                "SAEs with normalize_activations="
                f"{sae.cfg.normalize_activations!r} are not supported"
            )
        arch = _FROM_SAE_LENS[name]

        def arr(t: torch.Tensor) -> np.ndarray:
            return t.detach().to(torch.float32).cpu().numpy()

        W_enc, b_enc, W_dec = arr(sae.W_enc), arr(sae.b_enc), arr(sae.W_dec)
        if arch == "topk" and getattr(sae.cfg, "rescale_acts_by_decoder_norm", False):
            # Fold the decoder norms so encode needs no rescaling (exact for top-k ranking).
            norms = np.linalg.norm(W_dec, axis=1).clip(min=1e-8)
            W_enc, b_enc, W_dec = W_enc * norms, b_enc * norms, W_dec / norms[:, None]
        return cls(
            W_enc=W_enc,
            b_enc=b_enc,
            W_dec=W_dec,
            b_dec=arr(sae.b_dec),
            architecture=arch,
            threshold=arr(sae.threshold) if arch == "jumprelu" else None,
            k=int(sae.cfg.k) if arch == "topk" else None,
            apply_b_dec_to_input=bool(sae.cfg.apply_b_dec_to_input),
        )

    def save(
        self,
        path: str | Path,
        *,
        model_name: str = "synthetic",
        hook_name: str = "hidden",
        metadata: dict[str, Any] | None = None,
    ) -> Path:
        """Write a sae_lens directory (cfg.json + sae_weights.safetensors) at `path`."""
        return save_sae_lens(self, path, model_name=model_name, hook_name=hook_name,
                             metadata=metadata)

    @classmethod
    def load(cls, path: str | Path) -> SAEParams:
        """Read a sae_lens directory written by `save` (or by sae_lens)."""
        from sae_lens import SAE

        path = Path(path)
        if not (path / "cfg.json").exists():
            raise ValueError(f"{path} is not a sae_lens SAE directory (no cfg.json)")
        return cls.from_sae_lens(SAE.load_from_disk(path))


def _frozen_float32(value: Any, name: str) -> np.ndarray:
    try:
        return readonly(value, np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} is not a numeric array: {error}") from error
