"""One encode of a shared sample for a stack of SAEs of one width (the metrics' batch forms).

For a stack of S SAEs sharing d_in and d_sae and one sample x [n, d_in], each chunk of the
stack is encoded by one batched matmul:

    pre[s] = (x - b_dec[s] * apply_b_dec_to_input[s]) @ W_enc[s] + b_enc[s]   [s, n, d_sae]
    latents[s] = activate_s(pre[s])                                             (per SAE)

with the same float32 operations, in the same order, as `SAEParams.encode` of each SAE (the
subtraction is per SAE, not folded into the bias, so thresholds and top-k ties see the same
pre-activations). The stack may mix architectures (relu, jumprelu, topk) and centring
settings: only the weights' shapes must agree.

Memory: a chunk holds at most `max_bytes` of pre-activations and latents (and always at
least one SAE), so a stack of any size costs about what one chunk does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from synthetic_saes.sae_params import SAEParams

__all__ = ["check_stack", "encoded_stack", "DEFAULT_MAX_BYTES"]

DEFAULT_MAX_BYTES = 32 * 2**20
"""Pre-activations plus latents of one chunk of a stack (the chunk keeps at least one SAE)."""


def check_stack(saes: Sequence[SAEParams]) -> tuple[int, int]:
    """(d_in, d_sae) shared by every SAE of a non-empty stack.

    Raises:
        ValueError: an empty stack, an entry that is not an `SAEParams`, or SAEs whose
            d_in or d_sae differ (the message names the first one that differs).
    """
    saes = list(saes)
    if not saes:
        raise ValueError("a stack of SAEs needs at least one SAE, got none")
    for i, sae in enumerate(saes):
        if not isinstance(sae, SAEParams):
            raise ValueError(f"stack entry {i} is a {type(sae).__name__}, not an SAEParams")
    d_in, d_sae = saes[0].d_in, saes[0].d_sae
    for i, sae in enumerate(saes):
        if (sae.d_in, sae.d_sae) != (d_in, d_sae):
            raise ValueError(f"a stack shares one shape: SAE {i} has d_in={sae.d_in}, "
                             f"d_sae={sae.d_sae} but SAE 0 has d_in={d_in}, d_sae={d_sae}")
    return d_in, d_sae


def encoded_stack(saes: Sequence[SAEParams], x: np.ndarray, *,
                  max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[tuple[SAEParams, np.ndarray]]:
    """(sae, latents float32 [n, d_sae]) for each SAE of the stack in order, each equal to
    `sae.encode(x)`; chunks of the stack are encoded by one matmul each (module docstring).

    Args:
        saes: S >= 1 SAEs of one d_in and d_sae.
        x: float [n, d_in], the shared sample.
        max_bytes: bound on one chunk's pre-activations and latents, > 0.

    Raises:
        ValueError: a bad stack (`check_stack`), x not [n, d_in], or max_bytes <= 0; all
            before any encoding.
    """
    saes = list(saes)
    d_in, d_sae = check_stack(saes)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != d_in:
        raise ValueError(f"the shared sample must be [n, {d_in}], got shape {x.shape}")
    if not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
    per_sae = 2 * 4 * x.shape[0] * d_sae  # float32 pre-activations and latents
    chunk = max(1, max_bytes // max(per_sae, 1))
    return _encoded(saes, x, chunk)


def _encoded(saes: list[SAEParams], x: np.ndarray, chunk: int):
    zero = np.zeros(x.shape[1], dtype=np.float32)
    for start in range(0, len(saes), chunk):
        part = saes[start:start + chunk]
        centred = np.stack([x - (s.b_dec if s.apply_b_dec_to_input else zero) for s in part])
        pre = np.matmul(centred, np.stack([s.W_enc for s in part]))
        pre += np.stack([s.b_enc for s in part])[:, None, :]
        for sae, p in zip(part, pre):
            yield sae, sae.activate(p)
