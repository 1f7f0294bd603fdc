"""Load the SAEs CE-Bench scores: sae-lens directories, Gemma Scope params.npz, pretrained releases.

Three kinds of source become one inference `sae_lens` SAE in eval mode:

    sae-lens directory   cfg.json + sae_weights.safetensors     -> SAE.load_from_disk
    Gemma Scope file     params.npz (W_enc, W_dec, b_enc, b_dec,  -> JumpReLU SAE built here,
                         threshold)                                 configured as sae-lens does
    pretrained release   (release, sae_id) in sae-lens's offline  -> SAE.from_pretrained (hub)
                         pretrained directory

A Gemma Scope params.npz holds, for d_in model dimensions and d_sae latents (float32):

    W_enc [d_in, d_sae]   W_dec [d_sae, d_in]   b_enc [d_sae]   b_dec [d_in]   threshold [d_sae]

and encodes without subtracting b_dec from the input (apply_b_dec_to_input False):

    pre = x @ W_enc + b_enc;   f = max(pre, 0) * (pre > threshold);   x_hat = f @ W_dec + b_dec

The model and hook come from the arguments or from Gemma Scope's folder layout,
`<repo>/layer_<L>/width_<W>/average_l0_<K>/params.npz` with `<repo>` one of
`gemma-scope-{2b,9b,27b}-{pt,it}-{res,mlp,att}` (as google/<repo> on the hub or a hub cache
folder `models--google--<repo>`), read as sae-lens's own Gemma Scope loader reads it:

    res  -> blocks.<L>.hook_resid_post   (an `embedding` folder -> hook_embed)
    mlp  -> blocks.<L>.hook_mlp_out
    att  -> blocks.<L>.attn.hook_z       (reshape_activations "hook_z": the SAE flattens
                                          [..., n_heads, d_head] inputs to [..., d_in])
    model gemma-2-<size>, or gemma-2-<size>-it for `-it-` repos

Selection follows the reference CE-Bench (`--sae_regex_pattern`, `--sae_block_pattern`), which
uses SAEBench's `get_saes_from_regex`: `re.fullmatch` of the release against one regex and of
each sae_id against the other.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from cebench.sae_weights import SAEWeights

if TYPE_CHECKING:
    from sae_lens import SAE
    from sae_lens.loading.pretrained_saes_directory import PretrainedSAELookup

__all__ = [
    "GEMMA_SCOPE_KEYS",
    "load_sae",
    "select_saes",
    "sae_label",
    "sae_identity",
    "write_gemma_scope_npz",
]

GEMMA_SCOPE_KEYS: tuple[str, ...] = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")
"""The arrays of a Gemma Scope params.npz, in no particular order."""

_KEY_ALIASES = {"w_enc": "W_enc", "w_dec": "W_dec"}  # older files, as sae-lens's loader allows
_REPO_RE = re.compile(r"gemma-scope-(2b|9b|27b)-(pt|it)-(res|mlp|att)(?![A-Za-z0-9])")
_LAYER_RE = re.compile(r"layer_(\d+)")
_N_SUGGESTIONS = 5


# ---- public API ------------------------------------------------------------------------------


def load_sae(
    source: str | Path,
    sae_id: str | None = None,
    *,
    device: str = "cpu",
    model_name: str | None = None,
    hook_name: str | None = None,
    dtype: str = "float32",
) -> SAE:
    """Load one SAE as an inference `sae_lens` SAE in eval mode.

    Args:
        source: a sae-lens directory (holds cfg.json), a Gemma Scope `params.npz` file, or a
            release name of sae-lens's pretrained directory. A `Path` is always a path; a
            string is a release when `sae_id` is given and it names a release, else a path
            when one exists there, else a release.
        sae_id: the SAE's id within a release; only for releases.
        device: torch device of the returned SAE.
        model_name: for a params.npz, the model the SAE reads (default: parsed from Gemma
            Scope's folder layout). For a directory or a release the SAE's own metadata
            wins, and a value that differs from it raises (a consistency check).
        hook_name: the hook the SAE reads, e.g. "blocks.12.hook_resid_post"; as
            `model_name`. A params.npz hook ending in "hook_z" makes an attention SAE that
            flattens [..., n_heads, d_head] inputs.
        dtype: dtype of the returned SAE's weights, a sae-lens dtype name ("float32",
            "float64", "float16", "bfloat16").

    Returns:
        The SAE (`sae.cfg.d_in`, `sae.cfg.d_sae`, `sae.cfg.metadata.model_name`,
        `sae.cfg.metadata.hook_name` set); `sae.encode` maps [..., d_in] to [..., d_sae].

    Raises:
        ValueError: an unknown source (with close release names), a release without
            `sae_id` or with an unknown one (with close ids), a `sae_id` for a path, a
            directory without cfg.json or weights, a file that is not a .npz, a params.npz
            with missing or unexpected keys, non-float arrays, inconsistent shapes, NaN/Inf
            weights (thresholds may be +inf: a latent that never fires), an unknown hook or
            model, metadata that contradicts `model_name`/`hook_name`, an unknown dtype.

    Example:
        >>> release, sae_id = "gemma-scope-2b-pt-res", "layer_12/width_16k/average_l0_82"
        >>> sae = load_sae(release, sae_id)  # doctest: +SKIP
        >>> sae = load_sae("downloads/gemma-scope-2b-pt-res/layer_12/width_16k/"
        ...                "average_l0_82/params.npz")  # doctest: +SKIP
    """
    from sae_lens import SAE

    torch_dtype = _check_dtype(dtype)
    kind, target = _classify(source, sae_id)
    if kind == "release":
        sae = SAE.from_pretrained(str(target), sae_id, device=device, dtype=dtype)
        _check_expected_metadata(sae, model_name, hook_name, f"release {target!r} / {sae_id!r}")
    elif (path := Path(target)).is_dir():
        if not (path / "cfg.json").is_file():
            raise ValueError(
                f"{path} is a directory but not a sae-lens SAE directory: it has no cfg.json"
            )
        if not (path / "sae_weights.safetensors").is_file():
            raise ValueError(
                f"{path} has a cfg.json but no sae_weights.safetensors: not a complete "
                "sae-lens SAE directory"
            )
        _check_json(path / "cfg.json")
        sae = SAE.load_from_disk(path, device=device, dtype=dtype)
        _check_expected_metadata(sae, model_name, hook_name, str(path))
    elif path.suffix == ".npz":
        sae = _load_gemma_scope_npz(path, device, torch_dtype, model_name, hook_name)
        if torch_dtype in (torch.float32, torch.float64):
            return sae.eval()  # checked finite as read; only a narrower dtype can overflow
    else:
        raise ValueError(
            f"{path} is a file but not a .npz: pass a sae-lens directory (with cfg.json), "
            "a Gemma Scope params.npz, or a pretrained release name"
        )
    _check_finite(sae, str(source) if sae_id is None else f"{source} / {sae_id}")
    return sae.eval()


def select_saes(release_pattern: str, sae_id_pattern: str) -> list[tuple[str, str]]:
    """The (release, sae_id) pairs of sae-lens's pretrained directory that both regexes match.

    The reference CE-Bench's selection (`--sae_regex_pattern`, `--sae_block_pattern`), with
    SAEBench's `get_saes_from_regex` semantics: `re.fullmatch(release_pattern, release)` and
    `re.fullmatch(sae_id_pattern, sae_id)`. Works offline (the directory ships with sae-lens).

    Returns:
        The matching pairs, sorted (by release, then sae_id as strings): deterministic.

    Raises:
        ValueError: either pattern is not a valid regex, or nothing matches (the message
            shows the patterns and, when no release matched, close release names).

    Example:
        >>> select_saes("gemma-scope-2b-pt-res", r"layer_12/width_16k/average_l0_8\\d")
        [('gemma-scope-2b-pt-res', 'layer_12/width_16k/average_l0_82')]
    """
    release_re = _compile(release_pattern, "release")
    sae_id_re = _compile(sae_id_pattern, "sae_id")
    directory = _directory()
    releases = [release for release in directory if release_re.fullmatch(release)]
    selected = sorted(
        (release, sae_id)
        for release in releases
        for sae_id in directory[release].saes_map
        if sae_id_re.fullmatch(sae_id)
    )
    if selected:
        return selected
    if not releases:
        close = difflib.get_close_matches(release_pattern, list(directory), n=_N_SUGGESTIONS)
        raise ValueError(
            f"no release in sae-lens's pretrained directory fully matches {release_pattern!r}"
            + (f"; close release names: {close}" if close else "")
        )
    shown = releases[:_N_SUGGESTIONS] + (["..."] if len(releases) > _N_SUGGESTIONS else [])
    example = next(iter(directory[releases[0]].saes_map), None)
    raise ValueError(
        f"{len(releases)} release(s) fully match {release_pattern!r} ({shown}), but none of "
        f"their sae_ids fully matches {sae_id_pattern!r} (e.g. {example!r})"
    )


def sae_label(source: str | Path, sae_id: str | None = None) -> tuple[str, str]:
    """The (release, sae_id) pair that names an SAE's result files.

    The rule:
      - a release: `(release, sae_id)` itself.
      - a path: its leaf is the directory for a sae-lens directory, the parent directory for
        a file named params.npz, and the file without its suffix for any other .npz.
        - If a folder above the leaf is a Gemma Scope repo (`gemma-scope-2b-pt-res`, also as
          `models--google--gemma-scope-2b-pt-res`), the label is that repo's name and the
          leaf's path from its `layer_<L>` (or `embedding`) folder on, joined by "/" (else
          from below the repo folder): exactly the pretrained release and id, e.g.
          `.../gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82/params.npz` ->
          ("gemma-scope-2b-pt-res", "layer_12/width_16k/average_l0_82").
        - Otherwise `(name of the leaf's parent directory, name of the leaf)`, e.g.
          `runs/families/oracle_s0` -> ("families", "oracle_s0"); "local" when the leaf has no
          parent name. Relative paths are resolved first.

    Raises:
        ValueError: as `load_sae` for an unknown source or a misplaced/unknown `sae_id`.
    """
    kind, target = _classify(source, sae_id)
    if kind == "release":
        return str(target), str(sae_id)
    leaf = _leaf(Path(target).resolve())
    layout = _parse_gemma_scope(leaf)
    if layout is not None and layout.sae_id:
        return layout.release, layout.sae_id
    return leaf.parent.name or "local", leaf.name


def _check_json(path: Path) -> None:
    """Name a config file that is not JSON (the loaders' own errors do not)."""
    import json

    try:
        json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None


def sae_identity(source: str | Path, sae_id: str | None = None) -> dict[str, str | None]:
    """What makes a result this SAE's, whatever its label says.

    A release is identified by its release and id ("release/sae_id"; the hub names it). A path
    is identified by its resolved location and the sha256 of its files: the file itself
    (params.npz), or, for a sae-lens directory, every file directly in it, by name and
    content in name order. Two SAEs that share a label (`sae_label`) differ here.

    Returns:
        {"source": str, "sha256": hex digest or None for a release}.

    Raises:
        ValueError: as `sae_label`.
    """
    kind, target = _classify(source, sae_id)
    if kind == "release":
        return {"source": f"{target}/{sae_id}", "sha256": None}
    path = Path(target).resolve()
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode("utf-8") + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return {"source": str(path), "sha256": digest.hexdigest()}


def write_gemma_scope_npz(params: SAEWeights, path: str | Path) -> Path:
    """Write a jumprelu SAE (`SAEWeights`, e.g. `SAEParams`) as a Gemma Scope params.npz
    (uncompressed, float32).

    Args:
        params: a jumprelu SAE with `apply_b_dec_to_input` False (Gemma Scope's encoding).
        path: the file to write, ending in ".npz"; parent folders are created.

    Returns:
        The path written. `load_sae(path, ...)` reads it back with the same encoding.

    Raises:
        ValueError: `params` is not jumprelu, subtracts b_dec from its input, or `path` does
            not end in ".npz".
    """
    if params.architecture != "jumprelu":
        raise ValueError(
            f"a Gemma Scope params.npz holds a jumprelu SAE, got architecture "
            f"{params.architecture!r}"
        )
    if params.apply_b_dec_to_input:
        raise ValueError(
            "a Gemma Scope params.npz encodes without subtracting b_dec "
            "(apply_b_dec_to_input False); got apply_b_dec_to_input=True"
        )
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"a Gemma Scope params file ends in .npz, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        W_enc=params.W_enc,
        W_dec=params.W_dec,
        b_enc=params.b_enc,
        b_dec=params.b_dec,
        threshold=params.threshold,
    )
    return path


