"""Isolated torch random streams, so sae_lens sampling is reproducible from an explicit seed.

sae_lens's synthetic sampler draws from torch's global generator. Wrapping each draw in a
private, saved generator state makes every sample a pure function of its seed and of the
number of draws before it, whatever else in the process touches torch's global RNG.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from synthetic_saes.validation import require_seed

__all__ = ["TorchStream", "derive_seed"]

# Installing a stream swaps torch's *global* generator state, so two streams used from two
# threads (a prefetching sampler and the main thread) must take turns.
_GLOBAL_RNG_LOCK = threading.RLock()


def derive_seed(seed: int, *names: str | int) -> int:
    """A 63-bit seed for an independent named sub-stream of `seed`.

    Uses numpy's SeedSequence (a hash), so sub-streams neither collide nor overlap the way
    `seed + 1`, `seed + 2`, ... offsets can.

    Examples:
        >>> derive_seed(0, "corpus") == derive_seed(0, "corpus")
        True
        >>> derive_seed(0, "corpus") != derive_seed(0, "families")
        True
    """
    words = [require_seed(seed)]
    for name in names:
        if isinstance(name, str):
            words.extend(name.encode("utf-8"))
            words.append(0x100)  # separator so ("ab", "c") != ("a", "bc")
        else:
            words.append(int(name) + 0x200)
    state = np.random.SeedSequence(words).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


class TorchStream:
    """A torch CPU random stream that does not share state with torch's global generator.

    Each `with stream.active():` block runs with this stream's state installed as the global
    state and saves it back afterwards; the caller's global state is restored untouched.
    Blocks of different streams never overlap, even across threads.
    """

    def __init__(self, seed: int):
        generator = torch.Generator().manual_seed(require_seed(seed))
        self._state = generator.get_state()

    @contextmanager
    def active(self) -> Iterator[None]:
        with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self._state)
            try:
                yield
            finally:
                self._state = torch.get_rng_state()
