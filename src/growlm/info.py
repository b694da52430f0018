"""``growlm info PATH``: what a model, checkpoint, run or plan run folder holds.

Everything is read from the files (``config.json``, ``trainer_state.json``,
``growth.json``, a run's ``summary.json``, a plan's ``stage.json`` records); parameters
are counted on the model built on the meta device, so nothing is loaded and a large
checkpoint answers as fast as a tiny one. Growth history follows the chain back from
the model: a grown folder's ``growth.json`` names its source, and a checkpoint trained
from a grown model names it as its run's ``init_from``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from growlm.errors import CheckpointError
from growlm.logs import quiet
from growlm.models import storage

_MAX_HOPS = 64  # a growth chain longer than this is a cycle of paths, not a history


def _read(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _kind(path: Path) -> str:
    if (path / "config.json").exists():
        return "checkpoint" if (path / storage.TRAINER_STATE).exists() else "model"
    if (path / storage.CHECKPOINTS).is_dir():
        return "run"
    if (path / storage.PLAN_FILE).exists():
        return "plan"
    raise CheckpointError(f"{path} is neither a model folder (no config.json), a run folder "
                          f"(no {storage.CHECKPOINTS}/) nor a plan run folder (no {storage.PLAN_FILE})")


def _source_of(folder: Path) -> Path | None:
    """The folder this model was grown or initialised from, when its files say so."""
    growth = _read(folder / "growth.json")
    state = _read(folder / storage.TRAINER_STATE) or {}
    source = (growth or {}).get("source") or state.get("grown_from") or (state.get("config") or {}).get("init_from")
    if not source:
        return None
    try:
        with quiet(storage.__name__):  # info describes; skipped checkpoints are not its news
            return storage.resolve_model_dir(source)
    except CheckpointError:
        return None  # moved or deleted since: the history stops here


def growth_history(folder: Path) -> list[dict[str, Any]]:
    """Every growth step behind the model in ``folder``, oldest first."""
    steps: list[dict[str, Any]] = []
    seen: set[Path] = set()
    current: Path | None = folder
    while current is not None and current.resolve() not in seen and len(seen) < _MAX_HOPS:
        seen.add(current.resolve())
        growth = _read(current / "growth.json")
        if growth is not None:
            v = growth.get("verification")
            steps.append({"folder": str(current), "source": growth.get("source"), "init": growth.get("init"),
                          "changes": {k: [c["old"], c["new"]] for k, c in growth.get("changes", {}).items()},
                          "parameters": [growth["parameters"]["old"], growth["parameters"]["new"]]
                          if "parameters" in growth else None,
                          "verified": None if not v else bool(v.get("passed"))})
        current = _source_of(current)
    return steps[::-1]


def _frozen_parts(config: Any, state: dict[str, Any]) -> list[str]:
    parts = []
    if config.frozen_embedding:
        parts.append(f"input embedding ({config.embedding} substrate, always frozen)")
    train = state.get("config") or {}
    if train.get("trainable"):
        parts.append(f"everything except {', '.join(train['trainable'])} (trainable:)")
    if train.get("frozen"):
        parts.append(f"{', '.join(train['frozen'])} (frozen:)")
    if train.get("lora"):
        lora = train["lora"]
        parts.append(f"base weights under LoRA (r={lora.get('r')}, on {', '.join(lora.get('target_modules', []))})")
    return parts


def model_info(folder: Path) -> dict[str, Any]:
    """What the model or checkpoint folder ``folder`` holds."""
    import torch

    from growlm.models import model_class_for
    from growlm.models.accounting import model_cost

    config = storage.load_config(folder)
    cost = model_cost(config)
    with torch.device("meta"):
        model = model_class_for(config)(config)
    unique = {id(p): p for p in model.parameters()}.values()  # tied weights once
    default_trainable = sum(p.numel() for p in unique if p.requires_grad)
    state = _read(folder / storage.TRAINER_STATE) or {}
    info: dict[str, Any] = {
        "model_folder": str(folder),
        "architecture": config.architecture,
        "shape": {k: v for k, v in config.field_values().items() if v is not None},
        "parameters": {
            "total": cost.total_params,
            "non_embedding": cost.non_embedding_params,
            # as last trained (the run's trainable/frozen/LoRA settings); a plain model folder
            # has no such settings, so: what a run with none would train
            "trainable": state.get("trainable_params", default_trainable),
            "trainable_from": "its training run's settings" if "trainable_params" in state
            else "the model; no run settings recorded",
        },
        "embedding": {"kind": config.embedding, "frozen": config.frozen_embedding,
                      **({"dim": config.embedding_dim} if config.frozen_embedding else {})},
        "frozen": _frozen_parts(config, state),
        "step": state.get("step"),
        "tokens_seen": state.get("tokens"),
        "data": {"dir": state.get("data_dir"), "position": state.get("data_position"),
                 "seq_len": state.get("seq_len")} if state else None,
        "growth": growth_history(folder),
    }
    return info


def _run_info(run: Path) -> dict[str, Any]:
    checkpoints = storage.list_checkpoints(run)
    summary = _read(run / "summary.json")
    return {"checkpoints": [p.name for p in checkpoints], "finished": summary is not None,
            **({"final_val_loss": summary.get("final_val_loss"), "steps": summary.get("steps")} if summary else {})}


def _plan_info(plan: Path) -> dict[str, Any]:
    stages = []
    for folder in sorted(p for p in plan.glob("stage-*") if p.is_dir()):
        record = _read(folder / storage.STAGE_FILE)
        stages.append({"folder": folder.name, "complete": record is not None,
                       **({k: record.get(k) for k in ("grew", "init", "parameters", "trainable_parameters", "steps",
                                                        "tokens", "final_val_loss")} if record else {})})
    return {"stages": stages}


def describe(path: str | Path) -> dict[str, Any]:
    """What ``path`` (a model, checkpoint, run or plan run folder) holds, as a JSON-ready dict."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    kind = _kind(path)
    out: dict[str, Any] = {"path": str(path), "kind": kind}
    if kind == "run":
        out["run"] = _run_info(path)
    elif kind == "plan":
        out["plan"] = _plan_info(path)
        if not storage.completed_stages(path):
            return out  # no stage finished: no model to describe yet
    with quiet(storage.__name__):
        folder = storage.resolve_model_dir(path)
    out.update(model_info(folder))
    return out


