"""``--set KEY=VALUE`` parsing and type checking, shared by every command that takes it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from growlm.errors import ConfigError, unknown_key_message


def parse_assignments(items: Iterable[str] | None) -> dict[str, Any]:
    """Turn ``["a=1", "b.c=x"]`` into ``{"a": 1, "b.c": "x"}``, values read as YAML scalars."""
    result: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            result[key] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            result[key] = raw
    return result


def read_yaml(path: str | Path, what: str) -> Any:
    """The parsed content of a YAML file; a missing file or bad YAML is a :class:`ConfigError`."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc


def coerce(name: str, value: Any, expected: type, optional: bool = False) -> Any:
    """Check ``value`` against ``expected``; ints are accepted where floats are."""
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{name} must be a {expected.__name__}, got nothing")
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if expected is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"{name} must be a {expected.__name__}, got {value!r} ({type(value).__name__})")
    return value


def check_fields(
    values: Mapping[str, Any], types: Mapping[str, type], kind: str, optional: Iterable[str] = ()
) -> dict[str, Any]:
    """Coerce every entry of ``values``; an unknown name lists the valid ones."""
    optional = set(optional)
    out = {}
    for name, value in values.items():
        if name not in types:
            raise ConfigError(unknown_key_message(kind, name, types))
        out[name] = coerce(name, value, types[name], optional=name in optional)
    return out
