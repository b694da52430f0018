"""Growing a model or a checkpoint: request checking, operators, optimizer state, report.

A request is a set of config fields with larger values (``--set nexus_m=1088``).
Each field belongs to one operator of the model's architecture; the operators run
in registry order, each on the output of the previous one. The grown model's
optimizer moments (``moments="carry"``, the default) are the old ones in the old positions
and zero elsewhere, with the old step count, so AdamW's bias correction carries on where
it was; copying schemes copy them with their units (``clone.py``, ``stack.py``).
``moments="fresh"`` drops them: every moment starts at zero with step count 0, so AdamW's
bias correction ``1 - beta^t`` starts over as for a model built from scratch (the first
update is ``lr * g / |g|`` per entry, a sign step of full size).
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from growlm.errors import ConfigError, GrowthError, unknown_key_message
from growlm.folders import atomic_dir, load_moments
from growlm.growth.attention_heads import grow_attention_heads
from growlm.growth.base import (
    DEPTH_ONLY_SCHEMES,
    WIDTH_ONLY_SCHEMES,
    BlockFiller,
    GrowthStep,
    InitScheme,
    NewBlock,
    Placement,
    leading,
    put,
)
from growlm.growth.clone import (
    MOMENTS,
    clone_ffn,
    clone_heads,
    clone_hidden,
    clone_nexus_rank,
    clone_tokenformer_slots,
)
from growlm.growth.depth import grow_depth
from growlm.growth.ffn_width import grow_ffn_width
from growlm.growth.head_dim import check_head_dim, grow_head_dim
from growlm.growth.hidden_size import grow_hidden_size
from growlm.growth.nexus_rank import grow_nexus_rank
from growlm.growth.report import FlopsChange, GrowthReport, ParameterCounts, ValueChange, Verification
from growlm.growth.schemes import scheme_names
from growlm.growth.stack import grow_stack
from growlm.growth.tokenformer_slots import grow_tokenformer_slots
from growlm.growth.verify import compare_logits, compare_loss, gradient_reach, random_batch
from growlm.models import GrowLMConfig, GrowLMForCausalLM, model_from_state
from growlm.models.accounting import model_cost
from growlm.overrides import coerce

logger = logging.getLogger(__name__)

# (state, old config, new config, filler[, options]) -> step. The configs are Any: each operator takes its
# architecture's config class (NexusConfig, TokenFormerConfig, ...), and OPERATORS pairs them.
GrowFn = Callable[[dict[str, torch.Tensor], Any, Any, BlockFiller, dict], GrowthStep]
CloneFn = Callable[[dict[str, torch.Tensor], Any, Any, BlockFiller], GrowthStep]
MOMENT_MODES = ("carry", "fresh")


@dataclass(frozen=True)
class Operator:
    name: str
    fields: tuple[str, ...]
    apply: GrowFn
    options: tuple[str, ...] = ()
    clone: CloneFn | None = None  # --init clone (width operators): clone.py
    stack: GrowFn | None = None  # --init stack (depth): stack.py

    def function(self, init: InitScheme) -> GrowFn:
        if init.kind == "clone" and self.clone is not None:
            clone = self.clone
            return lambda state, old, new, filler, options: clone(state, old, new, filler)
        if init.kind == "stack" and self.stack is not None:
            return self.stack
        return self.apply


NEXUS_RANK = Operator("nexus_rank", ("nexus_m", "nexus_a"), grow_nexus_rank, clone=clone_nexus_rank)
TOKENFORMER_SLOTS = Operator("tokenformer_slots", ("qkv_slots", "proj_slots", "ffn_slots"), grow_tokenformer_slots,
                             clone=clone_tokenformer_slots)
FFN_WIDTH = Operator("ffn_width", ("intermediate_size",), grow_ffn_width, clone=clone_ffn)
HEADS = Operator("attention_heads", ("num_attention_heads", "num_key_value_heads"), grow_attention_heads,
                 clone=clone_heads)
HEAD_DIM = Operator("head_dim", ("head_dim",), grow_head_dim)  # not Qwen3: QK-norm makes it a saddle (head_dim.py)
HIDDEN = Operator("hidden_size", ("hidden_size",), grow_hidden_size, clone=clone_hidden)
DEPTH = Operator("depth", ("num_hidden_layers",), grow_depth, ("layers_at",), stack=grow_stack)

# architecture -> operators, in the order they are applied (depth last: new blocks get the final shapes)
OPERATORS: dict[str, list[Operator]] = {
    "nexus": [NEXUS_RANK, FFN_WIDTH, HEADS, HEAD_DIM, HIDDEN, DEPTH],
    "qwen3": [FFN_WIDTH, HEADS, HIDDEN, DEPTH],
    "llama": [FFN_WIDTH, HEADS, HEAD_DIM, HIDDEN, DEPTH],
    "tokenformer": [TOKENFORMER_SLOTS, HEADS, HEAD_DIM, HIDDEN, DEPTH],
}


def growable_fields(architecture: str) -> list[str]:
    return [f for op in OPERATORS.get(architecture, []) for f in op.fields]


def growth_options(architecture: str) -> list[str]:
    return [o for op in OPERATORS.get(architecture, []) for o in op.options]


@dataclass
class GrowthResult:
    model: GrowLMForCausalLM
    old_config: GrowLMConfig
    new_config: GrowLMConfig
    changes: dict[str, tuple[Any, Any]]
    operators: list[str]
    placements: dict[str, Placement]  # every parameter of the grown model -> where its old values are
    blocks: list[NewBlock]
    init: InitScheme
    options: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # copying schemes (clone): re-runs the operators on one optimizer moment ("exp_avg" or
    # "exp_avg_sq") given by old parameter name; None where placements carry the moments
    regrow: Callable[[dict[str, torch.Tensor], str], dict[str, torch.Tensor]] | None = None


def check_request(config: GrowLMConfig, request: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Validate a growth request against ``config``; returns ``{field: (old, new)}`` for changed fields."""
    if not request:
        raise GrowthError("nothing to grow: pass --set FIELD=VALUE with a larger value")
    types = config.field_types()
    growable = growable_fields(config.architecture)
    changes = {}
    for name, value in request.items():
        if name not in types:  # the fields that can grow are the valid choices, not every config field
            raise GrowthError(unknown_key_message(f"{config.architecture} growth field", name, growable))
        if name not in growable:
            raise GrowthError(
                f"field '{name}' cannot be grown for architecture '{config.architecture}'; "
                f"growable fields: {', '.join(growable) or 'none yet'}"
            )
        try:
            value = coerce(name, value, types[name])
        except ConfigError as exc:
            raise GrowthError(str(exc)) from exc
        old = getattr(config, name)
        if value < old:
            raise GrowthError(f"{name}={value} would shrink {name} from {old}; growth only adds capacity")
        if value != old:
            changes[name] = (old, value)
    if not changes:
        raise GrowthError("nothing to grow: every requested value equals the current one")
    if "num_attention_heads" in changes or "num_key_value_heads" in changes:
        heads = changes.get("num_attention_heads", (0, config.num_attention_heads))[1]
        kv = changes.get("num_key_value_heads", (0, config.num_key_value_heads))[1]
        if heads % kv:
            raise GrowthError(f"num_key_value_heads={kv} does not divide num_attention_heads={heads}")
    if "head_dim" in changes:
        check_head_dim(config, changes["head_dim"][1])
    return changes


