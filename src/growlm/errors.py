"""Errors that the command line reports as one clear line, without a traceback.

Everything a user can get wrong (a config key, a path, a growth request) raises a
subclass of :class:`GrowlmError`; the CLI prints ``error: <message>`` and exits with
status 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class GrowlmError(Exception):
    """A problem with the user's input, stated so that they can fix it."""


class ConfigError(GrowlmError):
    """A configuration key or value is not valid."""


class CheckpointError(GrowlmError):
    """A checkpoint is missing, incomplete or corrupt."""


class DataError(GrowlmError):
    """Input data is missing, empty or unreadable."""


class GrowthError(GrowlmError):
    """A growth request cannot be satisfied."""


def read_json(path: Path, error: type[GrowlmError], missing: str) -> Any:
    """A JSON file's content; ``missing`` (the message) when absent, ``error`` naming the file when corrupt."""
    if not path.exists():
        raise error(missing)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path} is corrupt (not valid JSON: {exc})") from exc


def unknown_key_message(kind: str, key: str, valid: Iterable[str]) -> str:
    """``unknown <kind> 'key'`` plus a close match, then every valid choice."""
    valid = sorted(valid)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown {kind} '{key}'{hint}; valid: {', '.join(valid)}"