# ---- source resolution ---------------------------------------------------------------------


def _directory() -> dict[str, PretrainedSAELookup]:
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    return get_pretrained_saes_directory()


def _classify(source: str | Path, sae_id: str | None) -> tuple[str, str | Path]:
    """("release", name) or ("path", existing Path); raises the module's clear errors."""
    if isinstance(source, Path):
        if not source.exists():
            raise ValueError(f"unknown SAE {str(source)!r}: no such file or directory")
        path: Path | None = source
    elif isinstance(source, str):
        if sae_id is not None and source in _directory():
            return "release", _check_release_id(source, sae_id)
        candidate = Path(source).expanduser()
        path = candidate if candidate.exists() else None
        if path is None:
            directory = _directory()
            if source not in directory:
                close = difflib.get_close_matches(source, list(directory), n=_N_SUGGESTIONS)
                raise ValueError(
                    f"unknown SAE {source!r}: neither an existing path nor a release of "
                    f"sae-lens's pretrained directory ({len(directory)} releases)"
                    + (f"; close release names: {close}" if close else "")
                )
            return "release", _check_release_id(source, sae_id)
    else:
        raise ValueError(
            f"an SAE source is a path or a release name (str), got {type(source).__name__}"
        )
    if sae_id is not None:
        raise ValueError(
            f"sae_id {sae_id!r} is only for pretrained releases, but {str(source)!r} is a path; "
            "leave sae_id out for a directory or a params.npz"
        )
    return "path", path


