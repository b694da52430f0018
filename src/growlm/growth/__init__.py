"""Function-preserving growth of trained models, one operator per file.

``grow_model`` applies the operators that the requested config fields call for;
``grow_checkpoint`` does that to a saved checkpoint, carries its optimizer state
over, verifies the result and writes ``growth.json``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from growlm.growth.base import InitScheme, NewBlock, Placement, parse_init
    from growlm.growth.grow import GrowthResult, grow_checkpoint, grow_model, growable_fields
    from growlm.growth.report import GrowthReport, Verification

# The operators need torch; the package itself does not, so ``growlm.growth.schemes`` (the
# scheme names ``growlm grow --help`` lists) imports without it. Names load on first use.
_EXPORTS = {"InitScheme": "base", "NewBlock": "base", "Placement": "base", "parse_init": "base",
            "GrowthResult": "grow", "grow_checkpoint": "grow", "grow_model": "grow", "growable_fields": "grow",
            "GrowthReport": "report", "Verification": "report"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"growlm.growth.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'growlm.growth' has no attribute {name!r}")


__all__ = [
    "GrowthReport",
    "GrowthResult",
    "InitScheme",
    "NewBlock",
    "Placement",
    "Verification",
    "grow_checkpoint",
    "grow_model",
    "growable_fields",
    "parse_init",
]
