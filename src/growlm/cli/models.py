"""``growlm models``, ``info``, ``init``, ``substrate``, ``convert``: presets and model folders."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from growlm.cli.common import SET_HELP, print_json
from growlm.errors import GrowlmError


def add_parsers(sub: Any) -> None:
    """The ``models``, ``info``, ``init``, ``substrate``, ``convert`` subcommands: their parsers, each with its handler."""
    p = sub.add_parser("models", help="list model presets with parameter counts and FLOPs per token")
    p.add_argument("--seq-len", type=int, default=None, help="context length for FLOPs (default: each preset's)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("info", help="what a model, checkpoint, run or plan run folder holds: architecture, "
                                    "parameters, step, tokens, growth history, frozen parts, data position")
    p.add_argument("path", help="a model, checkpoint, run or plan run folder")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("init", help="write a freshly initialised model folder")
    p.add_argument("preset")
    p.add_argument("--out", required=True)
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help=SET_HELP)
    p.add_argument("--tokenizer", help="tokenizer to save with the model (sets its special token ids)")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("substrate", help="build a frozen substrate embedding for a tokenizer and show it")
    p.add_argument("tokenizer", help="SentencePiece .model, tokenizer.json, tokenizer or model folder")
    p.add_argument("--kind", default="glyph", help="glyph (default) | binary | random_binary")
    p.add_argument("--out", required=True)
    p.add_argument("--dim", type=int, help="code width (default: cell^2 = the full glyph PCA)")
    p.add_argument("--cell", type=int, default=32, help="glyph cell side in pixels (multiple of 16)")
    p.add_argument("--seed", type=int, default=0, help="random_binary seed")
    p.add_argument("--font", help="GNU Unifont file (default: the shared material's fonts/unifont.otf)")
    p.set_defaults(func=cmd_substrate)

    p = sub.add_parser("convert", help="convert a transformers checkpoint to growlm (or back with --to-hf)")
    p.add_argument("src")
    p.add_argument("--out", required=True)
    p.add_argument("--to-hf", action="store_true", help="convert a growlm model into a transformers checkpoint")
    p.set_defaults(func=cmd_convert)


def _preset_cache_file(seq_len: int | None) -> Path:
    """Where ``growlm models`` keeps its rows, under a key of everything they depend on.

    The counts are exact because they are counted on built models, which needs torch and
    transformers' model classes (seconds to import). The rows depend only on growlm's
    model code and presets (``growlm/models/``), transformers' version and the context
    length, so they are kept under a hash of those: any change there is a new key, never a
    stale table."""
    import hashlib
    from importlib.metadata import version

    models = Path(__file__).resolve().parents[1] / "models"
    digest = hashlib.sha256(f"{version('transformers')}|{seq_len}".encode())
    for source in sorted(models.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    root = Path(os.environ.get("GROWLM_CACHE") or Path.home() / ".cache" / "growlm")
    return root / "models" / f"presets-{digest.hexdigest()[:24]}.json"


def preset_rows(seq_len: int | None) -> list[dict[str, Any]]:
    """Every preset with its config fields, parameter counts and FLOPs per token at ``seq_len``."""
    cache = _preset_cache_file(seq_len)
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):
        pass  # not computed yet under this key (or unreadable): count
    from growlm.models.accounting import model_cost
    from growlm.models.presets import PRESETS, build_config

    rows = []
    for name in PRESETS:
        config = build_config(name)
        cost = model_cost(config, seq_len)
        rows.append({"preset": name, "architecture": config.architecture, **config.field_values(),
                     **cost.as_dict()})
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(rows))
        partial.replace(cache)  # whole or not at all, also with two commands at once
    except OSError:
        pass  # a read-only home: count again next time
    return rows


def cmd_models(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    rows = preset_rows(args.seq_len)
    if args.json:
        print_json(rows)
        return
    table = Table(title="growlm presets (FLOPs per token at the context length shown)")
    for col in ("preset", "layers", "D", "FFN", "heads", "M / A or qkv/proj/ffn slots", "params", "non-emb",
                "ctx", "train GFLOP/tok"):
        table.add_column(col, justify="left" if col == "preset" else "right")
    for r in rows:
        ma = {"nexus": f"{r.get('nexus_m')} / {r.get('nexus_a')}",
              "tokenformer": f"{r.get('qkv_slots')}/{r.get('proj_slots')}/{r.get('ffn_slots')}"}.get(r["architecture"], "-")
        ffn = "-" if r["architecture"] == "tokenformer" else str(r["intermediate_size"])
        heads = f"{r['num_attention_heads']}x{r['head_dim']}" + (
            f" kv{r['num_key_value_heads']}" if r["num_key_value_heads"] != r["num_attention_heads"] else "")
        table.add_row(r["preset"], str(r["num_hidden_layers"]), str(r["hidden_size"]), ffn,
                      heads, ma, f"{r['total_params'] / 1e6:,.2f}M", f"{r['non_embedding_params'] / 1e6:,.2f}M",
                      str(r["seq_len"]), f"{r['train_flops_per_token'] / 1e9:.3f}")
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    print("Parameter counts are exact (counted on the built model); the paper's size labels are names, not counts.")


def cmd_info(args: argparse.Namespace) -> None:
    from growlm.info import describe, info_lines

    info = describe(args.path)
    if args.json:
        print_json(info)
    else:
        print("\n".join(info_lines(info)))


def cmd_init(args: argparse.Namespace) -> None:
    import torch

    from growlm.data.tokenizer import load_tokenizer
    from growlm.models import model_class_for
    from growlm.models.accounting import model_cost
    from growlm.models.presets import build_config
    from growlm.models.storage import save_model
    from growlm.overrides import parse_assignments

    overrides = parse_assignments(args.set)
    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
    if tokenizer is not None:
        for field in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if getattr(tokenizer, field, None) is not None:
                overrides.setdefault(field, int(getattr(tokenizer, field)))
    config = build_config(args.preset, overrides)
    if tokenizer is not None and len(tokenizer) > config.vocab_size:
        raise GrowlmError(f"the tokenizer has {len(tokenizer)} tokens but vocab_size is {config.vocab_size}")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise GrowlmError(f"output folder {out} exists and is not empty")
    torch.manual_seed(args.seed)
    model = model_class_for(config)(config)
    if config.frozen_embedding:
        from growlm.substrate import install_substrate

        substrate = install_substrate(model, tokenizer)
        dim = config.embedding_dim or config.hidden_size  # set for every frozen embedding
        print(f"frozen {config.embedding} substrate {substrate.key} ({config.vocab_size} x {dim}"
              f"{' zero-padded to ' + str(config.hidden_size) if dim < config.hidden_size else ''})")
    save_model(model, out, tokenizer)
    cost = model_cost(config)
    print(f"wrote {config.architecture} model ({cost.total_params:,} parameters) to {out}")


def cmd_substrate(args: argparse.Namespace) -> None:
    from growlm.data.tokenizer import load_tokenizer
    from growlm.substrate.show import describe_substrate

    report = describe_substrate(load_tokenizer(args.tokenizer), args.kind, Path(args.out), args.dim, args.cell,
                                args.seed, args.font)
    c = report["collisions"]
    print(f"{report['kind']} substrate {report['key']}: {c['tokens']} tokens, {c['distinct_rows']} distinct rows, "
          f"{c['tokens_sharing_a_row']} tokens ({c['share_sharing_a_row']:.2%}) share a row with another")
    print(f"wrote {Path(args.out) / 'substrate.json'} and {Path(args.out) / 'cells.png'}")


def cmd_convert(args: argparse.Namespace) -> None:
    from growlm.convert import from_hf, to_hf

    (to_hf if args.to_hf else from_hf)(args.src, args.out)
