"""``growlm train`` (a run, a growth plan, ``--resume``) and ``growlm plan show|report``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from growlm.cli.common import print_json, runtime_options, warn
from growlm.errors import GrowlmError


def add_parsers(sub: Any) -> None:
    """The ``train``, ``plan`` subcommands: their parsers, each with its handler."""
    p = sub.add_parser("train", help="train from a config or a growth plan, or --resume a run")
    p.add_argument("config", nargs="?")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its newest good checkpoint")
    p.set_defaults(func=cmd_train)

    plan = sub.add_parser("plan", help="growth plans").add_subparsers(dest="plan_command", required=True,
                                                                       metavar="SUBCOMMAND")
    p = plan.add_parser("show", help="validate a plan and print every stage's shape, parameters and FLOPs")
    p.add_argument("plan")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a key in every stage")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan_show)
    p = plan.add_parser("report", help="loss and lr across stages (PNGs) and the FLOPs ledger of a plan run")
    p.add_argument("run")
    p.set_defaults(func=cmd_plan_report)


def cmd_train(args: argparse.Namespace) -> None:
    import yaml

    from growlm.overrides import parse_assignments
    from growlm.training.config import load_train_config
    from growlm.training.plan import PLAN_FILE, is_plan, load_plan, resume_plan, run_plan
    from growlm.training.trainer import finished_step, resume_run, start_run

    overrides = parse_assignments(args.set)
    if args.resume:
        if args.config:
            raise GrowlmError("pass either CONFIG or --resume RUN_DIR, not both")
        if (Path(args.resume) / PLAN_FILE).exists():
            ledger = resume_plan(args.resume, overrides, options=runtime_options())
            if ledger is not None:  # rank 0 under torchrun, or the only process
                print("\n".join(ledger.lines()))
            return
        done = finished_step(args.resume, overrides)
        if done is not None:  # a finished run is left exactly as it is
            if os.environ.get("RANK", "0") == "0":
                print(f"nothing to do: {args.resume} finished at step {done} "
                      f"(to train it further: --set max_steps=N with N > {done})")
            return
        summary = resume_run(args.resume, overrides, options=runtime_options())
    else:
        if not args.config:
            raise GrowlmError("pass a CONFIG.yaml or PLAN.yaml (or --resume RUN_DIR)")
        path = Path(args.config)
        try:
            values = yaml.safe_load(path.read_text()) if path.exists() else None
        except yaml.YAMLError:
            values = None  # load_train_config reports it
        if is_plan(values):
            ledger = run_plan(load_plan(path, overrides), options=runtime_options())
            if ledger is not None:
                print("\n".join(ledger.lines()))
            return
        summary = start_run(load_train_config(args.config, overrides), runtime_options())
    if summary is not None:  # rank 0 under torchrun, or the only process
        print_json(summary.to_json())


def cmd_plan_show(args: argparse.Namespace) -> None:
    from growlm.overrides import parse_assignments
    from growlm.training.plan import PLAN_FILE, load_plan, nothing_trained, plan_lines, plan_shapes

    plan = load_plan(args.plan, parse_assignments(args.set))
    rows = plan_shapes(plan)
    if (plan.out_dir / PLAN_FILE).exists() and not nothing_trained(plan.out_dir):
        warn(f"note: out_dir {plan.out_dir} already holds a plan run, so `growlm train` will not start this plan "
             f"there: continue that run with `growlm train --resume {plan.out_dir}` or set another out_dir")
    if args.json:
        print_json(rows)
        return
    print("\n".join(plan_lines(plan, rows, args.plan)))


def cmd_plan_report(args: argparse.Namespace) -> None:
    from growlm.training.plan import plot_plan, plot_plan_lr
    from growlm.training.records import LEDGER_FILE, Ledger

    out = Path(args.run)
    if not (out / LEDGER_FILE).exists():
        raise GrowlmError(f"{out} holds no {LEDGER_FILE}: not a plan run, or no stage has finished yet")
    pictures = [plot_plan(out), plot_plan_lr(out)]
    print("\n".join(Ledger.read(out).lines()))
    for picture in pictures:
        if picture:
            print(f"wrote {picture}")
