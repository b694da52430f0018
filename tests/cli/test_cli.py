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


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, small_model: Path) -> Path:
    """Broken inputs shared by the bad-input cases (each case writes only into its own tmp_path)."""
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "cfg.yaml").write_text("model: nexus-tiny\ndata: .\nlearning_rate: 0.1\n")
    (tmp / "empty.jsonl").write_text("")
    (tmp / "broken.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00not gzip")
    (tmp / "corrupt").mkdir()
    for f in small_model.iterdir():
        (tmp / "corrupt" / f.name).write_bytes(f.read_bytes())
    (tmp / "corrupt" / "model.safetensors").write_bytes(b"\x00" * 64)
    return tmp


# (command line from (bad files, this case's output folder, the small model), the message's key part)
BAD_INPUTS = [
    pytest.param(lambda b, o, m: ["train", b / "cfg.yaml"], "unknown training config key 'learning_rate'",
                 id="train-unknown-key"),
    pytest.param(lambda b, o, m: ["train", b / "cfg.yaml", "--set", "max_steps=-1", "--set", "learning_rate=1"],
                 "learning_rate", id="train-set-unknown-key"),
    pytest.param(lambda b, o, m: ["init", "nexus-huge", "--out", o / "x"], "unknown preset 'nexus-huge'",
                 id="init-unknown-preset"),
    pytest.param(lambda b, o, m: ["init", "nexus-tiny", "--out", o / "y", "--set", "nexus_m=0"],
                 "nexus_m must be a positive integer", id="init-bad-value"),
    pytest.param(lambda b, o, m: ["grow", m, "--out", o / "g1", "--set", "nexus_m=100"],
                 "would shrink nexus_m from 160", id="grow-shrink"),
    pytest.param(lambda b, o, m: ["grow", m, "--out", o / "g2", "--set", "depth=3"],
                 "unknown nexus growth field 'depth'", id="grow-unknown-field"),
    pytest.param(lambda b, o, m: ["grow", m, "--out", o / "g3", "--set", "nexus_m=170", "--init", "ones"],
                 "unknown --init", id="grow-unknown-init"),
    pytest.param(lambda b, o, m: ["grow", m, "--out", o / "g6", "--set", "num_hidden_layers=6", "--layers-at", "0"],
                 "layers_at lists 1 position(s) but num_hidden_layers grows by 2", id="grow-layers-at"),
    pytest.param(lambda b, o, m: ["grow", b / "missing", "--out", o / "g4", "--set", "nexus_m=170"],
                 "does not exist", id="grow-missing"),
    pytest.param(lambda b, o, m: ["grow", b / "corrupt", "--out", o / "g5", "--set", "nexus_m=170"],
                 "model.safetensors is corrupt", id="grow-corrupt"),
    pytest.param(lambda b, o, m: ["eval", b / "corrupt", "--data", b], "model.safetensors is corrupt",
                 id="eval-corrupt"),
    pytest.param(lambda b, o, m: ["eval", m, "--data", b], "not a prepared data folder", id="eval-bad-data"),
    pytest.param(lambda b, o, m: ["eval", m, "--tasks", "mmlux"], "unknown task 'mmlux'", id="eval-unknown-task"),
    pytest.param(lambda b, o, m: ["eval", m], "pass --tasks", id="eval-no-tasks"),
    pytest.param(lambda b, o, m: ["data", "prepare", b / "empty.jsonl", "--tokenizer", SP_MODEL, "--out", o / "d1"],
                 "no usable documents", id="prepare-empty"),
    pytest.param(lambda b, o, m: ["data", "prepare", b / "broken.jsonl.gz", "--tokenizer", SP_MODEL, "--out",
                                  o / "d2"], "cannot read", id="prepare-broken-gzip"),
    pytest.param(lambda b, o, m: ["data", "prepare", b / "nothing.txt", "--tokenizer", SP_MODEL, "--out", o / "d3"],
                 "does not exist", id="prepare-missing"),
    pytest.param(lambda b, o, m: ["train", "--resume", b / "not-a-run"], "is not a training run",
                 id="resume-not-a-run"),
    pytest.param(lambda b, o, m: ["convert", b / "missing", "--out", o / "c"], "holds no config.json",
                 id="convert-missing"),
]


@pytest.mark.parametrize(("command", "message"), BAD_INPUTS)
def test_bad_input_gives_one_clear_line(command, message, bad_files, small_model, tmp_path, capsys):
    """In-process for speed: an exception other than GrowlmError would propagate and fail the test."""
    args = [str(a) for a in command(bad_files, tmp_path, small_model)]
    assert main(args) == 2, args
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, (args, last)


def test_errors_have_no_traceback_in_a_real_process(tmp_path):
    result = growlm("grow", tmp_path / "missing", "--out", tmp_path / "g", "--set", "nexus_m=170")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: checkpoint {tmp_path / 'missing'} does not exist"


def test_models_lists_every_preset(capsys):
    from growlm.models.presets import PRESETS

    result = growlm("models", "--json")  # a real process; the table in this one
    rows = json.loads(result.stdout)
    assert [r["preset"] for r in rows] == list(PRESETS)
    assert all(r["total_params"] > 0 and r["train_flops_per_token"] > 0 for r in rows)
    capsys.readouterr()
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert "nexus-440m" in table and "qwen3-tiny" in table


def test_init_overrides_and_generate(small_model, tmp_path):
    config = json.loads((small_model / "config.json").read_text())
    assert config["model_type"] == "growlm_nexus" and config["eos_token_id"] == 2
    # init in this process (small_model ran it as a real one); generate in a real process
    assert main(["init", "qwen3-tiny", "--out", str(tmp_path / "q"), "--set", "num_hidden_layers=2"]) == 0
    assert json.loads((tmp_path / "q" / "config.json").read_text())["num_hidden_layers"] == 2
    result = growlm("generate", small_model, "--prompt", "The ship", "--max-new-tokens", "5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("The ship") and len(result.stdout.strip()) > len("The ship")
