"""CE-Bench, faithful and fast: contrastive, independent and interpretability scores of SAEs.

scores      the score definitions (v4, v1, sparsity-aware, width-calibrated), pure numpy
core        the JAX streaming core: activations -> encode -> segment sums -> scores
reference   a slow, literal re-implementation of the reference loop (the test oracle)
sae_weights an SAE as arrays (the `SAEWeights` protocol) and its sae_lens form
saes        loading SAEs: sae-lens dirs, Gemma Scope params.npz, pretrained releases
datasets    the contrastive-stories schemas from local files, tokenized with marks
activations model activations at a hook, batched, cached on disk per (model, hook, dataset)
sweep       the `cebench score` pipeline over many SAEs, resumable

cebench is the leaf of the project: it imports nothing of synthetic_saes or groundtruth.
The names below are imported on first use, so `from cebench.scores import ...` costs numpy
only, not JAX and torch.
"""

from importlib import import_module

_EXPORTS = {
    "CEScores": "cebench.scores",
    "PerPairScores": "cebench.scores",
    "score_latents": "cebench.scores",
    "score_activations": "cebench.core",
    "Encoder": "cebench.core",
    "EncoderConfig": "cebench.core",
    "encoder_from_sae": "cebench.core",
    "segment_sums": "cebench.core",
    "SAEWeights": "cebench.sae_weights",
    "load_sae": "cebench.saes",
    "select_saes": "cebench.saes",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cebench' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
