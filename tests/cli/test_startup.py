"""Start-up: the command line's parser needs no torch, and ``import growlm`` still registers the
architectures with transformers (which it now does when transformers is imported)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from growlm.cli.main import preset_rows
from tests.conftest import make_model, small_config

HEAVY = ("torch", "transformers", "numpy")


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, check=False)


def test_help_path_imports_no_torch():
    """Importing the CLI and building every subcommand's parser leaves torch, transformers and
    numpy unimported: ``growlm --help`` costs a parser, not seconds of imports."""
    result = _python("import sys, json; from growlm.cli.main import build_parser; build_parser(); "
                     f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


@pytest.mark.parametrize("order", ["growlm first", "transformers first"])
def test_import_growlm_registers_with_transformers(tmp_path, order):
    from growlm.models import storage

    model = make_model(small_config("qwen3"))
    storage.save_model(model, tmp_path / "m")
    imports = ("import growlm; assert 'torch' not in sys.modules; from transformers import AutoModelForCausalLM"
               if order == "growlm first" else "from transformers import AutoModelForCausalLM; import growlm")
    result = _python(f"import sys; {imports}; "
                     f"m = AutoModelForCausalLM.from_pretrained({str(tmp_path / 'm')!r}); print(type(m).__name__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == type(model).__name__


def test_models_rows_are_kept_and_read_back_without_torch(tmp_path, monkeypatch):
    monkeypatch.setenv("GROWLM_CACHE", str(tmp_path))
    counted = preset_rows(None)  # nothing kept yet: counted on built models
    kept = list((tmp_path / "models").glob("presets-*.json"))
    assert len(kept) == 1
    assert preset_rows(None) == json.loads(json.dumps(counted))  # read back: the same rows
    assert preset_rows(2048) != preset_rows(None)  # another context length is another key
    result = _python("import sys, json; from growlm.cli.main import main; main(['models', '--json']); "
                     "print(json.dumps([m for m in ('torch', 'transformers') if m in sys.modules]))",
                     GROWLM_CACHE=str(tmp_path))
    assert result.returncode == 0, result.stderr
    printed, imported = result.stdout.rsplit("\n[", 1)
    assert json.loads("[" + imported) == [] and json.loads(printed) == json.loads(json.dumps(counted))
