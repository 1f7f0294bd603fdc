"""Score many SAEs on one model and dataset: the pipeline behind `cebench score`.

For each SAE: load it, get the dataset's activations at its hook (computed once per hook and
cached on disk, shared by every SAE on that hook; the model is loaded at most once per run),
stream them through the JAX core, and write one result file. Result files appear atomically
(mode 0644, like any file the user creates).

A result belongs to one SAE: the file records the SAE's identity (`cebench.saes.sae_identity`:
its release and id, or its resolved path and a hash of its files). An SAE whose result file
exists with the same identity and evaluation settings is skipped (unless `force`), so an
interrupted sweep resumes where it stopped. Two SAEs of one run that would write the same file
(the same label) are refused before any work, naming both; an existing file that holds another
SAE's result is never overwritten silently (the run stops, naming both, unless `force`).

The v1 variant skips rows whose subject contains "relevance to ", as the reference's v1 code
does (utils/contrastive_eval.py); `ScoreConfig.keep_relevance_rows` keeps them.

Result file (one per SAE, `{release}_{sae_id}_eval_results.json` with "/" -> "_"), in
SAEBench's shape so its tooling reads it:
    eval_type_id "ce_bench", eval_config, eval_id, datetime_epoch_millis,
    eval_result_metrics {"ce_bench": {flat scalar metrics}}, eval_result_details (per row),
    eval_result_unstructured, sae_bench_commit_hash ("Unknown": not run by SAEBench), sae_lens_id,
    sae_lens_release_id, sae_lens_version, sae_cfg_dict, sae_identity,
plus the reference CE-Bench's results.json keys: contrastive_dataset, sae_release, sae_id,
contrastive_score_mean, independent_score_mean, interpretability_score_mean (every pooling),
total_rows, sae_config, date.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from cebench.activations import cached_activations
from cebench.core import encoder_from_sae, score_segments, segment_sums
from cebench.datasets import load_contrastive_dataset, reference_v1_rows
from cebench.models import load_model
from cebench.saes import load_sae, sae_identity, sae_label
from cebench.scores import PAPER_ALPHA, CEScores

__all__ = ["ScoreConfig", "SAESource", "SweepResult", "run_sweep", "result_path",
           "write_json_atomic"]

EVAL_TYPE_ID = "ce_bench"


@dataclass(frozen=True, kw_only=True)
class ScoreConfig:
    """Settings of a CE-Bench evaluation; validated on construction."""

    variant: Literal["auto", "v4", "v1"] = "auto"
    alpha: float = PAPER_ALPHA
    bos: Literal["include", "exclude"] = "include"
    batch_size: int = 8
    max_tokens: int | None = None
    llm_dtype: str = "float32"
    device: str = "cpu"
    chunk_size: int = 2048
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    ibar_zero_defect: bool = False
    limit: int | None = None
    keep_relevance_rows: bool = False

    def __post_init__(self) -> None:
        if self.variant not in ("auto", "v4", "v1"):
            raise ValueError(f"variant must be auto, v4 or v1, got {self.variant!r}")
        if self.bos not in ("include", "exclude"):
            raise ValueError(f"bos must be include or exclude, got {self.bos!r}")
        for name in ("batch_size", "chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_tokens", "limit"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.compute_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"compute_dtype must be float32 or bfloat16, got {self.compute_dtype!r}")


@dataclass(frozen=True)
class SAESource:
    """An SAE to score: a path (sae-lens dir or params.npz) or a (release, sae_id) pair."""

    source: str
    sae_id: str | None = None


@dataclass(frozen=True)
class SweepResult:
    """What happened to one SAE: "scored" or "skipped" (already scored), and its file."""

    source: SAESource
    status: str
    path: Path
    scores: CEScores | None = None


def result_path(output_folder: str | Path, release: str, sae_id: str) -> Path:
    name = f"{release}_{sae_id}_eval_results.json".replace("/", "_")
    return Path(output_folder) / name


def _eval_config(config: ScoreConfig, variant: str, dataset, model_name: str) -> dict[str, Any]:
    out = asdict(config)
    out.update(variant=variant, dataset=dataset.name, dataset_fingerprint=dataset.fingerprint,
               dataset_schema=dataset.schema, total_rows=len(dataset), model_name=model_name)
    return out


def _already_done(path: Path, eval_config: dict, identity: dict, source: SAESource,
                  force: bool) -> bool:
    """Whether `path` already holds this SAE's result with these settings. Raises when it
    holds another SAE's result (unless `force`): rescoring would silently replace it."""
    if not path.exists():
        return False
    try:
        existing = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    theirs = existing.get("sae_identity")
    if theirs is not None and theirs != identity and not force:
        raise ValueError(
            f"{path} holds the result of another SAE ({theirs.get('source')}) with the same "
            f"label as {source.source}: score into another output folder, or pass force "
            "(--force) to replace it")
    return (not force and existing.get("eval_type_id") == EVAL_TYPE_ID
            and existing.get("eval_config") == eval_config and theirs == identity)


