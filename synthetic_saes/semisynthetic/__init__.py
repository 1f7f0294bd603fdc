"""Semi-synthetic ground truth: real transformers whose features we know.

A small transformer trained here on a templated language whose token attributes are known
(`language`, `model`), supervised feature dictionaries as its ground truth (`dictionary`), the
world they make for trainers, metrics and the audit (`world`), what SAEs do through the
model (`interventions`, `steering`), steering rows in lm-evaluation-harness's CSV format
(`steering_rows`); and Tracr-compiled models whose residual basis is exact ground truth
(`tracr_models`, shipped as fixtures; `tracr_world`; CE-Bench's contrastive input on program
worlds, `program_corpus`); where a task is computed, by activation patching (`localise`), and
sublayer activations reconstructed from residual-stream SAEs (`sublayer`), after SAGE;
transformers trained with SIIT to implement a Tracr program's causal graph (`siit`) and the
world they make (`siit_world`).
"""

from synthetic_saes.semisynthetic.dictionary import DictionaryQuality as DictionaryQuality
from synthetic_saes.semisynthetic.dictionary import SupervisedDictionary as SupervisedDictionary
from synthetic_saes.semisynthetic.dictionary import dictionary_quality as dictionary_quality
from synthetic_saes.semisynthetic.dictionary import (
    fit_supervised_dictionary as fit_supervised_dictionary,
)
from synthetic_saes.semisynthetic.language import ATTRIBUTES as ATTRIBUTES
from synthetic_saes.semisynthetic.language import Language as Language
from synthetic_saes.semisynthetic.language import LanguageConfig as LanguageConfig
from synthetic_saes.semisynthetic.language import Story as Story
from synthetic_saes.semisynthetic.localise import PatchingResult as PatchingResult
from synthetic_saes.semisynthetic.localise import PatchPoint as PatchPoint
from synthetic_saes.semisynthetic.localise import activation_patching as activation_patching
from synthetic_saes.semisynthetic.localise import localise_pole_recall as localise_pole_recall
from synthetic_saes.semisynthetic.localise import patchable_hooks as patchable_hooks
from synthetic_saes.semisynthetic.localise import plot_patching_map as plot_patching_map
from synthetic_saes.semisynthetic.localise import select_points as select_points
from synthetic_saes.semisynthetic.localise import worlds_at as worlds_at
from synthetic_saes.semisynthetic.model import ModelConfig as ModelConfig
from synthetic_saes.semisynthetic.model import RecallMargins as RecallMargins
from synthetic_saes.semisynthetic.model import evaluate_language_model as evaluate_language_model
from synthetic_saes.semisynthetic.model import load_language_model as load_language_model
from synthetic_saes.semisynthetic.model import recall_margins as recall_margins
from synthetic_saes.semisynthetic.model import train_language_model as train_language_model
from synthetic_saes.semisynthetic.siit import SIIT_PROGRAMS as SIIT_PROGRAMS
from synthetic_saes.semisynthetic.siit import HighLevelNode as HighLevelNode
from synthetic_saes.semisynthetic.siit import SIITConfig as SIITConfig
from synthetic_saes.semisynthetic.siit import SIITEvaluation as SIITEvaluation
from synthetic_saes.semisynthetic.siit import SIITModel as SIITModel
from synthetic_saes.semisynthetic.siit import default_alignment as default_alignment
from synthetic_saes.semisynthetic.siit import evaluate_siit as evaluate_siit
from synthetic_saes.semisynthetic.siit import high_level_nodes as high_level_nodes
from synthetic_saes.semisynthetic.siit import load_siit_model as load_siit_model
from synthetic_saes.semisynthetic.siit import train_siit as train_siit
from synthetic_saes.semisynthetic.siit_world import SIITWorld as SIITWorld
from synthetic_saes.semisynthetic.siit_world import SIITWorldConfig as SIITWorldConfig
from synthetic_saes.semisynthetic.steering_rows import SteeringRow as SteeringRow
from synthetic_saes.semisynthetic.steering_rows import apply_steering as apply_steering
from synthetic_saes.semisynthetic.steering_rows import read_steering_csv as read_steering_csv
from synthetic_saes.semisynthetic.steering_rows import steered as steered
from synthetic_saes.semisynthetic.steering_rows import write_steering_csv as write_steering_csv
from synthetic_saes.semisynthetic.sublayer import SublayerActivations as SublayerActivations
from synthetic_saes.semisynthetic.sublayer import SublayerSAE as SublayerSAE
from synthetic_saes.semisynthetic.sublayer import (
    language_sublayer_activations as language_sublayer_activations,
)
from synthetic_saes.semisynthetic.sublayer import residual_hooks_around as residual_hooks_around
from synthetic_saes.semisynthetic.sublayer import sublayer_activations as sublayer_activations
from synthetic_saes.semisynthetic.tracr_models import PROGRAMS as TRACR_PROGRAMS
from synthetic_saes.semisynthetic.tracr_models import TracrModel as TracrModel
from synthetic_saes.semisynthetic.tracr_models import compile_program as compile_program
from synthetic_saes.semisynthetic.tracr_models import load_tracr_model as load_tracr_model
from synthetic_saes.semisynthetic.tracr_world import TracrWorld as TracrWorld
from synthetic_saes.semisynthetic.tracr_world import TracrWorldConfig as TracrWorldConfig
from synthetic_saes.semisynthetic.world import LanguageWorld as LanguageWorld
from synthetic_saes.semisynthetic.world import LanguageWorldConfig as LanguageWorldConfig

__all__ = [
    "ATTRIBUTES", "Language", "LanguageConfig", "Story",
    "ModelConfig", "RecallMargins", "train_language_model", "load_language_model",
    "evaluate_language_model", "recall_margins",
    "SupervisedDictionary", "DictionaryQuality", "fit_supervised_dictionary",
    "dictionary_quality",
    "LanguageWorld", "LanguageWorldConfig",
    "SteeringRow", "read_steering_csv", "write_steering_csv", "apply_steering", "steered",
    "TRACR_PROGRAMS", "TracrModel", "compile_program", "load_tracr_model", "TracrWorld",
    "TracrWorldConfig",
    "PatchingResult", "PatchPoint", "activation_patching", "patchable_hooks", "select_points",
    "plot_patching_map", "localise_pole_recall", "worlds_at",
    "SublayerSAE", "SublayerActivations", "residual_hooks_around", "sublayer_activations",
    "language_sublayer_activations",
    "SIIT_PROGRAMS", "HighLevelNode", "SIITConfig", "SIITEvaluation", "SIITModel",
    "default_alignment", "evaluate_siit", "high_level_nodes", "load_siit_model", "train_siit",
    "SIITWorld", "SIITWorldConfig",
]
