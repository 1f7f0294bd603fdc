"""Everything behind name -> metric(sae, data, seed) -> float.

registry    MetricSpec, register_metric / get_metric / metric_names / evaluate_metric /
            evaluate_metric_batch (a metric's batch form on a stack of SAEs of one width)
batched     encoded_stack: one encode of a shared sample for a stack of SAEs
builtin     the shipped metrics (CE-Bench, ground truth, reconstruction, k-sparse probing),
            registered when this package is imported
data        AuditData: the world and the seeded inputs every metric shares
matching    decoder vs true features (MCC, MMCS, recovery, uniqueness)
quality     every ground-truth quality number of an SAE on a world (`evaluate_quality`)
probing     k-sparse probing of SAE latents on ground-truth feature labels
SAEBench's metrics on ground truth:
probe_tasks        Boolean probing tasks over true features (single, AND, OR; in / out of reach)
sparse_probing     sparse probing in SAEBench's mode and in sae-probes' mode
core               SAEBench's core eval (explained variance, cosine, L2 ratio, L0, alive)
saebench_tasks     TPP sibling-class tasks and SCR concept pairs drawn from the hierarchy
ablation           what TPP and SCR share: probes, latent attribution, ablation
tpp, scr           targeted probe perturbation, spurious correlation removal
absorption         absorption on the hierarchy: a parent's latent's recall with and without
                   each child (SAELens issue #729)
saebench_metrics   registers sparse_probing_top{k}, sae_probes_top{k}, core_*
"""

from groundtruth.metrics import builtin as builtin  # registers the shipped metrics
from groundtruth.metrics import saebench_metrics as saebench_metrics  # registers SAEBench's
from groundtruth.metrics import absorption, scr, tpp  # noqa: F401  SAEBench TPP, SCR; absorption
from groundtruth.metrics.batched import check_stack as check_stack
from groundtruth.metrics.batched import encoded_stack as encoded_stack
from groundtruth.metrics.data import AuditData as AuditData
from groundtruth.metrics.data import DataConfig as DataConfig
from groundtruth.metrics.matching import MatchingScores as MatchingScores
from groundtruth.metrics.matching import abs_cosine_matrix as abs_cosine_matrix
from groundtruth.metrics.matching import decoder_matching as decoder_matching
from groundtruth.metrics.matching import (
    mean_correlation_coefficient as mean_correlation_coefficient,
)
from groundtruth.metrics.quality import GroundTruthQuality as GroundTruthQuality
from groundtruth.metrics.quality import PerLatentDetection as PerLatentDetection
from groundtruth.metrics.quality import as_params as as_params
from groundtruth.metrics.quality import evaluate_quality as evaluate_quality
from groundtruth.metrics.registry import MetricSpec as MetricSpec
from groundtruth.metrics.registry import evaluate_metric as evaluate_metric
from groundtruth.metrics.registry import evaluate_metric_batch as evaluate_metric_batch
from groundtruth.metrics.registry import get_metric as get_metric
from groundtruth.metrics.registry import metric_names as metric_names
from groundtruth.metrics.registry import register_metric as register_metric

__all__ = [
    "MetricSpec",
    "register_metric",
    "get_metric",
    "metric_names",
    "evaluate_metric",
    "evaluate_metric_batch",
    "check_stack",
    "encoded_stack",
    "AuditData",
    "DataConfig",
    "MatchingScores",
    "abs_cosine_matrix",
    "decoder_matching",
    "mean_correlation_coefficient",
    "GroundTruthQuality",
    "PerLatentDetection",
    "as_params",
    "evaluate_quality",
]
