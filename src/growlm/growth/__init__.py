"""Function-preserving growth of trained models, one operator per file.

``grow_model`` applies the operators that the requested config fields call for;
``grow_checkpoint`` does that to a saved checkpoint, carries its optimizer state
over, verifies the result and writes ``growth.json``.
"""

from growlm.growth.base import InitScheme, NewBlock, Placement, parse_init
from growlm.growth.grow import GrowthResult, grow_checkpoint, grow_model, growable_fields

__all__ = [
    "GrowthResult",
    "InitScheme",
    "NewBlock",
    "Placement",
    "grow_checkpoint",
    "grow_model",
    "growable_fields",
    "parse_init",
]