def check_init(init: InitScheme, changes: dict[str, Any]) -> None:
    """``fresh`` and ``stack`` make whole new blocks; ``clone`` copies units of width fields."""
    width = sorted(set(changes) - set(DEPTH.fields))
    if init.kind in DEPTH_ONLY_SCHEMES and width:
        valid = [s for s in scheme_names() if s.split(":")[0] not in DEPTH_ONLY_SCHEMES]
        raise GrowthError(f"--init {init.kind} is defined for depth growth (num_hidden_layers) only; this request "
                          f"also grows {', '.join(width)}; schemes valid for width fields: {', '.join(valid)}")
    if init.kind in WIDTH_ONLY_SCHEMES and set(changes) & set(DEPTH.fields):
        valid = [s for s in scheme_names() if s.split(":")[0] not in WIDTH_ONLY_SCHEMES]
        raise GrowthError(f"--init {init} is defined for width fields only; num_hidden_layers takes "
                          f"{', '.join(valid)} (grow depth in a second step, e.g. with --init stack)")


def check_moments(moments: str) -> str:
    if moments not in MOMENT_MODES:
        raise GrowthError(f"unknown moments {moments!r}; valid: {', '.join(MOMENT_MODES)}")
    return moments


def _compose(
    cumulative: dict[str, Placement], before: dict[str, torch.Tensor], step: GrowthStep, blocks: list[NewBlock]
) -> tuple[dict[str, Placement], list[NewBlock]]:
    """Chain one operator's placements onto the placements so far, and move earlier blocks along."""
    local: dict[str, Placement] = {}
    for name in step.state:
        if name in step.placements:
            local[name] = step.placements[name]
        elif name in before:
            local[name] = Placement(name, leading(before[name].shape))
        else:
            local[name] = Placement(None)
    successor = {p.source: name for name, p in local.items() if p.source is not None}
    chained = {}
    for name, p in local.items():
        prev = cumulative.get(p.source) if p.source is not None else None
        if prev is None or prev.source is None:
            chained[name] = Placement(None)
        else:
            index = tuple(p.index[d][prev.index[d]] for d in range(len(p.index)))
            chained[name] = Placement(prev.source, index, prev.scale * p.scale, p.note or prev.note)
    moved = []
    for block in blocks:
        if block.param in successor:
            p = local[successor[block.param]]
            index = tuple(p.index[d][block.index[d]] for d in range(len(block.index)))
            moved.append(NewBlock(successor[block.param], block.label, index, block.init))
    return chained, moved


