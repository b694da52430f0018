"""``growlm demo``: the whole growlm story on a laptop CPU in a few minutes.

1. draw a slice of the shared corpus's training split across its sources in proportion
   (as its validation split was drawn) and tokenize it with the paper's 32k vocabulary;
2. train ``nexus-tiny`` from scratch;
3. grow its Nexus-Rank projections (M 160 -> 256, A 192 -> 320) with the lossless,
   trainable *preserve* scheme, and show the grown model's logits and validation loss
   equal the original's;
4. continue training the grown model on data the base never saw, with its AdamW
   moments carried over;
5. train the ungrown model for the same extra steps on the same data (the control);
6. write ``report.md``, ``results.json`` and ``curves.png`` (both loss curves, growth
   point marked).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from growlm.data.dataset import TokenSplit
from growlm.data.prepare import prepare
from growlm.data.shared import locate_shared
from growlm.data.slices import draw_documents, split_account
from growlm.evaluation.perplexity import evaluate_loss
from growlm.growth import grow_checkpoint, parse_init
from growlm.models import storage
from growlm.plotting import plot_loss_curves
from growlm.training.config import build_train_config
from growlm.training.trainer import read_metrics, start_run

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoPlan:
    train_docs: int  # documents in the training slice, drawn over the sources in proportion
    seq_len: int
    batch: int
    base_steps: int
    extra_steps: int
    eval_batches: int
    grow_to: dict[str, int]


FULL = DemoPlan(train_docs=480, seq_len=128, batch=8, base_steps=450, extra_steps=200,
                eval_batches=24, grow_to={"nexus_m": 256, "nexus_a": 320})
QUICK = DemoPlan(train_docs=24, seq_len=64, batch=4, base_steps=40, extra_steps=20,
                 eval_batches=4, grow_to={"nexus_m": 192, "nexus_a": 256})
RUNS = ("slice", "data", "base", "grown", "grown-continued", "control")
SLICE_SEED = 0


def unigram_entropy(split: TokenSplit) -> float:
    """Entropy (nats/token) of the split's unigram distribution: the loss of the best context-free model."""
    counts = np.zeros(1, dtype=np.int64)
    for array in split.arrays:
        c = np.bincount(np.asarray(array), minlength=len(counts))
        counts = np.pad(counts, (0, max(0, len(c) - len(counts)))) + np.pad(c, (0, max(0, len(counts) - len(c))))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _train(out: Path, plan: DemoPlan, data: Path, steps: int, **values: Any) -> dict[str, Any]:
    config = {"data": str(data), "seq_len": plan.seq_len, "micro_batch_size": plan.batch, "max_steps": steps,
              "lr": 3e-3, "warmup_steps": max(2, steps // 10), "schedule": "cosine", "min_lr_ratio": 0.1,
              "log_every": max(1, steps // 40), "eval_every": max(1, steps // 5), "eval_batches": plan.eval_batches,
              "checkpoint_every": steps, "out_dir": str(out), **values}
    summary = start_run(build_train_config(config))
    assert summary is not None  # one process
    return summary.to_json()


def _val_loss(folder: Path, split: TokenSplit, plan: DemoPlan) -> float:
    model = storage.load_model(folder, "cpu").float()
    return evaluate_loss(model, split, plan.seq_len, plan.batch, plan.eval_batches)["loss"]


def run_demo(out: Path, shared: Path | None = None, quick: bool = False) -> dict[str, Any]:
    plan = QUICK if quick else FULL
    shared = locate_shared(shared)
    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    for name in RUNS:
        shutil.rmtree(out / name, ignore_errors=True)
    started = time.time()

    train_files = sorted((shared / "corpus" / "train").glob("*.jsonl.gz"))
    val_files = sorted((shared / "corpus" / "val").glob("*.jsonl.gz"))
    logger.info(f"[1/6] drawing {plan.train_docs} training documents across {len(train_files)} sources in proportion, "
                "tokenizing them with the 32k SentencePiece vocabulary")
    train_slice = draw_documents(train_files, plan.train_docs, out / "slice", seed=SLICE_SEED)
    validation = split_account(val_files)
    data = out / "data"
    prepare([out / "slice"], str(shared / "tokenizers" / "mistral-v1-32k" / "tokenizer.model"), data,
            val_inputs=val_files, show_progress=False)
    train_split, val_split = TokenSplit(data, "train"), TokenSplit(data, "val")
    entropy = unigram_entropy(train_split)
    drawn = ", ".join(f"{source} {row['documents']}" for source, row in train_slice.items())
    logger.info(f"      {train_split.num_tokens:,} training tokens ({drawn} documents), "
                f"{val_split.num_tokens:,} validation tokens; unigram entropy {entropy:.3f} nats/token")

    logger.info(f"[2/6] training nexus-tiny for {plan.base_steps} steps")
    base = _train(out / "base", plan, data, plan.base_steps, model="nexus-tiny")
    base_ckpt = storage.list_checkpoints(out / "base")[-1]

    changes = ", ".join(f"{k} -> {v}" for k, v in plan.grow_to.items())
    logger.info(f"[3/6] growing the Nexus-Rank projections ({changes}) with --init preserve")
    growth = grow_checkpoint(base_ckpt, out / "grown", plan.grow_to, parse_init("preserve"))
    check = growth.verification
    assert check is not None  # grow_checkpoint verifies unless told not to
    base_val, grown_val = _val_loss(base_ckpt, val_split, plan), _val_loss(out / "grown", val_split, plan)
    logger.info(f"      max |Δlogit| {check.logits.max_abs_diff:.2e} (relative {check.logits.max_rel_diff:.2e}); "
        f"val loss {base_val:.5f} before, {grown_val:.5f} after; every new block trains within two steps: "
        f"{check.gradients.every_block_got_gradient}")

    logger.info(f"[4/6] continuing the grown model for {plan.extra_steps} steps on unseen data")
    # Continued training re-warms to a third of the base's peak: the base ended its cosine at 3e-4, and
    # jumping back to 3e-3 costs both arms more than the extra steps can repay at this scale.
    grown = _train(out / "grown-continued", plan, data, plan.extra_steps, init_from=str(out / "grown"), lr=1e-3)
    logger.info(f"[5/6] control: the ungrown model for the same {plan.extra_steps} steps on the same data")
    control = _train(out / "control", plan, data, plan.extra_steps, init_from=str(base_ckpt), lr=1e-3)

    logger.info("[6/6] writing the report")
    results = {
        "plan": plan.__dict__,
        "data": {"train_tokens": train_split.num_tokens, "val_tokens": val_split.num_tokens,
                 "unigram_entropy_nats": entropy, "slice_seed": SLICE_SEED, "train_slice": train_slice,
                 "validation": validation},
        "base": {**base, "val_loss_before_growth": base_val},
        "growth": {"changes": growth.to_json()["changes"], "parameters": growth.parameters.to_json(),
                   "max_abs_logit_diff": check.logits.max_abs_diff,
                   "max_rel_logit_diff": check.logits.max_rel_diff,
                   "val_loss_after_growth": grown_val,
                   "every_new_block_got_gradient": check.gradients.every_block_got_gradient},
        "grown_continued": grown,
        "control": control,
        "seconds": round(time.time() - started, 1),
    }
    tokens_per_step = plan.seq_len * plan.batch
    curves = _curves(out, plan.base_steps * tokens_per_step)
    plot_loss_curves(curves, out / "curves.png", title="nexus-tiny: grown vs. ungrown after the growth point",
                     markers=[(plan.base_steps * tokens_per_step, "growth (M, A)")], x_label="training tokens")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text(_report(results, plan))
    logger.info(f"done in {results['seconds']:.0f} s: {out / 'report.md'}, {out / 'curves.png'}")
    return results


def _curves(out: Path, growth_tokens: int) -> list[dict[str, Any]]:
    curves = []
    styles = {"base": ("base (before growth)", "black"), "grown-continued": ("grown, continued", "tab:red"),
              "control": ("ungrown control", "tab:blue")}
    for run, (label, color) in styles.items():
        rows = read_metrics(out / run)
        offset = 0 if run == "base" else growth_tokens
        train = [r for r in rows if "loss" in r]
        val = [r for r in rows if "val_loss" in r]
        curves.append({"label": f"{label}: train", "x": [r["tokens"] + offset for r in train],
                       "y": [r["loss"] for r in train], "color": color})
        curves.append({"label": f"{label}: val", "x": [r["tokens"] + offset for r in val],
                       "y": [r["val_loss"] for r in val], "style": "o--", "color": color})
    return curves


def _relative(loss: float, entropy: float) -> str:
    gap = entropy - loss
    return f"{gap:.2f} nats/token below it" if gap >= 0 else f"{-gap:.2f} nats/token above it"


def _data_section(data: dict[str, Any], plan: DemoPlan) -> list[str]:
    """What the training slice and the validation set contain, source by source."""
    slice_, val = data["train_slice"], data["validation"]
    slice_chars = sum(v["characters"] for v in slice_.values())
    val_chars = sum(v["characters"] for v in val.values())
    corpus_docs = sum(v["documents_in_source"] for v in slice_.values())
    lines = [
        "## Data",
        "",
        f"Training slice: {plan.train_docs} of the {corpus_docs:,} documents of the shared corpus's training "
        f"split, drawn at random (seed {data['slice_seed']}) over each source's whole file, each source "
        "contributing in proportion to its number of documents, as the corpus's validation split was drawn "
        f"(2% of each source's documents). {data['train_tokens']:,} tokens.",
        f"Validation set: the whole validation split ({sum(v['documents'] for v in val.values())} documents, "
        f"{data['val_tokens']:,} tokens); each evaluation scores {plan.eval_batches * plan.batch} windows of "
        f"{plan.seq_len} tokens spread evenly over it, the same windows every time.",
        "",
        "| source | corpus train documents | slice documents | slice share of characters | "
        "validation documents | validation share of characters |",
        "|---|---|---|---|---|---|",
    ]
    for source, row in slice_.items():
        v = val.get(source, {"documents": 0, "characters": 0})
        lines.append(f"| {source} | {row['documents_in_source']:,} | {row['documents']} | "
                     f"{100 * row['characters'] / slice_chars:.1f}% | {v['documents']} | "
                     f"{100 * v['characters'] / val_chars:.1f}% |")
    return [*lines, ""]


def _report(r: dict[str, Any], plan: DemoPlan) -> str:
    g = r["growth"]
    base_cost = r["growth"]["parameters"]
    grown_final, control_final = r["grown_continued"]["final_val_loss"], r["control"]["final_val_loss"]
    entropy = r["data"]["unigram_entropy_nats"]
    diff = control_final - grown_final
    verdict = (f"the grown model ends {diff:.4f} nats/token below the control" if diff > 0 else
               f"the grown model ends {-diff:.4f} nats/token above the control")
    lines = [
        "# growlm demo: train, grow, continue",
        "",
        f"nexus-tiny, {plan.seq_len}-token windows, batches of {plan.batch}, "
        f"{r['data']['train_tokens']:,} training tokens (a slice of the shared corpus, below), "
        f"32k SentencePiece vocabulary. Total time {r['seconds']:.0f} s.",
        "",
        *_data_section(r["data"], plan),
        "| stage | steps | parameters | val loss (nats/token) | val perplexity |",
        "|---|---|---|---|---|",
        f"| base, trained from scratch | {plan.base_steps} | {base_cost['old']:,} | "
        f"{r['base']['val_loss_before_growth']:.4f} | {math.exp(r['base']['val_loss_before_growth']):.2f} |",
        f"| grown (step 0 after growth) | 0 | {base_cost['new']:,} | {g['val_loss_after_growth']:.4f} | "
        f"{math.exp(g['val_loss_after_growth']):.2f} |",
        f"| grown, continued | +{plan.extra_steps} | {base_cost['new']:,} | {grown_final:.4f} | "
        f"{math.exp(grown_final):.2f} |",
        f"| ungrown control, continued | +{plan.extra_steps} | {base_cost['old']:,} | {control_final:.4f} | "
        f"{math.exp(control_final):.2f} |",
        "",
        "## Growth",
        "",
        "Changes: " + ", ".join(f"{k} {v['old']} → {v['new']}" for k, v in g["changes"].items()) +
        f" in Q, K and V of every layer (+{base_cost['added']:,} parameters).",
        f"- Same function: max |Δlogit| = {g['max_abs_logit_diff']:.2e} "
        f"(relative {g['max_rel_logit_diff']:.2e}) on a fixed batch in fp32; validation loss "
        f"{r['base']['val_loss_before_growth']:.6f} before and {g['val_loss_after_growth']:.6f} after.",
        f"- New parameters train: every new block received a non-zero gradient within two AdamW steps: "
        f"{g['every_new_block_got_gradient']} (details in grown/growth.json).",
        "",
        "## After the growth point",
        "",
        f"Both models then trained for {plan.extra_steps} more steps on the same windows, which the base "
        f"model had not seen; {verdict}.",
        f"The unigram entropy of the training tokens is {entropy:.3f} nats/token, the loss of the best model "
        f"that ignores context; the final validation losses are {_relative(grown_final, entropy)} (grown) and "
        f"{_relative(control_final, entropy)} (control).",
        "",
        "![loss curves](curves.png)",
        "",
    ]
    return "\n".join(lines)