def _check_unique_labels(saes: list[SAESource], labels: list[tuple[str, str]]) -> None:
    """Refuse two SAEs that would write one result file."""
    seen: dict[tuple[str, str], SAESource] = {}
    for spec, label in zip(saes, labels):
        if label in seen:
            raise ValueError(
                f"{seen[label].source} and {spec.source} have the same label {'/'.join(label)} "
                "and would write one result file: score them into separate output folders, or "
                "rename one of their folders")
        seen[label] = spec


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write `payload` as JSON (no NaN) to `path` through a temporary file and a rename, so a
    crash leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=2, allow_nan=False, default=str)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a result is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _payload(scores: CEScores, *, release: str, sae_id: str, sae, eval_config: dict,
             dataset, identity: dict) -> dict[str, Any]:
    import sae_lens

    per_pair = scores.per_pair
    details = [
        {"row": i, "subject": dataset[i].subject,
         "contrastive": float(per_pair.contrastive[i]),
         "independent": float(per_pair.independent[i]),
         "interpretability": float(per_pair.interpretability[i]),
         "contrastive_latent": int(per_pair.contrastive_latent[i]),
         "independent_latent": int(per_pair.independent_latent[i]),
         "interpretability_latent": int(per_pair.interpretability_latent[i])}
        for i in range(scores.n_pairs)
    ]
    sae_cfg = sae.cfg.to_dict()
    key = json.dumps([release, sae_id, identity, eval_config], sort_keys=True, default=str)
    return {
        "eval_type_id": EVAL_TYPE_ID,
        "eval_config": eval_config,
        "eval_id": str(uuid.uuid5(uuid.NAMESPACE_URL, key)),
        "datetime_epoch_millis": int(time.time() * 1000),
        "eval_result_metrics": {EVAL_TYPE_ID: scores.metrics()},
        "eval_result_details": details,
        "eval_result_unstructured": None,
        "sae_bench_commit_hash": "Unknown",  # SAEBench's own value outside its repository
        "sae_lens_id": sae_id,
        "sae_lens_release_id": release,
        "sae_lens_version": sae_lens.__version__,
        "sae_cfg_dict": sae_cfg,
        "sae_identity": identity,
        # the reference CE-Bench's results.json keys
        "contrastive_dataset": dataset.name,
        "sae_release": release,
        "sae_id": sae_id,
        "contrastive_score_mean": scores.pooled["contrastive"],
        "independent_score_mean": scores.pooled["independent"],
        "interpretability_score_mean": scores.pooled["interpretability"],
        "total_rows": scores.n_pairs,
        "sae_config": sae_cfg,
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime()),
    }


