"""Tracr-compiled transformers as TransformerLens models, with their labelled residual basis.

Tracr (Lindner et al. 2023) compiles a RASP program into transformer weights whose residual
stream has a *labelled basis*: every dimension is one value of one program variable
(`tokens:a`, `indices:3`, `reverse:2`) for categorical variables, one whole variable for
numerical ones (`frac_prevs`), plus a constant `one` direction. Reading activations in that
basis gives the exact ground truth of which variable values a token position carries.

This module
  * keeps a registry of RASP programs (`PROGRAMS`: reverse, hist, frac_prevs),
  * compiles them with `tracr-pypi` (`compile_program`; optional extra `tracr`),
  * converts the compiled model into a TransformerLens `HookedTransformer`
    (`convert_to_hooked_transformer`, the recipe of TransformerLens's
    "Tracr_to_Transformer_Lens_Demo"), checking its residual stream against Tracr's,
  * saves and loads the converted models as small fixtures (`config.json`,
    `model.safetensors`, `residual_basis.json`) that ship with the package under
    `synthetic_saes/semisynthetic/tracr_fixtures/<program>/`.

Loading a fixture (`load_tracr_model`) imports neither Tracr nor JAX-Haiku: only the compile
step needs them. Regenerate the fixtures with

    python -m synthetic_saes.semisynthetic.tracr_models compile \
        --out synthetic_saes/semisynthetic/tracr_fixtures [--program NAME ...]

Positions: a compiled model's input is [BOS, t_1, ..., t_n] (n <= max_seq_len). Position 0
is the BOS token, which gets no positional embedding; position i >= 1 carries `indices:i-1`.

References:
    Lindner et al., "Tracr: Compiled Transformers as a Laboratory for Interpretability"
    (2023), https://arxiv.org/abs/2301.05062
    TransformerLens, demos/Tracr_to_Transformer_Lens_Demo.ipynb
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "TracrProgramSpec",
    "PROGRAMS",
    "FIXTURES_DIR",
    "ResidualLabel",
    "CompiledProgram",
    "TracrModel",
    "compile_program",
    "compile_fixture",
    "convert_to_hooked_transformer",
    "residual_max_error",
    "residual_hook_names",
    "save_tracr_model",
    "load_tracr_model",
    "read_fixture_config",
    "fixture_path",
    "main",
]

FIXTURES_DIR = Path(__file__).resolve().parent / "tracr_fixtures"
CONFIG_FILENAME = "config.json"
WEIGHTS_FILENAME = "model.safetensors"
BASIS_FILENAME = "residual_basis.json"
_FORMAT_VERSION = 1
COMPILE_COMMAND = (
    "python -m synthetic_saes.semisynthetic.tracr_models compile "
    "--out synthetic_saes/semisynthetic/tracr_fixtures"
)
_ENCODINGS = ("categorical", "numerical", "constant")


# ---- the program registry -----------------------------------------------------------------


@dataclass(frozen=True)
class TracrProgramSpec:
    """A RASP program and what it is compiled with.

    Attributes:
        name: registry name (also the fixture directory's name).
        build: a zero-argument function returning a *fresh* `rasp.SOp` (imports tracr).
        vocab: the input tokens (the BOS token is added by the compiler).
        max_seq_len: longest input (BOS excluded).
        description: what the program computes.
        compiler_bos: the BOS token's name (must not be in vocab).
        causal: compile with a causal attention mask.
    """

    name: str
    build: Callable[[], Any]
    vocab: tuple
    max_seq_len: int
    description: str
    compiler_bos: str = "BOS"
    causal: bool = False


def _build_reverse():
    """reverse(xs)[i] = xs[n - 1 - i] (tracr.compiler.lib.make_length / make_reverse)."""
    from tracr.rasp import rasp

    all_true = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE).named("all_true")
    length = rasp.SelectorWidth(all_true).named("length")
    opp_idx = (length - rasp.indices).named("opp_idx")
    opp_idx = (opp_idx - 1).named("opp_idx-1")
    flip = rasp.Select(rasp.indices, opp_idx, rasp.Comparison.EQ).named("reverse_selector")
    return rasp.Aggregate(flip, rasp.tokens).named("reverse")


def _build_hist():
    """hist(xs)[i] = #{j : xs[j] == xs[i]} (tracr.compiler.lib.make_hist)."""
    from tracr.rasp import rasp

    same_tok = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ).named("same_tok")
    return rasp.SelectorWidth(same_tok).named("hist")


