"""``growlm eval``, ``table``, ``harness``, ``generate``: scoring and using a model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from growlm.cli.common import MODEL_HELP, runtime_options
from growlm.errors import GrowlmError


def add_parsers(sub: Any) -> None:
    """The ``eval``, ``table``, ``harness``, ``generate`` subcommands: their parsers, each with its handler."""
    from growlm.evaluation.tasks import GROUPS, SCORINGS, TASKS

    p = sub.add_parser("eval", help="benchmarks (lm-eval-compatible) and perplexity of a checkpoint or a run")
    p.add_argument("checkpoint", help=MODEL_HELP)
    p.add_argument("--tasks", nargs="+", help=f"{', '.join(TASKS)}, or the group(s) {', '.join(GROUPS)}; "
                                              "space- or comma-separated (arc_easy,piqa)")
    p.add_argument("--split", nargs="+", help="score another split than lm-eval's standard one (test for ARC, "
                                              "OpenBookQA, LAMBADA; validation for PIQA, HellaSwag, SQuAD): SPLIT "
                                              "for every task or TASK=SPLIT, e.g. --split arc_easy=validation")
    p.add_argument("--scoring", choices=list(SCORINGS), default=next(iter(SCORINGS)),
                   help="how multiple-choice tasks are scored: " + "; ".join(f"{k}: {v}" for k, v in SCORINGS.items()))
    p.add_argument("--num-fewshot", type=int, default=0, metavar="N",
                   help="mmlu: lead each prompt with the first N dev questions of its subject, solved")
    p.add_argument("--data", help="prepared data folder for the ppl task (its val split)")
    p.add_argument("--data-dir", help="benchmark files in Hugging Face schemas (default: $GROWLM_BENCHMARKS or "
                                      "../shared/benchmarks; else the hub)")
    p.add_argument("--task-data", nargs="+", metavar="TASK=PATH",
                   help="one task's documents from a folder (SPLIT.jsonl[.gz], SPLIT.parquet or a hub snapshot's "
                        "all/SPLIT-*.parquet) or a file (the split scored), e.g. --task-data mmlu=~/mmlu")
    p.add_argument("--limit", type=int, help="first N documents of each task")
    p.add_argument("--batch-size", type=int, default=16, help="questions (or windows) per batch")
    p.add_argument("--seq-len", type=int, help="ppl window length (default: the seq_len the checkpoint was trained "
                                               "at, from its trainer_state.json; else min(1024, context length))")
    p.add_argument("--max-batches", type=int, help="ppl: at most this many batches")
    p.add_argument("--all-checkpoints", action="store_true",
                   help="evaluate every checkpoint of a run; writes series.csv and series.png")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", help="auto (fp32, bf16 autocast on GPU) | float32 | float64 | bfloat16")
    p.add_argument("--out", help="output folder (default: CHECKPOINT/eval, or RUN/eval-series)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("table", help="results of several models in the papers' table layout")
    p.add_argument("results", nargs="+", help="results.json files or folders holding them")
    p.add_argument("--names", nargs="+", help="row names (default: architecture and checkpoint)")
    p.add_argument("--metric", default="paper", help="paper (default) | acc | acc_norm")
    p.add_argument("--out", help="write the markdown here too")
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("harness", help="run lm-evaluation-harness with growlm models and local task files",
                       prefix_chars="\x00")
    p.add_argument("args", nargs=argparse.REMAINDER, help="lm-eval arguments, e.g. --model growlm --tasks ...")
    p.set_defaults(func=cmd_harness)

    p = sub.add_parser("generate", help="continue a prompt with a checkpoint")
    p.add_argument("checkpoint", help=MODEL_HELP)
    p.add_argument("--prompt", required=True, help="the text to continue")
    p.add_argument("--max-new-tokens", type=int, default=50, help="tokens to generate")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature; 0 = greedy")
    p.add_argument("--top-k", type=int, default=50, help="sample from the k most likely tokens (with --temperature)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    p.set_defaults(func=cmd_generate)


def cmd_eval(args: argparse.Namespace) -> None:
    from growlm.evaluation.runner import EvalSettings, evaluate_checkpoint, evaluate_series, result_lines

    tasks = args.tasks or (["ppl"] if args.data else None)
    if not tasks:
        raise GrowlmError("pass --tasks (e.g. --tasks paper5 lambada_openai) or --data DATA_DIR for perplexity")
    settings = EvalSettings(data_dir=args.data_dir, ppl_data=args.data, limit=args.limit, batch_size=args.batch_size,
                            device=args.device, seq_len=args.seq_len, max_batches=args.max_batches, dtype=args.dtype,
                            split=args.split, scoring=args.scoring, num_fewshot=args.num_fewshot,
                            task_data=args.task_data, runtime_options=runtime_options())
    if args.all_checkpoints:
        rows = evaluate_series(args.checkpoint, tasks, args.out, settings)
        out = Path(args.out) if args.out else Path(args.checkpoint) / "eval-series"
        print(f"evaluated {len(rows)} checkpoints; wrote {out / 'series.csv'} and {out / 'series.png'}")
        return
    report = evaluate_checkpoint(args.checkpoint, tasks, args.out, settings)
    for line in result_lines(report):
        print(line)
    out = Path(args.out) if args.out else Path(report["model"]["checkpoint"]) / "eval"
    print(f"wrote {out / 'results.json'}, {out / 'samples.jsonl'}, {out / 'results.md'} "
          f"({report['seconds']:.0f} s)")


def cmd_table(args: argparse.Namespace) -> None:
    from growlm.evaluation.tables import build_tables

    text = build_tables(args.results, args.names, args.metric)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


def cmd_harness(args: argparse.Namespace) -> None:
    from growlm.evaluation.harness import run

    run(args.args)


def cmd_generate(args: argparse.Namespace) -> None:
    import torch

    from growlm.data.tokenizer import load_tokenizer
    from growlm.models import apply_runtime, storage
    from growlm.system import pick_device

    folder = storage.resolve_model_dir(args.checkpoint)
    device = pick_device(args.device)
    model = storage.load_model(folder, device).float()
    apply_runtime(model, runtime_options())
    tokenizer = load_tokenizer(folder)
    ids = tokenizer(args.prompt, return_tensors="pt", add_special_tokens=False)["input_ids"].to(device)
    torch.manual_seed(args.seed)
    sample = args.temperature > 0
    output = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.max_new_tokens,
                            do_sample=sample, temperature=args.temperature if sample else None,
                            top_k=args.top_k if sample else None, top_p=None,
                            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    print(args.prompt + tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True))
