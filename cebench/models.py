"""Language models for CE-Bench: transformer-lens models from the hub or from local folders.

A local model folder holds `hooked_transformer_config.json` (a HookedTransformerConfig),
`model.safetensors` (its state dict) and the tokenizer files (see `cebench.tokenizer`); it is
written by `save_model` and read by `load_model`, so tests and demos run with no hub access.
Any other name goes to `HookedTransformer.from_pretrained_no_processing`, as the reference does.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch

__all__ = [
    "load_model",
    "save_model",
    "make_tiny_model",
    "model_fingerprint",
    "hook_layer",
    "MODEL_CONFIG_FILENAME",
]

MODEL_CONFIG_FILENAME = "hooked_transformer_config.json"
_WEIGHTS = "model.safetensors"


def hook_layer(hook_name: str) -> int | None:
    """The block index a hook lives in (None for hooks before the first block).

    Examples:
        >>> hook_layer("blocks.12.hook_resid_post"), hook_layer("hook_embed")
        (12, None)
    """
    match = re.match(r"blocks\.(\d+)\.", hook_name)
    return int(match.group(1)) if match else None


def save_model(model, directory: str | Path) -> Path:
    """Write a HookedTransformer (config, weights, tokenizer) to a local folder."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = model.cfg.to_dict()
    cfg = {k: v for k, v in cfg.items() if _jsonable(v)}
    (directory / MODEL_CONFIG_FILENAME).write_text(json.dumps(cfg, indent=2, sort_keys=True))
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, directory / _WEIGHTS)
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(directory)
    return directory


def _jsonable(value) -> bool:
    try:
        json.dumps(value)
        return True
    except TypeError:
        return False


def load_model(name_or_path: str | Path, *, device: str = "cpu", dtype: str = "float32"):
    """A HookedTransformer from a local folder written by `save_model`, or from the hub.

    Raises:
        ValueError: a local folder without a model config, a name that is neither an
            existing folder nor a transformer-lens model, or an unknown dtype.
    """
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    if dtype not in ("float32", "float16", "bfloat16", "float64"):
        raise ValueError(f"unknown model dtype {dtype!r}")
    path = Path(name_or_path)
    if path.is_dir():
        config_path = path / MODEL_CONFIG_FILENAME
        if not config_path.exists():
            raise ValueError(f"{path} is not a saved model folder ({MODEL_CONFIG_FILENAME} missing)")
        from safetensors.torch import load_file

        from cebench.tokenizer import load_local_tokenizer

        try:
            cfg = json.loads(config_path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{config_path} is not valid JSON: {error}") from None
        cfg["device"] = device
        cfg["dtype"] = getattr(torch, dtype)
        model = HookedTransformer(HookedTransformerConfig(**_known_fields(cfg)),
                                  tokenizer=load_local_tokenizer(path))
        model.load_state_dict(load_file(path / _WEIGHTS, device=device), strict=True)
        return model.to(getattr(torch, dtype)).eval()
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        get_official_model_name(str(name_or_path))
    except ValueError:  # its message lists every model name, thousands of characters
        raise ValueError(f"no such folder or hub model: {str(name_or_path)!r} (give a model "
                         "folder written by cebench.models.save_model, or a transformer-lens "
                         "model name such as 'gpt2-small')") from None
    return HookedTransformer.from_pretrained_no_processing(
        str(name_or_path), device=device, dtype=getattr(torch, dtype)
    ).eval()


def _known_fields(cfg: dict) -> dict:
    import dataclasses

    from transformer_lens import HookedTransformerConfig

    names = {f.name for f in dataclasses.fields(HookedTransformerConfig) if f.init}
    return {k: v for k, v in cfg.items() if k in names}


def model_fingerprint(name_or_path: str | Path, dtype: str = "float32") -> str:
    """A stable id of a model for activation caches: the hub name, or a hash of the local
    folder's config and weights."""
    path = Path(name_or_path)
    if path.is_dir():
        digest = hashlib.sha256()
        for name in (MODEL_CONFIG_FILENAME, _WEIGHTS, "tokenizer.json"):
            file = path / name
            if file.exists():
                digest.update(name.encode())
                digest.update(file.read_bytes())
        return f"local-{digest.hexdigest()[:16]}-{dtype}"
    return f"hub-{name_or_path}-{dtype}"


def make_tiny_model(tokenizer, *, n_layers: int = 2, d_model: int = 64, n_heads: int = 4,
                    d_mlp: int = 128, n_ctx: int = 256, seed: int = 0):
    """A small random HookedTransformer over `tokenizer`'s vocabulary (tests, demos)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=n_layers, d_model=d_model, n_heads=n_heads, d_head=d_model // n_heads,
        d_mlp=d_mlp, n_ctx=n_ctx, d_vocab=len(tokenizer), act_fn="gelu",
        normalization_type="LN", seed=seed, device="cpu", default_prepend_bos=False,
    )
    return HookedTransformer(cfg, tokenizer=tokenizer).eval()
