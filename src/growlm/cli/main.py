"""The ``growlm`` command line: argument parsing and one handler per subcommand.

Handlers only translate arguments into library calls; the work is in the library so
that everything the CLI does can also be done from Python. Input problems raise
:class:`growlm.errors.GrowlmError` and become ``error: ...`` with exit status 2.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

from growlm.errors import ConfigError, GrowlmError
from growlm.logs import show_messages
from growlm.runtime import RuntimeOptions  # a dataclass: no torch, so --help stays fast

# Start-up: this module imports no torch, transformers or numpy, and neither does building the
# parser, so ``growlm --help`` answers at once; each handler imports what it needs
# (benchmarks/startup.py measures it, tests/cli/test_startup.py keeps it so).

DESCRIPTION = """\
Train transformer language models and grow them (width, depth, Nexus-Rank, parameter
tokens) without losing what they learned.

Start with 'growlm models' (the presets), 'growlm demo' (the whole story on a CPU) or
'growlm COMMAND --help'. Wherever a model is expected, a model or checkpoint folder, a run
folder (its newest good checkpoint) or a plan run folder (its last completed stage) will do."""


def _quiet_transformers(transformers: ModuleType) -> None:
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _quiet_libraries() -> None:
    """Quiet transformers once a command imports it (importing it here would cost seconds)."""
    from wrapt import register_post_import_hook

    register_post_import_hook(_quiet_transformers, "transformers")


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _runtime_options(**flags: Any) -> RuntimeOptions:
    """The fused paths and kernels a command's models take: the ``GROWLM_*`` variables, then the
    command's own flags (``growlm/runtime.py``). Read here, at the entry point, and passed down."""
    return RuntimeOptions.from_env(**flags)


# -- models / init / convert ------------------------------------------------------------------
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
        _print_json(rows)
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
        _print_json(info)
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


# -- data ---------------------------------------------------------------------------------------
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


# -- train / grow / eval / generate -------------------------------------------------------------
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
            ledger = resume_plan(args.resume, overrides, options=_runtime_options())
            if ledger is not None:  # rank 0 under torchrun, or the only process
                print("\n".join(ledger.lines()))
            return
        done = finished_step(args.resume, overrides)
        if done is not None:  # a finished run is left exactly as it is
            if os.environ.get("RANK", "0") == "0":
                print(f"nothing to do: {args.resume} finished at step {done} "
                      f"(to train it further: --set max_steps=N with N > {done})")
            return
        summary = resume_run(args.resume, overrides, options=_runtime_options())
    else:
        if not args.config:
            raise GrowlmError("pass a CONFIG.yaml or PLAN.yaml (or --resume RUN_DIR)")
        path = Path(args.config)
        try:
            values = yaml.safe_load(path.read_text()) if path.exists() else None
        except yaml.YAMLError:
            values = None  # load_train_config reports it
        if is_plan(values):
            ledger = run_plan(load_plan(path, overrides), options=_runtime_options())
            if ledger is not None:
                print("\n".join(ledger.lines()))
            return
        summary = start_run(load_train_config(args.config, overrides), _runtime_options())
    if summary is not None:  # rank 0 under torchrun, or the only process
        _print_json(summary.to_json())


