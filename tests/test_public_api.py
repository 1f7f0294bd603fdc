"""Every name a package lists in __all__ resolves."""

import importlib

import pytest

PACKAGES = [
    "synthetic_saes",
    "synthetic_saes.training",
    "synthetic_saes.semisynthetic",
    "groundtruth",
    "groundtruth.metrics",
    "groundtruth.metrics.builtin",
    "groundtruth.metrics.probing",
    "groundtruth.metrics.probe_tasks",
    "groundtruth.metrics.sparse_probing",
    "groundtruth.metrics.core",
    "groundtruth.metrics.saebench_metrics",
    "groundtruth.stats",
    "groundtruth.studies",
    "groundtruth.studies.cebench_published",
    "groundtruth.studies.predictors",
    "cebench",
    "cebench.sae_weights",
]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves(package):
    module = importlib.import_module(package)
    for name in getattr(module, "__all__", []):
        assert hasattr(module, name), f"{package}.{name} is listed in __all__ but missing"


def test_console_scripts_answer(capsys):
    from cebench.cli import main as cebench_main

    with pytest.raises(SystemExit) as exit_info:
        cebench_main(["score"])  # --dataset is required
    assert exit_info.value.code == 2
    assert "--dataset" in capsys.readouterr().err
