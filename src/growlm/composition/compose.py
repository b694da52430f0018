"""``growlm compose A B [C ...] --out DIR``: experts on one substrate merged into one transformers model.

The experts are loaded through :mod:`growlm.models.storage` (so run folders, growlm
folders and transformers Qwen3/Llama folders all work), checked by
:func:`growlm.composition.substrate.check_same_substrate`, and wrapped, unchanged, in a
:class:`growlm.models.composite.CompositeForCausalLM`. The folder written is an ordinary
growlm model folder (config, safetensors, the experts' shared tokenizer) plus
``composition.json``: where each expert came from, the substrate fingerprint every expert
matched, the mixing rule and, after :func:`growlm.composition.mixing.train_mixer`, how the
mixer was trained.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from growlm.composition.substrate import CompositionError, check_same_substrate, fingerprint
from growlm.errors import ConfigError, unknown_key_message
from growlm.models import storage
from growlm.models.accounting import model_cost
from growlm.models.composite import MIXINGS, CompositeForCausalLM

logger = logging.getLogger(__name__)

COMPOSITION_FILE = "composition.json"


def load_experts(paths: Sequence[str | Path]) -> list[tuple[Any, Any, Path]]:
    """``(fingerprint, model, folder)`` per path, models on the CPU in their stored dtype."""
    found = []
    for path in paths:
        folder = storage.resolve_model_dir(path)
        model = storage.load_model(folder, "cpu")
        found.append((fingerprint(model, str(path), folder), model, folder))
    return found


def compose(paths: Sequence[str | Path], out: str | Path, mixing: str = "mean") -> dict[str, Any]:
    """Check that the models share a substrate, write the composite to ``out``; returns composition.json."""
    if mixing not in MIXINGS:
        raise ConfigError(unknown_key_message("mixing", mixing, MIXINGS))
    if len(paths) < 2:
        raise CompositionError(f"composition needs at least two models, got {len(paths)}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise CompositionError(f"--out {out} exists and is not empty")
    experts = load_experts(paths)
    check_same_substrate([(fp, model) for fp, model, _ in experts])
    models = [model for _, model, _ in experts]
    composite = CompositeForCausalLM.from_experts(models, mixing)
    storage.save_model(composite, out)
    storage.copy_tokenizer_files(experts[0][2], out)
    cost = model_cost(composite.config)
    record = {
        "experts": [{"path": str(p), "folder": str(folder), "architecture": model.config.architecture,
                     "parameters": model_cost(model.config).total_params}
                    for p, (_, model, folder) in zip(paths, experts, strict=True)],
        "mixing": mixing,
        "parameters": cost.total_params,
        "substrate": {k: v for k, v in experts[0][0].as_dict().items() if k not in ("name", "folder")},
        "mix_train": None,
    }
    write_record(out, record)
    return record


def write_record(folder: Path, record: dict[str, Any]) -> None:
    (Path(folder) / COMPOSITION_FILE).write_text(json.dumps(record, indent=2))


def read_record(folder: Path) -> dict[str, Any]:
    path = Path(folder) / COMPOSITION_FILE
    return json.loads(path.read_text()) if path.exists() else {}
