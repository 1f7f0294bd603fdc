"""groundtruth.power and `groundtruth seeds-needed`: seeds for a difference, checked by
simulating the test they promise."""

import json

import numpy as np
import pytest

from groundtruth import stats
from groundtruth.cli import main
from groundtruth.power import metric_seeds_needed, seeds_needed, training_seeds_needed


@pytest.mark.parametrize(("std", "delta"), [(1.0, 1.0), (0.3, 0.1), (0.05, 0.02)])
def test_the_seeds_asked_for_reach_the_power_and_one_fewer_does_not(std, delta):
    """Simulate the paired test: the mean of n differences ~ N(delta, std / sqrt(n)),
    rejected when beyond z_0.975 std / sqrt(n). The promised n reaches 80% power."""
    n = metric_seeds_needed(std, delta)
    z = stats.two_sided_z(0.95)
    rng = np.random.default_rng(0)

    def power(k):
        means = delta + std / np.sqrt(k) * rng.standard_normal(200_000)
        return np.mean(np.abs(means) > z * std / np.sqrt(k))

    assert power(n) >= 0.795
    if n > 1:
        assert power(n - 1) < 0.8


def test_training_seeds_hand_computed():
    # 2 (1.96 + 0.8416)^2 (0.01 + 0.04 / 2) / 0.1^2 = 47.1 -> 48
    assert training_seeds_needed(0.01, 0.04, 0.1, metric_seeds=2) == 48
    assert training_seeds_needed(0.0, 0.0, 0.1) == 1
    with pytest.raises(ValueError, match="positive number"):
        training_seeds_needed(0.01, 0.04, 0.0)


def _entry():
    return {"reseed": {"paired": {"256": {"std": 0.3}, "2048": {"std": None}}},
            "variance_decomposition": {"components": {"checkpoint": 1.0, "training_seed": 0.01,
                                                      "metric_seed": 0.04}}}


def test_seeds_needed_reads_an_audit_entry():
    need = seeds_needed(_entry(), 0.1)
    assert need["metric_seeds"] == {"256": metric_seeds_needed(0.3, 0.1), "2048": None}
    assert need["training_seeds"] == training_seeds_needed(0.01, 0.04, 0.1)
    assert need["training_std"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="power must be in"):
        seeds_needed(_entry(), 0.1, power=1.0)


def test_the_command_prints_seeds_and_refuses_bad_input(tmp_path, capsys):
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"metrics": {"m": _entry()}}))
    assert main(["seeds-needed", "--metric", "m", "--delta", "0.1", "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert f"width 256: {metric_seeds_needed(0.3, 0.1)} " in out
    assert "width 2048: unknown" in out and "training seeds per configuration" in out
    assert main(["seeds-needed", "--metric", "x", "--delta", "0.1", "--report", str(report)]) == 2
    assert "has no metric 'x'" in capsys.readouterr().err
    assert main(["seeds-needed", "--metric", "m", "--delta", "-1", "--report", str(report)]) == 2
    assert "positive number" in capsys.readouterr().err
    assert main(["seeds-needed", "--metric", "m", "--delta", "1",
                 "--report", str(tmp_path / "none.json")]) == 2
    assert "no audit report" in capsys.readouterr().err
