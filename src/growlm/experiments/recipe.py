"""What the architecture and growth experiments share: model sizes, run sizing, curves, compute-to-target.

The Nexusformer paper compares Nexusformer, Qwen3, Transformer++ (Llama) and TokenFormer at
matched parameter counts (its Table 6) and grows them (its Table 7). At the paper's scale
(240M-640M, 100B tokens) none of that fits the lent GPU, so these experiments use small
versions of the same four architectures, matched on *total* parameters (as the paper does;
with the 32k vocabulary the embeddings are most of a 20M model, so the non-embedding
counts are printed too), and the same recipe for every model:

* :data:`MODELS` -- the base size of each architecture (``full`` ~21M parameters, ``quick``
  ~2M for the CPU test) and how each one grows (:data:`GROWTH`: Nexus by M and A,
  TokenFormer by parameter slots, Qwen3 by width, Llama by depth);
* :class:`Sizing` -- sequence length, batch, learning rate, token budgets and evaluation
  caps of the quick and full forms; any of its fields can be changed with ``ctx.options``
  (``growlm experiment NAME --set base_tokens=4000000``);
* :func:`val_curve` and :func:`flops_to_reach` -- the validation loss of a run against
  cumulative training FLOPs, and the compute at which a curve first reaches a target loss
  (linear interpolation between the two evaluations that bracket it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from growlm.errors import ConfigError, unknown_key_message
from growlm.experiments.common import Context
from growlm.experiments.compiling import CompileChoice, choose, parse_setting

ARCHITECTURES = ("nexus", "qwen3", "llama", "tokenformer")
TITLES = {"nexus": "NexusFormer", "qwen3": "Qwen3", "llama": "Transformer++", "tokenformer": "TokenFormer"}

# Base model of each architecture: (preset, field overrides). Full: ~21.0M parameters each
# (within 0.1%: nexus 20.97M, qwen3 20.98M, llama 20.97M, tokenformer 20.97M); Qwen3 ties its
# embeddings (as the paper's Qwen3 presets do), so it gets a wider hidden size to match.
MODELS: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "full": {
        "nexus": ("nexus-tiny", dict(num_hidden_layers=4, hidden_size=256, intermediate_size=768, nexus_m=192,
                                     nexus_a=256, num_attention_heads=4, head_dim=64)),
        "qwen3": ("qwen3-tiny", dict(num_hidden_layers=4, hidden_size=416, intermediate_size=1280,
                                     num_attention_heads=4, num_key_value_heads=2, head_dim=64)),
        "llama": ("llama-tiny", dict(num_hidden_layers=4, hidden_size=256, intermediate_size=1152,
                                     num_attention_heads=4, head_dim=64)),
        "tokenformer": ("tokenformer-tiny", dict(num_hidden_layers=4, hidden_size=256, intermediate_size=1024,
                                                 ffn_slots=1024, qkv_slots=320, proj_slots=256,
                                                 num_attention_heads=4, head_dim=64)),
    },
    "quick": {
        "nexus": ("nexus-tiny", dict(num_hidden_layers=2, hidden_size=32, intermediate_size=96, nexus_m=40,
                                     nexus_a=48, num_attention_heads=2, head_dim=16, max_position_embeddings=128)),
        "qwen3": ("qwen3-tiny", dict(num_hidden_layers=2, hidden_size=64, intermediate_size=96,
                                     num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                     max_position_embeddings=128)),
        "llama": ("llama-tiny", dict(num_hidden_layers=2, hidden_size=32, intermediate_size=176,
                                     num_attention_heads=2, head_dim=16, max_position_embeddings=128)),
        "tokenformer": ("tokenformer-tiny", dict(num_hidden_layers=2, hidden_size=32, intermediate_size=128,
                                                 ffn_slots=128, qkv_slots=48, proj_slots=32,
                                                 num_attention_heads=2, head_dim=16, max_position_embeddings=128)),
    },
}

# How each architecture grows (the growlm growth request applied to its base model). The
# paper grows Nexus by M and A together (Table 7: 240M -> 300M is M 780->1088, A 960->1228,
# about x1.4 / x1.28) and TokenFormer by qkv slots; Qwen3 grows in width (hidden and FFN)
# and Llama in depth, the two usual ways of growing a plain transformer.
GROWTH: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "nexus": {"nexus_m": 288, "nexus_a": 384},
        "qwen3": {"hidden_size": 480, "intermediate_size": 1536},
        "llama": {"num_hidden_layers": 6},
        "tokenformer": {"qkv_slots": 640, "ffn_slots": 1280},
    },
    "quick": {
        "nexus": {"nexus_m": 56, "nexus_a": 64},
        "qwen3": {"hidden_size": 80, "intermediate_size": 128},
        "llama": {"num_hidden_layers": 3},
        "tokenformer": {"qkv_slots": 64, "ffn_slots": 160},
    },
}
GROWTH_OPTIONS = {"llama": {"layers_at": "end"}}


@dataclass
class Sizing:
    """One form's run sizes; every field can be overridden through ``ctx.options``."""

    seq_len: int
    micro_batch_size: int
    lr: float
    warmup_steps: int
    grow_warmup_steps: int
    base_tokens: int  # architectures: the whole run; growth: the base stage
    grow_tokens: int  # growth: the stage after growth (the scratch run gets base + grow)
    eval_every: int  # steps between validation evaluations during training
    eval_batches: int  # validation batches per evaluation (the first ones, the same every time)
    docs_per_file: int | None  # training documents per corpus source (None: all)
    val_docs_per_file: int | None
    bench_limit: int  # benchmark documents per task (the first N of each file)
    bench_batch_size: int
    ppl_batches: int | None  # validation batches of the final perplexity (None: the whole split)
    grow_lr_ratio: float = 1.0  # learning rate after growth, relative to lr (the paper raises it)
    compile: str = "auto"  # experiment setting (growlm.experiments.compiling): eager unless runs are long on CUDA

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.micro_batch_size

    def steps(self, tokens: int) -> int:
        return max(1, math.ceil(tokens / self.tokens_per_step))


