"""What the layer-wise plan tests (test_layerwise.py, test_layerwise_stages.py) share: the tiny
frozen-substrate plan and checks on the weights of a finished layer-wise run."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.conftest import REPO

LAYERWISE_TINY = REPO / "plans" / "frozen-substrate-tiny.yaml"


def final_checkpoint(out: Path, stage: str) -> Path:
    """The final checkpoint of the finished stage folder ``out/stage``, from its stage.json."""
    return Path(json.loads((out / stage / "stage.json").read_text())["final_checkpoint"])


def block(state: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
    """The tensors of transformer block ``i`` in a state dict."""
    return {k: v for k, v in state.items() if k.startswith(f"model.layers.{i}.")}


def check_lora_merge(lora_dir: Path, before: dict[str, torch.Tensor], merged: dict[str, torch.Tensor],
                     blocks: range | tuple[int, ...], scale: float) -> tuple[set[str], dict[str, torch.Tensor]]:
    """Check a holistic stage's LoRA merge on ``blocks``: the unmerged base it saved in ``lora_dir`` is
    ``before`` (the previous stage's result) bit for bit, and ``merged`` differs from it by exactly
    scale * B @ A on each adapted module (whose adapter trained) and nowhere else. Returns the adapted
    modules and the adapter's tensors."""
    base = load_file(lora_dir / "base.safetensors")
    adapter = load_file(lora_dir / "adapter" / "adapter_model.safetensors")
    adapted = set()
    for i in blocks:
        for name, value in block(before, i).items():
            assert torch.equal(base[name], value)
            module = name.removesuffix(".weight")
            a = adapter.get(f"base_model.model.{module}.lora_A.weight")
            if a is None:
                assert torch.equal(merged[name], value), name
                continue
            adapted.add(module)
            delta = scale * adapter[f"base_model.model.{module}.lora_B.weight"] @ a
            assert delta.abs().max() > 0, f"{module}: the adapter did not train"
            torch.testing.assert_close(merged[name] - value, delta, rtol=0, atol=1e-6)
    return adapted, adapter
