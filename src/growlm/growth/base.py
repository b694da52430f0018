"""What every growth operator shares: init schemes, new-block records, tensor embedding.

A growth operator turns the state dict of a model into the state dict of a larger
model of the same architecture. It reports

* for every parameter of the grown model, where the old tensor sits inside it
  (:class:`ParamMove`: old name and the region of the new tensor the old values
  occupy) -- used to carry optimizer moments over and to audit the growth;
* every block of new entries (:class:`NewBlock`), with how it was initialised --
  used by the verification, which checks that each one receives gradient.

Init schemes (``--init``):

* ``preserve`` (default): lossless and trainable. Each operator zeroes exactly the
  new blocks through which new units could reach existing outputs and draws the
  others at random, so the function is unchanged while gradients reach every new
  block within two optimizer steps (proof in each operator's docstring).
* ``zero``: the Nexusformer paper's literal scheme, every new block zero. Lossless,
  but a saddle: no new block ever receives gradient (NOTES.md §1).
* ``noise:F``: the paper's ablation (Table 4), the zero scheme plus Gaussian noise of
  standard deviation F times the standard deviation of the pretrained matrix in every
  new block. Not lossless by design; the verification reports the deviation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from growlm.errors import GrowthError

Region = tuple[slice, ...]


@dataclass(frozen=True)
class InitScheme:
    kind: str  # "preserve" | "zero" | "noise"
    noise: float = 0.0

    @property
    def lossless(self) -> bool:
        return self.kind != "noise"

    def __str__(self) -> str:
        return f"noise:{self.noise:g}" if self.kind == "noise" else self.kind


def parse_init(text: str) -> InitScheme:
    if text in ("preserve", "zero"):
        return InitScheme(text)
    kind, _, value = text.partition(":")
    if kind == "noise":
        try:
            fraction = float(value)
        except ValueError:
            fraction = -1.0
        if fraction <= 0:
            raise GrowthError(f"--init noise:F needs a positive fraction F (e.g. noise:0.1), got {text!r}")
        return InitScheme("noise", fraction)
    raise GrowthError(f"unknown --init {text!r}; valid: preserve, zero, noise:FRACTION")


@dataclass(frozen=True)
class NewBlock:
    param: str  # parameter name in the grown model
    label: str  # what the block is, e.g. "W_A new rows x old columns"
    region: Region  # its entries in the grown tensor
    init: str  # "random" or "zero" (before any noise)

    def as_dict(self) -> dict[str, Any]:
        return {"param": self.param, "label": self.label, "init": self.init,
                "region": [[s.start, s.stop] for s in self.region]}


@dataclass(frozen=True)
class ParamMove:
    new_name: str
    old_name: str | None  # None: a tensor with no predecessor
    region: Region  # where the old values sit in the new tensor

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["region"] = [[s.start, s.stop] for s in self.region]
        return d


def top_left(shape: torch.Size | tuple[int, ...]) -> Region:
    return tuple(slice(0, n) for n in shape)


def embed(old: torch.Tensor, new_shape: tuple[int, ...]) -> torch.Tensor:
    """A zero tensor of ``new_shape`` with ``old`` in its leading corner."""
    out = torch.zeros(new_shape, dtype=old.dtype, device=old.device)
    out[top_left(old.shape)] = old
    return out


class BlockFiller:
    """Fills new blocks according to an init scheme, recording each one."""

    def __init__(self, scheme: InitScheme, generator: torch.Generator) -> None:
        self.scheme = scheme
        self.generator = generator
        self.blocks: list[NewBlock] = []

    def _normal(self, shape: tuple[int, ...], std: float, like: torch.Tensor) -> torch.Tensor:
        sample = torch.randn(shape, generator=self.generator, dtype=torch.float32)
        return (sample * std).to(dtype=like.dtype, device=like.device)

    def fill(self, tensor: torch.Tensor, param: str, label: str, region: Region, role: str, scale: float) -> None:
        """Initialise ``tensor[region]``; ``role`` is what *preserve* needs there ("random" or "zero").

        ``scale`` is the standard deviation of the pretrained matrix the block extends.
        """
        shape = tuple(s.stop - s.start for s in region)
        if 0 in shape:
            return
        if self.scheme.kind == "preserve" and role == "random":
            tensor[region] = self._normal(shape, scale, tensor)
        else:
            tensor[region] = 0
        if self.scheme.kind == "noise":
            tensor[region] += self._normal(shape, self.scheme.noise * scale, tensor)
        self.blocks.append(NewBlock(param, label, region, role))


def matrix_std(weight: torch.Tensor) -> float:
    """Scale for new entries of a matrix: its own standard deviation (0.02 if degenerate)."""
    std = float(weight.float().std()) if weight.numel() > 1 else 0.0
    return std if std > 0 else 0.02
