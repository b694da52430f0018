"""Which tensors of a projection read its input and which write its output.

Width-changing operators (hidden size, attention heads) only need to know, for each
projection module, the tensors and axes through which it reads its input features
and writes its output features. growlm has four kinds, recognised from the state
dict alone:

| kind | input (tensor, axis) | output (tensor, axis) |
|---|---|---|
| linear | ``weight``, 1 | ``weight``, 0 |
| Nexus-Rank | ``m_proj.weight``, 1 | ``d_proj.weight``, 0 |
| Pattention | ``key_tokens``, 1 | ``value_tokens``, 1 |
| SwiGLU | ``gate_proj.weight``, ``up_proj.weight``, 1 | ``down_proj.weight``, 0 |
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

Axis = tuple[str, int]


def _kind(state: Mapping[str, torch.Tensor], prefix: str) -> str:
    if f"{prefix}.m_proj.weight" in state:
        return "nexus"
    if f"{prefix}.key_tokens" in state:
        return "pattention"
    if f"{prefix}.gate_proj.weight" in state:
        return "swiglu"
    if f"{prefix}.weight" in state:
        return "linear"
    raise KeyError(f"no projection at {prefix}")


def input_axes(state: Mapping[str, torch.Tensor], prefix: str) -> list[Axis]:
    """(tensor name, axis) pairs indexed by the projection's input features."""
    return {
        "linear": [(f"{prefix}.weight", 1)],
        "nexus": [(f"{prefix}.m_proj.weight", 1)],
        "pattention": [(f"{prefix}.key_tokens", 1)],
        "swiglu": [(f"{prefix}.gate_proj.weight", 1), (f"{prefix}.up_proj.weight", 1)],
    }[_kind(state, prefix)]


def output_axes(state: Mapping[str, torch.Tensor], prefix: str) -> list[Axis]:
    """(tensor name, axis) pairs indexed by the projection's output features."""
    return {
        "linear": [(f"{prefix}.weight", 0)],
        "nexus": [(f"{prefix}.d_proj.weight", 0)],
        "pattention": [(f"{prefix}.value_tokens", 1)],
        "swiglu": [(f"{prefix}.down_proj.weight", 0)],
    }[_kind(state, prefix)]


def layer_prefix(i: int) -> str:
    return f"model.layers.{i}"
