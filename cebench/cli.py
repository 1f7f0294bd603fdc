"""The `cebench` command.

    cebench score --sae-regex "gemma-scope-2b-pt-res" --sae-block "layer_12/width_16k/.*" \\
                  --dataset stories.parquet --output-folder results/
    cebench score --sae runs/sae_a --sae runs/sae_b --model path/to/model --dataset stories.jsonl
"""

from __future__ import annotations

import argparse
import sys

from cebench.scores import PAPER_ALPHA

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage is one --help away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cebench", description="CE-Bench scores of SAEs on contrastive story pairs."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser(
        "score", help="score SAEs on a model and a contrastive dataset",
        description="Score SAEs selected by two regexes over sae-lens's pretrained directory "
                    "(like the reference CE-Bench) or given as local paths.")
    pick = score.add_argument_group("which SAEs")
    pick.add_argument("--sae-regex", "--sae_regex_pattern", dest="sae_regex",
                      help="regex (fullmatch) over release names")
    pick.add_argument("--sae-block", "--sae_block_pattern", dest="sae_block",
                      help="regex (fullmatch) over sae ids within the matching releases")
    pick.add_argument("--sae", action="append", default=[], metavar="PATH",
                      help="a sae-lens directory or Gemma Scope params.npz (repeatable)")
    run = score.add_argument_group("what to run them on")
    run.add_argument("--dataset", required=True,
                     help="local contrastive-stories file (.jsonl/.json/.parquet/.arrow) or folder")
    run.add_argument("--model", help="model hub name or local folder (default: the SAE's own)")
    run.add_argument("--hook", help="hook of params.npz SAEs outside Gemma Scope's layout")
    run.add_argument("--output-folder", "--output_folder", default="eval_results/ce_bench")
    run.add_argument("--cache-dir", help="activation cache (default: OUTPUT/activation_cache)")
    how = score.add_argument_group("how")
    how.add_argument("--variant", choices=["auto", "v4", "v1"], default="auto",
                     help="v1 (marked tokens) for tagged datasets, v4 otherwise (default: auto)")
    how.add_argument("--alpha", type=float, default=PAPER_ALPHA,
                     help="L0 weight of the sparsity-aware score")
    how.add_argument("--bos", choices=["include", "exclude"], default="include",
                     help="score the BOS position (the reference includes it)")
    how.add_argument("--batch-size", type=int, default=8, help="stories per forward pass")
    how.add_argument("--max-tokens", type=int, help="truncate stories to this many tokens")
    how.add_argument("--llm-dtype", "--llm_dtype", default="float32",
                     choices=["float32", "float16", "bfloat16", "float64"])
    how.add_argument("--device", default="cpu", help="torch device of the model")
    how.add_argument("--chunk-size", type=int, default=2048, help="tokens per encoder step")
    how.add_argument("--compute-dtype", choices=["float32", "bfloat16"], default="float32",
                     help="encoder matmul precision (bfloat16 accumulates in float32)")
    how.add_argument("--ibar-zero-defect", action="store_true",
                     help="reproduce the reference's Ibar == 0 defect (for published numbers)")
    how.add_argument("--limit", type=int, help="score only the first N rows")
    how.add_argument("--keep-relevance-rows", action="store_true",
                     help="v1: also score rows whose subject contains 'relevance to ' (the "
                          "reference's v1 code skips them, and so do we by default)")
    how.add_argument("--force", action="store_true",
                     help="rescore SAEs already scored, and replace a result file that holds "
                          "another SAE's result under the same label")
    how.add_argument("--no-progress", action="store_true", help="no progress bars")
    scale = score.add_argument_group("more than one machine")
    scale.add_argument("--shard", metavar="K/N",
                       help="score only every N-th SAE starting at K (0-based): run one command "
                            "per machine with K = 0 .. N-1; the machines need not talk")
    scale.add_argument("--distributed", action="store_true",
                       help="call jax.distributed.initialize() and encode every SAE across the "
                            "devices of all processes; run the same command on every host")
    scale.add_argument("--coordinator", help="jax.distributed coordinator address host:port "
                                             "(default: detected from the cluster environment)")
    scale.add_argument("--num-processes", type=int, help="jax.distributed process count")
    scale.add_argument("--process-id", type=int, help="this process's jax.distributed id")
    return parser


def _parse_shard(text: str | None) -> tuple[int, int]:
    if text is None:
        return 0, 1
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like K/N, got {text!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard {text}: need 0 <= K < N")
    return index, count


def _score(args: argparse.Namespace) -> int:
    from cebench.saes import select_saes
    from cebench.sweep import SAESource, ScoreConfig, run_sweep

    if bool(args.sae_regex) != bool(args.sae_block):
        raise ValueError("--sae-regex and --sae-block go together")
    saes = [SAESource(path) for path in args.sae]
    if args.sae_regex:
        saes += [SAESource(release, sae_id)
                 for release, sae_id in select_saes(args.sae_regex, args.sae_block)]
    if not saes:
        raise ValueError("choose SAEs with --sae PATH or --sae-regex and --sae-block")
    index, count = _parse_shard(args.shard)
    saes = saes[index::count]
    writer = True
    if args.distributed:
        import jax

        kwargs = {k: v for k, v in (("coordinator_address", args.coordinator),
                                    ("num_processes", args.num_processes),
                                    ("process_id", args.process_id)) if v is not None}
        jax.distributed.initialize(**kwargs)
        writer = jax.process_index() == 0
    config = ScoreConfig(
        variant=args.variant, alpha=args.alpha, bos=args.bos, batch_size=args.batch_size,
        max_tokens=args.max_tokens, llm_dtype=args.llm_dtype, device=args.device,
        chunk_size=args.chunk_size, compute_dtype=args.compute_dtype,
        ibar_zero_defect=args.ibar_zero_defect, limit=args.limit,
        keep_relevance_rows=args.keep_relevance_rows,
    )
    results = run_sweep(saes, dataset_path=args.dataset, output_folder=args.output_folder,
                        model=args.model, hook_name=args.hook, cache_dir=args.cache_dir,
                        config=config, force=args.force, progress=not args.no_progress,
                        write_results=writer)
    for result in results:
        if result.scores is None:
            print(f"skipped (already scored): {result.path}")
        else:
            s = result.scores
            print(f"C={s.contrastive:.3f} I={s.independent:.3f} J={s.interpretability:.3f} "
                  f"L0={s.l0:.1f} -> {result.path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "score":
            return _score(args)
    except ValueError as error:
        print(f"cebench {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
