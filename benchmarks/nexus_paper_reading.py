"""Which reading of the Nexusformer architecture gives both the paper's size labels and its FLOPs?

Issue 21, item 3. The paper labels its Nexusformer sizes 170/240/480/640M (Table 6) and
300/380/440M (Table 7), and its Table 8 gives PPL and PPL/FLOPs, from which the FLOPs
follow as PPL / (PPL/FLOPs): Nexusformer at 1.007, 0.936, 0.947, 0.968 x Qwen3 at
240/300/380/440M (text: "nearly identical" at 240M, 6.5% less at 300M, 3.6% less at 440M).
growlm's reading of the shapes (Nexus-Rank on Q, K, V; untied; 12 x 64 heads) counts
nexus-240m at 188M and its FLOPs at ~0.7x Qwen3's.

This script enumerates the readings the paper leaves open and prints, for each, the
parameter counts against the labels and the FLOPs ratios against Table 8:

* Nexus-Rank sites: ``qkv`` (the paper's Eqs. 6-8), ``qkvo`` (also W_O), ``all`` (also the
  three SwiGLU matrices, each a D->M->A->out map);
* M/A sharing: ``separate`` (one map per projection), ``shared`` (one W_M and W_A for the
  sites, a W_D per site), ``blockdiag`` (M and A split over the heads: W_A and W_D block
  diagonal), ``per_head`` (a full D->M->A->head_dim map per head);
* biases on the three Nexus matrices; tied or untied LM head; vocabulary 32000 (Table 6),
  32768, 50277 (TokenFormer/GPT-NeoX), 151936 (Qwen3's tokenizer);
* FFN: SwiGLU with the table's width (3 matrices) or a GELU MLP (2 matrices);
* attention width: 12 x 64 heads kept by the grown sizes (growlm's presets) or = D;
* the Qwen3 baseline: growlm's 64-wide GQA heads, full MHA of width D, or transformers'
  Qwen3 default 16 x 128 heads with 8 KV heads; tied or untied;
* the FLOPs convention: matmuls only (e.g. CalFlops not seeing a fused attention kernel),
  or matmuls plus attention scores/values over T = 2048 or 4096 tokens (growlm's count).

A reading "reproduces" the paper if every label is met within ``--label-tol`` (default
10%) and every Table 8 ratio within ``--ratio-tol`` (default 0.03).

    PYTHONPATH=src python benchmarks/nexus_paper_reading.py [--top 15] [--check]

``--check`` also builds growlm's presets on the meta device and asserts that the formula
below gives exactly ``growlm.models.accounting.model_cost`` for the growlm reading.
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass

# Table 6/7 shapes: layers, D, FFN, M, A
NEXUS = {"170M": (12, 768, 1706, 780, 800), "240M": (12, 768, 2048, 780, 960), "480M": (24, 800, 2304, 896, 968),
         "640M": (24, 1024, 2560, 1152, 1280), "300M": (12, 768, 2048, 1088, 1228),
         "380M": (12, 800, 2048, 1340, 1530), "440M": (12, 1024, 2048, 1540, 1730)}
QWEN3 = {"170M": (12, 848, 3392), "240M": (12, 1088, 4032), "480M": (24, 1344, 3760), "640M": (24, 1536, 4608),
         "300M": (12, 1240, 4880), "380M": (12, 1300, 6912), "440M": (12, 1360, 6912)}
LABELS = {name: float(name[:-1]) * 1e6 for name in NEXUS}
# Table 8: (PPL, PPL/FLOPs) for Nexusformer and Qwen3
TABLE8 = {"240M": ((10.8157, 2.54), (18.1741, 4.30)), "300M": ((9.4216, 1.67), (13.7495, 2.28)),
          "380M": ((8.3981, 1.17), (12.8842, 1.70)), "440M": ((9.1706, 1.09), (12.2500, 1.41))}
GROWN = ("300M", "380M", "440M")  # grown from 240M: keep its 12 x 64 heads in growlm's presets

SITES = ("qkv", "qkvo", "all")
SHARING = ("separate", "shared", "blockdiag", "per_head")
VOCABS = (32000, 32768, 50277, 151936)
FFNS = ("swiglu", "gelu_mlp")
ATTN = ("12x64", "D")
QWEN_HEADS = ("growlm_gqa64", "mha_D", "hf_16x128_kv8")
CONVENTIONS = (("matmul", 0), ("matmul+attn", 2048), ("matmul+attn", 4096))


def paper_flops_ratio(size: str) -> float:
    (p_n, r_n), (p_q, r_q) = TABLE8[size]
    return (p_n / r_n) / (p_q / r_q)


@dataclass(frozen=True)
class NexusReading:
    sites: str = "qkv"
    sharing: str = "separate"
    bias: bool = False
    tied: bool = False
    vocab: int = 32000
    ffn: str = "swiglu"
    attn: str = "12x64"

    def label(self) -> str:
        return (f"{self.sites}/{self.sharing}/{'bias' if self.bias else 'nobias'}/{'tied' if self.tied else 'untied'}"
                f"/V{self.vocab}/{self.ffn}/attn {self.attn}")


GROWLM = NexusReading()


@dataclass(frozen=True)
class Count:
    params: int  # every parameter (tied matrices once)
    matmul: int  # weights used in a matmul per token, LM head included
    attn_width: int  # heads x head_dim (for the attention FLOPs)
    layers: int

    def forward_flops(self, seq_len: int) -> int:
        return 2 * self.matmul + 4 * self.layers * self.attn_width * seq_len


def _nexus_map(d_in: int, m: int, a: int, out: int, heads: int, sharing: str, bias: bool) -> tuple[int, int]:
    """(parameters, matmul weights) of one D->M->A->out map under a sharing scheme (``shared`` is
    handled by the caller: W_M and W_A counted once)."""
    if sharing == "per_head":
        per = d_in * m + m * a + a * (out // heads)
        return heads * (per + (m + a + out // heads if bias else 0)), heads * per
    if sharing == "blockdiag":
        w = d_in * m + (m * a) // heads + a * (out // heads)
    else:
        w = d_in * m + m * a + a * out
    return w + (m + a + out if bias else 0), w


def nexus_count(size: str, r: NexusReading) -> Count:
    layers, d, ffn, m, a = NEXUS[size]
    heads, head_dim = (12, 64) if r.attn == "12x64" and size in GROWN else (None, None)
    if heads is None:  # width D, as growlm's from-scratch presets (480M: 10 x 80)
        head_dim = 80 if d % 64 else 64
        heads = d // head_dim
    width = heads * head_dim
    sites = {"q": (d, width), "k": (d, width), "v": (d, width)}
    if r.sites in ("qkvo", "all"):
        sites["o"] = (width, d)
    if r.sites == "all":
        sites.update(gate=(d, ffn), up=(d, ffn), down=(ffn, d))
    params = matmul = 0
    if r.sharing == "shared":  # one W_M, W_A per input width; a W_D per site
        by_input: dict[int, list[int]] = {}
        for d_in, out in sites.values():
            by_input.setdefault(d_in, []).append(out)
        for d_in, outs in by_input.items():
            w = d_in * m + m * a + a * sum(outs)
            matmul += w
            params += w + ((m + a + sum(outs)) if r.bias else 0)
    else:
        for d_in, out in sites.values():
            p, w = _nexus_map(d_in, m, a, out, heads, r.sharing, r.bias)
            params, matmul = params + p, matmul + w
    if "o" not in sites:
        params, matmul = params + width * d, matmul + width * d
    if r.sites != "all":
        f = (3 if r.ffn == "swiglu" else 2) * d * ffn
        params, matmul = params + f, matmul + f
    params, matmul = layers * params, layers * matmul
    params += layers * 2 * d + d  # norm gains
    embed = r.vocab * d
    params += embed if r.tied else 2 * embed
    matmul += embed  # the LM head
    return Count(params, matmul, width, layers)


def qwen3_count(size: str, heads_kind: str, tied: bool, vocab: int) -> Count:
    layers, d, ffn = QWEN3[size]
    if heads_kind == "growlm_gqa64":
        heads = (d // 64) // 4 * 4
        q, kv, head_dim = heads * 64, heads // 2 * 64, 64
    elif heads_kind == "mha_D":
        q = kv = d
        head_dim = 64
    else:
        q, kv, head_dim = 16 * 128, 8 * 128, 128
    per = d * q + 2 * d * kv + q * d + 3 * d * ffn
    params = layers * (per + 2 * d + 2 * head_dim) + d + (1 if tied else 2) * vocab * d
    return Count(params, layers * per + vocab * d, q, layers)


@dataclass(frozen=True)
class Fit:
    nexus: NexusReading
    qwen: str
    convention: tuple[str, int]
    ratio: dict[str, float]  # Nexus/Qwen3 forward FLOPs

    @property
    def worst_label(self) -> float:
        return label_error(self.nexus)

    @property
    def worst_ratio(self) -> float:
        return max(abs(self.ratio[s] - paper_flops_ratio(s)) for s in TABLE8)


def label_error(r: NexusReading) -> float:
    """The largest relative error of a reading's parameter count against the paper's labels."""
    return max(abs(nexus_count(s, r).params / LABELS[s] - 1) for s in NEXUS)


def readings() -> list[NexusReading]:
    out = []
    for sites, sharing, bias, tied, vocab, ffn, attn in itertools.product(SITES, SHARING, (False, True), (False, True),
                                                                          VOCABS, FFNS, ATTN):
        if not (sites == "all" and ffn != "swiglu"):  # with sites=all the FFN is made of Nexus maps
            out.append(NexusReading(sites, sharing, bias, tied, vocab, ffn, attn))
    return out


def evaluate(r: NexusReading, qwen: str, convention: tuple[str, int]) -> Fit:
    seq = convention[1]
    ratio = {s: nexus_count(s, r).forward_flops(seq) / qwen3_count(s, qwen, True, r.vocab).forward_flops(seq)
             for s in TABLE8}
    return Fit(r, qwen, convention, ratio)


def all_fits() -> list[Fit]:
    return [evaluate(r, q, c) for r in readings() for q in QWEN_HEADS for c in CONVENTIONS]


def _conv(convention: tuple[str, int]) -> str:
    return convention[0] + (f" T={convention[1]}" if convention[1] else "")


def _counts(r: NexusReading) -> str:
    return " ".join(f"{nexus_count(s, r).params / 1e6:.0f}" for s in NEXUS)


def label_table(rs: list[NexusReading]) -> str:
    rows = [f"| {r.label()} | {_counts(r)} | {label_error(r):.0%} |" for r in rs]
    return "\n".join(["| Nexus reading | params (M) at " + " / ".join(NEXUS) + " | worst label error |",
                      "|---|---|---|", *rows])


def table(fits: list[Fit]) -> str:
    rows = [f"| {f.nexus.label()} | {f.qwen} | {_conv(f.convention)} | {_counts(f.nexus)} | {f.worst_label:.0%} | "
            + " ".join(f"{f.ratio[s]:.3f}" for s in TABLE8) + f" | {f.worst_ratio:.3f} |" for f in fits]
    return "\n".join(["| Nexus reading | Qwen3 heads | FLOPs | params (M) at " + " / ".join(NEXUS)
                      + " | worst label error | Nexus/Qwen3 FLOPs at " + " / ".join(TABLE8) + " | worst ratio error |",
                      "|---|---|---|---|---|---|---|", *rows])


def growth_table() -> str:
    """FLOPs of each size relative to the 240M one, per architecture: the paper against the shapes."""
    sizes = [s for s in TABLE8 if s != "240M"]
    rows = ["| model | counting | " + " / ".join(f"{s}:240M" for s in sizes) + " |", "|---|---|---|"]
    for arch, index in (("Nexusformer", 0), ("Qwen3", 1)):
        paper = [(TABLE8[s][index][0] / TABLE8[s][index][1]) / (TABLE8["240M"][index][0] / TABLE8["240M"][index][1])
                 for s in sizes]
        rows.append(f"| {arch} | paper, Table 8 | " + " / ".join(f"{v:.3f}" for v in paper) + " |")
    for conv in CONVENTIONS:
        for attn in ATTN:
            r = NexusReading(attn=attn)
            base = nexus_count("240M", r).forward_flops(conv[1])
            vals = [nexus_count(s, r).forward_flops(conv[1]) / base for s in sizes]
            rows.append(f"| Nexusformer qkv, attn {attn} | {_conv(conv)} | " + " / ".join(f"{v:.3f}" for v in vals) + " |")
        for q in QWEN_HEADS:
            base = qwen3_count("240M", q, True, 32000).forward_flops(conv[1])
            vals = [qwen3_count(s, q, True, 32000).forward_flops(conv[1]) / base for s in sizes]
            rows.append(f"| Qwen3 {q} | {_conv(conv)} | " + " / ".join(f"{v:.3f}" for v in vals) + " |")
    return "\n".join(rows)


def check_against_growlm() -> None:
    """The formula's growlm reading equals ``model_cost`` of the presets, exactly."""
    from growlm.models.accounting import model_cost
    from growlm.models.presets import build_config

    for size in NEXUS:
        cost = model_cost(build_config(f"nexus-{size.lower()}"))
        count = nexus_count(size, GROWLM)
        assert (cost.total_params, cost.forward_flops_per_token) == (count.params, count.forward_flops(4096)), size
        q = model_cost(build_config(f"qwen3-{size.lower()}"))
        qc = qwen3_count(size, "growlm_gqa64", True, 32000)
        assert (q.total_params, q.forward_flops_per_token) == (qc.params, qc.forward_flops(4096)), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--label-tol", type=float, default=0.10)
    parser.add_argument("--ratio-tol", type=float, default=0.03)
    parser.add_argument("--check", action="store_true", help="assert the formula against growlm's model_cost")
    args = parser.parse_args()
    if args.check:
        check_against_growlm()
        print("formula == growlm model_cost for every nexus and qwen3 paper preset\n")

    print("Paper, Table 8: Nexusformer/Qwen3 FLOPs = " +
          ", ".join(f"{s} {paper_flops_ratio(s):.3f}" for s in TABLE8) + "\n")
    rs = readings()
    fits = all_fits()
    print(f"{len(rs)} Nexus readings x {len(QWEN_HEADS)} Qwen3 head layouts x {len(CONVENTIONS)} FLOPs conventions "
          f"= {len(fits)} combinations. growlm's reading:\n")
    print(table([evaluate(GROWLM, "growlm_gqa64", ("matmul+attn", 4096))]) + "\n")

    by_label = sorted(rs, key=label_error)
    print(f"1. The size labels alone: best {args.top} Nexus readings (any Qwen3, any FLOPs counting):\n")
    print(label_table(by_label[: args.top]) + "\n")
    deltas = [nexus_count("240M", r).params - nexus_count("170M", r).params for r in rs]
    print(f"   240M - 170M (the shapes differ only in FFN 1706 -> 2048 and A 800 -> 960): {min(deltas) / 1e6:.1f}M to "
          f"{max(deltas) / 1e6:.1f}M over all readings; the labels say 70M.\n")

    by_ratio = sorted(fits, key=lambda f: f.worst_ratio)
    print(f"2. The FLOPs ratios alone: best {args.top} combinations:\n")
    print(table(by_ratio[: args.top]) + "\n")

    print("3. Each architecture's FLOPs against its own 240M (independent of the other architecture):\n")
    print(growth_table() + "\n")

    matches = [f for f in fits if f.worst_label <= args.label_tol and f.worst_ratio <= args.ratio_tol]
    print(f"4. Both: combinations within {args.label_tol:.0%} of every label and {args.ratio_tol} of every FLOPs "
          f"ratio: {len(matches)}\n")
    both = sorted(fits, key=lambda f: max(f.worst_label / args.label_tol, f.worst_ratio / args.ratio_tol))
    print(f"   closest {args.top} (by the larger of label error / {args.label_tol:.0%} and ratio error / "
          f"{args.ratio_tol}):\n")
    print(table(both[: args.top]))


if __name__ == "__main__":
    main()