def grow_model(
    model: GrowLMForCausalLM, request: dict[str, Any], init: InitScheme, seed: int = 0,
    options: dict[str, Any] | None = None,
) -> GrowthResult:
    """A new, larger model computing the same function as ``model`` (for lossless schemes)."""
    old_config = model.config
    options = dict(options or {})
    valid_options = growth_options(old_config.architecture)
    for key in options:
        if key not in valid_options:
            raise GrowthError(unknown_key_message("growth option", key, valid_options))
    changes = check_request(old_config, request)
    check_init(init, changes)
    target = copy.deepcopy(old_config)
    for name, (_, value) in changes.items():
        setattr(target, name, value)
    try:
        target.validate()
    except ConfigError as exc:
        raise GrowthError(f"the grown model would be invalid: {exc}") from exc

    state = {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()}
    shapes = {k: v.shape for k, v in state.items()}
    cumulative = {name: Placement(name, leading(t.shape)) for name, t in state.items()}
    filler = BlockFiller(init, torch.Generator().manual_seed(seed))
    blocks: list[NewBlock] = []
    current = copy.deepcopy(old_config)
    applied = []
    for op in OPERATORS[old_config.architecture]:
        step_fields = {f: changes[f][1] for f in op.fields if f in changes}
        if not step_fields:
            continue
        nxt = copy.deepcopy(current)
        for name, value in step_fields.items():
            setattr(nxt, name, value)
        filler.blocks = []
        step = op.function(init)(state, current, nxt, filler, options)
        cumulative, blocks = _compose(cumulative, state, step, blocks)
        blocks += filler.blocks
        state, current = step.state, nxt
        applied.append(op.name)

    def regrow(tensors: dict[str, torch.Tensor], moment: str) -> dict[str, torch.Tensor]:
        """The same operators, on one optimizer moment instead of the weights (no noise)."""
        assert moment in MOMENTS
        work = {k: tensors[k].detach().float().cpu() if k in tensors else torch.zeros(shape)
                for k, shape in shapes.items()}
        mover = BlockFiller(init, torch.Generator().manual_seed(seed))
        mover.moment = moment
        now = copy.deepcopy(old_config)
        for op in OPERATORS[old_config.architecture]:
            step_fields = {f: changes[f][1] for f in op.fields if f in changes}
            if step_fields:
                nxt = copy.deepcopy(now)
                for name, value in step_fields.items():
                    setattr(nxt, name, value)
                work, now = op.function(init)(work, now, nxt, mover, options).state, nxt
        return work

    grown = model_from_state(current, state, "the grown state")
    placements = {name: cumulative.get(name, Placement(None)) for name, _ in grown.named_parameters()}
    warnings = []
    if init.kind == "zero" and "nexus_rank" in applied:
        warnings.append("init zero sets every new block to zero: with GELU(0) = 0 no new Nexus-Rank block ever "
                        "receives gradient, so training cannot move the grown model away from the original "
                        "(../shared/papers/NOTES.md §1). Use init preserve for growth that is lossless and trains.")
    elif init.kind == "zero":
        warnings.append("init zero sets every new block to zero; blocks that only non-zero paths reach still "
                        "train, the others never do (see the verification). init preserve trains them all.")
    if "hidden_size" in applied and old_config.frozen_embedding:
        warnings.append(f"frozen {old_config.embedding} substrate: its new columns stay zero and embedding_scale "
                        f"becomes {current.embedding_scale:g}; the first block's new attention input weights read "
                        "only those zeros, never train, and are left out of the gradient check")
    # Named "init X", not "--init X": plans choose the scheme too (a layerwise plan's stages default
    # to fresh), and a plan's user never typed the flag. fresh is not lossless by design (a new
    # block as from scratch, the layerwise recipe), so it is not warned about.
    if init.kind == "stack":
        warnings.append("init stack copies trained blocks: they are not identities, so the grown model does not "
                        "compute the same function; the verification reports the loss jump.")
    elif not init.lossless and init.kind != "fresh":
        warnings.append(f"init {init} perturbs the new blocks: the grown model does not compute the same "
                        "function; the verification reports the deviation.")
    return GrowthResult(grown, old_config, current, changes, applied, placements, blocks, init, options, warnings,
                        regrow if init.kind == "clone" else None)


