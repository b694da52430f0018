"""How a model computes, as one value: which fused paths and kernels its modules take.

These choices never change *what* a model computes (each fused path is tested against the
plain one), only how fast: so they are not config fields (not saved with a checkpoint,
not part of growth) but a property of the run. A :class:`RuntimeOptions` is built once by
whoever starts the run -- the CLI, a benchmark script, or a library caller -- and handed
down; :func:`growlm.models.apply_runtime` sets it on one model's modules. Two models in
one process may use different options, and nothing in the library reads the environment
for them.

Every field defaults to what growlm does without being told (``None`` = ``auto``: the
fused path on CUDA tensors only, where it measured faster). The ``GROWLM_*`` environment
variables below are a *default source* read only by :meth:`RuntimeOptions.from_env`, which
entry points call (``growlm`` commands, ``growlm bench``), so existing scripts that set them
keep working; library code never reads them.

* ``fuse_linears`` (``GROWLM_FUSE_LINEARS``): Q/K/V and SwiGLU's gate/up as one product
  each (``models/layers.py``);
* ``nexus_fused`` (``GROWLM_NEXUS_FUSED``): Nexusformer's Q/K/V maps as batched products
  (``models/nexus.py``), and ``nexus_pad`` (``GROWLM_NEXUS_PAD``) the multiple M and A are
  zero-padded to there;
* ``pattention_kernel`` (``GROWLM_PATTENTION_KERNEL``): TokenFormer's Triton row kernel
  (``models/pattention_norm.py``);
* ``rotary_opaque`` (``GROWLM_ROTARY_OPAQUE``): rotary tables behind an opaque op, computed
  once per forward (``False``: inline, where the compiler may recompute them).

Switches take ``auto`` (default), ``1`` or ``0`` in the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from growlm.errors import ConfigError

SWITCHES = {"auto": None, "1": True, "0": False}

# field -> the environment variable that gives its default at an entry point
ENVIRONMENT = {
    "fuse_linears": "GROWLM_FUSE_LINEARS",
    "nexus_fused": "GROWLM_NEXUS_FUSED",
    "nexus_pad": "GROWLM_NEXUS_PAD",
    "pattention_kernel": "GROWLM_PATTENTION_KERNEL",
    "rotary_opaque": "GROWLM_ROTARY_OPAQUE",
}


def parse_switch(name: str, value: str) -> bool | None:
    """``auto`` -> None (fused on CUDA tensors only), ``1`` -> True, ``0`` -> False; ``name`` is
    what the error names (an environment variable or a flag)."""
    key = value.strip().lower()
    if key not in SWITCHES:
        raise ConfigError(f"{name} must be one of auto, 1, 0, got {value!r}")
    return SWITCHES[key]


def parse_pad(name: str, value: str) -> int:
    text = value.strip()
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(text)


@dataclass(frozen=True)
class RuntimeOptions:
    """Which computation paths a model's modules take (module doc). ``None`` means ``auto``."""

    fuse_linears: bool | None = None
    nexus_fused: bool | None = None
    nexus_pad: int = 8
    pattention_kernel: bool | None = None
    rotary_opaque: bool = True

    def __post_init__(self) -> None:
        for name in ("fuse_linears", "nexus_fused", "pattention_kernel"):
            if getattr(self, name) not in (None, True, False):
                raise ConfigError(f"{name} must be true, false or None (auto), got {getattr(self, name)!r}")
        if not isinstance(self.rotary_opaque, bool):
            raise ConfigError(f"rotary_opaque must be true or false, got {self.rotary_opaque!r}")
        if not isinstance(self.nexus_pad, int) or isinstance(self.nexus_pad, bool) or self.nexus_pad < 1:
            raise ConfigError(f"nexus_pad (the Nexus-Rank padding multiple) must be a positive integer, "
                              f"got {self.nexus_pad!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> RuntimeOptions:
        """The options the ``GROWLM_*`` variables of ``environ`` (default ``os.environ``) ask for,
        then ``overrides`` (command-line flags; a ``None`` override leaves the field alone).
        For entry points only: library code takes a ``RuntimeOptions`` instead."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field, variable in ENVIRONMENT.items():
            raw = environ.get(variable)
            if raw is None:
                continue
            if field == "nexus_pad":
                values[field] = parse_pad(variable, raw)
            elif field == "rotary_opaque":
                values[field] = parse_switch(variable, raw) is not False  # auto and 1: opaque
            else:
                values[field] = parse_switch(variable, raw)
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown runtime option {unknown[0]!r}; choose from {', '.join(ENVIRONMENT)}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> RuntimeOptions:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
