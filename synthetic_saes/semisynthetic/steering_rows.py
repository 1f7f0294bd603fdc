"""Steering rows in lm-evaluation-harness's `steered` CSV format, applied to TransformerLens.

lm-eval's `steered` model (lm_eval/models/hf_steered.py, `SteeredModel`) reads a CSV whose
columns are, in this order,

    loader,action,sparse_model,hookpoint,feature_index,steering_coefficient,sae_id,description

(`loader` defaults to "sparsify" and `action` to "add" when their column is missing). A
"sae_lens" row loads `SAE.from_pretrained(sparse_model, sae_id)`, with decoder
W_dec [d_sae, d_in] and decoder bias b_dec [d_in], and edits the output x [batch, seq, d_in]
of module `hookpoint` (an empty hookpoint means the SAE's own hook) at every position, with
v = W_dec[feature_index] (not normalised) and c = steering_coefficient:

    add:    x' = x + c * v
    clamp:  y = x - b_dec;   u = v / ||v||;   p = sum(y * u, -1, keepdim)
            x' = (y - p * u + u * c) + b_dec

so a clamp sets the component of x - b_dec along u to exactly c and leaves the orthogonal
part unchanged. `apply_steering` evaluates these expressions in lm-eval's operation order, so
float32 results are bitwise lm-eval's. lm-eval's hookpoints are HF module names; the output
of decoder layer N ("layers.N", "model.layers.N", "gpt_neox.layers.N", "transformer.h.N",
"h.N") is TransformerLens's "blocks.N.hook_resid_post" (`resolve_hookpoint`).

Where we differ from lm-eval, we raise a ValueError instead of doing something silent:
  - two rows steering one hook (also through aliases, "layers.1" and
    "blocks.1.hook_resid_post"): lm-eval keys its config by hookpoint and keeps the last row;
  - unknown columns, a value in an unnamed column (often an unquoted comma), a row with more
    fields than the header, a non-empty `head_index` (lm-eval's CSV reader ignores it);
  - a fractional or negative feature_index (lm-eval truncates, or indexes from the end), a
    non-finite coefficient, clamping along a zero vector (lm-eval gives NaN).
Further differences: each hook uses its own vector and coefficient (lm-eval's original `add`
lambda late-binds its loop variables, so every add hook used the last entry's; later
versions bind them with `functools.partial`, as we do); vectors and biases are cast to the
activations' dtype and device before the edit (as later lm-eval versions cast them to the
model's dtype); SAEs load through `cebench.load_sae` with sae-lens 6's API (the hook name is
`sae.cfg.metadata.hook_name`), so `sparse_model` may also be a local sae-lens directory or a
Gemma Scope params.npz; "sparsify" rows are read and written but cannot be applied; and
`steered` takes an optional `positions` mask (None is lm-eval's every position).

Reference: lm-evaluation-harness, lm_eval/models/hf_steered.py
(https://github.com/EleutherAI/lm-evaluation-harness).
"""

from __future__ import annotations

import csv
import difflib
import math
import numbers
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from cebench.saes import load_sae as _cebench_load_sae

__all__ = [
    "ACTIONS",
    "LM_EVAL_COLUMNS",
    "LOADERS",
    "SteeringRow",
    "SteeringVector",
    "apply_steering",
    "read_steering_csv",
    "resolve_hookpoint",
    "steered",
    "steering_vectors",
    "write_steering_csv",
]

LM_EVAL_COLUMNS: tuple[str, ...] = (
    "loader",
    "action",
    "sparse_model",
    "hookpoint",
    "feature_index",
    "steering_coefficient",
    "sae_id",
    "description",
)
"""lm-eval's steering CSV columns, in the order `write_steering_csv` writes them."""

ACTIONS: tuple[str, ...] = ("add", "clamp")
"""The edits lm-eval knows."""

LOADERS: tuple[str, ...] = ("sae_lens", "sparsify")
"""The SAE libraries lm-eval loads rows with; only "sae_lens" rows can be applied here."""