def _check_release_id(release: str, sae_id: str | None) -> str:
    ids = list(_directory()[release].saes_map)
    if sae_id is None:
        raise ValueError(
            f"release {release!r} needs a sae_id: it has {len(ids)} SAE ids, "
            f"e.g. {ids[:_N_SUGGESTIONS]}"
        )
    if sae_id not in ids:
        close = difflib.get_close_matches(sae_id, ids, n=_N_SUGGESTIONS)
        raise ValueError(
            f"release {release!r} has no sae_id {sae_id!r}; it has {len(ids)} ids"
            + (f"; close ones: {close}" if close else f", e.g. {ids[:_N_SUGGESTIONS]}")
        )
    return release


def _check_dtype(dtype: str) -> torch.dtype:
    from sae_lens.constants import DTYPE_MAP

    if not isinstance(dtype, str) or dtype not in DTYPE_MAP:
        raise ValueError(f"unknown dtype {dtype!r}; known: {sorted(DTYPE_MAP)}")
    return DTYPE_MAP[dtype]


def _check_expected_metadata(
    sae: SAE, model_name: str | None, hook_name: str | None, where: str
) -> None:
    for field, expected in (("model_name", model_name), ("hook_name", hook_name)):
        actual = getattr(sae.cfg.metadata, field, None)
        if expected is not None and actual != expected:
            raise ValueError(
                f"{where} records {field}={actual!r} but {field}={expected!r} was given; a "
                f"sae-lens directory or release carries its own {field} (pass none, or the same)"
            )


