"""Growing a model or a checkpoint: request checking, operators, optimizer state, report.

A request is a set of config fields with larger values (``--set nexus_m=1088``).
Each field belongs to one operator of the model's architecture; the operators run
in registry order, each on the output of the previous one. The grown model's
optimizer moments are the old ones in the old positions and zero elsewhere, with the
old step count, so AdamW's bias correction carries on where it was.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from growlm.errors import ConfigError, GrowthError, unknown_key_message
from growlm.growth.base import BlockFiller, InitScheme, NewBlock, ParamMove, top_left
from growlm.growth.nexus_rank import grow_nexus_rank
from growlm.growth.verify import compare_logits, gradient_reach, random_batch
from growlm.models import GrowLMConfig, GrowLMForCausalLM, model_from_state
from growlm.models.accounting import model_cost
from growlm.overrides import coerce

GrowFn = Callable[[dict[str, torch.Tensor], GrowLMConfig, GrowLMConfig, BlockFiller], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Operator:
    name: str
    fields: tuple[str, ...]
    apply: GrowFn


# architecture -> operators, in the order they are applied
OPERATORS: dict[str, list[Operator]] = {
    "nexus": [Operator("nexus_rank", ("nexus_m", "nexus_a"), grow_nexus_rank)],
    "qwen3": [],
}


def growable_fields(architecture: str) -> list[str]:
    return [f for op in OPERATORS.get(architecture, []) for f in op.fields]


@dataclass
class GrowthResult:
    model: GrowLMForCausalLM
    old_config: GrowLMConfig
    new_config: GrowLMConfig
    changes: dict[str, tuple[Any, Any]]
    operators: list[str]
    moves: list[ParamMove]
    blocks: list[NewBlock]
    init: InitScheme
    warnings: list[str] = field(default_factory=list)


def check_request(config: GrowLMConfig, request: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Validate a growth request against ``config``; returns ``{field: (old, new)}`` for changed fields."""
    if not request:
        raise GrowthError("nothing to grow: pass --set FIELD=VALUE with a larger value")
    types = config.field_types()
    growable = growable_fields(config.architecture)
    changes = {}
    for name, value in request.items():
        if name not in types:
            raise GrowthError(unknown_key_message(f"{config.architecture} field", name, types))
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
    return changes


def grow_model(
    model: GrowLMForCausalLM, request: dict[str, Any], init: InitScheme, seed: int = 0
) -> GrowthResult:
    """A new, larger model computing the same function as ``model`` (for lossless schemes)."""
    old_config = model.config
    changes = check_request(old_config, request)
    new_config = copy.deepcopy(old_config)
    for name, (_, value) in changes.items():
        setattr(new_config, name, value)
    try:
        new_config.validate()
    except ConfigError as exc:
        raise GrowthError(f"the grown model would be invalid: {exc}") from exc

    old_state = {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()}
    state = dict(old_state)
    filler = BlockFiller(init, torch.Generator().manual_seed(seed))
    current = copy.deepcopy(old_config)
    applied = []
    for op in OPERATORS[old_config.architecture]:
        step_fields = {f: changes[f][1] for f in op.fields if f in changes}
        if not step_fields:
            continue
        target = copy.deepcopy(current)
        for name, value in step_fields.items():
            setattr(target, name, value)
        state = op.apply(state, current, target, filler)
        current = target
        applied.append(op.name)

    grown = model_from_state(new_config, state, "the grown state")
    moves = [
        ParamMove(name, name if name in old_state else None,
                  top_left(old_state[name].shape) if name in old_state else ())
        for name, _ in grown.named_parameters()
    ]
    warnings = []
    if init.kind == "zero":
        warnings.append("--init zero sets every new block to zero: with GELU(0) = 0 no new block ever receives "
                        "gradient, so training cannot move the grown model away from the original "
                        "(NOTES.md §1). Use --init preserve for growth that is lossless and trains.")
    if init.kind == "noise":
        warnings.append(f"--init {init} perturbs the new blocks: the grown model does not compute the same "
                        "function (the paper's Table 4 ablation); the verification reports the deviation.")
    return GrowthResult(grown, old_config, new_config, changes, applied, moves, filler.blocks, init, warnings)


