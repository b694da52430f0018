"""Is Nexus-Rank attention less stable than plain attention, and does QK-norm fix it? (issue 19)

Trains the same decoder three ways from the same initial embedding/FFN draw and the same
data order -- Llama (linear Q/K/V), Nexusformer (the paper's Nexus-Rank Q/K/V) and
Nexusformer with ``qk_norm: true`` -- at one or more learning rates with a
warmup-stable-decay schedule, and records per step the loss and gradient norm, and every
``--probe-every`` steps, on a fixed batch:

* the standard deviation of the Q, K, V projection outputs (before QK-norm and rotary);
* per layer, the largest |attention logit| ``q.k / sqrt(head_dim)`` (causal positions
  only) and the mean attention entropy in nats (``ln T`` would be uniform attention);
* gradient norms per parameter group (embedding, Q/K/V maps -- each of W_M, W_A, W_D for
  Nexus-Rank -- the output projection, the FFN, the norm gains).

Writes ``stability.json`` (every number) and ``stability.png`` (loss, max logit, entropy,
gradient norm against tokens) into ``--out``. Data: the shared corpus (``--shared``,
default ``$GROWLM_SHARED`` or ``../shared``) tokenized here with its Mistral 32k
tokenizer, just enough documents for the run, training windows drawn at random (same
order for every arm), validation on fixed windows of the validation split.

    # CPU, reduced scale (docs/models.md, "Stability"; about 10 minutes on 2 busy cores)
    PYTHONPATH=src python benchmarks/nexus_stability.py --device cpu --threads 1 --vocab 2048 --layers 4 \
        --hidden 192 --heads 3 --ffn 512 --m 512 --a 640 --seq-len 128 --batch 4 --steps 200 --warmup 20 \
        --probe-every 10 --eval-every 50 --eval-windows 16 --lrs 2e-3 --out benchmarks/results/nexus-stability-cpu
    # GPU, the issue's shape: 8 x 384 tied, M/A 1024/1280, lr 2e-3 WSD, ~4.9M tokens per arm (defaults)
    PYTHONPATH=src python benchmarks/nexus_stability.py --device cuda --out benchmarks/results/nexus-stability-gpu
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from growlm.models import model_class_for
from growlm.models.base import SelfAttention
from growlm.models.layers import apply_rotary, rotary_tables
from growlm.models.presets import build_config

ARMS = {
    "llama": ("llama", {}),
    "nexus": ("nexus", {}),
    "nexus+qk_norm": ("nexus", {"qk_norm": True}),
    # diagnostic only: W_D rescaled at init so that each map's output std equals a linear
    # projection's (initializer_range * sqrt(D)); tests whether the small initial Q/K/V are the cause
    "nexus+init_scale": ("nexus", {}),
    "qwen3": ("qwen3", {}),  # linear Q/K/V with QK-norm: isolates what QK-norm alone does
}


def read_tokens(shared: Path, split: str, tokens: int, tokenizer: Any) -> np.ndarray:
    """At least ``tokens`` tokens of ``split``: documents taken round-robin from its files (in
    file order), each followed by the end-of-document token."""
    files = sorted((shared / "corpus" / split).glob("*.jsonl.gz"))
    if not files:
        raise SystemExit(f"no *.jsonl.gz under {shared / 'corpus' / split}")
    readers = [gzip.open(f, "rt", encoding="utf-8") for f in files]  # noqa: SIM115 -- read in turns, closed below
    eod = tokenizer.eos_token_id
    out: list[int] = []
    batch: list[str] = []
    while len(out) < tokens and readers:
        for r in list(readers):
            line = r.readline()
            if not line:
                readers.remove(r)
                continue
            text = json.loads(line).get("text") or ""
            if text:
                batch.append(text)
        if len(batch) >= 64 or not readers:
            for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
                out.extend(ids)
                out.append(eod)
            batch = []
    for r in readers:
        r.close()
    if len(out) < tokens:
        raise SystemExit(f"the {split} split holds only {len(out)} tokens, {tokens} needed")
    return np.asarray(out, dtype=np.int64)


def lr_factor(step: int, steps: int, warmup: int, decay_fraction: float, floor: float) -> float:
    """growlm's warmup-stable-decay (training/optim.py): linear warm-up, flat, linear decay."""
    if step < warmup:
        return (step + 1) / warmup
    decay = max(1, round(decay_fraction * steps))
    start = steps - decay
    if step < start:
        return 1.0
    return floor + (1 - floor) * max(0.0, 1 - (step - start + 1) / decay)


def param_group(name: str) -> str:
    """Coarse group of a parameter for gradient norms: embed, q/k/v (.m/.a/.d for Nexus-Rank), o, mlp, norm."""
    if "embed_tokens" in name or name.startswith("lm_head"):
        return "embed"
    if name.endswith("norm.weight"):
        return "norm"
    if ".mlp." in name:
        return "mlp"
    for p in "qkvo":
        if f"self_attn.{p}_proj" in name:
            for sub in "mad":
                if f"{p}_proj.{sub}_proj" in name:
                    return f"{p}.{sub}"
            return p
    return "other"


