"""growlm: train transformer language models and grow them without losing what they learned.

``import growlm`` makes every growlm architecture known to transformers' ``AutoConfig`` and
``AutoModelForCausalLM``, so ``AutoModelForCausalLM.from_pretrained(folder)`` loads a growlm
checkpoint. It does so without importing torch itself: the architectures are registered
when transformers is imported (at once if it already is), because importing torch and
transformers' model classes takes seconds and ``growlm --help`` needs neither.
"""

from __future__ import annotations

from types import ModuleType

from wrapt import register_post_import_hook

__version__ = "0.1.0"


def _register_architectures(_transformers: ModuleType) -> None:
    import sys

    # growlm.models registers them as its import ends; its closure (growlm.errors,
    # growlm.runtime and growlm.models.*) imports no other growlm module, so importing it here cannot meet a
    # half-imported module. If it is in sys.modules it is already done or about to be.
    if "growlm.models" not in sys.modules:
        import growlm.models  # noqa: F401


register_post_import_hook(_register_architectures, "transformers")