_REQUIRED_COLUMNS = ("sparse_model", "hookpoint", "feature_index", "steering_coefficient")
_COLUMN_DEFAULTS = {"loader": "sparsify", "action": "add", "sae_id": "", "description": ""}
_IGNORED_IF_EMPTY = "head_index"  # in later lm-eval docstrings; its CSV reader never reads it
_LAYER_ALIAS = re.compile(r"(?:layers|model\.layers|gpt_neox\.layers|transformer\.h|h)\.(\d+)")
_LAYER_FORMS = "'layers.N', 'model.layers.N', 'gpt_neox.layers.N', 'transformer.h.N', 'h.N'"


# ---- rows ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SteeringRow:
    """One row of an lm-eval steering CSV.

    Attributes:
        loader: "sae_lens" or "sparsify", the library lm-eval loads `sparse_model` with.
        action: "add" or "clamp" (see the module docstring for the formulas).
        sparse_model: a sae-lens release or a local SAE path (sae_lens), or a sparsify
            model; non-empty.
        hookpoint: the module whose output is edited (an lm-eval/HF name such as
            "layers.3", or a TransformerLens hook name); None (an empty cell) means the
            SAE's own hook.
        feature_index: the latent whose decoder row W_dec[feature_index] is the steering
            vector; a non-negative int.
        steering_coefficient: c, the multiple of the vector added, or the value the
            direction is clamped to; finite.
        sae_id: the SAE's id within a sae-lens release; None (empty) for a local path.
        description: free text, ignored by lm-eval.

    Raises:
        ValueError: a field breaks its rule; the message names the field, the rule and
            the value given.
    """

    loader: str
    action: str = "add"
    sparse_model: str
    hookpoint: str | None = None
    feature_index: int
    steering_coefficient: float
    sae_id: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        for name, check in _FIELD_CHECKS.items():
            object.__setattr__(self, name, check(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict; `SteeringRow.from_dict` reads it back."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SteeringRow:
        """A row from `to_dict`'s dict.

        Raises:
            ValueError: unknown keys, or a field breaks its rule.
        """
        known = set(_FIELD_CHECKS)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SteeringRow keys {unknown}; known keys: {sorted(known)}")
        missing = [name for name in _REQUIRED_FIELDS if name not in data]
        if missing:
            raise ValueError(f"SteeringRow needs the keys {missing}; got {sorted(data)}")
        return cls(**data)


def _check_choice(name: str, choices: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
        return value

    return check


def _check_sparse_model(value: Any) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            f"sparse_model must be a non-empty string (a release or a path), got {value!r}"
        )
    return value


def _check_optional_text(name: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string or None (empty), got {value!r}")
        return value

    return check


def _check_feature_index(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"feature_index must be a non-negative int, got {value!r}")
    return int(value)


def _check_coefficient(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"steering_coefficient must be a finite number, got {value!r}")
    return float(value)


def _check_description(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"description must be a string, got {value!r}")
    return value


_REQUIRED_FIELDS = ("loader", "sparse_model", "feature_index", "steering_coefficient")
_FIELD_CHECKS: dict[str, Callable[[Any], Any]] = {
    "loader": _check_choice("loader", LOADERS),
    "action": _check_choice("action", ACTIONS),
    "sparse_model": _check_sparse_model,
    "hookpoint": _check_optional_text("hookpoint"),
    "feature_index": _check_feature_index,
    "steering_coefficient": _check_coefficient,
    "sae_id": _check_optional_text("sae_id"),
    "description": _check_description,
}


# ---- CSV -------------------------------------------------------------------------------------


def read_steering_csv(path: str | Path) -> list[SteeringRow]:
    """The rows of an lm-eval steering CSV, as lm-eval reads them, strictly.

    Columns are matched by name, in any order. `loader` ("sparsify") and `action` ("add")
    take lm-eval's defaults when their column is missing; `sae_id` and `description` are
    optional. Columns with an empty name (lm-eval's own example header ends with a comma)
    are ignored when their cells are empty, as is an all-empty `head_index` column. A row
    may have fewer fields than the header (the rest are empty), blank lines are skipped,
    and a UTF-8 byte-order mark is allowed. Rows are numbered from 1 after the header.

    Args:
        path: the CSV file.

    Returns:
        The rows in file order; [] for a header without rows (lm-eval then steers nothing).

    Raises:
        ValueError: naming the file, and the row, line and column where there is one: an
            empty file, a duplicate or unknown column, a missing required column
            (sparse_model, hookpoint, feature_index, steering_coefficient), a row with more
            fields than the header, a value in an unnamed column, an unknown loader or
            action (an empty cell included), an empty sparse_model, a feature_index that is
            not a non-negative integer, a steering_coefficient that is not a finite number,
            a non-empty head_index.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        header = next((fields for fields in reader if fields), None)
        if header is None:
            raise ValueError(
                f"{path}: empty file; an lm-eval steering CSV starts with a header row of "
                f"the columns {','.join(LM_EVAL_COLUMNS)}"
            )
        columns = _check_header(path, header)
        rows = []
        for fields in reader:
            if not fields:
                continue
            where = f"{path}, row {len(rows) + 1} (line {reader.line_num})"
            rows.append(_parse_row(where, header, columns, fields))
    return rows


def write_steering_csv(rows: Sequence[SteeringRow], path: str | Path) -> Path:
    """Write rows as an lm-eval steering CSV (`LM_EVAL_COLUMNS`, in that order).

    Empty cells stand for None (hookpoint, sae_id); coefficients are written with `repr`,
    so `read_steering_csv` gives back equal rows; fields holding commas, quotes or line
    breaks are quoted (RFC 4180, "\\r\\n" line ends), as pandas, and so lm-eval, reads them.

    Args:
        rows: the rows to write.
        path: the file to write; parent folders are created.

    Returns:
        The path written.

    Raises:
        ValueError: an element of `rows` is not a SteeringRow.
    """
    rows = list(rows)
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, SteeringRow):
            raise ValueError(f"row {number} must be a SteeringRow, got {type(row).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\r\n")
        writer.writerow(LM_EVAL_COLUMNS)
        for row in rows:
            writer.writerow(
                [
                    row.loader,
                    row.action,
                    row.sparse_model,
                    row.hookpoint or "",
                    str(row.feature_index),
                    repr(row.steering_coefficient),
                    row.sae_id or "",
                    row.description,
                ]
            )
    return path


def _check_header(path: Path, header: list[str]) -> dict[str, int]:
    """Column name -> index of the known columns; raises on duplicates, unknowns, missing."""
    columns: dict[str, int] = {}
    for index, name in enumerate(header):
        if name == "":
            continue
        if name in columns:
            raise ValueError(f"{path}: column {name!r} appears twice in the header {header}")
        if name not in LM_EVAL_COLUMNS and name != _IGNORED_IF_EMPTY:
            close = difflib.get_close_matches(name, LM_EVAL_COLUMNS, n=1)
            raise ValueError(
                f"{path}: unknown column {name!r}"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; lm-eval's columns are {list(LM_EVAL_COLUMNS)}"
            )
        columns[name] = index
    missing = [name for name in _REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise ValueError(
            f"{path}: missing required column(s) {missing}; the header has "
            f"{[name for name in header if name]}, lm-eval's columns are {list(LM_EVAL_COLUMNS)}"
        )
    return columns


def _parse_row(
    where: str, header: list[str], columns: dict[str, int], fields: list[str]
) -> SteeringRow:
    if len(fields) > len(header):
        raise ValueError(
            f"{where}: {len(fields)} fields but the header has {len(header)} columns "
            "(an unquoted comma? quote fields that hold commas)"
        )
    for index, name in enumerate(header):
        if name == "" and index < len(fields) and fields[index] != "":
            raise ValueError(
                f"{where}: value {fields[index]!r} in unnamed column {index + 1} "
                "(an unquoted comma in the field before it? quote fields that hold commas)"
            )

    def cell(name: str) -> str:
        if name not in columns:
            return _COLUMN_DEFAULTS.get(name, "")
        index = columns[name]
        return fields[index] if index < len(fields) else ""

    if _IGNORED_IF_EMPTY in columns and (head_index := cell(_IGNORED_IF_EMPTY)) != "":
        raise ValueError(
            f"{where}, column {_IGNORED_IF_EMPTY!r}: must be empty, got {head_index!r}; "
            "lm-eval's CSV reader ignores head_index, so a value there would silently not "
            "be applied"
        )
    values: dict[str, Any] = {}
    for name in LM_EVAL_COLUMNS:
        text = cell(name)
        try:
            value = _PARSERS.get(name, _identity)(name, text)
            values[name] = _FIELD_CHECKS[name](value)
        except ValueError as error:
            raise ValueError(f"{where}, column {name!r}: {error}") from None
    return SteeringRow(**values)


def _identity(name: str, text: str) -> str:
    return text


def _parse_feature_index(name: str, text: str) -> int:
    if text.strip() == "":
        raise ValueError(f"{name} is required, got an empty cell")
    if _INTEGER.fullmatch(text):
        return int(text)
    # pandas reads "30.0" as 30.0 and lm-eval takes int() of it; "30.5" it would truncate.
    if _DECIMAL.fullmatch(text) and (number := float(text)).is_integer():
        return int(number)
    raise ValueError(f"{name} must be a non-negative integer, got {text!r}")


def _parse_coefficient(name: str, text: str) -> float:
    if text.strip() == "":
        raise ValueError(f"{name} is required, got an empty cell")
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} must be a finite number, got {text!r}") from None


_INTEGER = re.compile(r"\s*[+-]?\d+\s*")
_DECIMAL = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")

_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "feature_index": _parse_feature_index,
    "steering_coefficient": _parse_coefficient,
}


# ---- hookpoints ------------------------------------------------------------------------------


def resolve_hookpoint(model: Any, hookpoint: str) -> str:
    """The TransformerLens hook an lm-eval hookpoint names in `model`.

    A TransformerLens hook name of `model` ("blocks.3.hook_resid_post", "hook_embed",
    "blocks.0.attn.hook_z", ...) is used as is. An HF decoder-layer name, whose output
    lm-eval edits, maps to that layer's residual-stream output:

        layers.N | model.layers.N | gpt_neox.layers.N | transformer.h.N | h.N
            -> blocks.N.hook_resid_post

    Args:
        model: a HookedTransformer (anything with `hook_dict` and `cfg.n_layers`).
        hookpoint: the name to resolve.

    Returns:
        A key of `model.hook_dict`.

    Raises:
        ValueError: a name that is neither form, or a layer N the model lacks; the message
            lists the valid forms and the layer range.

    Example:
        >>> resolve_hookpoint(model, "layers.1")  # doctest: +SKIP
        'blocks.1.hook_resid_post'
    """
    hook_dict = getattr(model, "hook_dict", None)
    if not isinstance(hook_dict, Mapping):
        raise ValueError(
            f"model must be a TransformerLens HookedTransformer (with hook_dict), got "
            f"{type(model).__name__}"
        )
    n_layers = int(model.cfg.n_layers)
    valid = (
        f"use a TransformerLens hook name of the model (e.g. 'blocks.0.hook_resid_post', "
        f"'hook_embed') or an lm-eval/HF decoder-layer name {_LAYER_FORMS} with "
        f"0 <= N < {n_layers}, which means 'blocks.N.hook_resid_post'"
    )
    if not isinstance(hookpoint, str):
        raise ValueError(f"a hookpoint is a string, got {hookpoint!r}; {valid}")
    if hookpoint in hook_dict:
        return hookpoint
    match = _LAYER_ALIAS.fullmatch(hookpoint)
    if match is not None:
        layer = int(match.group(1))
        name = f"blocks.{layer}.hook_resid_post"
        if layer < n_layers and name in hook_dict:
            return name
        raise ValueError(
            f"hookpoint {hookpoint!r} names layer {layer}, but the model has {n_layers} "
            f"layers (0 to {n_layers - 1}); {valid}"
        )
    close = difflib.get_close_matches(hookpoint, list(hook_dict), n=3)
    raise ValueError(
        f"unknown hookpoint {hookpoint!r}"
        + (f" (close hook names: {close})" if close else "")
        + f"; {valid}"
    )


def _canonical_hookpoint(hookpoint: str) -> str:
    """A decoder-layer alias as its TransformerLens hook name; any other name as is."""
    match = _LAYER_ALIAS.fullmatch(hookpoint)
    return f"blocks.{int(match.group(1))}.hook_resid_post" if match else hookpoint


# ---- steering vectors ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, eq=False)
class SteeringVector:
    """One hook's edit, lm-eval's per-hookpoint steering config entry.

    Attributes:
        action: "add" or "clamp".
        coefficient: c (finite): the multiple of `vector` added, or the clamped value.
        vector: [d_in] float tensor, finite (non-zero for "clamp"); an SAE's W_dec row.
        bias: [d_in] float tensor subtracted before and added after a clamp (an SAE's
            b_dec), or None; unused by "add".

    Raises:
        ValueError: a field breaks its rule.
    """

    action: str
    coefficient: float
    vector: torch.Tensor
    bias: torch.Tensor | None = None

    def __post_init__(self) -> None:
        _check_choice("action", ACTIONS)(self.action)
        object.__setattr__(self, "coefficient", _check_coefficient(self.coefficient))
        vector = self.vector
        if not isinstance(vector, torch.Tensor) or vector.ndim != 1 or vector.numel() == 0:
            shape = tuple(vector.shape) if isinstance(vector, torch.Tensor) else None
            raise ValueError(
                f"vector must be a non-empty 1-D [d_in] tensor, got "
                f"{type(vector).__name__} of shape {shape}"
            )
        if not torch.is_floating_point(vector) or not bool(torch.isfinite(vector).all()):
            raise ValueError(f"vector must hold finite floats, got dtype {vector.dtype}")
        if self.action == "clamp" and not bool(torch.any(vector != 0)):
            raise ValueError("clamp needs a non-zero vector (its direction is v / ||v||)")
        bias = self.bias
        if bias is not None:
            if not isinstance(bias, torch.Tensor) or tuple(bias.shape) != tuple(vector.shape):
                shape = tuple(bias.shape) if isinstance(bias, torch.Tensor) else None
                raise ValueError(
                    f"bias must be None or a tensor of the vector's shape "
                    f"{tuple(vector.shape)}, got {type(bias).__name__} of shape {shape}"
                )
            if not torch.is_floating_point(bias) or not bool(torch.isfinite(bias).all()):
                raise ValueError(f"bias must hold finite floats, got dtype {bias.dtype}")

    @property
    def d_in(self) -> int:
        return int(self.vector.shape[0])


def steering_vectors(
    rows: Sequence[SteeringRow],
    *,
    load_sae: Callable[..., Any] = _cebench_load_sae,
    device: str | torch.device = "cpu",
) -> dict[str, SteeringVector]:
    """Each row's steering vector, keyed by the hook it edits, as lm-eval derives them.

    For a "sae_lens" row: `sae = load_sae(sparse_model, sae_id, device=device)` (each
    distinct (sparse_model, sae_id) loaded once), vector = sae.W_dec[feature_index], bias =
    sae.b_dec, and an empty hookpoint becomes `sae.cfg.metadata.hook_name`.

    Args:
        rows: the rows, e.g. from `read_steering_csv` (numbered from 1 in messages, as
            there).
        load_sae: `(source, sae_id, *, device) -> sae-lens SAE`; `cebench.load_sae` reads a
            release (hub), a local sae-lens directory (sae_id empty) or a params.npz.
        device: where the SAEs and so the vectors live.

    Returns:
        {hook: SteeringVector} in row order; hooks are TransformerLens names (decoder-layer
        aliases such as "layers.3" become "blocks.3.hook_resid_post"; other names are kept
        and checked against a model by `steered`). Vectors and biases are detached copies.

    Raises:
        ValueError: a row that is not a SteeringRow or is a "sparsify" row (all rows are
            checked before any SAE loads); an SAE that does not load (the row named); a
            feature_index >= d_sae; an empty hookpoint with an SAE that records no hook;
            two rows steering the same hook (lm-eval would silently keep only the last).
    """
    rows = list(rows)
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, SteeringRow):
            raise ValueError(f"row {number} must be a SteeringRow, got {type(row).__name__}")
        if row.loader != "sae_lens":
            raise ValueError(
                f"row {number} ({_describe(row)}): only sae_lens rows can be applied here, got "
                f"loader {row.loader!r} (lm-eval loads those with the sparsify package, which "
                "this project does not use); such rows can still be read and written"
            )
    cache: dict[tuple[str, str | None], Any] = {}
    vectors: dict[str, SteeringVector] = {}
    owner: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        key = (row.sparse_model, row.sae_id)
        if key not in cache:
            try:
                cache[key] = load_sae(row.sparse_model, row.sae_id, device=device)
            except ValueError as error:
                raise ValueError(f"row {number} ({_describe(row)}): {error}") from error
        sae = cache[key]
        d_sae = int(sae.W_dec.shape[0])
        if row.feature_index >= d_sae:
            raise ValueError(
                f"row {number} ({_describe(row)}): feature_index {row.feature_index} is out "
                f"of range for an SAE with d_sae={d_sae} latents (0 to {d_sae - 1})"
            )
        hookpoint = row.hookpoint if row.hookpoint is not None else _sae_hook_name(sae)
        if hookpoint is None:
            raise ValueError(
                f"row {number} ({_describe(row)}): the hookpoint is empty and the SAE records "
                "no hook name (cfg.metadata.hook_name); write the hookpoint in the row"
            )
        hook = _canonical_hookpoint(hookpoint)
        if hook in owner:
            raise ValueError(_duplicate_message(f"row {owner[hook]}", f"row {number}", hook))
        owner[hook] = number
        vectors[hook] = SteeringVector(
            action=row.action,
            coefficient=row.steering_coefficient,
            vector=sae.W_dec[row.feature_index].detach().clone(),
            bias=sae.b_dec.detach().clone(),
        )
    return vectors


def _sae_hook_name(sae: Any) -> str | None:
    metadata = getattr(sae.cfg, "metadata", None)
    name = getattr(metadata, "hook_name", None) or getattr(sae.cfg, "hook_name", None)
    return name or None


def _describe(row: SteeringRow) -> str:
    return (
        f"loader={row.loader!r}, sparse_model={row.sparse_model!r}, sae_id={row.sae_id!r}, "
        f"hookpoint={row.hookpoint!r}, feature_index={row.feature_index}"
    )


def _duplicate_message(first: str, second: str, hook: str) -> str:
    return (
        f"{first} and {second} both steer hook {hook!r}: lm-eval keys its steering config "
        f"by hookpoint, so it would silently keep only {second}; steer each hook once "
        "(combine the edits into one vector, or use different hooks)"
    )


# ---- applying --------------------------------------------------------------------------------


def apply_steering(
    acts: torch.Tensor, steering: SteeringVector, *, positions: torch.Tensor | None = None
) -> torch.Tensor:
    """lm-eval's edit of one hook's activations, optionally at some positions only.

    add: acts + c * v.  clamp: with b = bias (if any) and u = v / ||v||, y = acts - b,
    p = sum(y * u, -1, keepdim), result (y - p * u + u * c) + b. The vector and bias are
    first cast to the activations' dtype and device; the rest is lm-eval's expressions in
    lm-eval's order (bitwise equal to it in float32 and float64).

    Args:
        acts: [batch, seq, d_in] activations (any leading dims with `positions` None).
        steering: the edit; its d_in must match acts' last dim.
        positions: optional bool [batch, seq]; where False, acts are returned unchanged.
            None edits every position (lm-eval).

    Returns:
        The edited activations, acts' shape and dtype; acts itself is not modified.

    Raises:
        ValueError: a d_in mismatch, or `positions` not a bool tensor of acts' [batch, seq].
    """
    if not isinstance(steering, SteeringVector):
        raise ValueError(f"steering must be a SteeringVector, got {type(steering).__name__}")
    if acts.ndim < 1 or acts.shape[-1] != steering.d_in:
        raise ValueError(
            f"the activations have shape {tuple(acts.shape)} but the steering vector has "
            f"d_in={steering.d_in}: it must match their last dimension"
        )
    mask = None if positions is None else _check_positions(positions, acts)
    vector = steering.vector.to(device=acts.device, dtype=acts.dtype)
    if steering.action == "add":
        edited = acts + steering.coefficient * vector
    else:
        bias = steering.bias
        if bias is not None:
            bias = bias.to(device=acts.device, dtype=acts.dtype)
        edited = _lm_eval_clamp(acts, vector, steering.coefficient, bias)
    if mask is None:
        return edited
    mask = mask.to(acts.device).reshape(mask.shape + (1,) * (acts.ndim - 2))
    return torch.where(mask, edited, acts)


def _lm_eval_clamp(
    acts: torch.Tensor, steering_vector: torch.Tensor, value: float, bias: torch.Tensor | None
) -> torch.Tensor:
    """lm-eval's `SteeredModel.clamp`, expression for expression."""
    if bias is not None:
        acts = acts - bias
    direction = steering_vector / torch.norm(steering_vector)
    proj_magnitude = torch.sum(acts * direction, dim=-1, keepdim=True)
    orthogonal_component = acts - proj_magnitude * direction
    clamped = orthogonal_component + direction * value
    if bias is not None:
        clamped = clamped + bias
    return clamped


def _check_positions(positions: Any, acts: torch.Tensor) -> torch.Tensor:
    if not isinstance(positions, torch.Tensor) or positions.dtype != torch.bool:
        raise ValueError(
            f"positions must be a bool tensor [batch, seq], got {type(positions).__name__}"
            + (f" of dtype {positions.dtype}" if isinstance(positions, torch.Tensor) else "")
        )
    if acts.ndim < 3 or tuple(positions.shape) != tuple(acts.shape[:2]):
        raise ValueError(
            f"positions has shape {tuple(positions.shape)} but the activations have shape "
            f"{tuple(acts.shape)}: it must be their [batch, seq]"
        )
    return positions


@contextmanager
def steered(
    model: Any,
    rows_or_vectors: Sequence[SteeringRow] | Mapping[str, SteeringVector],
    *,
    positions: torch.Tensor | None = None,
) -> Iterator[Any]:
    """A context in which `model`'s forward passes are steered as lm-eval steers HF models.

    Installs one TransformerLens forward hook per steered hook (`model.hooks`), each
    applying `apply_steering`; they are removed on exit, also after an exception, and
    hooks installed outside the context are kept.

    Args:
        model: a HookedTransformer.
        rows_or_vectors: steering rows (SAEs loaded with `steering_vectors` on the model's
            device) or {hookpoint: SteeringVector}; hookpoints as `resolve_hookpoint`.
        positions: optional bool [batch, seq] mask of the token positions to edit, for
            forward passes over [batch, seq] tokens (with the BOS token, if prepended);
            None edits every position (lm-eval's behaviour).

    Yields:
        The model.

    Raises:
        ValueError: as `steering_vectors` and `resolve_hookpoint`; two entries resolving to
            one hook; an entry that is not a SteeringVector; a bad `positions` (in the
            forward pass when its shape does not match the activations').

    Example:
        >>> with steered(model, read_steering_csv("steer.csv")):  # doctest: +SKIP
        ...     logits = model(tokens)
    """
    if positions is not None and (
        not isinstance(positions, torch.Tensor)
        or positions.dtype != torch.bool
        or positions.ndim != 2
    ):
        raise ValueError(
            "positions must be None or a bool tensor [batch, seq], got "
            + (
                f"a {positions.dtype} tensor of shape {tuple(positions.shape)}"
                if isinstance(positions, torch.Tensor)
                else type(positions).__name__
            )
        )
    if isinstance(rows_or_vectors, Mapping):
        entries = list(rows_or_vectors.items())
    else:
        device = getattr(model.cfg, "device", None) or "cpu"
        entries = list(steering_vectors(rows_or_vectors, device=device).items())
    hooks: dict[str, SteeringVector] = {}
    given: dict[str, str] = {}
    for hookpoint, steering in entries:
        if not isinstance(steering, SteeringVector):
            raise ValueError(
                f"hookpoint {hookpoint!r}: expected a SteeringVector, got "
                f"{type(steering).__name__}"
            )
        hook = resolve_hookpoint(model, hookpoint)
        if hook in hooks:
            raise ValueError(
                _duplicate_message(f"hookpoint {given[hook]!r}", f"hookpoint {hookpoint!r}", hook)
            )
        hooks[hook] = steering
        given[hook] = hookpoint
    fwd_hooks = [(hook, _make_hook(steering, positions)) for hook, steering in hooks.items()]
    with model.hooks(fwd_hooks=fwd_hooks):
        yield model


def _make_hook(
    steering: SteeringVector, positions: torch.Tensor | None
) -> Callable[..., torch.Tensor]:
    def hook(acts: torch.Tensor, hook: Any = None) -> torch.Tensor:
        return apply_steering(acts, steering, positions=positions)

    return hook