def _build_frac_prevs():
    """frac_prevs(xs)[i] = #{j <= i : xs[j] == "x"} / (i + 1) (tracr.compiler.lib)."""
    from tracr.rasp import rasp

    is_x = rasp.numerical(rasp.Map(lambda t: 1 if t == "x" else 0, rasp.tokens)).named("is_x")
    prevs = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ).named("prevs")
    return rasp.numerical(rasp.Aggregate(prevs, is_x, default=0)).named("frac_prevs")


PROGRAMS: dict[str, TracrProgramSpec] = {
    spec.name: spec
    for spec in (
        TracrProgramSpec("reverse", _build_reverse, (1, 2, 3), 5,
                         "the input reversed (categorical; the Tracr paper's example)"),
        TracrProgramSpec("hist", _build_hist, ("a", "b", "c"), 5,
                         "how often each position's token occurs in the input (categorical)"),
        TracrProgramSpec("frac_prevs", _build_frac_prevs, ("w", "x", "y", "z"), 5,
                         'fraction of the tokens so far equal to "x" (numerical)'),
    )
}


def _spec(name: str) -> TracrProgramSpec:
    if name not in PROGRAMS:
        raise ValueError(f"unknown Tracr program {name!r}; known programs: {sorted(PROGRAMS)}")
    return PROGRAMS[name]


def _renumber(program) -> None:
    """Give the expressions of a freshly built program ids 1, 2, ... in breadth-first order.

    Tracr labels a variable `{name}_{unique_id}` with ids from a process-wide counter, and
    the residual basis is sorted by label; fixed ids make a compile reproducible whatever
    was built before it in the process.
    """
    seen: set[int] = set()
    queue, order = [program], []
    while queue:
        expr = queue.pop(0)
        if id(expr) in seen:
            continue
        seen.add(id(expr))
        order.append(expr)
        queue.extend(expr.children)
    for number, expr in enumerate(order, start=1):
        expr.__dict__["unique_id"] = number  # the storage of the cached_property


# ---- compiling ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ResidualLabel:
    """What one residual-stream dimension of a compiled model encodes.

    Attributes:
        variable: the RASP variable's name ("tokens", "indices", "reverse", ...; Tracr's
            selector-width helper dimension is "<name>_selector_width_attn_output"; the
            constant dimension is "one").
        value: the categorical value this dimension one-hot encodes (JSON-safe: int, float,
            str, bool, or a list), None for numerical and constant dimensions.
        encoding: "categorical" (0/1 indicator), "numerical" (the variable's value) or
            "constant" (always 1).
        tracr_label: Tracr's own label of the dimension, e.g. "reverse_1:2".
    """

    variable: str
    value: Any
    encoding: str
    tracr_label: str

    def __post_init__(self) -> None:
        if self.encoding not in _ENCODINGS:
            raise ValueError(f"encoding must be one of {_ENCODINGS}, got {self.encoding!r}")

    @property
    def feature_name(self) -> str:
        """"variable=value" for categorical dimensions, the variable's name otherwise."""
        if self.encoding == "categorical":
            return f"{self.variable}={self.value}"
        return self.variable

    def to_dict(self) -> dict[str, Any]:
        return {"variable": self.variable, "value": self.value, "encoding": self.encoding,
                "tracr_label": self.tracr_label}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResidualLabel:
        return cls(variable=str(data["variable"]), value=data["value"],
                   encoding=str(data["encoding"]), tracr_label=str(data["tracr_label"]))


@dataclass(frozen=True, eq=False)
class CompiledProgram:
    """A compiled RASP program (needs tracr).

    Attributes:
        name: the program's name.
        assembled: tracr's `AssembledTransformerModel`.
        residual_labels: one `ResidualLabel` per residual dimension [d_model].
        vocab: the input tokens.
        max_seq_len: longest input (BOS excluded).
        compiler_bos, compiler_pad: the special tokens.
        causal: whether the attention is causally masked.
        output_label: Tracr's label of the output variable.
        description: what the program computes.
    """

    name: str
    assembled: Any
    residual_labels: tuple[ResidualLabel, ...]
    vocab: tuple
    max_seq_len: int
    compiler_bos: str
    compiler_pad: str
    causal: bool
    output_label: str
    description: str = ""

    def apply(self, tokens: Sequence) -> Any:
        """Tracr's forward pass on [BOS] + tokens (an `AssembledTransformerModelOutput`)."""
        return self.assembled.apply([self.compiler_bos, *tokens])


