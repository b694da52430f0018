"""``growlm grow``: grow a checkpoint without changing what it computes."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from growlm.cli.common import MODEL_HELP, SET_HELP, warn
from growlm.errors import GrowlmError


def add_parsers(sub: Any) -> None:
    """The ``grow`` subcommands: their parsers, each with its handler."""
    from growlm.growth.schemes import INIT_SCHEMES

    p = sub.add_parser("grow", help="grow a checkpoint without changing what it computes")
    p.add_argument("checkpoint", help=MODEL_HELP)
    p.add_argument("--out", required=True)
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help=SET_HELP)
    p.add_argument("--init", default="preserve", metavar="SCHEME",
                   help="how new entries start: " + "; ".join(f"{name}: {text}" for name, text in INIT_SCHEMES.items()))
    p.add_argument("--moments", choices=("carry", "fresh"), default="carry",
                   help="optimizer moments of a training checkpoint: carry them over or start fresh "
                        "(zero moments, step count 0)")
    p.add_argument("--layers-at", help="where new blocks go when num_hidden_layers grows: end (default), start, "
                                       "interleave, or positions in the grown model such as 0,4,8")
    p.add_argument("--seed", type=int, default=0, help="seed of the new entries drawn at random and of the verification batch")
    p.add_argument("--no-verify", action="store_true", help="skip the logits and gradient checks")
    p.set_defaults(func=cmd_grow)


def cmd_grow(args: argparse.Namespace) -> None:
    from growlm.growth import grow_checkpoint, parse_init
    from growlm.overrides import parse_assignments

    options = {"layers_at": args.layers_at} if args.layers_at else {}
    report = grow_checkpoint(args.checkpoint, args.out, parse_assignments(args.set), parse_init(args.init),
                             seed=args.seed, verify=not args.no_verify, options=options,
                             moments=args.moments)
    changes = ", ".join(f"{k} {c.old} -> {c.new}" for k, c in report.changes.items())
    print(f"grew {report.architecture} ({changes}) with --init {report.init}: "
          f"{report.parameters.old:,} -> {report.parameters.new:,} parameters")
    print(f"optimizer state: {report.optimizer_state}")
    v = report.verification
    if v is not None and report.init == "zero":
        stuck = sum(1 for b in v.gradients.blocks if b.first_step_with_gradient is None)
        if stuck:
            warn(f"warning: {stuck} of {len(v.gradients.blocks)} new blocks received no gradient in two steps "
                 "and will never train")
    if v is not None:
        grads = v.gradients
        print(f"verification: max |Δlogit| {v.logits.max_abs_diff:.3g} "
              f"(relative {v.logits.max_rel_diff:.3g}); {len(grads.blocks)} new blocks, "
              f"all received gradient within {grads.steps} steps: {grads.every_block_got_gradient}, "
              f"none moved: {grads.no_block_moved}; expectation ({v.expectation}) "
              f"{'met' if v.passed else 'NOT MET'}")
        if v.loss is not None:
            print(f"loss on the verification batch: {v.loss.before:.4f} -> {v.loss.after:.4f} "
                  f"(jump {v.loss.jump:+.4g})")
    print(f"wrote {args.out} (details in {Path(args.out) / 'growth.json'})")
    if v is not None and not v.passed:
        raise GrowlmError("the grown model failed its verification; see growth.json")