def grad_norms(model: torch.nn.Module) -> dict[str, float]:
    sums: dict[str, float] = {}
    for name, p in model.named_parameters():
        if p.grad is not None:
            g = param_group(name)
            sums[g] = sums.get(g, 0.0) + float(p.grad.float().pow(2).sum())
    return {g: math.sqrt(v) for g, v in sorted(sums.items())}


@torch.no_grad()
def probe(model: torch.nn.Module, ids: torch.Tensor) -> dict[str, Any]:
    """Q/K/V output std and, per layer, max |logit| and mean attention entropy on ``ids``."""
    config = model.config
    records: list[dict[str, float]] = []

    def hook(module: SelfAttention, args: tuple) -> None:
        x = args[0]
        b, t, _ = x.shape
        q, k, v = module.project_qkv(x)
        rec = {"q_std": float(q.float().std()), "k_std": float(k.float().std()), "v_std": float(v.float().std())}
        q = q.view(b, t, module.num_heads, module.head_dim)
        k = k.view(b, t, module.num_kv_heads, module.head_dim)
        if module.q_norm is not None:
            q, k = module.q_norm(q), module.k_norm(k)
        q, k = q.transpose(1, 2).float(), k.transpose(1, 2).float()
        pos = torch.arange(t, device=x.device)[None]
        cos, sin = rotary_tables(pos, module.head_dim, config.rope_theta, torch.float32)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        k = k.repeat_interleave(module.num_heads // module.num_kv_heads, dim=1)
        logits = (q @ k.transpose(-1, -2)) * module.scale
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        rec["max_logit"] = float(logits.masked_fill(~causal, 0).abs().max())
        p = torch.softmax(logits.masked_fill(~causal, float("-inf")), dim=-1)
        entropy = -(p * torch.log(p.clamp_min(1e-30))).sum(-1)  # [b, h, t]
        rec["entropy"] = float(entropy[..., t // 2:].mean())  # late positions: ln(t/2..t) if uniform
        records.append(rec)

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, SelfAttention)]
    was_training = model.training
    model.eval()
    try:
        model(ids)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {"layers": records,
            "q_std": float(np.mean([r["q_std"] for r in records])),
            "k_std": float(np.mean([r["k_std"] for r in records])),
            "v_std": float(np.mean([r["v_std"] for r in records])),
            "max_logit": max(r["max_logit"] for r in records),
            "min_entropy": min(r["entropy"] for r in records)}


@torch.no_grad()
def evaluate(model: torch.nn.Module, windows: torch.Tensor, batch: int, autocast: bool) -> float:
    model.eval()
    total = 0.0
    for i in range(0, len(windows), batch):
        x = windows[i:i + batch]
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            total += float(model(x, labels=x).loss) * len(x)
    model.train()
    return total / len(windows)


def build_model(arm: str, args: argparse.Namespace) -> torch.nn.Module:
    architecture, extra = ARMS[arm]
    fields: dict[str, Any] = dict(num_hidden_layers=args.layers, hidden_size=args.hidden, intermediate_size=args.ffn,
                                  num_attention_heads=args.heads, num_key_value_heads=args.heads,
                                  head_dim=args.head_dim, max_position_embeddings=max(1024, args.seq_len),
                                  tie_word_embeddings=True, **extra)
    if architecture == "nexus":
        fields.update(nexus_m=args.m, nexus_a=args.a)
    if architecture == "qwen3":
        fields.update(rope_theta=10000.0)  # same rotary as the others
    if args.vocab:
        fields.update(vocab_size=args.vocab)
    config = build_config(f"{architecture}-tiny", fields)
    torch.manual_seed(args.seed)
    model = model_class_for(config)(config)
    if arm == "nexus+init_scale":
        rescale_nexus_outputs(model)
    return model


@torch.no_grad()
def rescale_nexus_outputs(model: torch.nn.Module) -> None:
    """Multiply every Nexus-Rank W_D so the map's output std on unit-RMS Gaussian input equals a
    linear projection's at the same init, ``initializer_range * sqrt(D)``."""
    from growlm.models.nexus import NexusRank

    d = model.config.hidden_size
    target = model.config.initializer_range * math.sqrt(d)
    x = torch.randn(4096, d, generator=torch.Generator().manual_seed(0))
    for module in model.modules():
        if isinstance(module, NexusRank):
            module.d_proj.weight.mul_(target / float(module(x).std()))


def train_arm(arm: str, lr: float, args: argparse.Namespace, train: np.ndarray, val: torch.Tensor,
              probe_ids: torch.Tensor, device: torch.device) -> dict[str, Any]:
    model = build_model(arm, args).to(device).train()
    autocast = device.type == "cuda"
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.dim() < 2 else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=device.type == "cuda")
    rng = np.random.default_rng(args.seed)  # same windows, same order, for every arm
    tokens_per_step = args.batch * args.seq_len
    history: dict[str, list] = {"step": [], "tokens": [], "loss": [], "grad_norm": [], "lr": []}
    probes: list[dict[str, Any]] = []
    evals: list[dict[str, float]] = []
    tic = time.perf_counter()
    for step in range(args.steps + 1):
        if step % args.probe_every == 0 or step == args.steps:
            rec = probe(model, probe_ids)
            rec.update(step=step, tokens=step * tokens_per_step)
            probes.append(rec)
        if step % args.eval_every == 0 or step == args.steps:
            evals.append({"step": step, "tokens": step * tokens_per_step,
                          "val_loss": evaluate(model, val, args.batch, autocast)})
            print(f"  {arm} lr={lr:g} step {step}: val {evals[-1]['val_loss']:.3f} "
                  f"max|logit| {probes[-1]['max_logit']:.1f} min entropy {probes[-1]['min_entropy']:.2f} "
                  f"({time.perf_counter() - tic:.0f}s)", flush=True)
        if step == args.steps:
            break
        factor = lr_factor(step, args.steps, args.warmup, args.decay_fraction, args.min_lr_ratio)
        for g in opt.param_groups:
            g["lr"] = lr * factor
        starts = rng.integers(0, len(train) - args.seq_len - 1, size=args.batch)
        x = torch.from_numpy(np.stack([train[s:s + args.seq_len] for s in starts])).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = model(x, labels=x).loss
        loss.backward()
        if step % args.probe_every == 0:
            probes[-1]["grad_norms"] = grad_norms(model)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        for key, value in (("step", step), ("tokens", (step + 1) * tokens_per_step), ("loss", float(loss.detach())),
                           ("grad_norm", float(norm)), ("lr", lr * factor)):
            history[key].append(value)
    return {"arm": arm, "lr": lr, "params": sum(p.numel() for p in model.parameters()),
            "seconds": time.perf_counter() - tic, "history": history, "probes": probes, "evals": evals,
            "final_val_loss": evals[-1]["val_loss"]}


