r"""Hidden-size growth: the residual stream D -> D' for every architecture, exact through RMSNorm.

Everything reads the residual stream ``h`` through an RMSNorm (pre-norm blocks, final
norm) and writes it through the residual branches' output projections and the
embedding. The new residual features start at zero. The catch is RMSNorm itself:
``rms([h; 0]) = sqrt(sum(h^2) / D')`` is smaller than ``rms(h)``. Growth therefore
rescales the stream by ``c = sqrt(D'/D)``:

* embedding: old columns times ``c``, new columns 0;
* every residual writer (attention output projection, FFN output): old output
  features times ``c``, new output features 0 -- so ``h' = [c h; 0]`` everywhere;
* every RMSNorm gain: old entries divided by ``c``, new entries set to the mean of the
  rescaled old ones (any non-zero value would do);
* every residual reader (Q/K/V projections, FFN input, an untied LM head): new input
  features random, old ones unchanged.

Same function, exactly (up to rounding): ``mean([c h; 0]^2) = c^2 sum(h^2)/D' = mean(h^2)``,
so ``rms' = rms`` including the epsilon, the normalised vector is ``[c n; 0]`` and the
gain ``g/c`` turns it back into ``[g n; 0]``: every reader sees what it saw before on
its old input features and zeros on the new ones, so every output is unchanged. The
LM head reads the final norm: untied, it sees ``g n``; tied to the embedding (whose
old columns are now ``c E``), the final gain is divided by ``c^2`` instead, so the
logits ``c E (g n / c)`` are unchanged.

It trains: the new features of every normalised input are zero, but their gains are
not, so ``dL/dh_new = (g_new / rms) * (sum of the readers' new input weights^T times their
output gradients) != 0`` (the readers' new input weights are random). Hence the
writers' new output features and the embedding's new columns get gradient at step 1;
after that ``h_new != 0`` and the readers' new input weights, the new gain entries and
an untied LM head's new columns get gradient at step 2.

A frozen substrate embedding (``embedding`` other than ``learned``, docs/substrate.md)
grows the same way, ``[c E; 0]``, under every init scheme (its new columns are part of
the substrate, not a new block to initialise or train), and the config records it:
``embedding_scale`` is multiplied by ``c`` and ``embedding_dim`` stays. The table is
therefore still ``embedding_scale * [codes | 0]`` -- the same deterministic function of
(tokenizer, options, embedding_dim) at the new width -- and the growth stays exact.
Rebuilding the codes at the new width instead would change the old columns (the
rows are re-normalised over more principal axes) and so the function.

One consequence: the first block's attention reads the embedding directly, whose new
features are zero for good, so the first block's new attention input weights and the
new entries of its input-norm gain multiply zero forever and can never train (they are
still filled as *preserve* says, and are harmless). They are left out of the
gradient check (:data:`SUBSTRATE_READERS`); every other new block trains as above.

*zero* also zeroes the readers' new input features: then ``dL/dh_new = 0`` and nothing
new ever trains. *noise:F* and *random* as in ``base.py`` (both change the function).
"""

from __future__ import annotations

import math

import torch

from growlm.growth.base import BlockFiller, GrowthStep, Placement, arange, grow_axis, place
from growlm.growth.interfaces import input_axes, output_axes
from growlm.models.base import GrowLMConfig

FIELDS = ("hidden_size",)

# With a frozen substrate, the parameters that read only the embedding's (forever zero) new features.
SUBSTRATE_READERS = ("model.layers.0.input_layernorm.", "model.layers.0.self_attn.q_proj.",
                     "model.layers.0.self_attn.k_proj.", "model.layers.0.self_attn.v_proj.")


def _grow_gain(out: dict[str, torch.Tensor], name: str, new_size: int, divide: float, filler: BlockFiller) -> Placement:
    old = out[name]
    grown = torch.empty(new_size, dtype=old.dtype, device=old.device)
    grown[: old.numel()] = old / divide
    filler.fill_gain(grown, name, "norm gain of new features", (arange(new_size - old.numel(), old.numel()),),
                     float((old / divide).mean()))
    out[name] = grown
    return Placement(name, (arange(old.numel()),), 1.0 / divide)


def grow_hidden_size(
    state: dict[str, torch.Tensor], old: GrowLMConfig, new: GrowLMConfig, filler: BlockFiller, options: dict
) -> GrowthStep:
    d1 = new.hidden_size
    c = math.sqrt(d1 / old.hidden_size)
    out = dict(state)
    placements: dict[str, Placement] = {}

    def reader(prefix: str) -> None:
        for name, axis in input_axes(out, prefix):
            placements[name] = grow_axis(out, name, axis, d1, filler, "input weights of new features", "random")

    def writer(prefix: str) -> None:
        for name, axis in output_axes(out, prefix):
            placements[name] = grow_axis(out, name, axis, d1, filler, "output weights of new features", "zero",
                                         scale=c)

    if old.frozen_embedding:
        table = out["model.embed_tokens.weight"]
        out["model.embed_tokens.weight"], index = place(table, (table.shape[0], d1), (), c)
        placements["model.embed_tokens.weight"] = Placement("model.embed_tokens.weight", index, c)
        new.embedding_scale = old.embedding_scale * c
    else:
        placements["model.embed_tokens.weight"] = grow_axis(
            out, "model.embed_tokens.weight", 1, d1, filler, "embedding of new features", "zero", scale=c)
    for i in range(old.num_hidden_layers):
        layer = f"model.layers.{i}"
        for norm in ("input_layernorm", "post_attention_layernorm"):
            placements[f"{layer}.{norm}.weight"] = _grow_gain(out, f"{layer}.{norm}.weight", d1, c, filler)
        for proj in ("q_proj", "k_proj", "v_proj"):
            reader(f"{layer}.self_attn.{proj}")
        writer(f"{layer}.self_attn.o_proj")
        reader(f"{layer}.mlp")
        writer(f"{layer}.mlp")
    tied = old.tie_word_embeddings
    placements["model.norm.weight"] = _grow_gain(out, "model.norm.weight", d1, c * c if tied else c, filler)
    if tied:
        out.pop("lm_head.weight", None)
    else:
        placements["lm_head.weight"] = grow_axis(out, "lm_head.weight", 1, d1, filler,
                                                 "LM head weights of new features", "random")
    if old.frozen_embedding:
        filler.blocks = [b for b in filler.blocks if not b.param.startswith(SUBSTRATE_READERS)]
    return GrowthStep(out, placements)