FORMS: dict[str, Sizing] = {
    # Full: ~21M-parameter models, 256-token windows, batches of 64 (16k tokens), bf16 on the GPU.
    "full": Sizing(seq_len=256, micro_batch_size=64, lr=2e-3, warmup_steps=30, grow_warmup_steps=10,
                   base_tokens=3_000_000, grow_tokens=1_500_000, eval_every=20, eval_batches=8,
                   docs_per_file=None, val_docs_per_file=None, bench_limit=250, bench_batch_size=64,
                   ppl_batches=64),
    # Quick: CPU, a few steps, tiny models, a slice of the corpus, 4 documents per benchmark.
    "quick": Sizing(seq_len=32, micro_batch_size=4, lr=3e-3, warmup_steps=2, grow_warmup_steps=1,
                    base_tokens=128 * 8, grow_tokens=128 * 4, eval_every=4, eval_batches=2,
                    docs_per_file=2, val_docs_per_file=1, bench_limit=4, bench_batch_size=8, ppl_batches=2),
}


def sizing(ctx: Context, **defaults: Any) -> Sizing:
    """The form's :class:`Sizing`, with an experiment's own ``defaults`` and then ``ctx.options`` applied."""
    base = FORMS["quick" if ctx.quick else "full"]
    fields = {f.name: f.type for f in dataclasses.fields(Sizing)}
    values = dataclasses.asdict(base)
    for source in (defaults, ctx.options):
        for key, value in source.items():
            if key not in fields:
                continue
            current = values[key]
            if isinstance(current, bool):
                value = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
            elif isinstance(current, int) or key in ("docs_per_file", "val_docs_per_file", "ppl_batches"):
                value = None if value in (None, "none", "None") else int(value)
            elif isinstance(current, float):
                value = float(value)
            values[key] = value
    values["compile"] = parse_setting(values["compile"])  # a bad value fails here, naming the choices
    return Sizing(**values)


def check_options(ctx: Context, extra: Sequence[str] = ()) -> None:
    """Refuse an option no part of the experiment reads, naming the valid ones."""
    valid = [f.name for f in dataclasses.fields(Sizing)] + list(extra)
    for key in ctx.options:
        if key not in valid:
            raise ConfigError(unknown_key_message(f"option of experiment {ctx.name}", key, valid))


def architectures(ctx: Context, default: Sequence[str] | None = None) -> list[str]:
    """``ctx.options['architectures']`` (comma-separated), else ``default``, else all four."""
    chosen = ctx.options.get("architectures", ",".join(default or ARCHITECTURES))
    names = [a.strip() for a in (chosen.split(",") if isinstance(chosen, str) else chosen) if a.strip()]
    for name in names:
        if name not in ARCHITECTURES:
            raise ConfigError(unknown_key_message("architecture", name, ARCHITECTURES))
    return names


def corpus(ctx: Context, size: Sizing) -> Path:
    """The shared corpus with the 32k tokenizer (all of it in the full form, a slice in the quick one)."""
    return ctx.corpus("corpus", max_docs_per_file=size.docs_per_file, val_docs_per_file=size.val_docs_per_file)


def model_spec(ctx: Context, architecture: str) -> tuple[str, dict[str, Any]]:
    preset, overrides = MODELS["quick" if ctx.quick else "full"][architecture]
    return preset, dict(overrides)


def growth_spec(ctx: Context, architecture: str) -> dict[str, Any]:
    return dict(GROWTH["quick" if ctx.quick else "full"][architecture])


def model_costs(preset: str, overrides: dict[str, Any], seq_len: int) -> dict[str, int]:
    """Parameter counts and training FLOPs per token of a preset with overrides (built on the meta device)."""
    from growlm.models.accounting import model_cost
    from growlm.models.presets import build_config

    return model_cost(build_config(preset, overrides), seq_len).as_dict()


def train_values(ctx: Context, size: Sizing, data: Path, seed: int, tokens: int) -> dict[str, Any]:
    """Training config keys shared by every run of these experiments (model keys added by the caller)."""
    return {"data": str(data), "seq_len": size.seq_len, "micro_batch_size": size.micro_batch_size,
            "max_steps": size.steps(tokens), "lr": size.lr, "warmup_steps": size.warmup_steps, "schedule": "cosine",
            "eval_every": size.eval_every, "eval_batches": size.eval_batches,
            "checkpoint_every": size.steps(tokens), "log_every": size.eval_every, "seed": seed,
            "compile": compile_choice(ctx, size).mode, "keep_last": 1}


