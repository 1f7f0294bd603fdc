"""The SAE population of an audit: constructed families, controls and trained trajectories.

Constructed SAEs come from the oracle of the families' seed (`synthetic_saes.families`);
trained SAEs from `train_runs`, one run per (architecture, sparsity, width) with every
training seed; runs of one architecture and width differ only in sparsity and train as one
vmapped group, and all of them step together on one shared buffer of world samples (sampled
once). Oracles
and trained populations are saved in the run folder as they finish, so a resumed run loads
them instead of training again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synthetic_saes.families import CONTROLS, FAMILIES, OracleBase, OracleConfig, control
from synthetic_saes.rng import derive_seed
from synthetic_saes.sae_params import SAEParams
from synthetic_saes.training import TrainedPopulation, TrainingConfig, group_runs, train_runs
from synthetic_saes.worlds import World

__all__ = ["PopulationMember", "constructed_saes", "trained_saes", "training_configs", "run_key"]


@dataclass(frozen=True, eq=False)
class PopulationMember:
    """One SAE of an audit's population (`params`) and what is known about how it was made.

    Attributes:
        id: unique, readable id (the key of its metric values).
        kind: "constructed", "control" or "trained".
        origin: what made it, read with `kind`: the degradation family (constructed), the
            control (control) or the training architecture (trained); ask `control` and
            `training_architecture` rather than comparing `kind` and `origin`.
        architecture: its inference architecture (relu, topk, jumprelu).
        width: d_sae.
        knobs: the knob values that made it (family knobs, or sparsity for trained SAEs).
        seed: oracle seed (constructed) or training seed (trained).
        run: for trained SAEs, the (architecture, sparsity, width) run it belongs to.
        checkpoint: checkpoint index in its trajectory (trained), else None.
        step: training step of that checkpoint (trained), else None.
        final: the end of training (trained) or a constructed SAE.
    """

    id: str
    kind: str
    origin: str
    architecture: str
    width: int
    knobs: dict
    seed: int
    params: SAEParams = field(repr=False)
    run: str | None = None
    checkpoint: int | None = None
    step: int | None = None
    final: bool = True

    @property
    def control(self) -> str | None:
        """The control's name ("oracle", ...) for a control, else None."""
        return self.origin if self.kind == "control" else None

    @property
    def training_architecture(self) -> str | None:
        """The training architecture ("relu_l1", ...) of a trained SAE, else None."""
        return self.origin if self.kind == "trained" else None

    def describe(self) -> dict:
        """The member as report.json lists it (its origin under the key "family")."""
        return {"id": self.id, "kind": self.kind, "family": self.origin,
                "architecture": self.architecture, "width": self.width, "knobs": self.knobs,
                "seed": self.seed, "run": self.run, "checkpoint": self.checkpoint,
                "step": self.step, "final": self.final}


def _oracle_base(world: World, seed: int, samples: int, run_dir: Path, progress: bool):
    base = OracleBase(world, seed=seed, config=OracleConfig(training_samples=samples),
                      progress=progress)
    saved = run_dir / f"oracle_seed{seed}"
    if (saved / "cfg.json").exists():
        base.__dict__["oracle"] = SAEParams.load(saved)  # fill the cached property
    else:
        base.oracle.save(saved)
    return base


def constructed_saes(world: World, families, run_dir: Path, *, progress: bool = False):
    """The diagnostic controls (if asked) and the degradation families (default knob grids);
    a family member identical to an SAE already listed (the oracle at knob 0) is left out."""
    base = _oracle_base(world, families.seed, families.oracle_training_samples, run_dir, progress)
    out = []
    seen: dict[bytes, str] = {}

    def add(kind: str, member) -> None:
        p = member.params
        # A family's first knob value is the oracle itself: keep one copy of identical SAEs.
        digest = hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in (
            p.W_enc, p.b_enc, p.W_dec, p.b_dec,
            p.threshold if p.threshold is not None else np.zeros(0)))).digest()
        if digest in seen:
            return
        seen[digest] = member.name
        out.append(PopulationMember(id=member.name, kind=kind, origin=member.family,
                                    architecture=p.architecture, width=p.d_sae,
                                    knobs=member.knobs, seed=member.seed, params=p))

    todo = [("control", name, None) for name in (CONTROLS if families.controls else ())]
    todo += [("constructed", name, value) for name in families.names
             for value in FAMILIES[name].default_values(world)]
    from tqdm.auto import tqdm

    for kind, name, value in tqdm(todo, unit="sae", desc="constructed SAEs and controls",
                                  disable=not progress):
        add(kind, control(base, name) if kind == "control" else FAMILIES[name].build(base, value))
    return out