def _count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def info_lines(info: dict[str, Any]) -> list[str]:
    """``describe``'s answer as plain text, one fact a line."""
    lines = [f"{info['path']}: {info['kind']}"]
    if "run" in info:
        r = info["run"]
        lines.append(f"  run: {len(r['checkpoints'])} checkpoint(s), "
                     + (f"finished after {r['steps']} steps (val loss {r['final_val_loss']})" if r["finished"]
                        else "not finished (no summary.json)"))
    if "plan" in info:
        stages = info["plan"]["stages"]
        lines.append(f"  plan: {sum(s['complete'] for s in stages)} of {len(stages)} stage folder(s) complete")
        for s in stages:
            grew = ", ".join(f"{k} {o}->{n}" for k, (o, n) in (s.get("grew") or {}).items())
            lines.append(f"    {s['folder']:<28} " + (
                f"{_count(s.get('parameters'))} params, {_count(s.get('steps'))} steps, "
                f"{_count(s.get('tokens'))} tokens" + (f", grew {grew} (init {s.get('init')})" if grew else "")
                if s["complete"] else "not complete"))
    if "model_folder" not in info:
        lines.append("  no stage has completed yet: no model to describe")
        return lines
    if info["model_folder"] != info["path"]:
        lines.append(f"  model: {info['model_folder']}")
    shape = info["shape"]
    lines.append(f"  architecture: {info['architecture']}, {shape.get('num_hidden_layers')} layers, "
                 f"hidden {shape.get('hidden_size')}, {shape.get('num_attention_heads')} heads x "
                 f"{shape.get('head_dim')}" + "".join(f", {k} {shape[k]}" for k in
                                                      ("intermediate_size", "nexus_m", "nexus_a", "qkv_slots",
                                                       "proj_slots", "ffn_slots") if k in shape))
    p = info["parameters"]
    lines.append(f"  parameters: {_count(p['total'])} total ({_count(p['non_embedding'])} non-embedding), "
                 f"{_count(p['trainable'])} trainable (from {p['trainable_from']})")
    e = info["embedding"]
    lines.append(f"  substrate: {e['kind']} embedding" + (f", frozen, {e['dim']} wide" if e["frozen"] else ", trained"))
    lines.append(f"  frozen: {'; '.join(info['frozen']) or 'nothing'}")
    if info["step"] is not None:
        lines.append(f"  step {info['step']:,}, {_count(info['tokens_seen'])} tokens seen")
    d = info.get("data")
    if d:
        lines.append(f"  data: {d['dir']}, next sequence {_count(d['position'])} (seq_len {d['seq_len']})")
    if info["growth"]:
        lines.append(f"  growth history ({len(info['growth'])} step(s), oldest first):")
        for g in info["growth"]:
            changes = ", ".join(f"{k} {o}->{n}" for k, (o, n) in g["changes"].items())
            params = f"; {g['parameters'][0]:,} -> {g['parameters'][1]:,} params" if g["parameters"] else ""
            verified = {True: "verified", False: "FAILED verification", None: "not verified"}[g["verified"]]
            lines.append(f"    {changes} (init {g['init']}){params}; {verified}; {g['folder']}")
    else:
        lines.append("  growth history: none (never grown)")
    return lines
