"""Checks shared by the frozen configs: each raises ValueError naming the rule and the value."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np

__all__ = ["require_positive_int", "require_seed", "reject_unknown_keys"]


def require_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def require_seed(value: Any, name: str = "seed") -> int:
    """`value` as an int if it is a non-negative integer (numpy's too, never a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def reject_unknown_keys(cls: type, data: dict[str, Any]) -> None:
    """Refuse keys that are not fields of the dataclass `cls` (typos in configs)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; known keys: {sorted(known)}")
