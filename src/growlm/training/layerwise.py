"""Layer-wise constructive growth (the frozen-substrate paper's recipe) as a plan option.

A plan with a ``layerwise:`` mapping instead of ``stages:`` is expanded here into
ordinary plan stages (``training/plan.py`` runs them: resumable, with a FLOPs ledger):

```yaml
out_dir: runs/frozen-substrate
defaults: {data: ..., seq_len: 128, lr: 2.0e-3}
layerwise:
  model: nexus-tiny                 # preset of the start (num_hidden_layers is set to layers_per_stage)
  model_overrides: {embedding: glyph}
  depth: 6                          # blocks at the end (a multiple of layers_per_stage)
  layers_per_stage: 1               # blocks appended per stage (the paper's later version: 3)
  tokens_per_block: 1_000_000       # token budget per block: a stage trains k x this (or max_steps_per_block)
  holistic_from: 4                  # from this depth on: LoRA on all blocks below the new one
  lora: {target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj], r: 8, alpha: 16}
  init: fresh                       # how each new block starts (fresh: as from scratch)
  grow_seed: 0
  freeze_embeddings: true           # learned embeddings are frozen in every stage
  first: {lr: 3.0e-3}               # extra training keys for stage 1 / for the grown stages
  grown: {}
```

Stage 1 (``block-01``) trains a 1-block model, embeddings frozen. Stage k appends
block k-1 from a fresh init (``--init fresh``: the block a model built from scratch
would have, residual writers included) and trains only that block, the final norm and
the LM head; every block below is frozen, so its weights are bit-identical before and
after the stage. From depth ``holistic_from`` on, the blocks below also carry LoRA
adapters (peft, ``lora.layers`` = the blocks below) trained together with the new
block ("holistic"); the stage's checkpoints hold the merged weights, so the next stage
grows the merged model and the old blocks change exactly by ``B A * alpha / r``.

With ``layers_per_stage: k`` (default 1) every stage adds k blocks instead of one, as the
paper's later version does (k = 3): stage 1 trains a k-block model, stage s appends
blocks (s-1)k ... sk-1 (fresh, together) and trains exactly those, the norm and the head,
everything below frozen. ``depth`` must be a multiple of k. The budget stays per block
(a stage trains ``k * tokens_per_block`` tokens), so a depth-D model has seen
``D * tokens_per_block`` tokens whatever k is. ``holistic_from`` names the depth of a
stage's first new block, so it must be where a stage starts (1 + a multiple of k). Stages
are named ``blocks-01-03``, ``blocks-04-06-holistic``, ...; k = 1 expands to exactly the
stages above.

This recipe is *constructive, not lossless*: a fresh block changes the function the
moment it is appended (the loss jumps, then recovers as it trains). ``init: preserve``
(an identity block) is accepted for comparison.

The FLOPs ledger counts what really trains (``accounting.training_flops_per_token``):
blocks below the lowest trainable parameter cost a forward pass only; in holistic
stages every block back-propagates input gradients, but only adapters, the new block,
the norm and the head get weight gradients.
"""

from __future__ import annotations

from typing import Any

from growlm.errors import ConfigError, unknown_key_message
from growlm.models.presets import build_config
from growlm.overrides import check_fields

LAYERWISE_KEYS: dict[str, type] = {
    "model": str, "model_overrides": dict, "depth": int, "layers_per_stage": int, "tokens_per_block": int, "max_steps_per_block": int,
    "holistic_from": int, "lora": dict, "init": str, "grow_seed": int, "freeze_embeddings": bool,
    "train_final_norm": bool, "first": dict, "grown": dict,
}
EMBEDDING = "model.embed_tokens.weight"


def block_globs(block: int, final_norm: bool, count: int = 1) -> list[str]:
    """What a stage that appended blocks ``block`` ... ``block + count - 1`` trains in full: those
    blocks, the LM head, the final norm."""
    return [*(f"model.layers.{b}.*" for b in range(block, block + count)), "lm_head.weight",
            *(["model.norm.weight"] if final_norm else [])]


def stage_name(first: int, last: int) -> str:
    """``block-04`` for a stage that appends one block (depth 4), ``blocks-04-06`` for several."""
    return f"block-{last:02d}" if first == last else f"blocks-{first:02d}-{last:02d}"


