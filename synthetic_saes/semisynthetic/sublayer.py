"""Sublayer activations (attn_out, mlp_out) reconstructed from residual-stream SAEs.

A TransformerLens block writes its sublayers into the residual stream additively,

    resid_mid  = resid_pre + attn_out          resid_post = resid_mid + mlp_out,

so a sublayer's output is the difference of the residual stream across it,
h = r_after - r_before, and SAEs trained on the residual stream at both ends reconstruct it
without an SAE at the sublayer (SAGE's step (c)):

    h_hat = SAE_after(r_after) - SAE_before(r_before)
          = f_a(r_after) @ W_a + b_a - f_b(r_before) @ W_b - b_b.

Its latent code and directions, what a ground-truth metric scores, are the two SAEs' side by
side (`SublayerSAE`):

    codes       c = [f_a(r_after), -f_b(r_before)]          [n, d_sae_a + d_sae_b]
    directions  W_dec = [W_a; W_b]                           [d_sae_a + d_sae_b, d_model]
    bias        b_dec = b_a - b_b                            [d_model]
    h_hat = c @ W_dec + b_dec  (exactly).

When both ends use one SAE (the same decoder and decoder bias, e.g. one SAE for the whole
residual stream), the latents pair up and the sublayer's code in that dictionary is the
change of the code across the sublayer, `shared_codes`: f(r_after) - f(r_before) [n, d_sae]
with h_hat = (f(r_after) - f(r_before)) @ W_dec; a feature carried through the sublayer
unchanged cancels there, one the sublayer writes appears.

What the ground-truth metrics see. The codes are not a function of the sublayer activation
alone (they need r_before, which h does not determine), so a `SublayerSAE` is not an
`SAEParams` and `groundtruth.metrics.quality.as_params` does not take it. Its `W_dec`
(the stacked decoders) is what the decoder-matching metrics (MCC, MMCS, recovery,
uniqueness) compare with the supervised dictionary at the sublayer; the detection and
reconstruction metrics need the codes on samples whose residual stream is known:
`language_sublayer_activations` gives (r_before, h, r_after) for the same story tokens as
`LanguageWorld.story_activations` at the sublayer hook, and `encode(r_before, r_after)` the
codes to score against those tokens' labels. In the separate-SAE form a feature carried
through the sublayer fires in both halves of the code (with opposite signs) although the
sublayer did not write it; a detector reading "latent != 0" counts it.

How this follows SAGE (Venhoff et al. 2024): SAGE evaluates residual-stream SAEs on sublayer
activations through a reconstruction from the residual stream around the sublayer, so that no
SAE is trained at every located point. The paper's method section was not readable from the
stored copy here (only its abstract and introduction), so the form implemented is the one
that follows from the residual identity above (the project's design notes,
GROUNDTRUTH.md: attn_out = resid_mid - resid_pre, so SAE_mid(resid_mid) - SAE_pre(resid_pre));
the paper's equation numbers, and any correction or feature-selection step it adds to the
plain difference, are not reproduced.

References:
    Venhoff et al., "SAGE: Scalable Ground Truth Evaluations for Large Sparse Autoencoders"
    (2024), https://arxiv.org/abs/2410.07456
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from synthetic_saes.sae_params import SAEParams
from synthetic_saes.threads import single_threaded_torch

__all__ = ["SUBLAYERS", "SublayerSAE", "SublayerActivations", "residual_hooks_around",
           "sublayer_activations", "language_sublayer_activations"]

SUBLAYERS: dict[str, tuple[str, str]] = {"attn_out": ("resid_pre", "resid_mid"),
                                         "mlp_out": ("resid_mid", "resid_post")}
"""sublayer -> (the residual hook before it, the one after it), within one block."""

_SUBLAYER_HOOK = re.compile(r"^blocks\.(\d+)\.hook_(attn_out|mlp_out)$")


def residual_hooks_around(sublayer_hook: str) -> tuple[str, str]:
    """(before, after) residual hooks of blocks.{l}.hook_attn_out or hook_mlp_out.

    Examples:
        >>> residual_hooks_around("blocks.1.hook_attn_out")
        ('blocks.1.hook_resid_pre', 'blocks.1.hook_resid_mid')
        >>> residual_hooks_around("blocks.0.hook_mlp_out")
        ('blocks.0.hook_resid_mid', 'blocks.0.hook_resid_post')
    """
    match = _SUBLAYER_HOOK.match(str(sublayer_hook))
    if match is None:
        raise ValueError(f"{sublayer_hook!r} is not a sublayer hook; expected "
                         "blocks.<layer>.hook_attn_out or blocks.<layer>.hook_mlp_out")
    layer, sublayer = match.group(1), match.group(2)
    before, after = SUBLAYERS[sublayer]
    return f"blocks.{layer}.hook_{before}", f"blocks.{layer}.hook_{after}"


def _rows(x, name: str, d_in: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != d_in:
        raise ValueError(f"{name} must be [n, {d_in}], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return x


@dataclass(frozen=True, eq=False)
class SublayerSAE:
    """A sublayer's SAE made of the residual-stream SAEs around it (module docstring).

    Attributes:
        before: the SAE of the residual stream before the sublayer (resid_pre for attn_out,
            resid_mid for mlp_out).
        after: the SAE of the residual stream after it.

    Raises:
        ValueError: the two SAEs read different widths of residual stream.
    """

    before: SAEParams
    after: SAEParams

    def __post_init__(self) -> None:
        for name in ("before", "after"):
            if not isinstance(getattr(self, name), SAEParams):
                raise ValueError(f"{name} must be an SAEParams, got "
                                 f"{type(getattr(self, name)).__name__}")
        if self.before.d_in != self.after.d_in:
            raise ValueError(f"the SAEs read different residual widths: before d_in="
                             f"{self.before.d_in}, after d_in={self.after.d_in}")

    @property
    def d_in(self) -> int:
        return self.after.d_in

    @property
    def d_sae(self) -> int:
        """d_sae_after + d_sae_before."""
        return self.after.d_sae + self.before.d_sae

    @property
    def W_dec(self) -> np.ndarray:
        """[W_after; W_before], float32 [d_sae, d_in]."""
        return np.concatenate([self.after.W_dec, self.before.W_dec])

    @property
    def b_dec(self) -> np.ndarray:
        """b_after - b_before, float32 [d_in]."""
        return self.after.b_dec - self.before.b_dec

    @property
    def shared(self) -> bool:
        """Whether both ends use one dictionary (equal decoders and decoder biases)."""
        return (self.before is self.after) or (
            self.before.W_dec.shape == self.after.W_dec.shape
            and np.array_equal(self.before.W_dec, self.after.W_dec)
            and np.array_equal(self.before.b_dec, self.after.b_dec))

    def _pair(self, resid_before, resid_after) -> tuple[np.ndarray, np.ndarray]:
        before = _rows(resid_before, "resid_before", self.d_in)
        after = _rows(resid_after, "resid_after", self.d_in)
        if before.shape[0] != after.shape[0]:
            raise ValueError(f"resid_before has {before.shape[0]} rows but resid_after has "
                             f"{after.shape[0]}")
        return before, after

    def encode(self, resid_before, resid_after) -> np.ndarray:
        """Codes [f_after(r_after), -f_before(r_before)], float32 [n, d_sae], for the residual
        stream before and after the sublayer, each [n, d_in]."""
        before, after = self._pair(resid_before, resid_after)
        return np.concatenate([self.after.encode(after), -self.before.encode(before)], axis=1)

    def encode_sublayer(self, sublayer, resid_before) -> np.ndarray:
        """The codes of sublayer activations h [n, d_in] given the residual stream before the
        sublayer: encode(r_before, r_before + h)."""
        before = _rows(resid_before, "resid_before", self.d_in)
        h = _rows(sublayer, "sublayer", self.d_in)
        if h.shape[0] != before.shape[0]:
            raise ValueError(f"sublayer has {h.shape[0]} rows but resid_before has "
                             f"{before.shape[0]}")
        return self.encode(before, before + h)

    def decode(self, codes) -> np.ndarray:
        """codes @ W_dec + b_dec, float32 [n, d_in] for codes [n, d_sae]."""
        codes = np.asarray(codes, dtype=np.float32)
        if codes.ndim != 2 or codes.shape[1] != self.d_sae:
            raise ValueError(f"codes must be [n, {self.d_sae}], got shape {codes.shape}")
        return codes @ self.W_dec + self.b_dec

    def reconstruct(self, resid_before, resid_after) -> np.ndarray:
        """h_hat = SAE_after(r_after) - SAE_before(r_before), float32 [n, d_in]."""
        before, after = self._pair(resid_before, resid_after)
        return (self.after.decode(self.after.encode(after))
                - self.before.decode(self.before.encode(before)))

    def shared_codes(self, resid_before, resid_after) -> np.ndarray:
        """f(r_after) - f(r_before), float32 [n, d_sae_after], in the one dictionary both
        ends share (h_hat = shared_codes @ after.W_dec).

        Raises:
            ValueError: the two SAEs have different decoders.
        """
        if not self.shared:
            raise ValueError("shared_codes needs one dictionary at both ends (equal W_dec and "
                             "b_dec); these SAEs differ: use encode")
        before, after = self._pair(resid_before, resid_after)
        return self.after.encode(after) - self.before.encode(before)


class SublayerActivations(NamedTuple):
    """The residual stream before a sublayer, the sublayer's output and the stream after it,
    each float32 [n_tokens, d_model] (resid_after = resid_before + sublayer, to rounding)."""

    resid_before: np.ndarray
    sublayer: np.ndarray
    resid_after: np.ndarray


def sublayer_activations(model, tokens, sublayer_hook: str, *,
                         attention_mask=None) -> SublayerActivations:
    """Run `model` on token ids [batch, T] and return the three activations around
    `sublayer_hook`, each float32 [batch, T, d_model].

    Raises:
        ValueError: not a sublayer hook, or one the model lacks.
    """
    before, after = residual_hooks_around(sublayer_hook)
    missing = [h for h in (before, sublayer_hook, after) if h not in model.hook_dict]
    if missing:
        raise ValueError(f"the model has no hook {missing[0]!r}")
    names = (before, sublayer_hook, after)
    tokens = torch.as_tensor(np.asarray(tokens))
    kwargs = {} if attention_mask is None else {
        "attention_mask": torch.as_tensor(np.asarray(attention_mask)).long()}
    with torch.no_grad(), single_threaded_torch():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names,
                                        return_type=None, **kwargs)
    return SublayerActivations(*(cache[n].float().numpy() for n in names))


def language_sublayer_activations(world_or_model, stories, sublayer_hook: str, *,
                                  language=None) -> SublayerActivations:
    """The activations around `sublayer_hook` on every word of `stories` (BOS run but
    dropped), each float32 [total words, d_model], stories in order: the same tokens, in the
    same order, as `LanguageWorld.story_activations` at the sublayer hook."""
    from synthetic_saes.semisynthetic.language import Language
    from synthetic_saes.semisynthetic.model import story_tokens

    model = getattr(world_or_model, "model", world_or_model)
    language = language or getattr(world_or_model, "language", None) or Language()
    stories = list(stories)
    tokens, mask = story_tokens(language, stories, model.tokenizer, model.cfg.n_ctx)
    acts = sublayer_activations(model, tokens, sublayer_hook, attention_mask=mask)
    return SublayerActivations(*(
        np.concatenate([a[row, 1:len(s.words) + 1] for row, s in enumerate(stories)])
        for a in acts))