def carry_moments(old_by_name: dict[str, dict[str, Any]], result: GrowthResult) -> dict[str, dict[str, Any]]:
    """AdamW state for the grown parameters: old moments where the old values went, zeros elsewhere.

    A value moved with factor ``s`` has gradient ``g / s``, so its first moment is divided
    by ``s`` and its second by ``s^2``; the step count is kept, so bias correction goes on.
    Cloned units get their source's moments times the gradient factors of ``clone.py``;
    stacked blocks (their placements name the copied block) the source block's.
    """
    params = dict(result.model.named_parameters())
    if result.regrow is not None:
        entries = [e for e in old_by_name.values() if torch.is_tensor(e.get("exp_avg"))]
        if not entries:
            return {}
        grown = {m: result.regrow({n: e[m] for n, e in old_by_name.items() if m in e}, m) for m in MOMENTS}
        step = entries[0].get("step")
        return {name: {"step": step.clone() if torch.is_tensor(step) else step,
                       **{m: grown[m][name].to(entries[0][m].dtype) for m in MOMENTS}}
                for name in params if name in grown["exp_avg"] and name in old_by_name}  # clone keeps names
    carried = {}
    for name, placement in result.placements.items():
        entry = old_by_name.get(placement.source) if placement.source else None
        if entry is None:
            continue
        new_entry = {}
        for key, value in entry.items():
            if not torch.is_tensor(value) or value.dim() == 0:
                new_entry[key] = value
                continue
            power = 2 if key == "exp_avg_sq" else 1
            moment = torch.zeros(params[name].shape, dtype=value.dtype)
            put(moment, placement.index, value.cpu() / placement.scale**power)
            new_entry[key] = moment
        carried[name] = new_entry
    return carried


def verify_growth(original: GrowLMForCausalLM, result: GrowthResult, seed: int = 0) -> Verification:
    config = result.new_config
    ids = random_batch(config.vocab_size, seed, seq_len=min(32, config.max_position_embeddings))
    logits = compare_logits(original, result.model, ids)
    loss = compare_loss(original, result.model, ids)
    reach = gradient_reach(result.model, result.blocks, ids)
    lossless = logits.max_rel_diff <= 1e-5
    every = reach.every_block_got_gradient
    if result.init.kind == "preserve" or (result.init.kind == "clone" and result.init.lossless):
        expected, passed = "same function; every new block gets gradient", lossless and every
    elif result.init.kind == "zero":
        expected, passed = "same function (new blocks start at zero)", lossless
    elif result.init.kind == "stack":
        expected, passed = "function changes (stacked blocks are copies, not identities; loss jump reported); " \
                           "every new block gets gradient", every
    else:
        expected, passed = "function changes by design; every new block gets gradient", every
    return Verification(logits, reach, expected, bool(passed), list(ids.shape), seed, loss)