def remap_vocab(train: np.ndarray, val: np.ndarray, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the ``vocab - 1`` most frequent training tokens (ids 0..vocab-2 by frequency) and map every
    other token to ``vocab - 1``: a CPU-sized LM head; attention, the subject here, is untouched."""
    counts = np.bincount(train, minlength=int(max(train.max(), val.max())) + 1)
    keep = np.argsort(-counts, kind="stable")[: vocab - 1]
    table = np.full(len(counts), vocab - 1, dtype=np.int64)
    table[keep] = np.arange(vocab - 1)
    return table[train], table[val]


def plot(runs: list[dict[str, Any]], path: Path, title: str) -> None:
    try:
        import matplotlib
    except ImportError:
        print(f"matplotlib is not installed: no {path}; draw it elsewhere with --replot {path.with_suffix('.json')}")
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    colors = {"llama": "tab:blue", "nexus": "tab:red", "nexus+qk_norm": "tab:green", "qwen3": "tab:purple"}
    styles = ["-", "--", ":", "-."]
    lrs = sorted({r["lr"] for r in runs})
    for r in runs:
        label, c, ls = f"{r['arm']} lr={r['lr']:g}", colors.get(r["arm"]), styles[lrs.index(r["lr"]) % 4]
        h = r["history"]
        smooth = np.convolve(h["loss"], np.ones(10) / 10, mode="valid") if len(h["loss"]) >= 10 else h["loss"]
        axes[0, 0].plot(np.asarray(h["tokens"][len(h["tokens"]) - len(smooth):]) / 1e6, smooth, ls, color=c,
                        label=label)
        axes[0, 0].plot([e["tokens"] / 1e6 for e in r["evals"]], [e["val_loss"] for e in r["evals"]], "o",
                        color=c, ms=3)
        pt = [p["tokens"] / 1e6 for p in r["probes"]]
        axes[0, 1].plot(pt, [p["max_logit"] for p in r["probes"]], ls, color=c, label=label)
        axes[1, 0].plot(pt, [p["min_entropy"] for p in r["probes"]], ls, color=c, label=label)
        axes[1, 1].plot(np.asarray(h["tokens"]) / 1e6, h["grad_norm"], ls, color=c, label=label, lw=0.7)
    axes[0, 0].set(title="training loss (10-step mean; dots: validation)", xlabel="M tokens", ylabel="nats")
    axes[0, 1].set(title="max |attention logit| over layers", xlabel="M tokens", yscale="log")
    axes[1, 0].set(title="min over layers of mean attention entropy (nats)", xlabel="M tokens")
    axes[1, 1].set(title="gradient norm before clipping", xlabel="M tokens", yscale="log")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--arms", default="llama,nexus,nexus+qk_norm", help=f"comma-separated, of {', '.join(ARMS)} (none: only tokenize, with --save-tokens)")
    ap.add_argument("--lrs", default="2e-3", help="comma-separated peak learning rates")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--ffn", type=int, default=1024)
    ap.add_argument("--m", type=int, default=1024)
    ap.add_argument("--a", type=int, default=1280)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--decay-fraction", type=float, default=0.2)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--probe-every", type=int, default=20)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--eval-windows", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--shared", default=None, help="shared material folder (default $GROWLM_SHARED or ../shared)")
    ap.add_argument("--tokens", default=None,
                    help="read train/val tokens from this .npz (written by --save-tokens) instead of the corpus")
    ap.add_argument("--save-tokens", default=None, help="write the tokens used to this .npz (for a machine "
                    "without the shared corpus) and go on")
    ap.add_argument("--vocab", type=int, default=0,
                    help="shrink the vocabulary to the N most frequent tokens (CPU runs; 0: the tokenizer's 32000)")
    ap.add_argument("--replot", default=None, help="only redraw FILE.png from FILE.json (a run's stability.json)")
    ap.add_argument("--out", default="benchmarks/results/nexus-stability")
    args = ap.parse_args()
    if args.replot:
        saved = json.loads(Path(args.replot).read_text())
        plot(saved["runs"], Path(args.replot).with_suffix(".png"), saved["title"])
        return
    for arm in args.arms.split(",") if args.arms != "none" else []:
        if arm not in ARMS:
            raise SystemExit(f"unknown arm {arm!r}; valid: {', '.join(ARMS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    need = min(args.steps * args.batch * args.seq_len, 20_000_000) + args.seq_len + 1
    need_val = (args.eval_windows + 4) * args.seq_len
    tic = time.perf_counter()
    if args.tokens:
        saved = np.load(args.tokens)
        train, val_tokens = saved["train"].astype(np.int64), saved["val"].astype(np.int64)
        if len(train) < need or len(val_tokens) < need_val:
            raise SystemExit(f"{args.tokens} holds {len(train)} train / {len(val_tokens)} val tokens; this run needs "
                             f"{need} / {need_val}")
    else:
        from growlm.data.shared import locate_shared
        from growlm.data.tokenizer import load_tokenizer

        shared = locate_shared(args.shared)
        tokenizer = load_tokenizer(shared / "tokenizers" / "mistral-v1-32k" / "tokenizer.model")
        train = read_tokens(shared, "train", need, tokenizer)
        val_tokens = read_tokens(shared, "val", need_val, tokenizer)
    if args.save_tokens:
        Path(args.save_tokens).parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.save_tokens, train=train.astype(np.uint16), val=val_tokens.astype(np.uint16))
        if args.arms == "none":
            return
    print(f"tokenized {len(train):,} train / {len(val_tokens):,} val tokens in {time.perf_counter() - tic:.0f}s")
    if args.vocab:
        train, val_tokens = remap_vocab(train, val_tokens, args.vocab)
    val = torch.from_numpy(val_tokens[: args.eval_windows * args.seq_len].reshape(args.eval_windows, args.seq_len))
    val = val.to(device)
    probe_ids = torch.from_numpy(val_tokens[-args.seq_len * 4:].reshape(4, args.seq_len)).to(device)
    random.seed(args.seed)
    runs = []
    for lr in (float(v) for v in args.lrs.split(",")):
        for arm in args.arms.split(","):
            runs.append(train_arm(arm, lr, args, train, val, probe_ids, device))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    summary = [{"arm": r["arm"], "lr": r["lr"], "params": r["params"], "final_val_loss": r["final_val_loss"],
                "max_logit": max(p["max_logit"] for p in r["probes"]),
                "min_entropy": min(p["min_entropy"] for p in r["probes"]),
                "init": {k: r["probes"][0][k] for k in ("q_std", "k_std", "v_std", "max_logit", "min_entropy")},
                "seconds": round(r["seconds"], 1)} for r in runs]
    title = (f"{args.layers}x{args.hidden} tied, M/A {args.m}/{args.a}, WSD, "
             f"{args.steps * args.batch * args.seq_len / 1e6:.2f}M tokens/arm, {device_name}")
    (out / "stability.json").write_text(json.dumps({"args": vars(args), "device": device_name, "title": title,
                                                    "tokens_per_arm": args.steps * args.batch * args.seq_len,
                                                    "summary": summary, "runs": runs}, indent=1))
    plot(runs, out / "stability.png", title)
    for s in summary:
        print(json.dumps(s))


if __name__ == "__main__":
    main()
