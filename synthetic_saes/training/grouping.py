"""Which training runs can share one compiled, vmapped step: same config but the sparsity knob."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from synthetic_saes.training.config import K_ARCHITECTURES, SPARSITY_KNOBS, TrainingConfig

__all__ = ["group_key", "group_runs", "group_template"]

_KNOB_FIELDS = tuple(sorted(set(SPARSITY_KNOBS.values())))


def group_key(config: TrainingConfig) -> tuple:
    """Every field of `config` but the sparsity knobs (k, l1_coefficient, l0_coefficient).

    Runs with equal keys share the width, architecture, optimiser, schedule and data, so their
    members stack on one vmapped axis and differ only in a per-member knob.
    """
    return tuple((name, value) for name, value in sorted(config.to_dict().items())
                 if name not in _KNOB_FIELDS)


def group_runs(configs: Sequence[TrainingConfig]) -> list[tuple[int, ...]]:
    """Indices of `configs` grouped by `group_key`, groups and members in first-seen order.

    Examples:
        >>> from synthetic_saes.training import TrainingConfig
        >>> group_runs([TrainingConfig(k=8), TrainingConfig(k=16, d_sae=256),
        ...             TrainingConfig(k=32)])
        [(0, 2), (1,)]
    """
    groups: dict[tuple, list[int]] = {}
    for index, config in enumerate(configs):
        groups.setdefault(group_key(config), []).append(index)
    return [tuple(members) for members in groups.values()]


def group_template(configs: Sequence[TrainingConfig]) -> TrainingConfig:
    """The config the group's step is compiled for: the first, with k the group's largest
    (the static width of the top-k selection; each member keeps its own k below it).

    Raises:
        ValueError: if the configs do not share a `group_key`.
    """
    if not configs:
        raise ValueError("a group needs at least one config")
    keys = {group_key(c) for c in configs}
    if len(keys) > 1:
        raise ValueError("configs of one group must differ only in k, l1_coefficient and "
                         f"l0_coefficient; got {len(keys)} different settings")
    first = configs[0]
    if first.architecture in K_ARCHITECTURES:
        return dataclasses.replace(first, k=max(c.k for c in configs))
    return first