def _check_finite(sae: SAE, where: str) -> None:
    """NaN anywhere, or Inf outside a jumprelu threshold's +inf, raises."""
    for name, tensor in sae.state_dict().items():
        if not torch.is_floating_point(tensor) or bool(torch.isfinite(tensor).all()):
            continue
        n_nan = int(torch.isnan(tensor).sum())
        infinite = torch.isinf(tensor)
        if name.endswith("threshold"):
            infinite = infinite & (tensor < 0)  # +inf: a latent that never fires
        n_inf = int(infinite.sum())
        if n_nan or n_inf:
            raise ValueError(
                f"SAE {where}: {name} has {n_nan} NaN and {n_inf} Inf values "
                f"(shape {tuple(tensor.shape)})"
            )


# ---- Gemma Scope params.npz ----------------------------------------------------------------


@dataclass(frozen=True)
class _GemmaScopeLayout:
    """What Gemma Scope's folder layout says about one SAE."""

    release: str  # e.g. "gemma-scope-2b-pt-res"
    size: str  # "2b", "9b", "27b"
    variant: str  # "pt" or "it"
    site: str  # "res", "mlp", "att"
    layer: int | None
    embedding: bool
    sae_id: str | None  # e.g. "layer_12/width_16k/average_l0_82"

    @property
    def model_name(self) -> str:
        return f"gemma-2-{self.size}" + ("-it" if self.variant == "it" else "")

    @property
    def hook_name(self) -> str | None:
        if self.site == "res" and self.embedding:
            return "hook_embed"
        if self.layer is None:
            return None
        return {
            "res": f"blocks.{self.layer}.hook_resid_post",
            "mlp": f"blocks.{self.layer}.hook_mlp_out",
            "att": f"blocks.{self.layer}.attn.hook_z",
        }[self.site]


