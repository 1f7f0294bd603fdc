"""Ground-truth quality of latent codes that are not one SAE's encoding of the activation.

`evaluate_quality` scores an SAE by encoding the world's activations x itself. A sublayer's
reconstruction from residual-stream SAEs (`synthetic_saes.semisynthetic.sublayer`) has codes
that depend on the residual stream around the sublayer, not on the sublayer activation alone,
so it is scored from its codes directly: given, for the same n tokens,

    codes           c [n, d]        the latent code (a latent fires where c != 0),
    reconstruction  x_hat [n, d_in] what the codes reconstruct,
    hidden          x [n, d_in]     the activation reconstructed,
    features        a [n, N]        the true features (a_k > 0 where feature k fires),
    decoder         W [d, d_in]     the code's directions,
    directions      G [N, d_in]     the true directions,

it returns the scores `evaluate_quality` gives, computed with the same calculators (sae_lens's
ClassificationMetricsCalculator for detection, ExplainedVarianceCalculator, L0Calculator,
DeadLatentsCalculator; `decoder_matching` for MCC / MMCS / recovery / uniqueness), so an
ordinary SAE's codes give exactly its `evaluate_quality` scores (tested).
"""

from __future__ import annotations

import numpy as np
import torch
from sae_lens.evals import ExplainedVarianceCalculator
from sae_lens.synthetic import ClassificationMetricsCalculator, DeadLatentsCalculator, L0Calculator

from groundtruth.metrics.matching import decoder_matching

__all__ = ["codes_quality"]


def codes_quality(codes: np.ndarray, reconstruction: np.ndarray, hidden: np.ndarray,
                  features: np.ndarray, decoder: np.ndarray, directions: np.ndarray, *,
                  recovery_tau: float = 0.9) -> dict[str, float]:
    """Matching, detection and reconstruction scores of codes (see the module docstring).

    Returns:
        {"mcc", "mmcs", "recovery", "uniqueness", "precision", "recall", "f1",
         "explained_variance", "l0", "dead_latents", "n_samples"}.

    Raises:
        ValueError: shapes that do not agree, or no samples.
    """
    codes, reconstruction, hidden, features, decoder, directions = (
        np.asarray(a, dtype=np.float32)
        for a in (codes, reconstruction, hidden, features, decoder, directions))
    n, d = codes.shape
    if n == 0:
        raise ValueError("codes_quality needs at least one sample")
    if (reconstruction.shape != hidden.shape or hidden.shape[0] != n
            or features.shape[0] != n or decoder.shape != (d, hidden.shape[1])
            or directions.shape != (features.shape[1], hidden.shape[1])):
        raise ValueError(
            f"shapes do not agree: codes {codes.shape}, reconstruction {reconstruction.shape}, "
            f"hidden {hidden.shape}, features {features.shape}, decoder {decoder.shape}, "
            f"directions {directions.shape}")
    matching = decoder_matching(decoder, directions, recovery_tau=recovery_tau)
    detection = ClassificationMetricsCalculator(torch.from_numpy(decoder.copy()),
                                                torch.from_numpy(directions.copy()))
    explained, l0, dead = ExplainedVarianceCalculator(), L0Calculator(), DeadLatentsCalculator(d)
    ct = torch.from_numpy(codes)
    detection.add_batch(ct, torch.from_numpy(features))
    explained.add_batch(torch.from_numpy(reconstruction), torch.from_numpy(hidden))
    l0.add_batch(ct)
    dead.add_batch(ct)
    summary = detection.compute()
    return {"mcc": matching.mcc, "mmcs": matching.mmcs, "recovery": matching.recovery,
            "uniqueness": matching.uniqueness, "precision": float(summary.precision),
            "recall": float(summary.recall), "f1": float(summary.f1_score),
            "explained_variance": float(explained.compute()), "l0": float(l0.compute()),
            "dead_latents": int(dead.compute()), "n_samples": int(n)}
