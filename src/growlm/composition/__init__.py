"""Modular composition: models trained apart on one frozen substrate, merged into one model.

``substrate.py`` decides whether models may be composed (tokenizer, vocabulary, embedding
settings and table bytes), ``compose.py`` writes the composite folder, ``mixing.py``
fine-tunes its mixing layer with the experts frozen, ``finetune.py`` fine-tunes the whole
composite (substrate frozen) or a small adapter over the experts' hidden states. The model class itself is
:mod:`growlm.models.composite` (below this layer, so that every loader knows it).
"""

from growlm.composition.compose import COMPOSITION_FILE, compose, read_record
from growlm.composition.finetune import FINETUNES, finetune
from growlm.composition.mixing import train_mixer
from growlm.composition.substrate import CompositionError, Fingerprint, check_same_substrate, fingerprint

__all__ = ["COMPOSITION_FILE", "FINETUNES", "CompositionError", "Fingerprint", "check_same_substrate", "compose",
           "finetune", "fingerprint", "read_record", "train_mixer"]
