"""One intra-op thread for torch where results must not depend on thread scheduling.

Training the language model with torch's default two threads on this machine gave different
weights in two processes with the same seed (the backward reductions are split across
threads); with one thread they are bit-identical (measured: 40 steps, md5 of the weights).
Small models lose little: 600 steps of the default language model take ~60 s on one thread
against ~45 s on two. Tiny forward passes also gain: with busy cores torch's thread pool made
[n, 41]-wide matmuls ~50x slower (Tracr models, measured on 2 cores).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["single_threaded_torch"]


@contextmanager
def single_threaded_torch() -> Iterator[None]:
    """Run the block with torch on one intra-op thread; the previous count is restored."""
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
