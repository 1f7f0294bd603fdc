"""Read-only arrays: what worlds, SAEs and results hand out, so no caller edits them in place."""

from __future__ import annotations

import numpy as np

__all__ = ["readonly"]


def readonly(array, dtype=None) -> np.ndarray:
    """A read-only copy of `array` (in `dtype` if given, else its own).

    Examples:
        >>> a = readonly([1, 2], np.float32)
        >>> a.dtype, a.flags.writeable
        (dtype('float32'), False)
    """
    array = np.array(array, dtype=dtype, copy=True)
    array.setflags(write=False)
    return array