def carry_moments(old_by_name: dict[str, dict[str, Any]], result: GrowthResult) -> dict[str, dict[str, Any]]:
    """AdamW state for the grown parameters: old moments in place, zeros in new entries, old step count."""
    params = dict(result.model.named_parameters())
    carried = {}
    for move in result.moves:
        entry = old_by_name.get(move.old_name) if move.old_name else None
        if entry is None:
            continue
        shape = params[move.new_name].shape
        new_entry = {}
        for key, value in entry.items():
            if key == "step" or not torch.is_tensor(value) or value.dim() == 0:
                new_entry[key] = value
            else:
                grown = torch.zeros(shape, dtype=value.dtype)
                grown[move.region] = value.cpu()
                new_entry[key] = grown
        carried[move.new_name] = new_entry
    return carried


def verify_growth(original: GrowLMForCausalLM, result: GrowthResult, seed: int = 0) -> dict[str, Any]:
    config = result.new_config
    ids = random_batch(config.vocab_size, seed, seq_len=min(32, config.max_position_embeddings))
    logits = compare_logits(original, result.model, ids)
    reach = gradient_reach(result.model, result.blocks, ids)
    expected = "every block gets gradient" if result.init.kind == "preserve" else (
        "every block stays zero" if result.init.kind == "zero" else "function changes by design")
    passed = {
        "preserve": logits["max_rel_diff"] <= 1e-5 and reach["every_block_got_gradient"],
        "zero": logits["max_rel_diff"] <= 1e-5 and reach["every_block_still_zero"],
        "noise": reach["every_block_got_gradient"],
    }[result.init.kind]
    return {"logits": logits, "gradients": reach, "expectation": expected, "passed": bool(passed),
            "batch_shape": list(ids.shape), "seed": seed}


def growth_report(result: GrowthResult, verification: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    old_cost, new_cost = model_cost(result.old_config), model_cost(result.new_config)
    return {
        "architecture": result.old_config.architecture,
        "init": str(result.init),
        "operators": result.operators,
        "changes": {k: {"old": o, "new": n} for k, (o, n) in result.changes.items()},
        "parameters": {"old": old_cost.total_params, "new": new_cost.total_params,
                       "added": new_cost.total_params - old_cost.total_params},
        "train_flops_per_token": {"old": old_cost.train_flops_per_token, "new": new_cost.train_flops_per_token,
                                  "seq_len": new_cost.seq_len},
        "new_blocks": [b.as_dict() for b in result.blocks],
        "reshaped_parameters": [m.as_dict() for m in result.moves
                                if m.old_name is None or m.region != top_left(result.model.get_parameter(
                                    m.new_name).shape)],
        "verification": verification,
        "warnings": result.warnings,
        **extra,
    }


def grow_checkpoint(
    source: str | Path,
    out: str | Path,
    request: dict[str, Any],
    init: InitScheme,
    seed: int = 0,
    verify: bool = True,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Grow the model in ``source`` into ``out``; returns the growth.json content."""
    from growlm.data.tokenizer import load_tokenizer
    from growlm.training import checkpoint as ckpt
    from growlm.training.optim import parameter_order, state_by_name

    src = ckpt.resolve_model_dir(source, say)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise GrowthError(f"output folder {out} exists and is not empty")
    model = ckpt.load_model(src, "cpu", say)
    result = grow_model(model, request, init, seed)
    for warning in result.warnings:
        say(f"warning: {warning}")
    tokenizer = load_tokenizer(src) if (src / "tokenizer_config.json").exists() else None
    out_tmp = out.with_name(out.name + ".tmp")
    ckpt.save_model(result.model, out_tmp, tokenizer)

    optimizer_note = "none (the source holds no optimizer state)"
    if (src / ckpt.OPTIMIZER).exists() and (src / ckpt.TRAINER_STATE).exists():
        state = ckpt.load_trainer_state(src)
        saved = torch.load(src / ckpt.OPTIMIZER, map_location="cpu", weights_only=False)
        carried = carry_moments(state_by_name(saved, state["param_names"]), result)
        names = parameter_order(result.model)
        torch.save({"state": {i: carried[n] for i, n in enumerate(names) if n in carried},
                    "param_groups": saved.get("param_groups", [])}, out_tmp / ckpt.OPTIMIZER)
        state.update(param_names=names, grown_from=str(src))
        (out_tmp / ckpt.TRAINER_STATE).write_text(json.dumps(state, indent=1))
        optimizer_note = f"carried over for {len(carried)} tensors (old moments kept, new entries zero)"

    verification = verify_growth(model, result, seed) if verify else None
    report = growth_report(result, verification, source=str(src), out=str(out), seed=seed,
                           optimizer_state=optimizer_note)
    (out_tmp / "growth.json").write_text(json.dumps(report, indent=2))
    ckpt.write_manifest(out_tmp)
    if out.exists():
        out.rmdir()
    out_tmp.rename(out)
    return report