def compile_program(
    program,
    *,
    vocab: Sequence | None = None,
    max_seq_len: int | None = None,
    compiler_bos: str | None = None,
    causal: bool | None = None,
    mlp_exactness: int = 100,
    name: str | None = None,
) -> CompiledProgram:
    """Compile a registered program (by name) or a `rasp.SOp` with Tracr.

    Args:
        program: a name in `PROGRAMS` or a RASP expression.
        vocab, max_seq_len, compiler_bos, causal: override the registry's settings; required
            (vocab, max_seq_len) for a RASP expression. compiler_bos defaults to "BOS",
            causal to False.
        mlp_exactness: Tracr's MLP approximation parameter.
        name: the name used in messages and fixtures (default: the registry name, or the
            expression's label).

    A registered program is built fresh and its expressions numbered 1, 2, ... (see
    `_renumber`), so its residual basis is the same in every process; a RASP expression
    passed in keeps Tracr's process-wide ids in its labels.

    Returns:
        The compiled program with its labelled residual basis.

    Raises:
        ValueError: an unknown program name, missing vocab / max_seq_len, or any error
            raised by Tracr while compiling ("RASP program 'name' failed to compile: ...").
        ImportError: tracr is not installed (`pip install sae-groundtruth[tracr]`).
    """
    if isinstance(program, str):
        _spec(program)  # an unknown name fails before tracr is imported
    try:
        from tracr.compiler import compiling
        from tracr.rasp import rasp
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "compiling RASP programs needs tracr: pip install 'sae-groundtruth[tracr]'"
        ) from err

    description = ""
    if isinstance(program, str):
        spec = _spec(program)
        name = name or spec.name
        expr = spec.build()
        _renumber(expr)
        vocab = spec.vocab if vocab is None else vocab
        max_seq_len = spec.max_seq_len if max_seq_len is None else max_seq_len
        compiler_bos = spec.compiler_bos if compiler_bos is None else compiler_bos
        causal = spec.causal if causal is None else causal
        description = spec.description
    elif isinstance(program, rasp.RASPExpr):
        expr = program
        name = name or expr.label
        if vocab is None or max_seq_len is None:
            raise ValueError(
                f"compiling the RASP expression {name!r} needs vocab and max_seq_len"
            )
    else:
        raise ValueError(
            f"program must be a name in {sorted(PROGRAMS)} or a RASP expression, "
            f"got {type(program).__name__}"
        )
    compiler_bos = "BOS" if compiler_bos is None else compiler_bos
    causal = bool(causal)
    if isinstance(max_seq_len, bool) or not isinstance(max_seq_len, int) or max_seq_len < 1:
        raise ValueError(f"max_seq_len must be a positive int, got {max_seq_len!r}")
    vocab = tuple(vocab)
    if not vocab:
        raise ValueError(f"RASP program {name!r} needs a non-empty vocab")
    try:
        assembled = compiling.compile_rasp_to_model(
            expr,
            vocab=set(vocab),
            max_seq_len=max_seq_len,
            causal=causal,
            compiler_bos=compiler_bos,
            mlp_exactness=mlp_exactness,
        )
        labels = _residual_labels(expr, assembled, vocab, max_seq_len)
    except Exception as err:
        raise ValueError(f"RASP program {name!r} failed to compile: {err}") from err
    return CompiledProgram(
        name=name,
        assembled=assembled,
        residual_labels=labels,
        vocab=vocab,
        max_seq_len=max_seq_len,
        compiler_bos=compiler_bos,
        compiler_pad=compiling.COMPILER_PAD,
        causal=causal,
        output_label=expr.label,
        description=description,
    )