def cmd_plan_show(args: argparse.Namespace) -> None:
    from growlm.overrides import parse_assignments
    from growlm.training.plan import PLAN_FILE, load_plan, nothing_trained, plan_lines, plan_shapes

    plan = load_plan(args.plan, parse_assignments(args.set))
    rows = plan_shapes(plan)
    if (plan.out_dir / PLAN_FILE).exists() and not nothing_trained(plan.out_dir):
        _warn(f"note: out_dir {plan.out_dir} already holds a plan run, so `growlm train` will not start this plan "
              f"there: continue that run with `growlm train --resume {plan.out_dir}` or set another out_dir")
    if args.json:
        _print_json(rows)
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
            _warn(f"warning: {stuck} of {len(v.gradients.blocks)} new blocks received no gradient in two steps "
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


def cmd_eval(args: argparse.Namespace) -> None:
    from growlm.evaluation.runner import EvalSettings, evaluate_checkpoint, evaluate_series, result_lines

    tasks = args.tasks or (["ppl"] if args.data else None)
    if not tasks:
        raise GrowlmError("pass --tasks (e.g. --tasks paper5 lambada_openai) or --data DATA_DIR for perplexity")
    settings = EvalSettings(data_dir=args.data_dir, ppl_data=args.data, limit=args.limit, batch_size=args.batch_size,
                            device=args.device, seq_len=args.seq_len, max_batches=args.max_batches, dtype=args.dtype,
                            split=args.split, scoring=args.scoring, num_fewshot=args.num_fewshot,
                            task_data=args.task_data, runtime_options=_runtime_options())
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
    apply_runtime(model, _runtime_options())
    tokenizer = load_tokenizer(folder)
    ids = tokenizer(args.prompt, return_tensors="pt", add_special_tokens=False)["input_ids"].to(device)
    torch.manual_seed(args.seed)
    sample = args.temperature > 0
    output = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.max_new_tokens,
                            do_sample=sample, temperature=args.temperature if sample else None,
                            top_k=args.top_k if sample else None, top_p=None,
                            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    print(args.prompt + tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True))


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


def cmd_bench(args: argparse.Namespace) -> None:
    from growlm.bench import BenchSettings, bench

    compile_model = {"auto": None, "on": True, "off": False, "regional": "regional", "graphs": "graphs"}[args.compile]
    if args.nexus_pad is not None and args.nexus_pad < 1:
        raise ConfigError(f"--nexus-pad must be a positive integer, got {args.nexus_pad}")
    options = _runtime_options(nexus_fused=False if args.nexus_unfused else None, nexus_pad=args.nexus_pad,
                               fuse_linears=False if args.unfused_linears else None,
                               rotary_opaque=False if args.rotary_inline else None)
    bench(args.preset, BenchSettings(
        seq_len=args.seq_len, micro_batch=args.micro_batch, steps=args.steps, warmup=args.warmup,
        compile_model=compile_model, reference=args.reference, device=args.device,
        loss_chunk_tokens=args.loss_chunk_tokens, out=args.out, activation_checkpointing=args.activation_checkpointing,
        options=options, profile=args.profile, profile_steps=args.profile_steps, find=args.find_batch,
        find_batch_max=args.find_batch_max, find_batch_budget_s=args.find_batch_budget_s,
        commit=os.environ.get("GROWLM_COMMIT")))


def cmd_analyze(args: argparse.Namespace) -> None:
    from growlm.analysis import AnalysisSettings, analyse

    tasks = [] if args.tasks == ["none"] else args.tasks
    settings = AnalysisSettings(tasks=tasks, limit=args.limit, ppl_data=args.ppl_data, ppl_batches=args.ppl_batches,
                                batch_size=args.batch_size, device=args.device, benchmarks=args.benchmarks,
                                max_values=args.max_values, state=args.state.split(",") if args.state else None,
                                skip=args.skip or [], seq_len=args.seq_len, benchmark_points=args.benchmark_points,
                                workers=args.workers, definitions=args.definitions, pooling=args.pooling)
    report = analyse(args.runs, args.out, settings, names=args.names)
    print(f"wrote {Path(args.out) / 'dynamics.json'}, dynamics.csv, {Path(report['tables']).name} and "
          f"{len(report['figures'])} figures to {args.out}")


def cmd_experiment(args: argparse.Namespace) -> None:
    from growlm.experiments import EXPERIMENTS, experiment_module, publish, run_experiment
    from growlm.overrides import parse_assignments

    if args.name == "list":
        for name in EXPERIMENTS:
            print(f"{name:<20} {experiment_module(name).DESCRIPTION}")
        return
    if args.name == "publish":
        if not args.out:
            raise GrowlmError("growlm experiment publish needs --out DIR (a finished experiment's folder)")
        key = publish(args.out, args.results_md or "docs/results.md")
        print(f"published {key} from {args.out} into {args.results_md or 'docs/results.md'}")
        return
    path, _ = run_experiment(args.name, out=args.out, quick=args.quick, seeds=args.seeds, device=args.device,
                             shared=args.shared, data_root=args.data_root, benchmarks=args.benchmarks,
                             results_md=args.results_md, argv=sys.argv[1:],
                             options=parse_assignments(args.set))
    print(f"wrote {path} (tables, figures and raw JSON beside it)"
          + (f"; published into {args.results_md}" if args.results_md else ""))


