"""The command line: clear one-line errors for bad input, and the informational commands."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from growlm.cli.main import main
from tests.conftest import SP_MODEL


def growlm(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "growlm.cli.main", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("m") / "model"
    result = growlm("init", "nexus-tiny", "--out", out, "--tokenizer", SP_MODEL)
    assert result.returncode == 0, result.stderr
    return out


def _bad_inputs(tmp: Path, small_model: Path):
    (tmp / "cfg.yaml").write_text("model: nexus-tiny\ndata: .\nlearning_rate: 0.1\n")
    (tmp / "empty.jsonl").write_text("")
    (tmp / "broken.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00not gzip")
    (tmp / "corrupt").mkdir()
    for f in small_model.iterdir():
        (tmp / "corrupt" / f.name).write_bytes(f.read_bytes())
    (tmp / "corrupt" / "model.safetensors").write_bytes(b"\x00" * 64)
    return [
        (["train", tmp / "cfg.yaml"], "unknown training config key 'learning_rate'"),
        (["train", tmp / "cfg.yaml", "--set", "max_steps=-1", "--set", "learning_rate=1"], "learning_rate"),
        (["init", "nexus-huge", "--out", tmp / "x"], "unknown preset 'nexus-huge'"),
        (["init", "nexus-tiny", "--out", tmp / "y", "--set", "nexus_m=0"], "nexus_m must be a positive integer"),
        (["grow", small_model, "--out", tmp / "g1", "--set", "nexus_m=100"], "would shrink nexus_m from 160"),
        (["grow", small_model, "--out", tmp / "g2", "--set", "depth=3"], "unknown nexus growth field 'depth'"),
        (["grow", small_model, "--out", tmp / "g3", "--set", "nexus_m=170", "--init", "ones"], "unknown --init"),
        (["grow", small_model, "--out", tmp / "g6", "--set", "num_hidden_layers=6", "--layers-at", "0"],
         "layers_at lists 1 position(s) but num_hidden_layers grows by 2"),
        (["grow", tmp / "missing", "--out", tmp / "g4", "--set", "nexus_m=170"], "does not exist"),
        (["grow", tmp / "corrupt", "--out", tmp / "g5", "--set", "nexus_m=170"], "model.safetensors is corrupt"),
        (["eval", tmp / "corrupt", "--data", tmp], "model.safetensors is corrupt"),
        (["eval", small_model, "--data", tmp], "not a prepared data folder"),
        (["eval", small_model, "--tasks", "mmlu"], "unknown task 'mmlu'"),
        (["eval", small_model], "pass --tasks"),
        (["data", "prepare", tmp / "empty.jsonl", "--tokenizer", SP_MODEL, "--out", tmp / "d1"], "no usable documents"),
        (["data", "prepare", tmp / "broken.jsonl.gz", "--tokenizer", SP_MODEL, "--out", tmp / "d2"], "cannot read"),
        (["data", "prepare", tmp / "nothing.txt", "--tokenizer", SP_MODEL, "--out", tmp / "d3"], "does not exist"),
        (["train", "--resume", tmp / "not-a-run"], "is not a training run"),
        (["convert", tmp / "missing", "--out", tmp / "c"], "holds no config.json"),
    ]


def test_bad_input_gives_one_clear_line(tmp_path, small_model, capsys):
    """In-process for speed: an exception other than GrowlmError would propagate and fail the test."""
    for args, message in _bad_inputs(tmp_path, small_model):
        assert main([str(a) for a in args]) == 2, args
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith("error: ") and message in last, (args, last)


def test_errors_have_no_traceback_in_a_real_process(tmp_path):
    result = growlm("grow", tmp_path / "missing", "--out", tmp_path / "g", "--set", "nexus_m=170")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: checkpoint {tmp_path / 'missing'} does not exist"


def test_models_lists_every_preset():
    from growlm.models.presets import PRESETS

    result = growlm("models", "--json")
    rows = json.loads(result.stdout)
    assert [r["preset"] for r in rows] == list(PRESETS)
    assert all(r["total_params"] > 0 and r["train_flops_per_token"] > 0 for r in rows)
    table = growlm("models")
    assert "nexus-440m" in table.stdout and "qwen3-tiny" in table.stdout


def test_init_overrides_and_generate(small_model, tmp_path):
    config = json.loads((small_model / "config.json").read_text())
    assert config["model_type"] == "growlm_nexus" and config["eos_token_id"] == 2
    out = growlm("init", "qwen3-tiny", "--out", tmp_path / "q", "--set", "num_hidden_layers=2")
    assert out.returncode == 0 and json.loads((tmp_path / "q" / "config.json").read_text())["num_hidden_layers"] == 2
    result = growlm("generate", small_model, "--prompt", "The ship", "--max-new-tokens", "5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("The ship") and len(result.stdout.strip()) > len("The ship")
