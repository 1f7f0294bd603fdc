"""SAE training in JAX: many seeds and runs at once, checkpoints as trajectories, sae_lens
export."""

from synthetic_saes.training.architectures import MemberKnobs as MemberKnobs
from synthetic_saes.training.architectures import member_knobs as member_knobs
from synthetic_saes.training.config import K_ARCHITECTURES as K_ARCHITECTURES
from synthetic_saes.training.config import SPARSITY_KNOBS as SPARSITY_KNOBS
from synthetic_saes.training.config import TRAINING_ARCHITECTURES as TRAINING_ARCHITECTURES
from synthetic_saes.training.config import TrainingConfig as TrainingConfig
from synthetic_saes.training.config import checkpoint_steps as checkpoint_steps
from synthetic_saes.training.grouping import group_key as group_key
from synthetic_saes.training.grouping import group_runs as group_runs
from synthetic_saes.training.population import Checkpoint as Checkpoint
from synthetic_saes.training.population import TrainedPopulation as TrainedPopulation
from synthetic_saes.training.trainer import TrainState as TrainState
from synthetic_saes.training.trainer import init_state as init_state
from synthetic_saes.training.trainer import make_train_step as make_train_step
from synthetic_saes.training.trainer import train_population as train_population
from synthetic_saes.training.trainer import train_runs as train_runs

__all__ = [
    "MemberKnobs",
    "member_knobs",
    "K_ARCHITECTURES",
    "SPARSITY_KNOBS",
    "TRAINING_ARCHITECTURES",
    "TrainingConfig",
    "checkpoint_steps",
    "group_key",
    "group_runs",
    "Checkpoint",
    "TrainedPopulation",
    "TrainState",
    "init_state",
    "make_train_step",
    "train_population",
    "train_runs",
]
