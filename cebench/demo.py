"""Small local artifacts for tests and demos, since no hub is reachable: contrastive story
rows in the v1 (tagged) and v4 schemas, a tokenizer trained on them, a tiny random
HookedTransformer, and SAEs for it in the three on-disk formats CE-Bench loads.

    build_demo(directory) -> DemoArtifacts
        directory/dataset_v1.jsonl, dataset_v4.jsonl    contrastive stories
        directory/model/                                tiny model + tokenizer (load_model)
        directory/saes/<name>/                          sae-lens directories
        directory/gemma-scope-demo-pt-res/layer_1/width_128/average_l0_10/params.npz
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

__all__ = ["DEMO_SUBJECTS", "demo_rows", "DemoArtifacts", "build_demo"]

# (subject, high pole, low pole): each pole a few words that the stories mark.
DEMO_SUBJECTS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("outcome", ("won the final", "celebrated the victory"), ("lost the final", "mourned the defeat")),
    ("temperature", ("was scorching hot", "melted in the heat"), ("was freezing cold", "shivered in the frost")),
    ("mood", ("laughed with joy", "felt delighted"), ("wept with sorrow", "felt miserable")),
    ("speed", ("raced ahead quickly", "sprinted at full speed"), ("crawled along slowly", "dawdled at a snail pace")),
    ("wealth", ("grew rich", "counted gold coins"), ("fell into poverty", "begged for coins")),
    ("light", ("shone brightly", "glowed in the sunshine"), ("sat in darkness", "vanished into the shadows")),
    ("size", ("towered like a giant", "grew enormous"), ("shrank to a speck", "looked tiny")),
    ("health", ("recovered fully", "felt strong and healthy"), ("fell gravely ill", "grew weak and sick")),
)

_OPENINGS = ("On a quiet morning", "Late one evening", "After a long journey", "In the old village",
             "During the festival", "Before the storm")
_ACTORS = ("the young knight", "a tired farmer", "the old captain", "my neighbour", "the small child",
           "a travelling merchant")
_ENDINGS = ("Everyone talked about it for days.", "Nobody expected that.", "The town remembered it.",
            "It was a day like no other.", "Then the bells rang.")


def _story(rng: np.random.Generator, phrases: tuple[str, ...]) -> str:
    first, second = rng.choice(len(phrases), size=2, replace=True)
    opening = _OPENINGS[rng.integers(len(_OPENINGS))]
    actor = _ACTORS[rng.integers(len(_ACTORS))]
    ending = _ENDINGS[rng.integers(len(_ENDINGS))]
    return (f"{opening}, {actor} <subject>{phrases[first]}</subject>. Later {actor} "
            f"<subject>{phrases[second]}</subject> again. {ending}")


def demo_rows(n_pairs: int = 24, *, schema: str = "v4", seed: int = 0) -> list[dict]:
    """`n_pairs` contrastive rows cycling through DEMO_SUBJECTS, in the v1 or v4 schema."""
    if schema not in ("v1", "v4"):
        raise ValueError(f"schema must be 'v1' or 'v4', got {schema!r}")
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_pairs):
        subject, high, low = DEMO_SUBJECTS[i % len(DEMO_SUBJECTS)]
        a, b = _story(rng, high), _story(rng, low)
        if schema == "v1":
            rows.append({"story1": a, "story2": b, "subject": subject})
        else:
            strip = (lambda s: s.replace("<subject>", "").replace("</subject>", ""))
            rows.append({"story1": strip(a), "story2": strip(b), "subject1": f"{subject}+",
                         "subject2": f"{subject}-", "subject_id": f"Q{i % len(DEMO_SUBJECTS)}",
                         "subject_title": subject})
    return rows


@dataclass(frozen=True)
class DemoArtifacts:
    """Paths of the demo artifacts."""

    directory: Path
    dataset_v1: Path
    dataset_v4: Path
    model: Path
    sae_dirs: tuple[Path, ...]
    gemma_scope_npz: Path
    hook_name: str


def build_demo(directory: str | Path, *, n_pairs: int = 24, d_model: int = 64, n_saes: int = 4,
               d_sae: int = 128, seed: int = 0) -> DemoArtifacts:
    """Write the demo artifacts (deterministic in `seed`); see the module docstring."""
    from cebench.datasets import write_contrastive_dataset
    from cebench.models import make_tiny_model, save_model
    from cebench.sae_weights import save_sae_lens
    from cebench.saes import write_gemma_scope_npz
    from cebench.tokenizer import build_local_tokenizer

    directory = Path(directory)
    v1 = write_contrastive_dataset(demo_rows(n_pairs, schema="v1", seed=seed),
                                   directory / "dataset_v1.jsonl")
    v4 = write_contrastive_dataset(demo_rows(n_pairs, schema="v4", seed=seed),
                                   directory / "dataset_v4.jsonl")
    texts = [r[k] for r in demo_rows(max(n_pairs, 64), schema="v4", seed=seed + 1)
             for k in ("story1", "story2")]
    tokenizer = build_local_tokenizer(texts, directory / "model", vocab_size=400)
    model = make_tiny_model(tokenizer, d_model=d_model, seed=seed)
    save_model(model, directory / "model")
    hook = "blocks.1.hook_resid_post"
    rng = np.random.default_rng(seed)
    architectures = ("relu", "topk", "jumprelu")
    sae_dirs = []
    for i in range(n_saes):
        arch = architectures[i % len(architectures)]
        W = rng.standard_normal((d_sae, d_model)).astype(np.float32)
        W /= np.linalg.norm(W, axis=1, keepdims=True)
        extra = {"k": 8} if arch == "topk" else {}
        if arch == "jumprelu":
            extra["threshold"] = np.full(d_sae, 0.1 * (i + 1), np.float32)
        params = _tied_weights(W, architecture=arch, **extra)
        sae_dirs.append(save_sae_lens(params, directory / "saes" / f"demo_{arch}_{i}",
                                      model_name=str(directory / "model"), hook_name=hook))
    W = rng.standard_normal((d_sae, d_model)).astype(np.float32)
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    gemma = _tied_weights(W, architecture="jumprelu", threshold=np.full(d_sae, 0.2, np.float32),
                          apply_b_dec_to_input=False)
    npz = write_gemma_scope_npz(
        gemma, directory / "gemma-scope-demo-pt-res" / "layer_1" / "width_128" / "average_l0_10"
        / "params.npz")
    return DemoArtifacts(directory, v1, v4, directory / "model", tuple(sae_dirs), npz, hook)


def _tied_weights(W: np.ndarray, *, architecture: str, threshold: np.ndarray | None = None,
                  k: int | None = None, apply_b_dec_to_input: bool = True) -> SimpleNamespace:
    """An `SAEWeights` with decoder W [d_sae, d_in], encoder W.T and zero biases (float32)."""
    W = np.asarray(W, dtype=np.float32)
    return SimpleNamespace(W_enc=W.T, b_enc=np.zeros(W.shape[0], np.float32), W_dec=W,
                           b_dec=np.zeros(W.shape[1], np.float32), architecture=architecture,
                           threshold=threshold, k=k, apply_b_dec_to_input=apply_b_dec_to_input)
