"""What every growth operator shares: init schemes, placements, new-block records.

A growth operator turns the state dict of a model into the state dict of a larger
model of the same architecture. Besides the tensors it reports

* for every grown tensor that is not simply "the old tensor of the same name in the
  leading corner", a :class:`Placement`: which old tensor it extends, at which
  positions along each axis the old entries now sit, and by which factor they were
  scaled. Placements compose across operators; they carry the optimizer moments over
  and let ``growth.json`` say exactly where every old value went;
* every block of new entries (:class:`NewBlock`) with how it was initialised, so the
  verification can check that each one receives gradient.

Init schemes (``--init``):

* ``preserve`` (default): lossless and trainable. Each operator zeroes exactly the
  new blocks through which new units could reach existing outputs and draws the
  others at random, so the function is unchanged while gradients reach every new
  block within two optimizer steps (proof in each operator's docstring).
* ``zero``: the Nexusformer paper's literal scheme, every new block zero. Lossless,
  but a saddle: no new block ever receives gradient (../shared/papers/NOTES.md §1).
* ``noise:F``: the paper's ablation (Table 4), the zero scheme plus Gaussian noise of
  standard deviation F times the standard deviation of the pretrained matrix in every
  new block. Not lossless by design; the verification reports the deviation.
* ``random``: every new block random at the pretrained scale, as naive growth (and
  TokenFormer's released code, whose Pattention scale then follows n) does. Not
  lossless; offered for comparison.
* ``fresh`` (depth growth only): every new block exactly as a model built from scratch
  initialises it (the model's own ``_init_weights``: matrices N(0, initializer_range),
  norm gains 1), drawn from ``grow_seed``. Not lossless by design: the new block's
  residual writers are not zero, so the function changes. This is the layer-wise
  constructive recipe of the frozen-substrate paper (``training/layerwise.py``), where
  each new block is a fresh block trained on top of a frozen stack, not an identity.
* ``stack`` (depth growth only): G_stack (Du et al. 2024), every new block an exact copy
  of an old one (``stack.py``). Not lossless; the verification reports the loss jump.
* ``clone`` / ``clone:F`` (width growth only): function-preserving width cloning
  (Net2Net / HyperCloning, ``clone.py``): new units copy old ones, outgoing weights are
  split among the copies. Lossless; ``clone:F`` adds symmetry-breaking noise of F times
  each tensor's standard deviation to the copies (then not lossless).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from growlm.errors import GrowthError
from growlm.growth.report import BlockRecord, PlacementRecord
from growlm.growth.schemes import scheme_names

Index = tuple[torch.Tensor, ...]  # per axis: the positions (LongTensor) an index set covers


@dataclass(frozen=True)
class InitScheme:
    kind: str  # "preserve" | "zero" | "noise" | "random" | "fresh" | "stack" | "clone"
    noise: float = 0.0

    @property
    def lossless(self) -> bool:
        return self.kind in ("preserve", "zero") or (self.kind == "clone" and self.noise == 0)

    def __str__(self) -> str:
        return f"{self.kind}:{self.noise:g}" if self.kind in ("noise", "clone") and self.noise else self.kind


# the schemes that only some operators define
DEPTH_ONLY_SCHEMES = ("fresh", "stack")
WIDTH_ONLY_SCHEMES = ("clone",)


def parse_init(text: str) -> InitScheme:
    if text in scheme_names() and ":" not in text:
        return InitScheme(text)
    kind, _, value = text.partition(":")
    if kind in ("noise", "clone"):
        try:
            fraction = float(value)
        except ValueError:
            fraction = -1.0
        if fraction < 0 or (kind == "noise" and fraction == 0):
            raise GrowthError(f"--init {kind}:F needs a positive fraction F (e.g. {kind}:0.1), got {text!r}")
        return InitScheme(kind, fraction)
    raise GrowthError(f"unknown --init {text!r}; valid: {', '.join(scheme_names())}")


def arange(n: int, start: int = 0) -> torch.Tensor:
    return torch.arange(start, start + n, dtype=torch.long)


def leading(shape: Sequence[int]) -> Index:
    """The index set of a tensor of ``shape`` sitting in the leading corner."""
    return tuple(arange(n) for n in shape)


def ranges(positions: torch.Tensor) -> list[list[int]]:
    """``[[start, stop], ...]`` runs of consecutive positions, for readable JSON."""
    out: list[list[int]] = []
    for p in positions.tolist():
        if out and out[-1][1] == p:
            out[-1][1] = p + 1
        else:
            out.append([p, p + 1])
    return out


def _grid(index: Index) -> tuple[torch.Tensor, ...]:
    return torch.meshgrid(*index, indexing="ij") if len(index) > 1 else index


def take(tensor: torch.Tensor, index: Index) -> torch.Tensor:
    return tensor[_grid(index)]


def put(tensor: torch.Tensor, index: Index, values: torch.Tensor | float) -> None:
    tensor[_grid(index)] = values


@dataclass(frozen=True)
class Placement:
    """``grown[index] == scale * source`` for the grown tensor this placement belongs to."""

    source: str | None  # None: a tensor with no predecessor
    index: Index = ()
    scale: float = 1.0
    note: str = ""  # e.g. clone growth: the old entries are scaled per feature, not by one ``scale``

    def record(self) -> PlacementRecord:
        return PlacementRecord(self.source, [ranges(i) for i in self.index], self.scale, self.note)


def place(old: torch.Tensor, new_shape: Sequence[int], positions: Sequence[torch.Tensor | None] = (),
          scale: float = 1.0) -> tuple[torch.Tensor, Index]:
    """A zero tensor of ``new_shape`` holding ``scale * old`` at ``positions`` (leading where None)."""
    positions = list(positions) + [None] * (old.dim() - len(positions))
    index = tuple(arange(n) if p is None else p for n, p in zip(old.shape, positions, strict=True))
    out = torch.zeros(tuple(new_shape), dtype=old.dtype, device=old.device)
    put(out, index, old * scale if scale != 1.0 else old)
    return out, index


def complement(positions: torch.Tensor, size: int) -> torch.Tensor:
    """The positions of ``range(size)`` not in ``positions``."""
    mask = torch.ones(size, dtype=torch.bool)
    mask[positions] = False
    return mask.nonzero().flatten()


@dataclass(frozen=True)
class NewBlock:
    param: str  # parameter name in the grown model
    label: str  # what the block is, e.g. "W_A new rows x old columns"
    index: Index  # its entries in the grown tensor
    init: str  # "random" or "zero" under the preserve scheme

    def record(self) -> BlockRecord:
        return BlockRecord(self.param, self.label, self.init, [ranges(i) for i in self.index])


@dataclass
class GrowthStep:
    """An operator's output: the new state and the placements that are not the default."""

    state: dict[str, torch.Tensor]
    placements: dict[str, Placement] = field(default_factory=dict)


