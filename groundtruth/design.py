"""The audit's population as the lenses see it: who is correlated, what is independent, where
users compare, who is reseeded, which trajectories there are.

    correlation population  constructed SAEs, controls and trained final checkpoints
    cluster (independent unit)
        constructed and controls   the oracle they all derive from ("oracle/seed0")
        trained                    the training configuration (its run key): its seeds share
                                   the configuration and the data buffer
    stratum (where users compare)
        trained                    training architecture and width ("topk/w512")
        constructed                the degradation family ("family/dropped")
        controls                   none: they are diagnostics, in the pooled lens only
    reseed set     SAEs measured at every reseed seed (controls or final checkpoints)
    runs           trained trajectories: run key -> every checkpoint of every training seed
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from groundtruth.population import PopulationMember

__all__ = ["AuditDesign", "cluster_of", "stratum_of"]


def cluster_of(member: PopulationMember) -> str:
    """The independent unit a member derives from (see the module docstring)."""
    if member.kind == "trained":
        return str(member.run)
    return f"oracle/seed{member.seed}"


def stratum_of(member: PopulationMember) -> str | None:
    """The group of SAEs a user compares the member within, or None for a control."""
    if member.kind == "trained":
        return f"{member.training_architecture}/w{member.width}"
    if member.kind == "constructed":
        return f"family/{member.origin}"
    return None


@dataclass(frozen=True)
class AuditDesign:
    """The structure of an audit's population (see the module docstring).

    Attributes:
        members: every SAE of the audit.
        population: the correlation population, in `members` order.
        reseed_ids: SAEs of the reseed set (measured at seeds 0 .. reseed_seeds - 1).
        runs: run key -> its members (every checkpoint of every training seed).
        training_seeds: the training seeds, sorted.
    """

    members: tuple[PopulationMember, ...]
    population: tuple[PopulationMember, ...]
    reseed_ids: tuple[str, ...]
    runs: dict[str, tuple[PopulationMember, ...]]
    training_seeds: tuple[int, ...]

    @classmethod
    def of(cls, members: list[PopulationMember], plan: dict[str, list[int]],
           reseed_seeds: int) -> AuditDesign:
        by_id = {m.id: m for m in members}
        reseed = tuple(i for i, seeds in plan.items() if len(seeds) >= reseed_seeds
                       and (by_id[i].kind == "control" or by_id[i].final))
        runs: dict[str, list[PopulationMember]] = {}
        for member in members:
            if member.kind == "trained":
                runs.setdefault(member.run, []).append(member)
        return cls(members=tuple(members),
                   population=tuple(m for m in members if m.kind != "trained" or m.final),
                   reseed_ids=reseed, runs={k: tuple(v) for k, v in runs.items()},
                   training_seeds=tuple(sorted({m.seed for m in members
                                                if m.kind == "trained"})))

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.population]

    @property
    def widths(self) -> np.ndarray:
        return np.array([m.width for m in self.population], dtype=float)

    @property
    def clusters(self) -> list[str]:
        return [cluster_of(m) for m in self.population]

    @property
    def strata(self) -> list[str | None]:
        return [stratum_of(m) for m in self.population]

    @property
    def controls(self) -> dict[str, str]:
        """control name -> SAE id."""
        return {m.control: m.id for m in self.population if m.control}

    def width_of(self, sae_id: str) -> int:
        return next(m.width for m in self.members if m.id == sae_id)

    def grid(self, value, run: str, seed: int = 0) -> np.ndarray:
        """value(member, seed) over a run: [training seeds, checkpoints]."""
        members = self.runs[run]
        by = {(m.seed, m.checkpoint): value(m, seed) for m in members}
        checkpoints = sorted({m.checkpoint for m in members})
        return np.array([[by[(t, c)] for c in checkpoints] for t in self.training_seeds])
