"""What the command modules share: output helpers and help texts."""

from __future__ import annotations

import json
import sys
from typing import Any

from growlm.runtime import RuntimeOptions  # a dataclass: no torch, so --help stays fast

SET_HELP = "set a config field (repeatable), e.g. --set nexus_m=1088"
MODEL_HELP = ("a model or checkpoint folder, a run folder (its newest good checkpoint) or a plan run folder "
              "(the newest good checkpoint of its last completed stage)")


def warn(message: str) -> None:
    print(message, file=sys.stderr)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def runtime_options(**flags: Any) -> RuntimeOptions:
    """The fused paths and kernels a command's models take: the ``GROWLM_*`` variables, then the
    command's own flags (``growlm/runtime.py``). Read here, at the entry point, and passed down."""
    return RuntimeOptions.from_env(**flags)