def _leaf(path: Path) -> Path:
    if path.is_dir():
        return path
    if path.name == "params.npz":
        return path.parent
    return path.with_suffix("")


def _parse_gemma_scope(leaf: Path) -> _GemmaScopeLayout | None:
    """The layout below the last Gemma Scope repo folder in `leaf`'s path, or None."""
    parts = leaf.parts
    repos = [(i, m) for i, part in enumerate(parts) if (m := _REPO_RE.search(part))]
    if not repos:
        return None
    repo_at, match = repos[-1]
    below = parts[repo_at + 1 :]
    start = next(
        (i for i, p in enumerate(below) if _LAYER_RE.fullmatch(p) or p == "embedding"), None
    )
    layer: int | None = None
    embedding = False
    if start is not None:
        layer_match = _LAYER_RE.fullmatch(below[start])
        layer = int(layer_match.group(1)) if layer_match else None
        embedding = below[start] == "embedding"
        below = below[start:]
    return _GemmaScopeLayout(
        release=match.group(0),
        size=match.group(1),
        variant=match.group(2),
        site=match.group(3),
        layer=layer,
        embedding=embedding,
        sae_id="/".join(below) or None,
    )


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The five Gemma Scope arrays of `path` as float32, validated."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"cannot read {path} as a .npz file: {error}") from error
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds a single array, not a Gemma Scope .npz of named arrays")
    with data:
        raw = {_KEY_ALIASES.get(key, key): data[key] for key in data.files}
    missing = [key for key in GEMMA_SCOPE_KEYS if key not in raw]
    unexpected = sorted(set(raw) - set(GEMMA_SCOPE_KEYS))
    if missing or unexpected:
        raise ValueError(
            f"{path} is not a Gemma Scope params.npz: "
            + (f"missing keys {missing}" if missing else "")
            + ("; " if missing and unexpected else "")
            + (f"unexpected keys {unexpected}" if unexpected else "")
            + f" (it has {sorted(raw)}; expected {sorted(GEMMA_SCOPE_KEYS)})"
        )
    arrays: dict[str, np.ndarray] = {}
    for key in GEMMA_SCOPE_KEYS:
        array = raw[key]
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"{path}: {key} must hold floats, got dtype {array.dtype}")
        arrays[key] = array.astype(np.float32, copy=False)
    W_enc = arrays["W_enc"]
    if W_enc.ndim != 2:
        raise ValueError(f"{path}: W_enc must be [d_in, d_sae], got shape {W_enc.shape}")
    d_in, d_sae = W_enc.shape
    expected = {
        "W_dec": (d_sae, d_in),
        "b_enc": (d_sae,),
        "b_dec": (d_in,),
        "threshold": (d_sae,),
    }
    wrong = [
        f"{key} has shape {arrays[key].shape}, expected {shape}"
        for key, shape in expected.items()
        if arrays[key].shape != shape
    ]
    if wrong:
        raise ValueError(
            f"{path}: inconsistent shapes; W_enc {W_enc.shape} gives d_in={d_in}, "
            f"d_sae={d_sae}, but " + "; ".join(wrong)
        )
    for key in ("W_enc", "W_dec", "b_enc", "b_dec"):
        if not np.isfinite(arrays[key]).all():
            bad = int((~np.isfinite(arrays[key])).sum())
            raise ValueError(f"{path}: {key} has {bad} NaN or Inf values")
    threshold = arrays["threshold"]
    bad = int((np.isnan(threshold) | (threshold == -np.inf)).sum())
    if bad:
        raise ValueError(
            f"{path}: threshold has {bad} NaN or -Inf values (+Inf is allowed: never fires)"
        )
    return arrays


