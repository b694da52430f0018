"""lm-evaluation-harness integration.

* ``import growlm.evaluation.harness`` (or ``register()``) registers the model type
  ``growlm`` with lm-eval: the harness's Hugging Face model with growlm's architectures
  registered with transformers. lm-eval's own ``hf`` type works too in any process that
  has run ``import growlm``.
* ``TASK_DIR`` holds task YAMLs for the papers' benchmarks on local files
  (``growlm/evaluation/harness_tasks``): pass it as ``--include_path``.
* ``growlm harness ARGS...`` runs lm-eval's command line with both in place::

      growlm harness --model growlm --model_args pretrained=runs/x/checkpoints/step-00001000 \\
          --tasks growlm_paper5 --batch_size 16

lm-eval is an optional dependency (``pip install growlm[harness]``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from growlm.errors import GrowlmError

TASK_DIR = Path(__file__).with_name("harness_tasks")
_registered = False


def register() -> None:
    """Register the ``growlm`` model type with lm-eval (idempotent)."""
    global _registered
    if _registered:
        return
    try:
        from lm_eval.api.registry import register_model
        from lm_eval.models.huggingface import HFLM
    except ImportError as exc:
        raise GrowlmError("lm-evaluation-harness is not installed: pip install 'growlm[harness]'") from exc
    import growlm  # noqa: F401 -- registers the architectures with transformers

    @register_model("growlm")
    class GrowLMHarnessModel(HFLM):
        """lm-eval's Hugging Face causal LM, able to load growlm checkpoints."""

    _registered = True


def run(argv: list[str]) -> None:
    """lm-eval's command line with the growlm model type and task folder available."""
    register()
    from lm_eval.__main__ import cli_evaluate

    argv = list(argv)
    if argv and argv[0] not in ("ls", "validate") and "--include_path" not in argv:
        argv += ["--include_path", str(TASK_DIR)]
    sys.argv = ["lm-eval", *argv]
    cli_evaluate()
