"""The audit: can an SAE metric be trusted? Reseed noise, ground-truth correlation, trajectory
discriminability, and reports people read. Three layers, each importing only those below it:

metrics/      name -> metric(sae, data, seed) -> float: the registry, the shipped metrics,
              AuditData (the seeded inputs), ground-truth matching and quality, probing
audit core    study (TOML configs), study_world, population (the SAEs), design (clusters,
              strata, reseed set, trajectories), store (values as they are computed), stats,
              lenses, report (verdicts, cards), convergence (of trained SAEs), published_audit
              (SAEBench's published audit, claim by claim), power (seeds needed),
              model_outputs, audit (runs an audit study)
studies/      one file per study kind; STUDIES maps kind -> runner
cli           the `groundtruth` command (argparse only)
"""

from groundtruth.audit import run_audit as run_audit
from groundtruth.convergence import convergence_summary as convergence_summary
from groundtruth.convergence import last_doubling_gain as last_doubling_gain
from groundtruth.metrics import AuditData as AuditData
from groundtruth.metrics import DataConfig as DataConfig
from groundtruth.metrics import MetricSpec as MetricSpec
from groundtruth.metrics import evaluate_metric as evaluate_metric
from groundtruth.metrics import get_metric as get_metric
from groundtruth.metrics import metric_names as metric_names
from groundtruth.metrics import register_metric as register_metric
from groundtruth.studies import STUDIES as STUDIES
from groundtruth.studies import run_study as run_study
from groundtruth.studies.noise_floor import real_noise_floor as real_noise_floor
from groundtruth.studies.noise_floor import synthetic_noise_floor as synthetic_noise_floor
from groundtruth.study import StudyConfig as StudyConfig
from groundtruth.study import load_study as load_study

__all__ = [
    "run_audit",
    "run_study",
    "STUDIES",
    "load_study",
    "StudyConfig",
    "AuditData",
    "DataConfig",
    "MetricSpec",
    "register_metric",
    "get_metric",
    "metric_names",
    "evaluate_metric",
    "synthetic_noise_floor",
    "real_noise_floor",
    "last_doubling_gain",
    "convergence_summary",
]