def growth_report(result: GrowthResult, verification: Verification | None, source: str | None = None,
                  out: str | None = None, seed: int | None = None, optimizer_state: str | None = None,
                  moments: str | None = None) -> GrowthReport:
    """``growth.json`` of ``result``; the keyword fields say what ``grow_checkpoint`` did around the growth."""
    old_cost, new_cost = model_cost(result.old_config), model_cost(result.new_config)
    return GrowthReport(
        architecture=result.old_config.architecture,
        init=str(result.init),
        operators=result.operators,
        changes={k: ValueChange(o, n) for k, (o, n) in result.changes.items()},
        parameters=ParameterCounts(old_cost.total_params, new_cost.total_params,
                                   new_cost.total_params - old_cost.total_params),
        train_flops_per_token=FlopsChange(old_cost.train_flops_per_token, new_cost.train_flops_per_token,
                                          new_cost.seq_len),
        options=result.options,
        new_blocks=[b.record() for b in result.blocks],
        placements={name: p.record() for name, p in result.placements.items()
                    if p.source != name or p.scale != 1.0
                    or [len(i) for i in p.index] != list(result.model.get_parameter(name).shape)},
        verification=verification,
        warnings=result.warnings,
        source=source, out=out, seed=seed, optimizer_state=optimizer_state, moments=moments,
    )


def grow_checkpoint(
    source: str | Path,
    out: str | Path,
    request: dict[str, Any],
    init: InitScheme,
    seed: int = 0,
    verify: bool = True,
    options: dict[str, Any] | None = None,
    moments: str = "carry",
) -> GrowthReport:
    """Grow the model in ``source`` into ``out``; returns what it writes to growth.json.

    ``moments``: ``carry`` the optimizer moments over (module docstring) or start them
    ``fresh`` (an empty optimizer state: zero moments, step count 0)."""
    from growlm.data.tokenizer import load_tokenizer
    from growlm.models import storage

    check_moments(moments)
    src = storage.resolve_model_dir(source)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise GrowthError(f"output folder {out} exists and is not empty")
    model = storage.load_model(src, "cpu")
    result = grow_model(model, request, init, seed, options)
    for warning in result.warnings:
        logger.warning(f"warning: {warning}")
    tokenizer = load_tokenizer(src) if (src / "tokenizer_config.json").exists() else None
    # a crashed earlier attempt's files never end up in the grown folder: atomic_dir clears them first
    with atomic_dir(out) as out_tmp:
        storage.save_model(result.model, out_tmp, tokenizer)
        optimizer_note = "none (the source holds no optimizer state)"
        if (src / storage.OPTIMIZER).exists() and (src / storage.TRAINER_STATE).exists():
            state = storage.load_trainer_state(src)
            saved = load_moments(src / storage.OPTIMIZER, state["param_names"])
            names = storage.parameter_order(result.model)
            if moments == "fresh":
                carried = {}
                optimizer_note = "fresh (moments: fresh): every moment zero, step count 0"
            else:
                carried = carry_moments(saved.by_name, result)
                how = {"clone": "copied with their units (gradient factors of growth/clone.py)",
                       "stack": "old moments kept, stacked blocks copy their source block's"}
                optimizer_note = (f"carried over for {len(carried)} tensors "
                                  f"({how.get(result.init.kind, 'old moments kept, new entries zero')})")
            torch.save({"state": {i: carried[n] for i, n in enumerate(names) if n in carried},
                        "param_groups": saved.param_groups}, out_tmp / storage.OPTIMIZER)
            state.update(param_names=names, grown_from=str(src))
            (out_tmp / storage.TRAINER_STATE).write_text(json.dumps(state, indent=1))

        verification = verify_growth(model, result, seed) if verify else None
        report = growth_report(result, verification, source=str(src), out=str(out), seed=seed,
                               optimizer_state=optimizer_note, moments=moments)
        report.write(out_tmp)
        storage.write_manifest(out_tmp)
    return report

