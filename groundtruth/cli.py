"""The `groundtruth` command.

    groundtruth audit                               the default study (experiments/ce_vs_groundtruth.toml)
    groundtruth audit --config experiments/X.toml --out runs/X
    groundtruth noise-floor --metric ce_contrastive --family decoder_noise:0.5
    groundtruth noise-floor --metric ce_contrastive --sae path/to/sae --model M --dataset D
    groundtruth seeds-needed --metric ce_contrastive --delta 0.05 [--report runs/X/report.json]
    groundtruth report --out runs/X [--config new.toml]   re-judge a finished audit, no rerun
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage is one --help away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="groundtruth",
        description="Can this SAE metric be trusted? Reliability audits against ground truth.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    audit = commands.add_parser(
        "audit", help="run a study (default: do CE-Bench scores track ground truth?)")
    audit.add_argument("--config", help="study TOML (default: experiments/ce_vs_groundtruth.toml)")
    audit.add_argument("--out", help="run folder (default: runs/<study name>)")
    audit.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                       help="import a module that registers metrics (register_metric) before "
                            "the study is read, so the study can name them (repeatable)")
    audit.add_argument("--no-progress", action="store_true")

    noise = commands.add_parser(
        "noise-floor", help="reseed noise and minimum detectable difference of a metric")
    noise.add_argument("--metric", action="append", required=True,
                       help="registered metric (repeatable), e.g. ce_contrastive")
    noise.add_argument("--seeds", type=int, default=5,
                       help="metric seeds (default 5); on real SAEs each seed scores a corpus "
                            "of the dataset's size drawn from its rows with replacement")
    which = noise.add_argument_group("synthetic SAEs (on a preset world)")
    which.add_argument("--world", default="cpu", help="world preset (default cpu)")
    which.add_argument("--family", action="append", default=[], metavar="NAME:VALUE",
                       help="a family member, e.g. decoder_noise:0.5 (repeatable)")
    which.add_argument("--control", action="append", default=[],
                       help="a control: oracle, permuted_decoder, random_init, random_l0_matched, "
                            "best_k (repeatable)")
    real = noise.add_argument_group("real SAEs (sae-lens folder or params.npz)")
    real.add_argument("--sae", action="append", default=[], metavar="PATH",
                      help="sae-lens folder or params.npz; with --model and --dataset it is "
                           "scored on real activations, without them on the --world")
    real.add_argument("--model", help="model hub name or local folder (real SAEs)")
    real.add_argument("--dataset", help="local contrastive-stories file (real SAEs)")
    real.add_argument("--hook", help="hook of a params.npz outside Gemma Scope's layout")
    real.add_argument("--cache-dir", default="runs/noise_floor_cache")
    real.add_argument("--keep-relevance-rows", action="store_true",
                      help="v1: also score rows whose subject contains 'relevance to ' (skipped "
                           "by default, as by the reference and `cebench score`)")

    rejudge = commands.add_parser(
        "report", help="re-render a finished audit, with the [verdict] thresholds of --config "
                       "if given, without recomputing anything")
    rejudge.add_argument("--out", required=True, help="the audit's run folder")
    rejudge.add_argument("--config", help="the study TOML whose [verdict] rules to apply (the "
                                          "same study; default: the rules the run used)")

    power = commands.add_parser(
        "seeds-needed", help="metric and training seeds needed to detect a difference, from an "
                             "audit's measured noise")
    power.add_argument("--metric", required=True, help="a metric of the audit's report")
    power.add_argument("--delta", type=float, required=True,
                       help="the difference in the metric to detect")
    power.add_argument("--report", default="runs/ce_vs_groundtruth/report.json",
                       help="an audit's report.json (default: the default study's)")
    power.add_argument("--power", type=float, default=0.8, help="probability of detecting it "
                                                                 "(default 0.8)")
    power.add_argument("--level", type=float, default=0.95,
                       help="confidence level of the two-sided test (default 0.95)")
    return parser


def _audit(args) -> int:
    from groundtruth.studies import run_study
    from groundtruth.study import default_study_path, import_metric_modules, load_study

    import_metric_modules(args.plugin)
    path = Path(args.config) if args.config else default_study_path()
    study = load_study(path)
    out = Path(args.out) if args.out else Path("runs") / study.name
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; a run folder is a directory")
    report = run_study(study, out, progress=not args.no_progress)
    print(f"report: {report.parent / 'report.md'} (and report.json, PNG plots) in {out}")
    return 0


def _noise_floor(args) -> int:
    from groundtruth.metrics.registry import get_metric
    from groundtruth.studies.noise_floor import real_noise_floor, synthetic_noise_floor
    from synthetic_saes.families import FAMILIES, OracleBase, control
    from synthetic_saes.sae_params import SAEParams
    from synthetic_saes.worlds import build_world

    for metric in args.metric:
        get_metric(metric)
    results = []
    if args.model or args.dataset:
        if not args.dataset:
            raise ValueError("--model is for real SAEs: give --dataset too")
        if not args.sae:
            raise ValueError("real SAEs need --sae PATH")
        for source in args.sae:
            results += real_noise_floor(args.metric, source, model=args.model,
                                        dataset=args.dataset, seeds=args.seeds,
                                        cache_dir=args.cache_dir, hook_name=args.hook,
                                        keep_relevance_rows=args.keep_relevance_rows)
    else:
        if not (args.family or args.control or args.sae):
            raise ValueError("name SAEs: --family NAME:VALUE, --control NAME or --sae PATH")
        world = build_world(args.world)
        base = OracleBase(world, seed=0)
        saes = []
        for item in args.family:
            name, _, value = item.partition(":")
            if name not in FAMILIES:
                raise ValueError(f"unknown family {name!r}; known: {sorted(FAMILIES)}")
            if not value:
                raise ValueError(f"give the knob value: {name}:VALUE")
            try:
                knob = float(value) if "." in value or "e" in value else int(value)
            except ValueError:
                raise ValueError(f"--family {item}: the knob value must be a number, e.g. "
                                 f"{name}:0.5") from None
            member = FAMILIES[name].build(base, knob)
            saes.append((member.name, member.params))
        for name in args.control:
            member = control(base, name)
            saes.append((member.name, member.params))
        for path in args.sae:
            saes.append((str(path), SAEParams.load(path)))
        from groundtruth.metrics.data import DataConfig
        from synthetic_saes.corpora import CorpusConfig

        # The default corpus asks for 16 subjects; small worlds have fewer sibling pairs.
        subjects = min(16, len(world.hierarchy.sibling_pairs()))
        data_config = DataConfig(corpus=CorpusConfig(n_subjects=subjects, pairs_per_subject=2,
                                                     story_length=(32, 64)))
        for name, params in saes:
            for metric in args.metric:
                results.append(synthetic_noise_floor(metric, params, name, world,
                                                     seeds=args.seeds, data_config=data_config))
    for result in results:
        print(result.line())
    return 0


def _seeds_needed(args) -> int:
    import json

    from groundtruth.power import seeds_needed

    path = Path(args.report)
    if not path.is_file():
        raise ValueError(f"no audit report at {path}: run the audit first (make audit) or "
                         "pass --report")
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not JSON: {error}") from None
    metrics = report.get("metrics", {})
    if args.metric not in metrics:
        raise ValueError(f"{path} has no metric {args.metric!r}; it has {sorted(metrics)}")
    entry = metrics[args.metric]
    if "paired" not in entry.get("reseed", {}):
        raise ValueError(f"{path} was written before paired noise was measured: rerun its audit")
    need = seeds_needed(entry, args.delta, power=args.power, level=args.level)
    print(f"{args.metric}: to detect a difference of {args.delta:g} with power {args.power:g} "
          f"(two-sided, level {args.level:g}), from {path}:")
    for width, n in sorted(need["metric_seeds"].items(), key=lambda item: int(item[0])):
        std = need["paired_std"][width]
        print(f"  metric seeds per SAE, width {width}: "
              + ("unknown (fewer than two reseeded SAEs)" if n is None
                 else f"{n} (paired std {std:.3g}; both SAEs scored with the same seeds)"))
    if need["training_seeds"] is None:
        print(f"  training seeds per configuration: unknown ({need['note']})")
    else:
        print(f"  training seeds per configuration, one metric seed each: "
              f"{need['training_seeds']} (training-seed std {need['training_std']:.3g}, "
              f"metric-seed std {need['metric_seed_std']:.3g}, from the variance components)")
    return 0


def _report(args) -> int:
    import json

    from groundtruth.report import rejudge, write_report
    from groundtruth.study import VerdictRules, load_study

    out = Path(args.out)
    path = out / "report.json"
    if not path.is_file():
        raise ValueError(f"no finished audit in {out} (no report.json)")
    report = json.loads(path.read_text())
    planted = (report.get("sanity") or {}).get("planted") or {}
    if "metrics" not in report or not all("entry" in p for p in planted.values()) or not planted:
        raise ValueError(f"{path} is not an audit report of this version: rerun its audit "
                         "(the stored metric values are reused, so only the lenses run)")
    rules = VerdictRules(**report["config"]["verdict"])
    if args.config:
        study = load_study(args.config)
        if study.kind != "audit" or study.name != report["config"]["name"]:
            raise ValueError(f"{args.config} is the {study.kind} study {study.name!r}, but {out} "
                             f"holds the audit {report['config']['name']!r}")
        rules = study.verdict
    json_path = write_report(rejudge(report, rules), out)
    print(f"report: {json_path.parent / 'report.md'} re-rendered with the [verdict] rules "
          f"{vars(rules)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "audit":
            return _audit(args)
        if args.command == "noise-floor":
            return _noise_floor(args)
        if args.command == "seeds-needed":
            return _seeds_needed(args)
        if args.command == "report":
            return _report(args)
    except ValueError as error:
        print(f"groundtruth {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