def _json_value(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, tuple | list):
        return [_json_value(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _residual_labels(expr, assembled, vocab, max_seq_len) -> tuple[ResidualLabel, ...]:
    """Label each residual dimension with its variable, value and encoding.

    Tracr keeps only the strings `str(BasisDirection)`; the directions themselves are
    recovered from the program's graph and inferred value sets.
    """
    from tracr.compiler import basis_inference, nodes, rasp_to_graph
    from tracr.rasp import rasp

    extracted = rasp_to_graph.extract_rasp_graph(expr)
    graph = extracted.graph
    basis_inference.infer_bases(graph, extracted.sink, set(vocab), max_seq_len)
    exprs = [graph.nodes[n][nodes.EXPR] for n in graph.nodes]
    name_counts: dict[str, int] = {}
    for e in exprs:
        name_counts[e.name] = name_counts.get(e.name, 0) + 1

    def readable(e) -> str:
        return e.name if name_counts[e.name] == 1 else e.label

    known: dict[str, ResidualLabel] = {"one": ResidualLabel("one", None, "constant", "one")}
    # tokens (with BOS and PAD) and indices are embedded even where the program ignores them.
    for variable, values in (("tokens", assembled.input_encoder.encoding_map),
                             ("indices", range(max_seq_len))):
        for value in values:
            key = f"{variable}:{value}"
            known[key] = ResidualLabel(variable, _json_value(value), "categorical", key)
    for node_id in graph.nodes:
        node = graph.nodes[node_id]
        e = node[nodes.EXPR]
        if not isinstance(e, rasp.SOp):
            continue
        label, variable = e.label, readable(e)
        values = set(node.get(nodes.VALUE_SET) or ())
        if rasp.is_numerical(e):
            known[label] = ResidualLabel(variable, None, "numerical", label)
        else:
            for value in values:
                key = f"{label}:{value}"
                known.setdefault(key, ResidualLabel(variable, _json_value(value),
                                                    "categorical", key))
        helper = f"{label}_selector_width_attn_output"
        known[helper] = ResidualLabel(f"{variable}_selector_width_attn_output", None,
                                      "numerical", helper)
    out = []
    for label in assembled.residual_labels:
        if label not in known:
            raise ValueError(f"cannot identify the residual dimension {label!r}")
        out.append(known[label])
    return tuple(out)


# ---- conversion to TransformerLens --------------------------------------------------------


def residual_hook_names(n_layers: int) -> tuple[str, ...]:
    """Every residual-stream hook of an n_layers model, in forward order:
    blocks.0.hook_resid_pre, blocks.0.hook_resid_mid, blocks.0.hook_resid_post, ...

    blocks.{l+1}.hook_resid_pre equals blocks.{l}.hook_resid_post.
    """
    names = []
    for layer in range(n_layers):
        names += [f"blocks.{layer}.hook_resid_{part}" for part in ("pre", "mid", "post")]
    return tuple(names)


def _tracr_residual_hooks(n_layers: int) -> tuple[str, ...]:
    """The hooks matching Tracr's `residuals` list (after each attention, after each MLP)."""
    return tuple(
        f"blocks.{layer}.hook_resid_{part}" for layer in range(n_layers) for part in ("mid", "post")
    )


def _hooked_config_dict(compiled: CompiledProgram) -> dict[str, Any]:
    cfg = compiled.assembled.model_config
    params = compiled.assembled.params
    n_out = len(compiled.assembled.output_encoder.encoding_map) if _categorical_output(
        compiled) else 1
    return {
        "n_layers": int(cfg.num_layers),
        "d_model": int(params["token_embed"]["embeddings"].shape[1]),
        "d_head": int(cfg.key_size),
        "n_heads": int(cfg.num_heads),
        "d_mlp": int(cfg.mlp_hidden_size),
        "d_vocab": int(params["token_embed"]["embeddings"].shape[0]),
        "d_vocab_out": int(n_out),
        "n_ctx": int(params["pos_embed"]["embeddings"].shape[0]),
        "act_fn": "relu",
        "normalization_type": None,
        "attention_dir": "causal" if compiled.causal else "bidirectional",
        "attn_only": False,
        "default_prepend_bos": False,
        "positional_embedding_type": "standard",
    }


def _categorical_output(compiled: CompiledProgram) -> bool:
    return hasattr(compiled.assembled.output_encoder, "encoding_map")


def _state_dict(compiled: CompiledProgram, hooked_cfg: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Tracr's haiku parameters in TransformerLens's layout (float32)."""
    params = compiled.assembled.params
    n_heads, d_head = hooked_cfg["n_heads"], hooked_cfg["d_head"]

    def arr(module: str, key: str) -> np.ndarray:
        return np.array(params[module][key], dtype=np.float32)  # a writable copy

    state = {
        "embed.W_E": arr("token_embed", "embeddings"),
        "pos_embed.W_pos": arr("pos_embed", "embeddings"),
    }
    for layer in range(hooked_cfg["n_layers"]):
        attn, mlp = f"transformer/layer_{layer}/attn", f"transformer/layer_{layer}/mlp"
        for tracr_name, tl_name in (("query", "Q"), ("key", "K"), ("value", "V")):
            w = arr(f"{attn}/{tracr_name}", "w")  # [d_model, n_heads * d_head]
            b = arr(f"{attn}/{tracr_name}", "b")  # [n_heads * d_head]
            state[f"blocks.{layer}.attn.W_{tl_name}"] = (
                w.reshape(w.shape[0], n_heads, d_head).transpose(1, 0, 2))
            state[f"blocks.{layer}.attn.b_{tl_name}"] = b.reshape(n_heads, d_head)
        w_o = arr(f"{attn}/linear", "w")  # [n_heads * d_head, d_model]
        state[f"blocks.{layer}.attn.W_O"] = w_o.reshape(n_heads, d_head, w_o.shape[1])
        state[f"blocks.{layer}.attn.b_O"] = arr(f"{attn}/linear", "b")
        state[f"blocks.{layer}.mlp.W_in"] = arr(f"{mlp}/linear_1", "w")
        state[f"blocks.{layer}.mlp.b_in"] = arr(f"{mlp}/linear_1", "b")
        state[f"blocks.{layer}.mlp.W_out"] = arr(f"{mlp}/linear_2", "w")
        state[f"blocks.{layer}.mlp.b_out"] = arr(f"{mlp}/linear_2", "b")
    # The unembedding projects the residual stream onto the output variable's directions,
    # in the output encoder's order.
    labels = [label.tracr_label for label in compiled.residual_labels]
    W_U = np.zeros((hooked_cfg["d_model"], hooked_cfg["d_vocab_out"]), dtype=np.float32)
    if _categorical_output(compiled):
        for value, column in compiled.assembled.output_encoder.encoding_map.items():
            W_U[labels.index(f"{compiled.output_label}:{value}"), column] = 1.0
    else:
        W_U[labels.index(compiled.output_label), 0] = 1.0
    state["unembed.W_U"] = W_U
    state["unembed.b_U"] = np.zeros(hooked_cfg["d_vocab_out"], dtype=np.float32)
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}


def _layer_writes(state: dict[str, torch.Tensor], n_layers: int) -> dict[str, list[int]]:
    """Residual dimensions each component can write (non-zero output weights)."""

    def nonzero_columns(matrix: torch.Tensor) -> list[int]:
        flat = matrix.reshape(-1, matrix.shape[-1])
        return [int(i) for i in torch.nonzero(flat.abs().sum(0) > 0).flatten()]

    writes = {
        "hook_embed": nonzero_columns(state["embed.W_E"]),
        "hook_pos_embed": nonzero_columns(state["pos_embed.W_pos"]),
    }
    for layer in range(n_layers):
        writes[f"blocks.{layer}.hook_attn_out"] = nonzero_columns(
            state[f"blocks.{layer}.attn.W_O"])
        writes[f"blocks.{layer}.hook_mlp_out"] = nonzero_columns(
            state[f"blocks.{layer}.mlp.W_out"])
    return writes


def convert_to_hooked_transformer(compiled: CompiledProgram) -> TracrModel:
    """The compiled program as a TransformerLens `HookedTransformer` (exactly Tracr's weights).

    Tracr's model has no layer norm, relu MLPs, attention scaled by 1/sqrt(d_head) and an
    unembedding that projects onto the output variable's directions, all of which
    HookedTransformer reproduces: its residual stream equals Tracr's (`residual_max_error`).
    """
    hooked_cfg = _hooked_config_dict(compiled)
    state = _state_dict(compiled, hooked_cfg)
    encoder = compiled.assembled.input_encoder
    input_tokens = [None] * len(encoder.encoding_map)
    for token, index in encoder.encoding_map.items():
        input_tokens[index] = _json_value(token)
    output_tokens = None
    if _categorical_output(compiled):
        decoder = compiled.assembled.output_encoder.encoding_map
        output_tokens = [None] * len(decoder)
        for token, index in decoder.items():
            output_tokens[index] = _json_value(token)
    config = {
        "format_version": _FORMAT_VERSION,
        "program": compiled.name,
        "description": compiled.description,
        "vocab": [_json_value(t) for t in compiled.vocab],
        "max_seq_len": compiled.max_seq_len,
        "compiler_bos": compiled.compiler_bos,
        "compiler_pad": compiled.compiler_pad,
        "causal": compiled.causal,
        "input_tokens": input_tokens,
        "output_encoding": "categorical" if output_tokens is not None else "numerical",
        "output_tokens": output_tokens,
        "output_variable": compiled.output_label,
        "hooked_transformer": hooked_cfg,
        "tracr_version": _tracr_version(),
        "compile_command": f"{COMPILE_COMMAND} --program {compiled.name}",
    }
    basis = {
        "labels": [label.to_dict() for label in compiled.residual_labels],
        "residual_hooks": list(residual_hook_names(hooked_cfg["n_layers"])),
        "tracr_residuals": list(_tracr_residual_hooks(hooked_cfg["n_layers"])),
        "layer_writes": _layer_writes(state, hooked_cfg["n_layers"]),
    }
    return TracrModel._from_parts(config, basis, state, path=None)


def _tracr_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("tracr-pypi")
    except metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


def residual_max_error(compiled: CompiledProgram, model: TracrModel,
                       inputs: Sequence[Sequence]) -> float:
    """Largest |difference| between Tracr's residual stream and the converted model's.

    Compares the embeddings (blocks.0.hook_resid_pre) and every entry of Tracr's
    `residuals` (after each attention and each MLP) on each input, and checks the decoded
    outputs agree (raises ValueError if not).
    """
    hooks = ("blocks.0.hook_resid_pre", *_tracr_residual_hooks(model.n_layers))
    worst = 0.0
    for tokens in inputs:
        out = compiled.apply(tokens)
        reference = [np.asarray(out.input_embeddings[0]), *(np.asarray(r[0]) for r in
                                                            out.residuals)]
        with torch.no_grad():
            logits, cache = model.model.run_with_cache(model.encode(tokens)[None],
                                                       names_filter=lambda n: n in hooks)
        for hook, expected in zip(hooks, reference, strict=True):
            got = cache[hook][0].numpy()
            worst = max(worst, float(np.abs(got - expected).max()))
        ours, theirs = model.decode_output(logits[0]), list(out.decoded[1:])
        if model.output_tokens is not None:
            same = ours == theirs
        else:
            same = np.allclose(np.asarray(ours, float), np.asarray(theirs, float), atol=1e-4)
        if not same:
            raise ValueError(
                f"{model.name}: the converted model decodes {tokens!r} to {ours}, Tracr to "
                f"{theirs}"
            )
    return worst


# ---- the loaded model ---------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TracrModel:
    """A Tracr-compiled model as a TransformerLens model, with its labelled residual basis.

    Attributes:
        name: the program's name.
        model: the `HookedTransformer` (eval mode, CPU; float32 unless loaded as float64).
        residual_labels: what each residual dimension encodes [d_model].
        config: the fixture's config.json contents.
        basis: the fixture's residual_basis.json contents.
        path: the fixture directory it was loaded from (None if converted in memory).
    """

    name: str
    model: Any
    residual_labels: tuple[ResidualLabel, ...]
    config: dict[str, Any]
    basis: dict[str, Any]
    path: Path | None = None
    _token_ids: dict = field(default_factory=dict, repr=False)

    @classmethod
    def _from_parts(cls, config: dict[str, Any], basis: dict[str, Any],
                    state: dict[str, torch.Tensor], path: Path | None,
                    dtype: torch.dtype = torch.float32) -> TracrModel:
        from transformer_lens import HookedTransformer, HookedTransformerConfig

        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        hooked = HookedTransformerConfig(**config["hooked_transformer"], device="cpu",
                                         dtype=dtype)
        model = HookedTransformer(hooked)
        state = {k: v.to(dtype) for k, v in state.items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        buffers = {name for name, _ in model.named_buffers()}
        if unexpected or set(missing) - buffers:
            raise ValueError(
                f"Tracr model {config.get('program')!r}: weights do not fit the config "
                f"(missing {sorted(set(missing) - buffers)}, unexpected {sorted(unexpected)})"
            )
        model.eval()
        model.requires_grad_(False)
        labels = tuple(ResidualLabel.from_dict(d) for d in basis["labels"])
        if len(labels) != hooked.d_model:
            raise ValueError(
                f"Tracr model {config.get('program')!r} has {len(labels)} residual labels for "
                f"d_model={hooked.d_model}"
            )
        token_ids = {_hashable(t): i for i, t in enumerate(config["input_tokens"])}
        return cls(name=str(config["program"]), model=model, residual_labels=labels,
                   config=config, basis=basis, path=path, _token_ids=token_ids)

    @property
    def n_layers(self) -> int:
        return int(self.config["hooked_transformer"]["n_layers"])

    @property
    def d_model(self) -> int:
        return int(self.config["hooked_transformer"]["d_model"])

    @property
    def vocab(self) -> tuple:
        """The program's input tokens (BOS and PAD excluded)."""
        return tuple(_hashable(t) for t in self.config["vocab"])

    @property
    def max_seq_len(self) -> int:
        return int(self.config["max_seq_len"])

    @property
    def bos(self) -> str:
        return str(self.config["compiler_bos"])

    @property
    def bos_id(self) -> int:
        return self._token_ids[self.bos]

    @property
    def output_tokens(self) -> tuple | None:
        """Output values by logit index (categorical output), None for numerical output."""
        tokens = self.config["output_tokens"]
        return None if tokens is None else tuple(_hashable(t) for t in tokens)

    @property
    def hook_names(self) -> tuple[str, ...]:
        """The residual-stream hooks (see `residual_hook_names`)."""
        return residual_hook_names(self.n_layers)

    def token_id(self, token: Any) -> int:
        """The input id of one token (ValueError if it is not in the vocab)."""
        try:
            return self._token_ids[_hashable(token)]
        except (KeyError, TypeError):
            raise ValueError(
                f"token {token!r} is not in the vocab of {self.name!r}: {list(self.vocab)}"
            ) from None

    def encode(self, tokens: Sequence) -> torch.Tensor:
        """Token ids of [BOS] + tokens, int64 [len(tokens) + 1].

        Raises:
            ValueError: an unknown token, or more than max_seq_len tokens.
        """
        tokens = list(tokens)
        if len(tokens) > self.max_seq_len:
            raise ValueError(
                f"{self.name!r} takes at most {self.max_seq_len} tokens, got {len(tokens)}"
            )
        for token in tokens:
            if _hashable(token) not in self._token_ids or token in (
                    self.bos, self.config["compiler_pad"]):
                raise ValueError(
                    f"token {token!r} is not in the vocab of {self.name!r}: {list(self.vocab)}"
                )
        return torch.tensor([self.bos_id, *(self.token_id(t) for t in tokens)],
                            dtype=torch.long)

    def decode_output(self, logits: torch.Tensor) -> list:
        """The program's output at each non-BOS position.

        Args:
            logits: float [pos, d_vocab_out] or [batch, pos, d_vocab_out], position 0 BOS.
        Returns:
            a list of pos - 1 outputs (a list of such lists for a batch): the argmax's value
            for categorical output, the logit itself for numerical output.
        """
        logits = torch.as_tensor(logits)
        if logits.ndim == 3:
            return [self.decode_output(row) for row in logits]
        if logits.ndim != 2:
            raise ValueError(f"logits must be [pos, d_vocab_out] or [batch, pos, d_vocab_out], "
                             f"got shape {tuple(logits.shape)}")
        logits = logits[1:]
        if self.output_tokens is None:
            return [float(v) for v in logits[:, 0]]
        return [self.output_tokens[int(i)] for i in logits.argmax(-1)]

    def run(self, tokens: Sequence) -> list:
        """The program's output on `tokens` (BOS added, BOS output dropped)."""
        with torch.no_grad():
            logits = self.model(self.encode(tokens)[None])
        return self.decode_output(logits[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.model.cfg.dtype

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The model's parameters (no buffers), float32."""
        return {name: p.detach().to(torch.float32).clone()
                for name, p in self.model.named_parameters()}


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


# ---- fixtures -----------------------------------------------------------------------------


def save_tracr_model(model: TracrModel, path: str | Path) -> Path:
    """Write config.json, model.safetensors and residual_basis.json into directory `path`."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG_FILENAME).write_text(json.dumps(model.config, indent=1) + "\n")
    (path / BASIS_FILENAME).write_text(json.dumps(model.basis, indent=1) + "\n")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path / WEIGHTS_FILENAME), metadata={"program": model.name})
    (path / WEIGHTS_FILENAME).chmod(0o644)  # safetensors writes 0600
    return path


def fixture_path(name_or_path: str | Path) -> Path:
    """The fixture directory of a registered program, or `name_or_path` if it is a directory.

    Raises:
        ValueError: neither an existing fixture directory nor a known program name.
    """
    path = Path(name_or_path)
    if (path / CONFIG_FILENAME).is_file():
        return path
    name = str(name_or_path)
    if name in PROGRAMS:
        path = FIXTURES_DIR / name
        if not (path / CONFIG_FILENAME).is_file():
            raise ValueError(
                f"the fixture of Tracr program {name!r} is missing at {path}; regenerate it "
                f"with: {COMPILE_COMMAND} --program {name}"
            )
        return path
    raise ValueError(
        f"{name!r} is neither a Tracr fixture directory nor a known program; known programs: "
        f"{sorted(PROGRAMS)}"
    )


def read_fixture_config(name_or_path: str | Path) -> dict[str, Any]:
    """The config.json of a fixture (cheap: builds no model)."""
    return json.loads((fixture_path(name_or_path) / CONFIG_FILENAME).read_text())


def load_tracr_model(name_or_path: str | Path, *, dtype: torch.dtype = torch.float32
                     ) -> TracrModel:
    """Load a converted Tracr model from its fixture (a program name or a directory).

    The weights are stored in float32 (Tracr's precision). float64 runs the same weights
    without float32 rounding: Tracr's MLPs use large weights (mlp_exactness 100), whose
    float32 rounding leaves errors up to ~1e-5 in dimensions that should be exactly 0 or 1.
    Imports neither tracr nor haiku.
    """
    from safetensors.torch import load_file

    path = fixture_path(name_or_path)
    config = json.loads((path / CONFIG_FILENAME).read_text())
    if config.get("format_version") != _FORMAT_VERSION:
        raise ValueError(
            f"{path}: unsupported Tracr fixture format {config.get('format_version')!r}"
        )
    basis = json.loads((path / BASIS_FILENAME).read_text())
    state = load_file(str(path / WEIGHTS_FILENAME))
    return TracrModel._from_parts(config, basis, state, path=path, dtype=dtype)


# ---- command line -------------------------------------------------------------------------


def _check_inputs(spec_vocab: Sequence, max_seq_len: int, n: int = 24) -> list[list]:
    """A fixed set of inputs of every length for checking a conversion."""
    rng = np.random.default_rng(0)
    vocab = list(spec_vocab)
    inputs = []
    for length in range(1, max_seq_len + 1):
        for _ in range(max(1, n // max_seq_len)):
            inputs.append([vocab[i] for i in rng.integers(0, len(vocab), size=length)])
    return inputs


def compile_fixture(name: str, out: str | Path) -> tuple[Path, float]:
    """Compile, convert, check and save one registered program; returns (path, max error)."""
    compiled = compile_program(name)
    model = convert_to_hooked_transformer(compiled)
    error = residual_max_error(compiled, model,
                               _check_inputs(compiled.vocab, compiled.max_seq_len))
    if error > 1e-5:
        raise ValueError(f"{name}: the converted residual stream differs from Tracr's by {error}")
    return save_tracr_model(model, Path(out) / name), error


def main(argv: Sequence[str] | None = None) -> int:
    """`compile --out DIR [--program NAME ...]`: regenerate the fixtures (needs tracr)."""
    parser = argparse.ArgumentParser(
        prog="python -m synthetic_saes.semisynthetic.tracr_models",
        description="Compile RASP programs with Tracr into TransformerLens fixtures.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    compile_cmd = commands.add_parser("compile", help="compile, convert, check and save")
    compile_cmd.add_argument("--out", default=str(FIXTURES_DIR),
                             help="directory receiving one sub-directory per program")
    compile_cmd.add_argument("--program", action="append", choices=sorted(PROGRAMS),
                             help="program to compile (repeatable; default: all)")
    args = parser.parse_args(argv)
    for name in args.program or sorted(PROGRAMS):
        path, error = compile_fixture(name, args.out)
        size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
        print(f"{name}: {path} ({size / 1024:.1f} KiB), residual max |error| {error:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