def compile_choice(ctx: Context, size: Sizing) -> CompileChoice:
    """How these experiments' runs compile (:mod:`growlm.experiments.compiling`): their single
    runs and two-stage plans take CUDA graphs on the GPU once the longest run (the scratch run's
    base + grow tokens) is long enough to pay for compiling; a plan compiles again at its growth stage."""
    return choose(size.compile, ctx.device, experiment=ctx.name, tokens=size.base_tokens + size.grow_tokens)


def val_points(rows: Sequence[dict[str, Any]], flops_per_token: float, flops_offset: float = 0.0,
               tokens_offset: int = 0) -> list[dict[str, float]]:
    """The validation evaluations of one run's metrics as ``{tokens, flops, loss}`` (cumulative)."""
    return [{"tokens": tokens_offset + r["tokens"], "flops": flops_offset + flops_per_token * r["tokens"],
             "loss": r["val_loss"]} for r in rows if r.get("val_loss") is not None]


def plan_curve(plan: dict[str, Any]) -> list[dict[str, float]]:
    """Validation loss of every stage of a plan (a ``ctx.plan`` result) against the ledger's cumulative
    FLOPs: a point ``t`` tokens into stage ``k`` sits at ``F_{<k} + t * f_k``, where ``F_{<k}`` is the
    ledger's ``cumulative_train_flops`` of the stages before and ``f_k`` its ``train_flops_per_token``."""
    points: list[dict[str, float]] = []
    flops_before, tokens_before = 0.0, 0
    for stage in plan["stages"]:
        for p in val_points(stage["metrics"], stage["train_flops_per_token"], flops_before, tokens_before):
            points.append({**p, "stage": stage["stage"]})
        flops_before, tokens_before = stage["cumulative_train_flops"], stage["cumulative_tokens"]
    return points


def flops_to_reach(flops: Sequence[float], losses: Sequence[float], target: float) -> float | None:
    """The compute at which a loss curve first reaches ``target``; None if it never does.

    Between the last evaluation above the target, ``(F_a, L_a)``, and the first at or below it,
    ``(F_b, L_b)``, the curve is taken as a straight line:
    ``F* = F_a + (L_a - target) / (L_a - L_b) * (F_b - F_a)``. A curve whose first point is already
    at or below the target reaches it there.
    """
    if len(flops) != len(losses):
        raise ValueError("flops and losses must have the same length")
    for i, (f, loss) in enumerate(zip(flops, losses, strict=True)):
        if loss <= target:
            if i == 0:
                return float(f)
            f_a, l_a = flops[i - 1], losses[i - 1]
            return float(f_a + (l_a - target) / (l_a - loss) * (f - f_a))
    return None


def percent(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def benchmark_columns() -> list[tuple[str, str]]:
    """The paper's Table 1 columns (accuracy, %) in its order."""
    return [("piqa", "PIQA"), ("openbookqa", "OBQA"), ("hellaswag", "HellaSwag"), ("arc_easy", "ARC-E"),
            ("arc_challenge", "ARC-C"), ("paper5", "Avg.")]


def paper_table1(sizes: Sequence[str] = ("170M", "240M")) -> str:
    """The paper's Table 1 rows at its smallest scales (accuracy %, as printed in the paper)."""
    rows = {
        ("NexusFormer", "170M"): (64.42, 32.40, 35.53, 49.33, 26.88, 41.71),
        ("TokenFormer", "170M"): (65.20, 32.60, 38.40, 46.80, 27.20, 42.04),
        ("Qwen3", "170M"): (53.32, 25.00, 26.42, 34.89, 22.44, 32.41),
        ("Transformer++", "170M"): (50.82, 26.00, 25.50, 27.57, 26.88, 31.35),
        ("NexusFormer", "240M"): (66.27, 33.00, 39.89, 50.80, 28.67, 43.73),
        ("TokenFormer", "240M"): (65.99, 32.60, 39.94, 52.35, 28.67, 43.91),
        ("Qwen3", "240M"): (51.41, 25.00, 26.26, 32.83, 23.81, 31.86),
        ("Transformer++", "240M"): (51.90, 28.00, 26.27, 27.57, 26.19, 31.99),
    }
    lines = ["| Model | Size | PIQA | OBQA | HellaSwag | ARC-E | ARC-C | Avg. |", "|---|---|---|---|---|---|---|---|"]
    for (model, size), values in rows.items():
        if size in sizes:
            lines.append(f"| {model} | {size} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    return "\n".join(lines)


def save_figure(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def pyplot() -> Any:
    """What the experiments' figures call as ``plt.subplots``: :mod:`growlm.plotting`, whose
    ``subplots`` makes a figure of its own -- pyplot's calls without pyplot's process-wide
    state (no backend chosen, nothing to close)."""
    import growlm.plotting

    return growlm.plotting
