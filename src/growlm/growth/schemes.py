"""The names of the growth init schemes (``--init``, a plan stage's ``init:``), in one place.

``parse_init`` (``growth/base.py``) accepts exactly these, and ``growlm grow --help``
lists them from here; this module imports nothing, so the help needs no torch. The
schemes themselves are described in ``growth/base.py``.
"""

from __future__ import annotations

# name (as typed; noise takes a value) -> what it does, one line for the help
INIT_SCHEMES: dict[str, str] = {
    "preserve": "lossless, every new block trains (default)",
    "zero": "every new block zero (the Nexusformer paper's; lossless, but new blocks may never train)",
    "noise:FRACTION": "zero plus Gaussian noise of FRACTION times the pretrained std (not lossless)",
    "random": "new blocks random at the pretrained scale (not lossless)",
    "fresh": "depth only: new blocks as a model built from scratch draws them (not lossless)",
    "stack": "depth only: new block j copies old block j mod L, G_stack-style (not lossless; the loss jump is reported)",
    "clone": "width only: new units duplicate old ones, outgoing weights split (lossless)",
    "clone:FRACTION": "clone plus symmetry-breaking noise of FRACTION times each tensor's std (not lossless)",
}


def scheme_names() -> list[str]:
    """The schemes as typed, e.g. ``['preserve', 'zero', 'noise:FRACTION', ...]``."""
    return list(INIT_SCHEMES)
