"""Checks shared by the frozen configs: each raises ValueError naming the rule and the value."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import fields
from typing import Any, Literal, Union

import numpy as np

__all__ = ["require_positive_int", "require_seed", "reject_unknown_keys", "check_field_types"]


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


def _matches(value: Any, expected: Any) -> bool:
    """Whether `value` has the annotated type (bool is not an int; an int is a float)."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if expected is Any:
        return True
    if expected is type(None):
        return value is None
    if origin in (Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if origin is Literal:
        return value in args
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(args) == len(value) and all(_matches(v, a) for v, a in zip(value, args))
    if origin is dict:
        return isinstance(value, dict) and all(
            _matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items())
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, bool)
    if isinstance(expected, type):
        return isinstance(value, expected)
    return True  # an annotation this checker does not read


def _describe(expected: Any) -> str:
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        return f"a list of {_describe(args[0])}" if args and args[-1] is Ellipsis else "a list"
    if origin is dict:
        return f"a table of {_describe(args[1])}"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
             type(None): "nothing"}
    return names.get(expected, getattr(expected, "__name__", str(expected)))


def check_field_types(instance: Any, where: str | None = None) -> None:
    """Refuse a dataclass field whose value does not have its annotated type, before any rule
    compares it (so "fast" for a learning rate or "5" for a count is a one-line error, not a
    TypeError deep inside; a string where a list is expected is not read letter by letter).

    Raises:
        ValueError: "[where] field must be <type>, got <value>".

    Examples:
        >>> @dataclasses.dataclass
        ... class C:
        ...     lr: float
        >>> check_field_types(C(lr="fast"), "training")
        Traceback (most recent call last):
        ...
        ValueError: [training] lr must be a number, got 'fast'
    """
    hints = typing.get_type_hints(type(instance))
    prefix = f"[{where}] " if where else ""
    for field in dataclasses.fields(instance):
        value = getattr(instance, field.name)
        if not _matches(value, hints[field.name]):
            raise ValueError(f"{prefix}{field.name} must be {_describe(hints[field.name])}, "
                             f"got {value!r}")