def _load_gemma_scope_npz(
    path: Path,
    device: str,
    dtype: torch.dtype,
    model_name: str | None,
    hook_name: str | None,
) -> SAE:
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    arrays = _read_npz(path)
    layout = _parse_gemma_scope(_leaf(path.resolve()))
    hook_name = hook_name or (layout.hook_name if layout else None)
    model_name = model_name or (layout.model_name if layout else None)
    if hook_name is None:
        raise ValueError(
            f"cannot tell which hook {path} reads: pass hook_name= (e.g. "
            "'blocks.12.hook_resid_post'), or keep Gemma Scope's layout, e.g. "
            ".../gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82/params.npz"
        )
    if model_name is None:
        raise ValueError(
            f"cannot tell which model {path} reads: pass model_name= (e.g. 'gemma-2-2b'), or "
            "keep Gemma Scope's layout, e.g. .../gemma-scope-2b-pt-res/layer_12/..."
        )
    d_in, d_sae = arrays["W_enc"].shape
    cfg = JumpReLUSAEConfig(
        d_in=int(d_in),
        d_sae=int(d_sae),
        dtype="float32",
        device="meta",  # built empty, then the weights are assigned (as sae-lens loads)
        apply_b_dec_to_input=False,
        normalize_activations="none",
        reshape_activations="hook_z" if hook_name.endswith("hook_z") else "none",
        metadata=SAEMetadata(
            model_name=model_name, hook_name=hook_name, hook_head_index=None, prepend_bos=True
        ),
    )
    state = {key: torch.from_numpy(array) for key, array in arrays.items()}
    if layout is not None and layout.embedding:
        # Gemma Scope's embedding SAEs were trained on embeddings scaled by sqrt(d_model);
        # sae-lens's loader rescales them so they read hook_embed directly. So do we.
        scale = math.sqrt(d_in)
        state["W_enc"] = state["W_enc"] / scale
        state["W_dec"] = state["W_dec"] * scale
    sae = JumpReLUSAE(cfg)
    sae.cfg.device = device
    sae.load_state_dict(state, assign=True)
    return sae.to(dtype=dtype, device=device)


def _compile(pattern: str, what: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except (re.error, TypeError) as error:
        raise ValueError(f"invalid {what} regex {pattern!r}: {error}") from error
