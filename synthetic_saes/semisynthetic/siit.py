"""Strict interchange intervention training (SIIT): a trained transformer that implements a
Tracr program's causal graph.

InterpBench (Gupta et al. 2024) trains a small transformer (the low-level model) so that a
Tracr-compiled model (the high-level model) is a causal abstraction of it: the circuit is known,
the weights are trained, so representations are superposed while the ground truth is exact.
This module follows InterpBench's code (github.com/FlyingPumba/circuits-benchmark @ 0cfd831,
`utils/iit/correspondence.py`, `commands/train/iit/iit_train.py`) and the `iit` library it
trains with (github.com/cybershiptrooper/iit @ ed44cbf, `model_pairs/base_model_pair.py`,
`iit_behavior_model_pair.py`, `strict_iit_model_pair.py`).

High-level model. The compiled fixture (`tracr_models.load_tracr_model`, run in float64). Its
nodes are the components that write program variables into the residual stream, read off the
labelled basis (InterpBench's `build_tracr_base_corr`: each attention head / MLP whose output
space holds a variable's directions): for `reverse`, head 0 of layer 0 (the selector width's
attention, writing `length_selector_width_attn_output`), the MLPs of layers 0, 1, 2 (`length`,
`opp_idx`, `opp_idx-1`) and head 0 of layer 3 (`reverse`); for `hist`, head 0 and the MLP of
layer 0 (`hist_selector_width_attn_output`, `hist`). A node is named by the variable it writes
(an MLP that also cleans its selector width's helper dimension is named by its main variable).
Intervening on a node interchanges that component's output (the head's `attn.hook_z` slice,
or `hook_mlp_out`) between a base and a source input, at every position.

Low-level model. A HookedTransformer with the fixture's input and output vocabularies and
context, and an `alignment` mapping each high-level node to one low-level component
(`blocks.{l}.hook_mlp_out`, or `blocks.{l}.attn.hook_z` with a head index); the default
puts each node at the same layer, component and head as the compiled model.

Loss, per step (base x_b, source x_s of the same length, targets at every non-BOS position,
categorical cross-entropy CE as `iit`'s `class_loss`):

    behavior = CE(LL(x_b), argmax HL(x_b))
    iit      = CE(LL(x_b | c_n <- c_n(x_s)), argmax HL(x_b | n <- n(x_s)))   one node n per
               step, drawn uniformly (iit's `sample_hl_name`); c_n its aligned component
    strict   = CE(LL(x_b | c <- c(x_s)), argmax HL(x_b))   one non-circuit component c per
               step, drawn uniformly from the heads and MLPs no node is aligned to
               (SIIT's resample ablation, siit_sampling="individual")
    loss     = iit_weight * iit + behavior_weight * behavior + strict_weight * strict

with InterpBench's default weights (1, 1, 0.4), Adam(betas=(0.9, 0.9)), and the source
activations detached (`detach_while_caching=True`). Inputs of mixed lengths are padded to the
fixture's max_seq_len with the compiler's pad token, as InterpBench pads them: base and source
lengths are drawn independently (uniform in 1..max_seq_len, per example), both models run on
the padded inputs (the compiled model's outputs at real positions are unchanged by its pad
token) and every loss and accuracy counts the base's real (non-BOS, non-pad) positions only.
Different lengths are what make `reverse`'s `length`, `opp_idx` and `opp_idx-1` differ between
base and source; with equal lengths their interchange never changed the high-level output and
their IIA was vacuous (`SIITEvaluation.changed` reports how often an interchange changes it).
We sum the three losses into one step (iit's `use_single_loss=True`; InterpBench's command
line steps on each loss in turn).

Evaluation (`evaluate_siit`), on pairs drawn with their own seed, over non-BOS positions:
task accuracy (argmax LL(x_b) == the program's output), IIA per node (argmax of the
intervened LL == argmax of the intervened HL: `val/IIA` of iit, for every node) and strict
accuracy per non-circuit component (iit's `val/strict_accuracy`, per component). The input
space is small (363 sequences of lengths 1-5 for both programs), so held-out *pairs*, not
held-out inputs, are what evaluation can offer, as in InterpBench.

Training is on one torch thread (`synthetic_saes.threads`): the same seed gives bit-identical
weights, and a run interrupted (`stop_after`) resumes from its checkpoint to the same weights.

Measured (default configs, 1000 steps, one thread, on 2 cores at load ~1.5; 4096 held-out
padded pairs, `tests/.../test_siit.py -m slow -k targets`): reverse task accuracy 1.0, IIA
0.988-0.996 on every node, each node's interchange changing the output at 39-67% of the
positions, 90 s; hist task accuracy 1.0, IIA 0.9997 / 1.0 (changing it at 73%), 44 s. Strict
accuracy per non-circuit component 0.97-1.0.

References:
    Gupta et al., "InterpBench: Semi-Synthetic Transformers for Evaluating Mechanistic
    Interpretability Techniques" (2024), https://arxiv.org/abs/2407.14494 (Sec. 3, SIIT)
    Geiger et al., "Inducing Causal Structure for Interpretable Neural Networks" (2022),
    https://arxiv.org/abs/2112.00826 (IIT, IIA)
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from synthetic_saes.rng import derive_seed
from synthetic_saes.semisynthetic.tracr_models import TracrModel, load_tracr_model
from synthetic_saes.threads import single_threaded_torch
from synthetic_saes.validation import reject_unknown_keys, require_positive_int, require_seed

__all__ = [
    "Component",
    "HighLevelNode",
    "SIITConfig",
    "SIITLosses",
    "SIITEvaluation",
    "SIITModel",
    "SIIT_PROGRAMS",
    "high_level_nodes",
    "default_alignment",
    "component_hooks",
    "interchange_hooks",
    "siit_losses",
    "evaluate_siit",
    "pad_token_id",
    "train_siit",
    "load_siit_model",
]

SIIT_PROGRAMS = ("reverse", "hist")
"""Programs with categorical output that SIIT trains (frac_prevs is numerical)."""

CONFIG_FILENAME = "config.json"
WEIGHTS_FILENAME = "model.safetensors"
LOG_FILENAME = "training_log.json"
CHECKPOINT_FILENAME = "checkpoint.pt"
_INPUT_VARIABLES = ("tokens", "indices", "one")
_MLP = re.compile(r"^blocks\.(\d+)\.hook_mlp_out$")
_HEAD = re.compile(r"^blocks\.(\d+)\.attn\.hook_z$")

Component = tuple[str, int | None]
"""A low- or high-level component: (hook name, head index), head None for an MLP."""


def _component_name(component: Component) -> str:
    hook, head = component
    return hook if head is None else f"{hook}[{head}]"


# ---- the high-level model's nodes -----------------------------------------------------------


@dataclass(frozen=True)
class HighLevelNode:
    """A node of the program's causal graph: the component writing a variable.

    Attributes:
        name: the variable it computes (e.g. "length", "reverse").
        hook: `blocks.{l}.attn.hook_z` (a head) or `blocks.{l}.hook_mlp_out`.
        head: the head index, None for an MLP.
        writes: every variable whose residual dimensions the component writes.
    """

    name: str
    hook: str
    head: int | None
    writes: tuple[str, ...]

    @property
    def component(self) -> Component:
        return (self.hook, self.head)


def _check_program(program: str) -> None:
    if program not in SIIT_PROGRAMS:
        raise ValueError(f"unknown Tracr program {program!r}; known: {list(SIIT_PROGRAMS)}")


def high_level_nodes(program: str | TracrModel) -> tuple[HighLevelNode, ...]:
    """The program's nodes in forward order, read off its compiled weights (module docstring).

    A component is a node if its output weights (a head's W_O[h], an MLP's W_out) are non-zero
    on any residual dimension other than the inputs' (tokens, indices, one).

    Raises:
        ValueError: an unknown program.

    Examples:
        >>> [(n.name, n.hook, n.head) for n in high_level_nodes("hist")]
        [('hist_selector_width_attn_output', 'blocks.0.attn.hook_z', 0),
         ('hist', 'blocks.0.hook_mlp_out', None)]
    """
    if isinstance(program, str):
        _check_program(program)
        program = load_tracr_model(program)
    labels = program.residual_labels
    hooked = program.model
    nodes, seen = [], set()
    for layer in range(program.n_layers):
        block = hooked.blocks[layer]
        writers = [(f"blocks.{layer}.attn.hook_z", head, block.attn.W_O[head])
                   for head in range(hooked.cfg.n_heads)]
        writers.append((f"blocks.{layer}.hook_mlp_out", None, block.mlp.W_out))
        for hook, head, weight in writers:
            dims = torch.nonzero(weight.detach().abs().sum(0) > 0).flatten().tolist()
            variables = tuple(dict.fromkeys(labels[d].variable for d in dims
                                            if labels[d].variable not in _INPUT_VARIABLES))
            if not variables:
                continue
            main = [v for v in variables if not v.endswith("_selector_width_attn_output")]
            name = main[0] if len(main) == 1 else "+".join(main or variables)
            if name in seen:
                name = f"{name}@{_component_name((hook, head))}"
            seen.add(name)
            nodes.append(HighLevelNode(name, hook, head, variables))
    return tuple(nodes)


def default_alignment(program: str) -> tuple[tuple[str, str, int | None], ...]:
    """Each node at the same layer, component and head as in the compiled model."""
    return tuple((n.name, n.hook, n.head) for n in high_level_nodes(program))


def component_hooks(n_layers: int, n_heads: int) -> tuple[Component, ...]:
    """Every head and MLP of a model: the nodes strictness ablates when not aligned."""
    out: list[Component] = []
    for layer in range(n_layers):
        out += [(f"blocks.{layer}.attn.hook_z", head) for head in range(n_heads)]
        out.append((f"blocks.{layer}.hook_mlp_out", None))
    return tuple(out)


def _check_component(node: str, component: Component, n_layers: int, n_heads: int) -> None:
    hook, head = component
    mlp, attn = _MLP.match(hook), _HEAD.match(hook)
    ok = False
    if mlp:
        ok = head is None and int(mlp.group(1)) < n_layers
    elif attn:
        ok = (isinstance(head, int) and not isinstance(head, bool) and 0 <= head < n_heads
              and int(attn.group(1)) < n_layers)
    if not ok:
        raise ValueError(
            f"alignment maps node {node!r} to {_component_name(component)}, which the low-level "
            f"model ({n_layers} layers, {n_heads} heads) does not have; components are "
            f"blocks.L.hook_mlp_out (head None) or blocks.L.attn.hook_z with a head")


def _alignment_dict(alignment, node_names: Sequence[str], n_layers: int,
                    n_heads: int) -> dict[str, Component]:
    """node -> component, validated: every node once, each on its own existing component."""
    items = alignment.items() if isinstance(alignment, Mapping) else (
        (a[0], (a[1], a[2])) for a in alignment)
    out: dict[str, Component] = {}
    for node, (hook, head) in items:
        if node not in node_names:
            raise ValueError(f"alignment names node {node!r}, which the program does not have; "
                             f"its nodes: {list(node_names)}")
        if node in out:
            raise ValueError(f"alignment maps node {node!r} twice")
        _check_component(node, (hook, head), n_layers, n_heads)
        if (hook, head) in out.values():
            raise ValueError(f"alignment maps two nodes to {_component_name((hook, head))}")
        out[node] = (hook, head)
    missing = [n for n in node_names if n not in out]
    if missing:
        raise ValueError(f"alignment leaves nodes {missing} unaligned")
    return {n: out[n] for n in node_names}


# ---- config -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SIITConfig:
    """A SIIT run: the program, the low-level model, the alignment and the training.

    Attributes:
        program: a Tracr program in `SIIT_PROGRAMS`.
        n_layers: low-level layers; None becomes max(2, the compiled model's layers)
            (InterpBench's `make_ll_cfg`).
        d_model, n_heads, d_mlp: the low-level model's widths (d_head = d_model // n_heads).
        act_fn: "gelu" (InterpBench) or "relu".
        normalization_type: "LN" or None.
        alignment: (node, hook, head) per high-level node; None becomes `default_alignment`.
        iit_weight, behavior_weight, strict_weight: the loss weights (>= 0, not all 0;
            InterpBench's defaults 1, 1, 0.4).
        lr, batch_size, train_steps, clip_grad_norm: Adam(betas=(0.9, 0.9)) on batches of
            `batch_size` (base, source) pairs; gradients clipped to this norm (0: no clip);
            the lr decays linearly to `final_lr_fraction` of lr. InterpBench trains with lr
            1e-3, clip 0.1, batch 256 and no schedule for up to 2000 epochs with early
            stopping; the larger lr with a linear decay reaches its targets in 1000 steps
            of 128 pairs (minutes on 2 CPU cores).
        eval_pairs: held-out pairs of the final evaluation.
        log_every, checkpoint_every: steps between log entries / resumable checkpoints.
        seed: the weights' and data's seed.
    """

    program: str = "reverse"
    n_layers: int | None = None
    d_model: int = 32
    n_heads: int = 4
    d_mlp: int = 64
    act_fn: str = "gelu"
    normalization_type: str | None = "LN"
    alignment: tuple[tuple[str, str, int | None], ...] | None = None
    iit_weight: float = 1.0
    behavior_weight: float = 1.0
    strict_weight: float = 0.4
    lr: float = 3e-3
    final_lr_fraction: float = 0.1
    batch_size: int = 128
    train_steps: int = 1000
    clip_grad_norm: float = 1.0
    eval_pairs: int = 2048
    log_every: int = 50
    checkpoint_every: int = 250
    seed: int = 0

    def __post_init__(self) -> None:
        _check_program(self.program)
        fixture = load_tracr_model(self.program)
        if self.n_layers is None:
            object.__setattr__(self, "n_layers", max(2, fixture.n_layers))
        for name in ("n_layers", "d_model", "n_heads", "d_mlp", "batch_size", "train_steps",
                     "eval_pairs", "log_every", "checkpoint_every"):
            require_positive_int(name, getattr(self, name))
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads "
                             f"({self.n_heads})")
        if self.act_fn not in ("gelu", "relu"):
            raise ValueError(f"act_fn must be 'gelu' or 'relu', got {self.act_fn!r}")
        if self.normalization_type not in ("LN", None):
            raise ValueError(f"normalization_type must be 'LN' or None, got "
                             f"{self.normalization_type!r}")
        weights = (self.iit_weight, self.behavior_weight, self.strict_weight)
        if any(not w >= 0 for w in weights) or not sum(weights) > 0:
            raise ValueError(f"loss weights must be >= 0 and not all 0, got iit={weights[0]}, "
                             f"behavior={weights[1]}, strict={weights[2]}")
        if not self.lr > 0 or not 0 < self.final_lr_fraction <= 1:
            raise ValueError(f"need lr > 0 and 0 < final_lr_fraction <= 1, got lr={self.lr}, "
                             f"final_lr_fraction={self.final_lr_fraction}")
        if not self.clip_grad_norm >= 0:
            raise ValueError(f"clip_grad_norm must be >= 0, got {self.clip_grad_norm}")
        require_seed(self.seed)
        nodes = [n.name for n in high_level_nodes(fixture)]
        if self.alignment is None:
            object.__setattr__(self, "alignment", default_alignment(self.program))
        else:  # a JSON list of lists -> a hashable tuple of tuples
            object.__setattr__(self, "alignment", tuple(
                (str(a[0]), str(a[1]), a[2]) for a in self.alignment))
        _alignment_dict(self.alignment, nodes, self.n_layers, self.n_heads)

    @property
    def alignment_map(self) -> dict[str, Component]:
        """node -> (hook, head), in the program's node order."""
        return _alignment_dict(self.alignment, [a[0] for a in self.alignment], self.n_layers,
                               self.n_heads)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["alignment"] = [list(a) for a in self.alignment]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SIITConfig:
        reject_unknown_keys(cls, data)
        return cls(**data)


def _make_model(config: SIITConfig, fixture: TracrModel):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    hl = fixture.model.cfg
    cfg = HookedTransformerConfig(
        n_layers=config.n_layers, d_model=config.d_model, n_heads=config.n_heads,
        d_head=config.d_model // config.n_heads, d_mlp=config.d_mlp, n_ctx=hl.n_ctx,
        d_vocab=hl.d_vocab, d_vocab_out=hl.d_vocab_out, act_fn=config.act_fn,
        normalization_type=config.normalization_type, attention_dir=hl.attention_dir,
        positional_embedding_type="standard", default_prepend_bos=False, seed=config.seed,
        device="cpu")
    return HookedTransformer(cfg)


# ---- interventions and losses ------------------------------------------------------------


def interchange_hooks(components: Sequence[Component], source_cache: Mapping[str, torch.Tensor]):
    """Forward hooks writing each component's source activation into the base run.

    Args:
        components: (hook, head) pairs; a head replaces [:, :, head] of `attn.hook_z`
            ([batch, pos, n_heads, d_head]), an MLP the whole `hook_mlp_out`.
        source_cache: hook name -> the source run's activation (same batch and length).
    """
    def make(hook: str, head: int | None):
        def patch(value: torch.Tensor, hook) -> torch.Tensor:
            source = source_cache[hook.name]
            if head is None:
                return source
            out = value.clone()
            out[:, :, head] = source[:, :, head]
            return out
        return patch

    return [(hook, make(hook, head)) for hook, head in components]


def _source_cache(model, tokens: torch.Tensor, components: Sequence[Component]):
    names = {hook for hook, _ in components}
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    return {name: cache[name].detach() for name in names}


def _run_interchanged(model, base: torch.Tensor, source: torch.Tensor,
                      components: Sequence[Component]) -> torch.Tensor:
    if not components:
        return model(base)
    cache = _source_cache(model, source, components)
    return model.run_with_hooks(base, fwd_hooks=interchange_hooks(components, cache))


def _hl_labels(hl_model, base: torch.Tensor, source: torch.Tensor | None = None,
               component: Component | None = None) -> torch.Tensor:
    """argmax of the high-level output at non-BOS positions, int64 [batch, pos - 1]."""
    with torch.no_grad():
        components = [] if component is None else [component]
        logits = _run_interchanged(hl_model, base, source, components)
    return logits[:, 1:].argmax(-1)


def _ce(logits: torch.Tensor, labels: torch.Tensor,
        real: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy over non-BOS positions (only the `real` ones, bool [b, pos - 1], when
    given); logits [b, pos, v], labels [b, pos - 1]."""
    scores = logits[:, 1:]
    if real is not None:
        return torch.nn.functional.cross_entropy(scores[real], labels[real])
    return torch.nn.functional.cross_entropy(scores.reshape(-1, logits.shape[-1]),
                                             labels.reshape(-1))


def _real_positions(tokens: torch.Tensor, pad_id: int | None) -> torch.Tensor | None:
    """The non-pad positions after BOS, bool [b, pos - 1] (None: no padding)."""
    return None if pad_id is None else tokens[:, 1:] != pad_id


def _padded_inputs(rng: np.random.Generator, fixture: TracrModel, n: int) -> torch.Tensor:
    """n inputs of lengths uniform in 1..max_seq_len, tokens uniform over the vocab, padded to
    max_seq_len with the compiler's pad token, BOS first: int64 [n, max_seq_len + 1]."""
    vocab = np.array([fixture.token_id(t) for t in fixture.vocab])
    width = fixture.max_seq_len
    lengths = rng.integers(1, width + 1, size=n)
    ids = vocab[rng.integers(0, len(vocab), size=(n, width))]
    ids[np.arange(width)[None, :] >= lengths[:, None]] = pad_token_id(fixture)
    return _with_bos(ids, fixture.bos_id)


def pad_token_id(fixture: TracrModel) -> int:
    """The compiled model's pad token (Tracr's `compiler_pad`)."""
    return fixture.token_id("compiler_pad")


class SIITLosses(NamedTuple):
    """The three unweighted losses of one step (scalar tensors; see the module docstring)."""

    behavior: torch.Tensor
    iit: torch.Tensor
    strict: torch.Tensor


def siit_losses(ll_model, hl_model, base: torch.Tensor, source: torch.Tensor, *,
                node_component: Component, ll_component: Component,
                strict_component: Component | None, pad_id: int | None = None) -> SIITLosses:
    """Behaviour, IIT and strictness cross-entropies on one batch of pairs.

    Args:
        ll_model, hl_model: the low- and high-level HookedTransformers.
        base, source: int64 [batch, pos] token ids, BOS at position 0, same shape.
        node_component: the intervened high-level node's component in hl_model.
        ll_component: its aligned component in ll_model.
        strict_component: the non-circuit ll component to resample-ablate (None: strict 0).
        pad_id: the pad token; its positions in `base` are left out of every loss (None:
            every non-BOS position counts).
    """
    real = _real_positions(base, pad_id)
    true_labels = _hl_labels(hl_model, base)
    iit_labels = _hl_labels(hl_model, base, source, node_component)
    behavior = _ce(ll_model(base), true_labels, real)
    iit = _ce(_run_interchanged(ll_model, base, source, [ll_component]), iit_labels, real)
    if strict_component is None:
        strict = torch.zeros((), dtype=behavior.dtype)
    else:
        strict = _ce(_run_interchanged(ll_model, base, source, [strict_component]),
                     true_labels, real)
    return SIITLosses(behavior, iit, strict)


# ---- evaluation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SIITEvaluation:
    """How well a low-level model implements the program (non-BOS positions, held-out pairs).

    Attributes:
        task_accuracy: argmax LL(x_b) == the program's output (best 1).
        iia: node -> interchange intervention accuracy (best 1).
        changed: node -> fraction of positions where the interchange changes the high-level
            output (0: the node's IIA only checks that nothing else moves the output).
        strict_accuracy: non-circuit component -> accuracy of the base label under its
            resample ablation (best 1); empty if every component is aligned.
        n_pairs: (base, source) pairs; n_positions: non-BOS positions over them.
    """

    task_accuracy: float
    iia: dict[str, float]
    changed: dict[str, float]
    strict_accuracy: dict[str, float]
    n_pairs: int
    n_positions: int

    @property
    def min_iia(self) -> float:
        return min(self.iia.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _with_bos(ids: np.ndarray, bos_id: int) -> torch.Tensor:
    bos = np.full((ids.shape[0], 1), bos_id, dtype=np.int64)
    return torch.from_numpy(np.concatenate([bos, ids.astype(np.int64)], axis=1))


def evaluate_siit(model, program: str, alignment, *, n_pairs: int = 2048,
                  seed: int) -> SIITEvaluation:
    """Task accuracy, IIA per node and strict accuracy per non-circuit component.

    Args:
        model: a HookedTransformer with the program's vocabularies (a trained low-level model,
            or the compiled model itself).
        program: a name in `SIIT_PROGRAMS`.
        alignment: (node, hook, head) triples or a node -> (hook, head) mapping, every node.
        n_pairs: held-out (base, source) pairs, lengths uniform in 1..max_seq_len and drawn
            independently, padded (module docstring); accuracies count the base's real
            positions.
        seed: draws the pairs.

    Raises:
        ValueError: an unknown program, a bad alignment, n_pairs < 1.
    """
    _check_program(program)
    require_positive_int("n_pairs", n_pairs)
    require_seed(seed)
    fixture = load_tracr_model(program, dtype=torch.float64)
    nodes = high_level_nodes(fixture)
    aligned = _alignment_dict(alignment, [n.name for n in nodes], model.cfg.n_layers,
                              model.cfg.n_heads)
    others = [c for c in component_hooks(model.cfg.n_layers, model.cfg.n_heads)
              if c not in aligned.values()]
    rng = np.random.default_rng(derive_seed(seed, "siit-evaluation"))
    hits = {"task": 0, **{f"iia:{n.name}": 0 for n in nodes},
            **{f"changed:{n.name}": 0 for n in nodes},
            **{f"strict:{_component_name(c)}": 0 for c in others}}
    was_training = model.training
    model.eval()
    with single_threaded_torch(), torch.no_grad():
        base = _padded_inputs(rng, fixture, n_pairs)
        source = _padded_inputs(rng, fixture, n_pairs)
        real = _real_positions(base, pad_token_id(fixture))
        positions = int(real.sum())
        truth = _hl_labels(fixture.model, base)
        hits["task"] += int(((model(base)[:, 1:].argmax(-1) == truth) & real).sum())
        for node in nodes:
            target = _hl_labels(fixture.model, base, source, node.component)
            got = _run_interchanged(model, base, source, [aligned[node.name]])
            hits[f"iia:{node.name}"] += int(((got[:, 1:].argmax(-1) == target) & real).sum())
            hits[f"changed:{node.name}"] += int(((target != truth) & real).sum())
        for component in others:
            got = _run_interchanged(model, base, source, [component])
            hits[f"strict:{_component_name(component)}"] += int(
                ((got[:, 1:].argmax(-1) == truth) & real).sum())
    model.train(was_training)

    def rate(key: str) -> float:
        return hits[key] / positions

    return SIITEvaluation(
        task_accuracy=rate("task"),
        iia={n.name: rate(f"iia:{n.name}") for n in nodes},
        changed={n.name: rate(f"changed:{n.name}") for n in nodes},
        strict_accuracy={_component_name(c): rate(f"strict:{_component_name(c)}")
                         for c in others},
        n_pairs=n_pairs, n_positions=positions)


# ---- training -----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SIITModel:
    """A trained low-level model with its config and training log.

    Attributes:
        model: the HookedTransformer (eval mode, float32, CPU).
        config: its SIITConfig.
        log: the training log (loss curve, final evaluation, wall time).
        directory: where it is saved.
    """

    model: Any
    config: SIITConfig
    log: dict[str, Any] = field(default_factory=dict)
    directory: Path | None = None

    def evaluate(self, *, n_pairs: int = 2048, seed: int) -> SIITEvaluation:
        return evaluate_siit(self.model, self.config.program, self.config.alignment,
                             n_pairs=n_pairs, seed=seed)


def train_siit(config: SIITConfig, directory: str | Path, *, progress: bool = False,
               stop_after: int | None = None) -> SIITModel:
    """Train a low-level model with SIIT into `directory`, or load/resume what is there.

    Writes config.json, model.safetensors and training_log.json when done; while training,
    checkpoint.pt every `checkpoint_every` steps (weights, optimizer, data generator), from
    which a later call resumes to bit-identical weights.

    Args:
        config: the run.
        directory: the model folder (created).
        progress: show a progress bar.
        stop_after: train at most this many steps in this call, leaving a checkpoint (for
            time-bounded runs; the model returned is then unfinished).

    Raises:
        ValueError: `directory` holds a model or checkpoint of another config.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / LOG_FILENAME).exists():
        loaded = load_siit_model(directory)
        if loaded.config != config:
            raise ValueError(f"{directory} holds a SIIT model trained with another config; "
                             "use another folder or delete it")
        return loaded
    with single_threaded_torch():  # bit-identical weights from the same seed
        return _train(config, directory, progress, stop_after)


def _train(config: SIITConfig, directory: Path, progress: bool,
           stop_after: int | None) -> SIITModel:
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    fixture = load_tracr_model(config.program, dtype=torch.float64)
    nodes = high_level_nodes(fixture)
    aligned = config.alignment_map
    others = [c for c in component_hooks(config.n_layers, config.n_heads)
              if c not in aligned.values()]
    torch.manual_seed(config.seed)
    model = _make_model(config, fixture)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.9))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 1 - (1 - config.final_lr_fraction) * step / config.train_steps)
    rng = np.random.default_rng(derive_seed(config.seed, "siit-data"))
    start, curve, elapsed, sums = 0, [], 0.0, np.zeros(3)
    checkpoint = directory / CHECKPOINT_FILENAME
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        if SIITConfig.from_dict(state["config"]) != config:
            raise ValueError(f"{directory} holds a SIIT checkpoint of another config; use "
                             "another folder or delete it")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        rng.bit_generator.state = state["rng"]
        start, curve, elapsed = state["step"], state["curve"], state["elapsed"]
        sums = np.array(state["loss_sums"])
    stop = config.train_steps if stop_after is None else min(config.train_steps,
                                                             start + stop_after)
    began = time.perf_counter()
    model.train()
    for step in tqdm(range(start, stop), desc=f"SIIT {config.program}", disable=not progress,
                     initial=start, total=config.train_steps):
        # lengths drawn per example, padded (module docstring)
        base = _padded_inputs(rng, fixture, config.batch_size)
        source = _padded_inputs(rng, fixture, config.batch_size)
        node = nodes[int(rng.integers(len(nodes)))]
        strict = others[int(rng.integers(len(others)))] if others else None
        losses = siit_losses(model, fixture.model, base, source,
                             node_component=node.component, ll_component=aligned[node.name],
                             strict_component=strict, pad_id=pad_token_id(fixture))
        loss = (config.behavior_weight * losses.behavior + config.iit_weight * losses.iit
                + config.strict_weight * losses.strict)
        optimizer.zero_grad()
        loss.backward()
        if config.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
        optimizer.step()
        schedule.step()
        sums += [float(v.detach()) for v in losses]
        done = step + 1
        if done % config.log_every == 0 or done == config.train_steps:
            n = (done - 1) % config.log_every + 1
            curve.append({"step": done, "behavior": float(sums[0] / n),
                          "iit": float(sums[1] / n), "strict": float(sums[2] / n)})
            sums[:] = 0
        if done % config.checkpoint_every == 0 or done == stop < config.train_steps:
            _save_checkpoint(checkpoint, config, model, optimizer, schedule, rng, done, curve,
                             sums, elapsed + time.perf_counter() - began)
    elapsed += time.perf_counter() - began
    model.eval()
    if stop < config.train_steps:
        return SIITModel(model, config, {"step": stop, "loss_curve": curve}, directory)
    evaluation = evaluate_siit(model, config.program, config.alignment,
                               n_pairs=config.eval_pairs,
                               seed=derive_seed(config.seed, "siit-held-out"))
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILENAME), metadata={"program": config.program})
    (directory / CONFIG_FILENAME).write_text(json.dumps(config.to_dict(), indent=1) + "\n")
    log = {"config": config.to_dict(), "loss_curve": curve, "evaluation": evaluation.to_dict(),
           "train_seconds": elapsed, "torch_version": torch.__version__}
    (directory / LOG_FILENAME).write_text(json.dumps(log, indent=1) + "\n")
    checkpoint.unlink(missing_ok=True)
    return SIITModel(model, config, log, directory)


def _save_checkpoint(path: Path, config, model, optimizer, schedule, rng, step, curve, sums,
                     elapsed) -> None:
    state = {"config": config.to_dict(), "model": model.state_dict(),
             "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
             "rng": rng.bit_generator.state, "step": step, "curve": curve,
             "loss_sums": [float(v) for v in sums],
             "elapsed": elapsed}
    temporary = path.with_suffix(".tmp")
    torch.save(state, temporary)
    temporary.replace(path)  # never a half-written checkpoint


def load_siit_model(directory: str | Path) -> SIITModel:
    """The finished model saved by `train_siit` in `directory`.

    Raises:
        ValueError: the folder holds no finished SIIT model.
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    if not (directory / LOG_FILENAME).exists() or not (directory / WEIGHTS_FILENAME).exists():
        raise ValueError(f"{directory} holds no finished SIIT model ({LOG_FILENAME}, "
                         f"{WEIGHTS_FILENAME})")
    config = SIITConfig.from_dict(json.loads((directory / CONFIG_FILENAME).read_text()))
    log = json.loads((directory / LOG_FILENAME).read_text())
    model = _make_model(config, load_tracr_model(config.program))
    model.load_state_dict(load_file(str(directory / WEIGHTS_FILENAME)))
    model.eval()
    return SIITModel(model, config, log, directory)
