"""An SAE given as arrays: what cebench needs of it, and its sae_lens form.

cebench imports nothing of the project, so it asks for a shape, not a class. Anything with
these attributes (`synthetic_saes.SAEParams` is one) is encoded by the core, written as a
sae-lens folder (`save_sae_lens`) or as a Gemma Scope params.npz (`cebench.saes`):

    W_enc [d_in, d_sae]   b_enc [d_sae]   W_dec [d_sae, d_in]   b_dec [d_in]   (float32)
    architecture          "relu", "jumprelu" or "topk"
    threshold             [d_sae] for jumprelu, else None
    k                     active latents per row for topk, else None
    apply_b_dec_to_input  subtract b_dec from the input before encoding

with sae_lens's encoding: pre = (x - b_dec * apply_b_dec_to_input) @ W_enc + b_enc, then
relu max(pre, 0), jumprelu max(pre, 0) * (pre > threshold), topk max(pre, 0) on each row's k
largest pre-activations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["SAEWeights", "to_sae_lens", "save_sae_lens"]


@runtime_checkable
class SAEWeights(Protocol):
    """An SAE's weights and encoding settings (see the module docstring)."""

    W_enc: np.ndarray
    b_enc: np.ndarray
    W_dec: np.ndarray
    b_dec: np.ndarray
    architecture: str
    threshold: np.ndarray | None
    k: int | None
    apply_b_dec_to_input: bool


def to_sae_lens(weights: SAEWeights, *, model_name: str = "synthetic", hook_name: str = "hidden",
                metadata: dict[str, Any] | None = None):
    """The equivalent inference sae_lens SAE ("standard", "jumprelu" or "topk"; float32, CPU);
    `metadata` entries are stored in its cfg.metadata (and so in cfg.json)."""
    import torch
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig, StandardSAE, StandardSAEConfig
    from sae_lens import TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    def tensor(array) -> torch.Tensor:
        return torch.from_numpy(np.array(array, dtype=np.float32, copy=True))

    d_in, d_sae = np.shape(weights.W_enc)
    common = dict(
        d_in=int(d_in),
        d_sae=int(d_sae),
        dtype="float32",
        device="cpu",
        apply_b_dec_to_input=bool(weights.apply_b_dec_to_input),
        metadata=SAEMetadata(model_name=model_name, hook_name=hook_name, **(metadata or {})),
    )
    state = {name: tensor(getattr(weights, name)) for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
    if weights.architecture == "relu":
        sae = StandardSAE(StandardSAEConfig(**common))
    elif weights.architecture == "jumprelu":
        sae = JumpReLUSAE(JumpReLUSAEConfig(**common))
        state["threshold"] = tensor(weights.threshold)
    elif weights.architecture == "topk":
        sae = TopKSAE(TopKSAEConfig(k=int(weights.k), rescale_acts_by_decoder_norm=False,
                                    **common))
    else:
        raise ValueError(f"no sae_lens form for architecture {weights.architecture!r}; "
                         "known: relu, jumprelu, topk")
    sae.load_state_dict(state)
    return sae.eval()


def save_sae_lens(weights: SAEWeights, path: str | Path, *, model_name: str = "synthetic",
                  hook_name: str = "hidden", metadata: dict[str, Any] | None = None) -> Path:
    """Write a sae_lens folder (cfg.json + sae_weights.safetensors) at `path`; returns it."""
    path = Path(path)
    to_sae_lens(weights, model_name=model_name, hook_name=hook_name,
                metadata=metadata).save_model(path)
    return path