def expand_layerwise(spec: Any) -> list[dict[str, Any]]:
    """The plan stages of a ``layerwise`` mapping (keys above; unknown keys are errors)."""
    if not isinstance(spec, dict):
        raise ConfigError(f"layerwise must be a mapping with keys {', '.join(LAYERWISE_KEYS)}, got {spec!r}")
    for key in spec:
        if key not in LAYERWISE_KEYS:
            raise ConfigError(unknown_key_message("layerwise key", key, LAYERWISE_KEYS))
    values = check_fields(spec, LAYERWISE_KEYS, "layerwise key", optional=("holistic_from",))
    if not values.get("model"):
        raise ConfigError("layerwise.model must name the preset of the 1-block start, e.g. nexus-tiny")
    depth = values.get("depth")
    if depth is None or depth < 1:
        raise ConfigError(f"layerwise.depth must be a positive number of blocks, got {depth!r}")
    per_stage = values.get("layers_per_stage", 1)
    if per_stage < 1:
        raise ConfigError(f"layerwise.layers_per_stage must be a positive number of blocks, got {per_stage}")
    if depth % per_stage:
        raise ConfigError(f"layerwise.depth ({depth}) must be a multiple of layerwise.layers_per_stage "
                          f"({per_stage}): every stage appends layers_per_stage blocks")
    budget = {k: values[k] for k in ("tokens_per_block", "max_steps_per_block") if k in values}
    if len(budget) != 1:
        raise ConfigError("layerwise needs exactly one of tokens_per_block and max_steps_per_block")
    budget_key = {"tokens_per_block": "tokens", "max_steps_per_block": "max_steps"}[next(iter(budget))]
    budget_value = next(iter(budget.values()))
    overrides = dict(values.get("model_overrides") or {})
    if overrides.get("num_hidden_layers", 1) != 1:
        raise ConfigError("layerwise starts from layers_per_stage blocks: leave num_hidden_layers out of "
                          "layerwise.model_overrides (layerwise.depth sets the final depth)")
    overrides["num_hidden_layers"] = per_stage
    config = build_config(values["model"], overrides)
    freeze = values.get("freeze_embeddings", True)
    learned = getattr(config, "embedding", "learned") == "learned"
    if freeze and config.tie_word_embeddings:
        raise ConfigError("layerwise freezes the input embeddings and trains the LM head, which are one matrix "
                          f"in {values['model']}; set layerwise.model_overrides.tie_word_embeddings: false")
    frozen = [EMBEDDING] if freeze and learned else []
    holistic_from = values.get("holistic_from")
    lora = values.get("lora")
    if holistic_from is not None:
        if holistic_from < 2:
            raise ConfigError(f"layerwise.holistic_from must be at least 2 (a depth with blocks below the new one), "
                              f"got {holistic_from}")
        if per_stage > 1 and (holistic_from <= per_stage or (holistic_from - 1) % per_stage):
            starts = ", ".join(str(1 + per_stage * s) for s in range(1, 4))
            raise ConfigError(f"layerwise.holistic_from must be the depth where a stage starts with "
                              f"layers_per_stage={per_stage} (1 + a multiple of it: {starts}, ...), got {holistic_from}")
        if not lora:
            raise ConfigError("layerwise.holistic_from needs layerwise.lora: {target_modules: [...], r: ..., alpha: ...}")
        if "layers" in lora:
            raise ConfigError("layerwise sets lora.layers itself (the blocks below the new one); leave it out")
    elif lora:
        raise ConfigError("layerwise.lora is used from layerwise.holistic_from on; set holistic_from too")
    final_norm = values.get("train_final_norm", True)
    first = dict(values.get("first") or {})
    grown = dict(values.get("grown") or {})
    for label, extra in (("first", first), ("grown", grown)):
        for key in ("model", "init_from", "trainable", "frozen", "lora", "tokens", "max_steps", "grow"):
            if key in extra:
                raise ConfigError(f"layerwise.{label} cannot set {key}: the recipe decides it")
    stages = [{"name": stage_name(1, per_stage), "model": values["model"], "model_overrides": overrides,
               budget_key: budget_value * per_stage, **({"frozen": frozen} if frozen else {}), **first}]
    for top in range(2 * per_stage, depth + 1, per_stage):  # the depth each later stage reaches
        below = top - per_stage  # blocks 0 .. below-1 exist; blocks below .. top-1 are new
        stage: dict[str, Any] = {
            "name": stage_name(below + 1, top), "grow": {"num_hidden_layers": top}, "init": values.get("init", "fresh"),
            "grow_options": {"layers_at": "end"}, "grow_seed": values.get("grow_seed", 0) + top,
            budget_key: budget_value * per_stage, "trainable": block_globs(below, final_norm, per_stage), **grown,
        }
        if holistic_from is not None and below + 1 >= holistic_from:
            stage["name"] += "-holistic"
            assert lora is not None  # holistic_from needs it (checked above)
            stage["lora"] = {**lora, "layers": list(range(below))}
        stages.append(stage)
    return stages