def cmd_demo(args: argparse.Namespace) -> None:
    from growlm.demo import run_demo

    run_demo(Path(args.out), shared=Path(args.shared) if args.shared else None, quick=args.quick)


# -- parser ---------------------------------------------------------------------------------------
def version_text() -> str:
    """``growlm 0.1.0 (commit 70acb97, source 0123456789ab)``: see :mod:`growlm.provenance`."""
    from growlm.provenance import provenance

    return provenance().text()


class _VersionAction(argparse.Action):
    """``--version``, computed when asked (git is not run for every command)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> NoReturn:
        print(version_text())
        parser.exit()


class _DefaultsFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, except where there is none to show (required
    options, None, on/off flags) or the help already says it in words."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (action.required or any(action.default is v for v in (None, False, argparse.SUPPRESS))
                or action.nargs == 0 or "default" in text.lower()):  # identity: 0 == False
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse with errors that help: an unknown flag is reported by the subcommand it was given
    to (its usage, not the top level's) with the closest flag it has; a mistyped choice (a
    command name) gets the closest valid one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)

    # argparse's stubs type these as overloads generic in the namespace; growlm passes none of its own
    def parse_known_args(  # type: ignore[override]
        self, args: Any = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        # subcommands parse first and their namespace is copied into the parent's: the innermost
        # parser that left arguments unparsed is the one to report them
        if extras and not hasattr(parsed, "_growlm_parser"):
            parsed._growlm_parser = self
        return parsed, extras

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        owner = getattr(parsed, "_growlm_parser", self)
        if extras:
            owner.error(f"unrecognized arguments: {' '.join(extras)}{owner._suggestion(extras)}")
        if hasattr(parsed, "_growlm_parser"):
            del parsed._growlm_parser
        return parsed

    def _suggestion(self, extras: list[str]) -> str:
        flags = [f for a in self._actions for f in a.option_strings if f.startswith("--")]
        for arg in extras:
            if arg.startswith("-"):
                close = difflib.get_close_matches(arg.split("=", 1)[0], flags, n=1, cutoff=0.6)
                if close:
                    return f" (did you mean {close[0]}?)"
        return ""

    def error(self, message: str) -> NoReturn:
        bad = re.match(r"argument .*: invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if bad:
            choices = [c.strip().strip("'") for c in bad.group(2).split(",")]
            close = difflib.get_close_matches(bad.group(1), choices, n=1)
            if close:
                message += f"; did you mean '{close[0]}'?"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="growlm", description=DESCRIPTION)
    parser.add_argument("--version", action=_VersionAction,
                        help="print growlm's version, its git commit when run from its own checkout, and a hash of "
                             "its source files, and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    set_help = "set a config field (repeatable), e.g. --set nexus_m=1088"
    model_help = ("a model or checkpoint folder, a run folder (its newest good checkpoint) or a plan run folder "
                  "(the newest good checkpoint of its last completed stage)")
    from growlm.evaluation.tasks import GROUPS, SCORINGS, TASKS  # the task registry (no torch)
    from growlm.growth.schemes import INIT_SCHEMES  # the growth init schemes (no torch)

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
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help=set_help)
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

    p = sub.add_parser("grow", help="grow a checkpoint without changing what it computes")
    p.add_argument("checkpoint", help=model_help)
    p.add_argument("--out", required=True)
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help=set_help)
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

    p = sub.add_parser("eval", help="benchmarks (lm-eval-compatible) and perplexity of a checkpoint or a run")
    p.add_argument("checkpoint", help=model_help)
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
    p.add_argument("checkpoint", help=model_help)
    p.add_argument("--prompt", required=True, help="the text to continue")
    p.add_argument("--max-new-tokens", type=int, default=50, help="tokens to generate")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature; 0 = greedy")
    p.add_argument("--top-k", type=int, default=50, help="sample from the k most likely tokens (with --temperature)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    p.set_defaults(func=cmd_generate)

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

    p = sub.add_parser("bench", help="training tokens/s, MFU and memory of a preset (vs transformers with --reference)")
    p.add_argument("preset", help="a preset name (growlm models lists them)")
    p.add_argument("--seq-len", type=int, default=4096, help="tokens per sequence")
    p.add_argument("--micro-batch", type=int, default=8, help="sequences per step")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation, allocator)")
    p.add_argument("--compile", choices=("auto", "on", "off", "regional", "graphs"), default="auto",
                   help="auto: on for CUDA; regional: each decoder layer compiled (faster to compile); "
                        "graphs: on, with CUDA graphs")
    p.add_argument("--reference", action="store_true", help="also time transformers' own model (qwen3, llama)")
    p.add_argument("--loss-chunk-tokens", type=int, default=0, help="compute the loss in chunks of this many "
                                                                    "tokens (0: at once)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    p.add_argument("--out", help="write the results as JSON")
    p.add_argument("--activation-checkpointing", action="store_true",
                   help="recompute each decoder layer in backward (less memory, ~1/3 more compute)")
    p.add_argument("--nexus-unfused", action="store_true",
                   help="Nexusformer: run the Q/K/V Nexus-Rank maps one by one (default: fused on CUDA)")
    p.add_argument("--unfused-linears", action="store_true",
                   help="run Q/K/V and SwiGLU gate/up linears one by one (default: one product each on CUDA)")
    p.add_argument("--rotary-inline", action="store_true",
                   help="compute rotary tables where the compiler can see (and inline, i.e. recompute) them "
                        "(default: behind an opaque op, computed once per forward; growlm.models.layers)")
    p.add_argument("--nexus-pad", type=int, help="Nexusformer: pad M and A to this multiple in the fused path "
                                                 "(default $GROWLM_NEXUS_PAD or 8; 1 = none)")
    p.add_argument("--profile", metavar="DIR", help="profile --profile-steps more steps with torch.profiler; "
                                                    "write DIR/profile-*.json and .txt (top kernels by GPU time)")
    p.add_argument("--profile-steps", type=int, default=3, help="steps profiled with --profile")
    p.add_argument("--find-batch", action="store_true",
                   help="find the largest micro-batch that trains at --seq-len (doubling from --micro-batch, "
                        "then bisection) instead of timing")
    p.add_argument("--find-batch-max", type=int, default=1024, help="largest micro-batch --find-batch tries")
    p.add_argument("--find-batch-budget-s", type=float,
                   help="stop --find-batch after this many seconds (the answer is then a lower bound)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("analyze", help="growth dynamics of grown runs: NOC, Z, theta, rho, R, PCA, Grassmann, "
                                       "periodicity, ln PPL vs |ln R| (docs/analysis.md)")
    p.add_argument("runs", nargs="+", metavar="RUN", help="plan stage folders or runs continued from a grown model")
    p.add_argument("--out", required=True, help="output folder (dynamics.json, dynamics.csv, tables.md, PNGs)")
    p.add_argument("--names", nargs="+", help="a label per run (default: folder names)")
    p.add_argument("--tasks", nargs="+", default=["paper5"],
                   help="benchmarks for the performance ΔP (default paper5; 'none' to skip)")
    p.add_argument("--limit", type=int, default=100, help="first N documents of each task (default 100)")
    p.add_argument("--ppl-data", help="prepared data folder for validation perplexity (default: each run's data)")
    p.add_argument("--ppl-batches", type=int, default=16, help="perplexity: at most this many batches")
    p.add_argument("--seq-len", type=int, help="perplexity window (default: the run's training seq_len)")
    p.add_argument("--benchmark-points", choices=["all", "ends"], default="all",
                   help="benchmarks on every snapshot (all) or on the growth point and the last one (ends)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="auto")
    p.add_argument("--benchmarks", help="benchmark files (default: $GROWLM_BENCHMARKS or ../shared/benchmarks)")
    p.add_argument("--max-values", type=int, default=20000, help="NOC: at most this many values per set")
    p.add_argument("--workers", type=int, default=1, help="processes for the weight statistics (default 1)")
    p.add_argument("--state", help="features of the state vector for PCA (of theta, rho, noc, z, perf; default "
                   "theta,rho,perf with --definitions paper, rho,noc,perf with growlm)")
    p.add_argument("--definitions", choices=["paper", "growlm"], default="paper",
                   help="paper (default): NOC and Z base vs grown model, θ = ΔZ/Z₀, ρ = ΔNOC/NOC₀, R = |(θ, ρ)|; "
                   "growlm: new vs old entries, θ and ρ in weight space, R max-normalised (docs/analysis.md)")
    p.add_argument("--pooling", choices=["model", "grown", "layer", "tensor"], default="layer",
                   help="paper definitions: which base and grown weights NOC and Z compare (default layer)")
    p.add_argument("--skip", nargs="+", choices=["pca", "harmonic", "fisher", "law"], help="statistics to leave out")
    p.set_defaults(func=cmd_analyze)

    from growlm.experiments import EXPERIMENTS

    p = sub.add_parser("experiment", help="reproduce a paper's experiment (list, NAME [--quick], or publish)")
    p.add_argument("name", choices=[*EXPERIMENTS, "list", "publish"], metavar="NAME",
                   help=f"one of {', '.join(EXPERIMENTS) or '(none yet)'}; 'list' describes them; 'publish' "
                        "copies a finished one (--out) into --results-md")
    p.add_argument("--quick", action="store_true", help="the small CPU form (minutes), as CI runs it")
    p.add_argument("--seeds", type=int, help="number of seeds (0, 1, ...; default: the experiment's, at least 3)")
    p.add_argument("--out", help="output folder (default runs/experiments/NAME[-quick]); finished runs in it "
                                 "are reused, so an interrupted experiment continues")
    p.add_argument("--device", default="auto")
    p.add_argument("--shared", help="the shared material folder (default: ../shared or $GROWLM_SHARED)")
    p.add_argument("--data-root", help="where prepared corpus slices are cached (default data/experiments)")
    p.add_argument("--benchmarks", help="benchmark files (default: $GROWLM_BENCHMARKS or SHARED/benchmarks)")
    p.add_argument("--results-md", help="also publish the report into this Markdown file (e.g. docs/results.md)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="an experiment option (repeatable), e.g. --set base_tokens=4000000; see docs/experiments.md")
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("demo", help="train, grow, verify, continue, compare: the whole story on a CPU")
    p.add_argument("--out", default="growlm-demo", help="output folder (report.md, curves.png, the runs)")
    p.add_argument("--shared", help="the shared material folder (default: ../shared or $GROWLM_SHARED)")
    p.add_argument("--quick", action="store_true", help="a much shorter run (used by the tests)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None, configure: bool | None = None) -> int:
    """Run one ``growlm`` command. ``configure``: make the process-wide settings of a growlm program
    first (:func:`growlm.system.configure_process`); by default only when the command comes from
    this process's own command line (``argv`` None: the ``growlm`` program), not when a caller
    (a test, a script) passes ``argv`` and keeps its process as it is."""
    args = build_parser().parse_args(argv)
    if configure is None:
        configure = argv is None
    if configure:
        from growlm.system import configure_process

        configure_process()
    _quiet_libraries()
    # the library logs; the command line shows each message as a plain line (under torchrun, from
    # rank 0 only: the other ranks run the same work and would repeat it)
    show_messages(logging.INFO if os.environ.get("RANK", "0") == "0" else logging.CRITICAL + 1)
    try:
        args.func(args)
    except GrowlmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
