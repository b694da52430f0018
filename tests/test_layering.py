"""The package imports in one direction only: each layer calls down, never up (and so has no cycles).

Every ``import growlm...`` / ``from growlm... import`` in the source is checked, also
those inside functions, because a lazy import up the stack is still a dependency up
the stack.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "growlm"

# Top-level module or package of growlm -> its layer. A module may import its own layer or lower.
LAYERS = {
    "errors": 0, "overrides": 0, "system": 0, "plotting": 0, "stats": 0, "provenance": 0, "folders": 0,
    "runtime": 0,
    "models": 1, "data": 1, "substrate": 1,
    "evaluation": 2, "growth": 2,
    "training": 3, "convert": 3, "bench": 3, "composition": 3, "info": 3,
    "analysis": 4, "experiments": 5, "demo": 5, "cli": 6,
    "__init__": 6,
}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("growlm"):
            if node.module == "growlm":
                found += [(node.lineno, f"growlm.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("growlm.")]
    return found


def test_every_package_has_a_layer() -> None:
    tops = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
            if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    assert tops - set(LAYERS) == set(), "give new top-level modules a layer in tests/test_layering.py"


def test_no_import_goes_up() -> None:
    violations = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        module = ".".join(rel.parts)
        own = _part(module if not module.endswith(".__init__") else module[: -len(".__init__")])
        if module == "growlm.__init__":
            own = "__init__"
        for line, target in _imports(path):
            other = _part(target)
            if other == own:
                continue
            if LAYERS[other] > LAYERS[own]:
                violations.append(f"{path.relative_to(SRC.parent)}:{line} ({own}, layer {LAYERS[own]}) imports "
                                  f"{target} ({other}, layer {LAYERS[other]})")
    assert not violations, "imports that go up the layers:\n" + "\n".join(violations)


def test_convert_and_checkpoint_do_not_import_each_other() -> None:
    convert = {t for _, t in _imports(SRC / "convert.py")}
    checkpoint = {t for _, t in _imports(SRC / "training" / "checkpoint.py")}
    assert "growlm.training.checkpoint" not in convert
    assert "growlm.convert" not in checkpoint
