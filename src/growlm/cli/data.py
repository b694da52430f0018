"""``growlm data prepare``: text files to token shards."""

from __future__ import annotations

import argparse
from typing import Any


def add_parsers(sub: Any) -> None:
    """The ``data`` subcommands: their parsers, each with its handler."""
    data = sub.add_parser("data", help="data preparation").add_subparsers(dest="data_command", required=True,
                                                                           metavar="SUBCOMMAND")
    p = data.add_parser("prepare", help="tokenize text files into token shards")
    p.add_argument("inputs", nargs="+", help=".txt, .jsonl, .jsonl.gz files or folders")
    p.add_argument("--tokenizer", required=True,
                   help="SentencePiece .model, tokenizer.json, tokenizer folder, or hub name")
    p.add_argument("--out", required=True)
    p.add_argument("--val", nargs="+", help="inputs for the validation split (default: hold out --val-fraction)")
    p.add_argument("--val-fraction", type=float, default=0.01)
    p.add_argument("--text-field", default="text")
    p.add_argument("--max-docs-per-file", type=int, help="read at most N documents of each training input file")
    p.add_argument("--max-tokens", type=int, help="stop once the train split holds this many tokens")
    p.add_argument("--shard-tokens", type=int, default=100_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--workers", type=int, help="tokenizing processes (default: all cores); the output is the "
                   "same for any number")
    p.add_argument("--piece-chars", type=int,
                   help="tokenize documents longer than this (default 16384) in exact pieces of about this size "
                   "(0: whole)")
    p.add_argument("--batch-bytes", type=int, help="input bytes per work item handed to a worker (default 1048576)")
    p.set_defaults(func=cmd_data_prepare)


def cmd_data_prepare(args: argparse.Namespace) -> None:
    from growlm.data.prepare import PrepareSettings, prepare, summary_lines

    settings = PrepareSettings(val_inputs=args.val or (), val_fraction=args.val_fraction, text_field=args.text_field,
                               max_docs_per_file=args.max_docs_per_file, max_tokens=args.max_tokens,
                               shard_tokens=args.shard_tokens, seed=args.seed, overwrite=args.overwrite,
                               workers=args.workers, piece_chars=args.piece_chars)
    if args.batch_bytes:
        settings.batch_bytes = args.batch_bytes
    meta = prepare(args.inputs, args.tokenizer, args.out, settings)
    print(f"wrote {args.out} ({meta['tokenizer']['class']}, vocab {meta['tokenizer']['vocab_size']}, "
          f"{meta['dtype']}) in {meta['seconds']:.1f} s with {meta['workers']} worker(s): "
          f"{meta['text_mb_per_s']:.2f} MB/s, {meta['tokens_per_s']:,.0f} tokens/s")
    print("\n".join(summary_lines(meta)))
