"""Study: does our multi-seed JAX trainer match sae_lens's train_toy_sae on the cpu world?

Trains 8 TopK seeds at once with our trainer and 3 seeds one by one with train_toy_sae (same
width, k, learning rate, batch size and sample count) and reports ground-truth MCC / F1.

    python experiments/trainer_vs_sae_lens.py [--samples 512000] [--out runs/trainer_vs_sae_lens.json]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from groundtruth.metrics import evaluate_quality
from synthetic_saes.base_world import BaseWorld
from synthetic_saes.sae_params import SAEParams
from synthetic_saes.training import TrainingConfig, train_population
from synthetic_saes.training.baseline import train_with_sae_lens
from synthetic_saes.worlds import build_world

CONFIG = dict(architecture="topk", d_sae=512, k=16, batch_size=1024, lr=1e-3)


def compare_with_sae_lens(world: BaseWorld, config: TrainingConfig, *, seeds: tuple[int, ...],
                          baseline_seeds: tuple[int, ...], data_seed: int = 0,
                          eval_samples: int = 8192, progress: bool = False) -> dict:
    """Train `seeds` at once with our trainer and `baseline_seeds` one by one with sae_lens;
    return ground-truth MCC / F1 / explained variance of every SAE, wall times and, for our
    population, the GT-F1 of every seed at every checkpoint.
    """

    def scores(params: SAEParams) -> dict:
        q = evaluate_quality(params, world, n_samples=eval_samples, seed=0)
        return {"mcc": q.mcc, "f1": q.f1, "explained_variance": q.explained_variance, "l0": q.l0}

    start = time.perf_counter()
    population = train_population(world, config, seeds=seeds, data_seed=data_seed,
                                  progress=progress)
    ours_seconds = time.perf_counter() - start
    ours = [scores(population.params(i)) for i in range(len(seeds))]
    trajectory_f1 = [
        [evaluate_quality(population.params(i, c), world, n_samples=eval_samples, seed=0).f1
         for c in range(len(population.checkpoints))]
        for i in range(len(seeds))
    ]
    start = time.perf_counter()
    theirs = [scores(train_with_sae_lens(world, config, seed=s)) for s in baseline_seeds]
    theirs_seconds = time.perf_counter() - start
    return {
        "config": config.to_dict(),
        "ours": ours,
        "sae_lens": theirs,
        "ours_seconds": ours_seconds,
        "sae_lens_seconds": theirs_seconds,
        "checkpoint_steps": list(population.checkpoint_steps),
        "trajectory_f1": trajectory_f1,
    }


def run(samples: int, progress: bool = True) -> dict:
    world = build_world("cpu")
    config = TrainingConfig(training_samples=samples, **CONFIG)
    return compare_with_sae_lens(world, config, seeds=tuple(range(8)), baseline_seeds=(0, 1, 2),
                                 progress=progress)


def summary(result: dict) -> str:
    lines = []
    for who in ("ours", "sae_lens"):
        mcc = np.array([r["mcc"] for r in result[who]])
        f1 = np.array([r["f1"] for r in result[who]])
        lines.append(f"{who:9s} n={len(mcc)} MCC {mcc.mean():.4f} +/- {mcc.std(ddof=1):.4f}  "
                     f"F1 {f1.mean():.4f} +/- {f1.std(ddof=1):.4f}  "
                     f"wall {result[who + '_seconds']:.1f} s")
    f1 = np.array(result["trajectory_f1"]).mean(axis=0)
    steps = result["checkpoint_steps"]
    lines.append("GT-F1 along checkpoints (mean of seeds): "
                 + ", ".join(f"step {s}: {v:.3f}" for s, v in zip(steps, f1)))
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=512_000)
    parser.add_argument("--out", default="runs/trainer_vs_sae_lens.json")
    args = parser.parse_args()
    result = run(args.samples)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(summary(result))
    print(f"written to {out}")