def run_sweep(
    saes: list[SAESource],
    *,
    dataset_path: str | Path,
    output_folder: str | Path,
    model: str | None = None,
    hook_name: str | None = None,
    cache_dir: str | Path | None = None,
    config: ScoreConfig | None = None,
    force: bool = False,
    progress: bool = True,
    write_results: bool = True,
) -> list[SweepResult]:
    """Score every SAE in `saes`; see the module docstring.

    Args:
        saes: the SAEs, in scoring order.
        dataset_path: a local contrastive-stories file or folder.
        output_folder: where result files go.
        model: the model's hub name or local folder (default: each SAE's metadata.model_name).
        hook_name: the hook of params.npz SAEs whose folder layout does not give it.
        cache_dir: activation cache (default: output_folder/activation_cache).
        config: evaluation settings.
        force: rescore SAEs that already have a result file.
        progress: show progress bars.
        write_results: write result files (in a multi-process run only process 0 writes;
            every process computes).

    Raises:
        ValueError: no SAEs, an unknown SAE, a bad dataset, a v1 variant on an unmarked
            dataset, an SAE whose d_in differs from the model's activations.
    """
    from tqdm.auto import tqdm

    config = config or ScoreConfig()
    if not saes:
        raise ValueError("no SAEs to score")
    dataset = load_contrastive_dataset(dataset_path, limit=config.limit)
    if config.variant == "v1" and not dataset.is_marked:
        raise ValueError(f"the v1 variant needs a dataset with <subject> marks; "
                         f"{dataset.name} ({dataset.schema}) has none")
    variant = ("v1" if dataset.is_marked else "v4") if config.variant == "auto" else config.variant
    if variant == "v1" and not config.keep_relevance_rows:
        dataset = dataset.select(reference_v1_rows(dataset))
    output_folder = Path(output_folder)
    cache_dir = Path(cache_dir) if cache_dir is not None else output_folder / "activation_cache"
    labels = [sae_label(s.source, s.sae_id) for s in saes]  # validates every source first
    _check_unique_labels(saes, labels)
    models: dict[str, Any] = {}  # each model is loaded at most once, and only on a cache miss

    def loader(name: str):
        def load():
            if name not in models:
                models[name] = load_model(name, device=config.device, dtype=config.llm_dtype)
            return models[name]
        return load

    results = []
    bar = tqdm(total=len(saes), unit="sae", desc="cebench", disable=not progress)
    for spec, (release, sae_id) in zip(saes, labels):
        is_npz = str(spec.source).endswith(".npz")
        sae = load_sae(spec.source, spec.sae_id, device="cpu",
                       model_name=model if is_npz else None,
                       hook_name=hook_name if is_npz else None)
        model_name = model or sae.cfg.metadata.model_name
        if not model_name:
            raise ValueError(f"{release}/{sae_id} does not say which model it reads: pass a model")
        eval_config = _eval_config(config, variant, dataset, str(model_name))
        path = result_path(output_folder, release, sae_id)
        identity = sae_identity(spec.source, spec.sae_id)
        if _already_done(path, eval_config, identity, spec, force):
            results.append(SweepResult(spec, "skipped", path))
            bar.update(1)
            continue
        hook = sae.cfg.metadata.hook_name
        acts = cached_activations(
            model_name, hook, dataset, cache_dir=cache_dir, model_loader=loader(str(model_name)),
            bos=config.bos, batch_size=config.batch_size, max_tokens=config.max_tokens,
            dtype=config.llm_dtype, device=config.device, progress=progress,
        )
        if acts.d_in != sae.cfg.d_in:
            raise ValueError(f"{release}/{sae_id} has d_in={sae.cfg.d_in} but the model's "
                             f"activations at {hook} have d_in={acts.d_in}")
        encoder = encoder_from_sae(sae, compute_dtype=config.compute_dtype)
        segments, n_segments = acts.segment_ids(variant)
        sums = segment_sums(acts.activations, segments, n_segments, encoder,
                            chunk_size=config.chunk_size)
        scores = score_segments(sums, variant=variant, alpha=config.alpha,
                                ibar_zero_defect=config.ibar_zero_defect)
        if write_results:
            write_json_atomic(path, _payload(scores, release=release, sae_id=sae_id, sae=sae,
                                              eval_config=eval_config, dataset=dataset,
                                              identity=identity))
        results.append(SweepResult(spec, "scored", path, scores))
        bar.set_postfix(C=f"{scores.contrastive:.2f}", I=f"{scores.independent:.2f}")
        bar.update(1)
        del sae, encoder  # free this SAE's weights before loading the next
    bar.close()
    return results