def run_key(architecture: str, knob: str, value: float, width: int) -> str:
    """The id of a training run: "topk/k=16/w512" (the prefix of its SAEs' ids)."""
    return f"{architecture}/{knob}={value:g}/w{width}"


def training_configs(plan) -> list[tuple[str, TrainingConfig, str, float]]:
    """(run key, config, knob name, knob value) for every architecture x sparsity x width."""
    runs = []
    for arch in plan.architectures:
        knob = plan.sparsity_knob[arch]
        for value in plan.sparsity[arch]:
            for width in plan.widths:
                settings = dict(architecture=arch, d_sae=int(width),
                                training_samples=plan.training_samples,
                                batch_size=plan.batch_size, lr=plan.lr,
                                n_checkpoints=plan.n_checkpoints)
                if knob == "k":
                    settings["k"] = int(value)
                else:
                    settings.update(k=None, **{knob: float(value)})
                if arch == "jumprelu":
                    settings.update(jumprelu_init_threshold=plan.jumprelu_init_threshold,
                                    jumprelu_bandwidth=plan.jumprelu_bandwidth)
                if arch == "matryoshka_batchtopk":
                    settings["matryoshka_widths"] = plan.matryoshka_widths(int(width))
                key = run_key(arch, knob, value, width)
                runs.append((key, TrainingConfig(**settings), knob, float(value)))
    return runs


def _batches(buffer: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, buffer.shape[0] - batch_size + 1, batch_size):
        yield buffer[start:start + batch_size]


def trained_saes(world: World, plan, run_dir: Path, *, progress: bool = False):
    """Every checkpoint of every training seed of every run (trained or loaded)."""
    runs = training_configs(plan)
    folders = [run_dir / "populations" / key.replace("/", "__") for key, *_ in runs]
    populations: dict[int, TrainedPopulation] = {
        i: TrainedPopulation.load(folder) for i, folder in enumerate(folders)
        if (folder / "population.json").exists()}
    todo = [i for i in range(len(runs)) if i not in populations]
    if todo:
        from tqdm.auto import tqdm

        # one sample of the world, shared by every run
        buffer = world.sample_hidden(plan.training_samples,
                                     seed=derive_seed(plan.data_seed, "training-data"))
        groups = group_runs([runs[i][1] for i in todo])  # one compiled step per group
        stage = tqdm(total=len(todo), unit="run", disable=not progress,
                     desc=f"training: {len(todo)} of {len(runs)} runs to train, "
                          f"{len(groups)} groups, x{len(plan.seeds)} seeds")
        for position, group in enumerate(groups):
            members = [todo[j] for j in group]
            config = runs[members[0]][1]
            trained = train_runs(
                _batches(buffer, plan.batch_size), [runs[i][1] for i in members],
                seeds=plan.seeds, progress=progress,
                desc=f"  group {position + 1}/{len(groups)}: {config.architecture} "
                     f"w{config.d_sae}, {len(members)} runs")
            for i, population in zip(members, trained, strict=True):
                populations[i] = population
                population.save(folders[i])  # durable before the next group starts
            if position == 0:  # the first group compiles: the stage's clock starts after it
                stage.reset(total=len(todo) - len(members))
            else:
                stage.update(len(members))
        stage.close()
    out = []
    for i, (key, config, knob, value) in enumerate(runs):
        population = populations[i]
        last = len(population.checkpoints) - 1
        for s_index, seed in enumerate(population.seeds):
            for c_index, checkpoint in enumerate(population.checkpoints):
                params = population.params(s_index, c_index)
                out.append(PopulationMember(
                    id=f"trained/{key}/seed{seed}/step{checkpoint.step}", kind="trained",
                    origin=config.architecture, architecture=params.architecture,
                    width=params.d_sae, knobs={knob: value}, seed=int(seed), params=params,
                    run=key, checkpoint=c_index, step=checkpoint.step, final=c_index == last,
                ))
    return out
