"""The published audit of SAEBench's metrics, claim by claim, against what an audit measured.

Chanin (2026), "Are Sparse Autoencoder Benchmarks Reliable?" (arXiv 2605.18229; code:
decoderesearch/saebench-reliability-audit) audited SAEBench's metrics on SynthSAEBench worlds
and training trajectories. Its conclusions, as its abstract and summary state them, are the
claims below; each is judged from an audit's report.json (no recomputation), with the number
and 95% interval it rests on, as

    agree          the interval lies on the claim's side
    disagree       the interval lies on the other side
    inconclusive   the interval straddles the line (or the evidence is split)
    not measured   the audit did not measure the metrics the claim needs

A disagreement is a finding about our world and settings, not a failure of the audit.
Canonical settings are SAEBench's leaderboard ones: TPP and SCR at N = 20 latents.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Claim", "CLAIMS", "judge_claims", "SOURCE", "SAEBENCH_METRIC"]

SOURCE = ("Chanin (2026), \"Are Sparse Autoencoder Benchmarks Reliable?\", arXiv 2605.18229 "
          "(code: decoderesearch/saebench-reliability-audit)")
CANONICAL_N = 20
SAEBENCH_METRIC = re.compile(r"^(tpp_top|scr_top|sparse_probing_top|sae_probes_top|core_|"
                       r"absorption_hierarchy)")


@dataclass(frozen=True)
class Claim:
    """A published conclusion and how a report judges it: judge(report) -> finding dict with
    status, measured (text), value, ci95 and detail."""

    key: str
    text: str
    judge: Callable[[dict], dict]


def _side(ci, *, below: float | None = None, above: float | None = None) -> str:
    """agree when the interval lies below `below` (or above `above`), disagree when it lies
    wholly on the other side, inconclusive otherwise."""
    low, high = ci
    if below is not None:
        return "agree" if high < below else "disagree" if low >= below else "inconclusive"
    return "agree" if low > above else "disagree" if high <= above else "inconclusive"


def _missing(*names: str) -> dict:
    return {"status": "not measured", "measured": f"needs {', '.join(names)}", "value": None,
            "ci95": None, "detail": ""}


def _fmt_ci(ci) -> str:
    return "-" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _within(report: dict, name: str) -> tuple[float | None, list | None, int]:
    primary = report["config"]["lenses"]["ground_truth"][0]
    w = report["metrics"][name]["within_strata"][primary]
    return w["mean_spearman"], w["mean_spearman_ci95"], w["n_units"]


def _family(report: dict, prefix: str) -> list[str]:
    pattern = re.compile(rf"^{prefix}(\d+)$")
    found = [n for n in report["metrics"] if pattern.match(n)]
    return sorted(found, key=lambda n: int(pattern.match(n).group(1)))


def _tpp_falls(report: dict) -> dict:
    name = f"tpp_top{CANONICAL_N}"
    if name not in report["metrics"]:
        return _missing(name)
    trend = report["metrics"][name]["training_trend"]
    if trend["mean_spearman_ci95"] is None:
        return _missing("two or more training runs")
    others = "; ".join(f"{n}: {report['metrics'][n]['training_trend']['mean_spearman']:.2f}"
                       for n in _family(report, "tpp_top") if n != name)
    gt = report["metrics"][report["config"]["lenses"]["ground_truth"][0]]["training_trend"]
    return {"status": _side(trend["mean_spearman_ci95"], below=0),
            "measured": f"{name}'s Spearman with the checkpoint along training, mean over "
                        f"{trend['n_runs']} runs: {trend['mean_spearman']:.2f} "
                        f"{_fmt_ci(trend['mean_spearman_ci95'])} (ground truth's: "
                        f"{gt['mean_spearman']:.2f})",
            "value": trend["mean_spearman"], "ci95": trend["mean_spearman_ci95"],
            "detail": f"other N: {others}" if others else ""}


def _scr_negative_large_n(report: dict) -> dict:
    family = [n for n in _family(report, "scr_top") if int(n[len("scr_top"):]) >= 100]
    if not family:
        return _missing("scr_top100 or a larger N")
    name = family[-1]
    value, ci, units = _within(report, name)
    if value is None or ci is None:
        return _missing(f"a within-strata correlation for {name}")
    trail = "; ".join(f"{n}: {_within(report, n)[0]:.2f}" for n in _family(report, "scr_top")
                      if _within(report, n)[0] is not None)
    return {"status": _side(ci, below=0),
            "measured": f"{name}'s mean within-stratum Spearman with ground truth: {value:.2f} "
                        f"{_fmt_ci(ci)} ({units} units)",
            "value": value, "ci95": ci, "detail": f"by N: {trail}"}


def _rules_failed(entry: dict) -> list[str]:
    v = entry["verdict"]
    failed = []
    if v.get("tracks") != "tracks":
        failed.append(f"tracking ({v.get('tracks')})")
    if not v.get("precise"):
        failed.append("precision")
    if not v.get("separates"):
        failed.append("discriminability")
    if v.get("confounded"):
        failed.append("confounding")
    return failed


def _tpp_scr_fail(report: dict) -> dict:
    names = [f"tpp_top{CANONICAL_N}", f"scr_top{CANONICAL_N}"]
    if any(n not in report["metrics"] for n in names):
        return _missing(*names)
    failed = {n: _rules_failed(report["metrics"][n]) for n in names}
    several = [n for n in names if len(failed[n]) >= 2]
    status = ("agree" if len(several) == 2 else "disagree" if not any(failed.values())
              else "inconclusive")
    return {"status": status,
            "measured": "; ".join(f"{n} fails {len(f)} of 4 rules ({', '.join(f) or 'none'})"
                                  for n, f in failed.items()),
            "value": None, "ci95": None,
            "detail": "each rule is judged on its own interval (see the verdict table)"}


def _others_noisy(report: dict) -> dict:
    others = [n for n in report["metrics"] if SAEBENCH_METRIC.match(n)
              and not n.startswith(("tpp_top", "scr_top"))
              and report["metrics"][n]["kind"] != "ground_truth"]
    if not others:
        return _missing("SAEBench metrics other than TPP and SCR")
    noisy = [n for n in others if not report["metrics"][n]["verdict"].get("precise")
             or not report["metrics"][n]["verdict"].get("separates")]
    status = ("agree" if len(noisy) == len(others) else "disagree" if not noisy
              else "inconclusive")
    return {"status": status,
            "measured": f"{len(noisy)} of {len(others)} fail the precision or the "
                        "discriminability rule",
            "value": len(noisy) / len(others), "ci95": None,
            "detail": "passing both: " + (", ".join(sorted(set(others) - set(noisy))) or "none")}


def _ranked(report: dict, names: list[str]) -> list[tuple[str, float, list]]:
    out = []
    for n in names:
        value, ci, _ = _within(report, n)
        if value is not None and ci is not None:
            out.append((n, value, ci))
    return sorted(out, key=lambda r: -r[1])


def _sae_probes_best(report: dict) -> dict:
    probes = _family(report, "sae_probes_top")
    rivals = [n for n in report["metrics"] if SAEBENCH_METRIC.match(n) and n not in probes
              and report["metrics"][n]["kind"] != "ground_truth"]
    if not probes or not rivals:
        return _missing("sae_probes_top{k} and other SAEBench metrics")
    best, rival = _ranked(report, probes), _ranked(report, rivals)
    if not best or not rival:
        return _missing("within-strata correlations")
    (b, bv, bci), (r, rv, rci) = best[0], rival[0]
    if bv >= rv:
        status = "agree" if bci[0] > rci[1] else "inconclusive"
    else:
        status = "disagree" if rci[0] > bci[1] else "inconclusive"
    return {"status": status,
            "measured": f"best sae-probes variant {b}: {bv:.2f} {_fmt_ci(bci)}; best other "
                        f"SAEBench metric {r}: {rv:.2f} {_fmt_ci(rci)} (mean within-stratum "
                        "Spearman with ground truth)",
            "value": bv - rv, "ci95": None,
            "detail": "agree needs the intervals apart; the difference is not resampled jointly"}


def _sae_probes_variants(report: dict) -> dict:
    probes = _family(report, "sae_probes_top")
    if not probes:
        return _missing("sae_probes_top{k}")
    ranked = _ranked(report, probes)
    name = ranked[0][0] if ranked else probes[-1]
    variants = report["metrics"][name]["variants"]
    if variants.get("separated") is None or variants.get("separated_ci95") is None:
        return _missing("two runs of one architecture and width")
    line = report["config"].get("verdict", {}).get("discriminability", 0.5)
    return {"status": _side(variants["separated_ci95"], below=line),
            "measured": f"{name} separates {variants['separated']:.0%} "
                        f"{_fmt_ci(variants['separated_ci95'])} of {variants['n_pairs']} pairs "
                        "of runs of one architecture and width (other sparsity) in ground "
                        f"truth's order beyond its MDD; the line is {line:.0%}",
            "value": variants["separated"], "ci95": variants["separated_ci95"],
            "detail": "interval: runs resampled within each architecture and width"}


CLAIMS = (
    Claim("tpp_worse_with_training", "TPP scores SAEs worse the longer they train.",
          _tpp_falls),
    Claim("scr_negative_at_large_n",
          "SCR turns negatively correlated with ground truth at large top-N.",
          _scr_negative_large_n),
    Claim("tpp_scr_fail_lenses",
          "TPP and SCR fail several lenses at their canonical settings (N = 20).",
          _tpp_scr_fail),
    Claim("others_noisy",
          "The other SAEBench metrics are noisier and less discriminative than assumed.",
          _others_noisy),
    Claim("sae_probes_most_reliable",
          "The sae-probes variant of k-sparse probing is the most reliable metric.",
          _sae_probes_best),
    Claim("sae_probes_cannot_separate_variants",
          "Even sae-probes struggles to separate variants of one SAE architecture.",
          _sae_probes_variants),
)


def judge_claims(report: dict) -> dict:
    """Every claim of `CLAIMS` judged on an audit report: {"source", "claims": {key: {"claim",
    "status", "measured", "value", "ci95", "detail"}}, "counts": {status: n}}."""
    judged = {c.key: {"claim": c.text, **c.judge(report)} for c in CLAIMS}
    counts: dict[str, int] = {}
    for finding in judged.values():
        counts[finding["status"]] = counts.get(finding["status"], 0) + 1
    return {"source": SOURCE, "claims": judged, "counts": counts}
