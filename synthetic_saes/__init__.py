"""Worlds and SAEs whose ground truth is known.

base_world  what every world offers (samples with true features); semisynthetic worlds too
worlds    ground-truth worlds over sae_lens.synthetic (presets tiny / cpu / synthsaebench16k)
corpora   contrastive story corpora drawn from a world, with known subjects
oracle    the oracle of a (world, seed): the true dictionary with a fitted encoder
families  constructed SAEs of graded quality and diagnostic controls, derived from the oracle
training  SAE training in JAX, many seeds at once, checkpoints as trajectories
"""

from synthetic_saes.base_world import BaseWorld as BaseWorld
from synthetic_saes.corpora import ContrastiveCorpus as ContrastiveCorpus
from synthetic_saes.corpora import CorpusConfig as CorpusConfig
from synthetic_saes.corpora import StoryPair as StoryPair
from synthetic_saes.corpora import Subject as Subject
from synthetic_saes.corpora import make_corpus as make_corpus
from synthetic_saes.families import CONTROLS as CONTROLS
from synthetic_saes.families import FAMILIES as FAMILIES
from synthetic_saes.families import ConstructedSAE as ConstructedSAE
from synthetic_saes.families import OracleBase as OracleBase
from synthetic_saes.families import OracleConfig as OracleConfig
from synthetic_saes.families import make_controls as make_controls
from synthetic_saes.families import make_family as make_family
from synthetic_saes.hierarchy import FeatureHierarchy as FeatureHierarchy
from synthetic_saes.hierarchy import SiblingPair as SiblingPair
from synthetic_saes.oracle import fit_oracles as fit_oracles
from synthetic_saes.rng import derive_seed as derive_seed
from synthetic_saes.sae_params import SAEParams as SAEParams
from synthetic_saes.training import TrainedPopulation as TrainedPopulation
from synthetic_saes.training import TrainingConfig as TrainingConfig
from synthetic_saes.training import train_population as train_population
from synthetic_saes.worlds import PRESETS as PRESETS
from synthetic_saes.worlds import World as World
from synthetic_saes.worlds import WorldConfig as WorldConfig
from synthetic_saes.worlds import WorldSample as WorldSample
from synthetic_saes.worlds import build_world as build_world
from synthetic_saes.worlds import preset as preset

__all__ = [
    # worlds
    "BaseWorld",
    "World",
    "WorldConfig",
    "WorldSample",
    "PRESETS",
    "preset",
    "build_world",
    "FeatureHierarchy",
    "SiblingPair",
    # corpora
    "CorpusConfig",
    "ContrastiveCorpus",
    "StoryPair",
    "Subject",
    "make_corpus",
    # SAEs
    "SAEParams",
    "ConstructedSAE",
    "OracleBase",
    "OracleConfig",
    "fit_oracles",
    "FAMILIES",
    "CONTROLS",
    "make_family",
    "make_controls",
    # training
    "TrainingConfig",
    "TrainedPopulation",
    "train_population",
    # randomness
    "derive_seed",
]
