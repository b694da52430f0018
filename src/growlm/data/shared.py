"""Where the shared material is: the offline corpus, tokenizers, benchmarks and font beside the checkout.

Looked up, in order: an explicit path, ``$GROWLM_SHARED``, ``./../shared`` (the
working directory's sibling), and the ``shared/`` folder beside the source checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

from growlm.errors import DataError

CORPUS_SOURCES = ("gutenberg", "sotu", "pydocs", "linuxdocs")
TOKENIZER_32K = "tokenizers/mistral-v1-32k/tokenizer.model"


def locate_shared(explicit: str | Path | None = None) -> Path:
    """The shared material folder (it holds ``corpus/train``); :class:`DataError` when none is found."""
    candidates = [Path(explicit)] if explicit else []
    if os.environ.get("GROWLM_SHARED"):
        candidates.append(Path(os.environ["GROWLM_SHARED"]))
    candidates += [Path.cwd().parent / "shared", Path(__file__).resolve().parents[4] / "shared"]
    for path in candidates:
        if (path / "corpus" / "train").is_dir():
            return path
    raise DataError("cannot find the shared material (corpus/ and tokenizers/); pass --shared DIR or set "
                    "GROWLM_SHARED")
