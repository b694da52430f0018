"""``growlm compose``: merge models on one frozen substrate."""

from __future__ import annotations

import argparse
from typing import Any

from growlm.errors import GrowlmError


def add_parsers(sub: Any) -> None:
    """The ``compose`` subcommands: their parsers, each with its handler."""
    p = sub.add_parser("compose", help="merge models trained on one substrate into one (mean of their logits or "
                                        "probabilities)")
    p.add_argument("models", nargs="+", metavar="MODEL", help="two or more model folders or run folders")
    p.add_argument("--out", required=True)
    p.add_argument("--mixing", choices=("mean", "weights", "gate", "prob", "prob_weights", "prob_gate"),
                   help="mean (default; the paper's merge: mean of logits) | weights (one per expert) | gate "
                        "(per token) | prob, prob_weights, prob_gate: the same, averaging probabilities (a "
                        "mixture; loss <= better expert's + ln N)")
    p.add_argument("--mix-train", metavar="DATA", help="prepared data folder: fine-tune the mixing layer on its "
                                                        "train split, experts frozen (default mixing: gate)")
    p.add_argument("--steps", type=int, default=200, help="mixer training steps")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--mix-lr", type=float, default=1e-2)
    p.add_argument("--finetune", choices=("none", "full", "adapter"), default="none",
                   help="after composing (and --mix-train): full = fine-tune every weight, substrate embedding "
                        "frozen | adapter = train a zero-init linear adapter over the experts' concatenated hidden "
                        "states (and the mixer), experts frozen")
    p.add_argument("--finetune-data", metavar="DATA", help="prepared data folder for --finetune (default: --mix-train's)")
    p.add_argument("--finetune-steps", type=int, help="fine-tune steps (default: --steps)")
    p.add_argument("--finetune-lr", type=float, help="fine-tune learning rate (default 3e-4 full, 1e-3 adapter)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_compose)


def cmd_compose(args: argparse.Namespace) -> None:
    from growlm.composition import compose, train_mixer

    if args.finetune != "none" and not (args.finetune_data or args.mix_train):
        raise GrowlmError(f"--finetune {args.finetune} needs data: --finetune-data DATA (or --mix-train DATA)")
    mixing = args.mixing or ("gate" if args.mix_train else "mean")
    if args.mix_train and mixing in ("mean", "prob"):
        raise GrowlmError(f"--mix-train trains a mixing layer: use --mixing weights, gate, prob_weights or "
                          f"prob_gate ({mixing} has none)")
    record = compose(args.models, args.out, mixing=mixing)
    print(f"composed {len(record['experts'])} experts ({record['parameters']:,} parameters, mixing {mixing}) "
          f"into {args.out}")
    if args.mix_train:
        mix = train_mixer(args.out, args.mix_train, args.steps, seq_len=args.seq_len, batch_size=args.batch_size,
                          lr=args.mix_lr, seed=args.seed, device=args.device)
        print(f"mixer trained for {mix['steps']} steps: val loss {mix['val_loss_before']:.4f} -> "
              f"{mix['val_loss_after']:.4f}")
    if args.finetune != "none":
        from growlm.composition import finetune

        ft = finetune(args.out, args.finetune_data or args.mix_train, args.finetune_steps or args.steps,
                      mode=args.finetune, lr=args.finetune_lr, seq_len=args.seq_len, batch_size=args.batch_size,
                      seed=args.seed, device=args.device)
        print(f"fine-tuned ({args.finetune}, {ft['trainable_params']:,} parameters) for {ft['steps']} steps: "
              f"val loss {ft['val_loss_before']:.4f} -> {ft['val_loss_after']:.4f}")