class BlockFiller:
    """Fills new blocks according to an init scheme, recording each one."""

    def __init__(self, scheme: InitScheme, generator: torch.Generator) -> None:
        self.scheme = scheme
        self.generator = generator
        self.blocks: list[NewBlock] = []
        # set when an operator is re-run on optimizer moments instead of weights ("exp_avg" or
        # "exp_avg_sq"): copying operators (clone) then apply gradient factors and add no noise
        self.moment: str | None = None

    def normal(self, shape: Sequence[int], std: float, like: torch.Tensor) -> torch.Tensor:
        sample = torch.randn(tuple(shape), generator=self.generator, dtype=torch.float32)
        return (sample * std).to(dtype=like.dtype, device=like.device)

    def fill(self, tensor: torch.Tensor, param: str, label: str, slices: Index | tuple[slice, ...], role: str,
             scale: float) -> None:
        """Initialise ``tensor[index]``; ``role`` is what *preserve* needs there ("random" or "zero").

        ``scale`` is the standard deviation of the pretrained tensor the block extends.
        """
        index = tuple(i if isinstance(i, torch.Tensor) else arange(i.stop - i.start, i.start) for i in slices)
        shape = tuple(len(i) for i in index)
        if 0 in shape:
            return
        kind = self.scheme.kind
        if kind == "random" or (kind == "preserve" and role == "random"):
            put(tensor, index, self.normal(shape, scale, tensor))
        else:
            put(tensor, index, 0.0)
        if kind == "noise":
            put(tensor, index, take(tensor, index) + self.normal(shape, self.scheme.noise * scale, tensor))
        self.blocks.append(NewBlock(param, label, index, role))

    def record(self, param: str, label: str, index: Index, role: str) -> None:
        """Record a new block whose values the operator set itself (the *fresh* scheme)."""
        self.blocks.append(NewBlock(param, label, index, role))

    def fill_gain(self, tensor: torch.Tensor, param: str, label: str, index: Index,
                  value: float | torch.Tensor) -> None:
        """New entries of a norm gain: a fixed value under every scheme (zero would cut gradient flow)."""
        if len(index[0]):
            put(tensor, index, value)
            self.blocks.append(NewBlock(param, label, index, "fixed"))


def matrix_std(weight: torch.Tensor) -> float:
    """Scale for new entries of a tensor: its own standard deviation (0.02 if degenerate)."""
    std = float(weight.float().std()) if weight.numel() > 1 else 0.0
    return std if std > 0 else 0.02


def embed(old: torch.Tensor, new_shape: Sequence[int]) -> torch.Tensor:
    """A zero tensor of ``new_shape`` with ``old`` in its leading corner."""
    return place(old, new_shape)[0]


def grow_axis(
    state: dict[str, torch.Tensor],
    name: str,
    axis: int,
    new_size: int,
    filler: BlockFiller,
    label: str,
    role: str,
    positions: torch.Tensor | None = None,
    scale: float = 1.0,
    std: float | None = None,
) -> Placement:
    """Grow one axis of ``state[name]`` to ``new_size``; the new slab is filled as ``role``.

    Old entries go to ``positions`` along ``axis`` (the leading ones by default),
    multiplied by ``scale``; every other axis keeps its size.
    """
    old = state[name]
    shape = list(old.shape)
    shape[axis] = new_size
    lead: list[torch.Tensor | None] = [None] * old.dim()
    lead[axis] = positions
    grown, index = place(old, shape, lead, scale)
    slab = tuple(complement(index[d], new_size) if d == axis else arange(n) for d, n in enumerate(shape))
    filler.fill(grown, name, label, slab, role, std if std is not None else matrix_std(old))
    state[name] = grown
    return Placement(name, index, scale)
