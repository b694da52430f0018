"""Which pooling of weights makes the paper's NOC and Z (base model vs grown model) behave as its
Tables 3 and 4 do? Synthetic weights, no training: a Nexusformer-240M-shaped base (12 layers,
D 768, M 780, A 960, FFN 2048, vocab 32000; every dimension divided by ``--shrink`` to keep it
small, which keeps every ratio of entry counts), grown to the paper's (M, A) = (1088, 1228),
(1340, 1530), (1540, 1730) with new blocks at zero or Gaussian noise of 10% / 20% of each
tensor's standard deviation, then NOC and Z at the growth point (0B) under each pooling of
``growlm.analysis.regions.POOLINGS``. The paper: zero init NOC at 0B 0.8674 (300M), 0.7752
(380M), 0.7194 (440M); at 380M noise 10% 0.7947, 20% 0.8135.

    PYTHONPATH=src python benchmarks/noc_pooling.py [--shrink 4] [--std 0.02]
"""

from __future__ import annotations

import argparse

import numpy as np

from growlm.analysis.regions import POOLINGS, base_vs_grown

PAPER_ZERO = {"300M": 0.8674, "380M": 0.7752, "440M": 0.7194}
PAPER_NOISE_380 = {"noise:0.1": 0.7947, "noise:0.2": 0.8135}
SCALES = {"300M": (1088, 1228), "380M": (1340, 1530), "440M": (1540, 1730)}


def shapes(d: int, m: int, a: int, ffn: int, vocab: int, layers: int) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, d), "lm_head.weight": (vocab, d),
                                       "model.norm.weight": (d,)}
    for i in range(layers):
        p = f"model.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj"):
            out[p + f"self_attn.{proj}.m_proj.weight"] = (m, d)
            out[p + f"self_attn.{proj}.a_proj.weight"] = (a, m)
            out[p + f"self_attn.{proj}.d_proj.weight"] = (d, a)
        out[p + "self_attn.o_proj.weight"] = (d, d)
        for proj in ("gate_proj", "up_proj"):
            out[p + f"mlp.{proj}.weight"] = (ffn, d)
        out[p + "mlp.down_proj.weight"] = (d, ffn)
        out[p + "input_layernorm.weight"] = (d,)
        out[p + "post_attention_layernorm.weight"] = (d,)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shrink", type=int, default=4)
    parser.add_argument("--std", type=float, default=0.02)
    parser.add_argument("--max-values", type=int, default=20_000)
    parser.add_argument("--poolings", nargs="+", default=list(POOLINGS))
    args = parser.parse_args()
    k = args.shrink
    dims = {"d": 768 // k, "ffn": 2048 // k, "vocab": 32000 // k, "layers": 12}
    rng = np.random.default_rng(0)
    base_shapes = shapes(m=round(780 / k), a=round(960 / k), **dims)
    base = {n: (np.ones(s) if len(s) == 1 else rng.normal(0, args.std, s)) for n, s in base_shapes.items()}
    print(f"base: {sum(v.size for v in base.values()) * k * k / 1e6:.0f}M entries (x{k}^2)")
    print("| pooling | init | " + " | ".join(SCALES) + " | paper |")
    print("|---|---|---|---|---|---|")
    for pooling in args.poolings:
        for init in ("zero", "noise:0.1", "noise:0.2"):
            cells = []
            for m, a in SCALES.values():
                grown_shapes = shapes(m=round(m / k), a=round(a / k), **dims)
                state, placements = {}, {}
                for name, shape in grown_shapes.items():
                    old = base[name]
                    if shape == old.shape:
                        state[name] = old
                        continue
                    sigma = 0.0 if init == "zero" else float(init.split(":")[1]) * old.std()
                    w = rng.normal(0, sigma, shape) if sigma else np.zeros(shape)
                    w[: old.shape[0], : old.shape[1]] = old
                    state[name] = w
                    placements[name] = {"source": name, "positions": [[[0, n]] for n in old.shape], "scale": 1.0}
                result = base_vs_grown(base, state, {"placements": placements}, pooling, args.max_values, 2048)
                cells.append(f"{result['noc']:.4f} (Z {result['z']:.3f})")
            paper = (", ".join(f"{v}" for v in PAPER_ZERO.values()) if init == "zero"
                     else f"380M {PAPER_NOISE_380[init]}")
            print(f"| {pooling} | {init} | " + " | ".join(cells) + f" | {paper} |")


if __name__ == "__main__":
    main()
