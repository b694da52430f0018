"""Growth plans: the tiny plan runs, survives SIGKILL, and keeps an exact FLOPs ledger;
the paper-scale plans validate without training; bad plans are refused by name."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from growlm.errors import ConfigError, GrowthError
from growlm.models.presets import build_config
from growlm.training.plan import load_plan, parse_plan, plan_shapes
from tests.conftest import REPO

TINY = "plans/tiny-three-stage.yaml"


def _train(*args: str) -> list[str]:
    return [sys.executable, "-m", "growlm.cli.main", "train", *args]


def _metrics(out: Path) -> dict[str, list[tuple]]:
    runs = {}
    for stage in sorted(out.glob("stage-*")):
        rows = [json.loads(x) for x in (stage / "train" / "metrics.jsonl").read_text().splitlines()]
        runs[stage.name] = [(r["step"], r["loss"], r.get("val_loss")) for r in rows]
    return runs


def test_tiny_plan_interrupted_and_resumed_matches_uninterrupted(tmp_path, shared):
    straight = tmp_path / "straight"
    result = subprocess.run(_train(TINY, "--set", f"out_dir={straight}", "--set", "progress=false"), cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    ledger = json.loads((straight / "ledger.json").read_text())
    assert [s["stage"] for s in ledger["stages"]] == ["base", "wider", "deeper"]
    assert sum(s["train_flops"] for s in ledger["stages"]) == ledger["total"]["train_flops"]
    assert sum(s["tokens"] for s in ledger["stages"]) == ledger["total"]["tokens"] == 35840
    assert ledger["stages"][-1]["cumulative_train_flops"] == ledger["total"]["train_flops"]
    deeper = ledger["stages"][2]
    assert deeper["trainable_parameters"] < deeper["parameters"]
    assert deeper["train_flops_per_token"] < 6 * deeper["parameters"]
    assert all(s["growth_verified"] for s in ledger["stages"][1:])
    assert (straight / "loss.png").stat().st_size > 5000

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train(TINY, "--set", f"out_dir={killed}", "--set", "progress=false"), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed / "stage-02-wider" / "train" / "checkpoints" / "step-00000020"
    deadline = time.time() + 300
    while not checkpoint.exists():
        assert proc.poll() is None and time.time() < deadline, "the plan ended before stage 2 checkpointed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "stage-02-wider" / "stage.json").exists()
    result = subprocess.run(_train("--resume", str(killed)), cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "stage 1/3 base: complete, skipped" in result.stderr
    assert _metrics(killed) == _metrics(straight)
    resumed = json.loads((killed / "ledger.json").read_text())
    assert [(s["tokens"], s["train_flops"]) for s in resumed["stages"]] == \
        [(s["tokens"], s["train_flops"]) for s in ledger["stages"]]

    report = subprocess.run([sys.executable, "-m", "growlm.cli.main", "plan", "report", str(killed)],
                            capture_output=True, text=True)
    assert report.returncode == 0 and "deeper" in report.stdout and "total" in report.stdout


@pytest.mark.parametrize("arch", ["nexus", "tokenformer"])
@pytest.mark.parametrize("target", ["300m", "380m", "440m"])
def test_paper_plans_validate_to_the_table7_shapes(arch, target):
    plan = load_plan(REPO / "plans" / f"{arch}-240m-to-{target}.yaml")
    rows = plan_shapes(plan)
    assert [r["stage"] for r in rows] == ["base", "grow"]
    assert rows[0]["parameters"] < rows[1]["parameters"]
    preset = build_config(f"{arch}-{target}").field_values()
    grown = rows[1]["config"]
    for key in ("hidden_size", "num_hidden_layers", "nexus_m", "nexus_a", "qkv_slots", "num_attention_heads"):
        if key in preset:
            assert grown[key] == preset[key], key
    assert rows[1]["tokens"] >= 30_000_000_000 and rows[1]["seq_len"] == 4096


def test_plan_show_prints_every_stage():
    result = subprocess.run([sys.executable, "-m", "growlm.cli.main", "plan", "show",
                             "plans/nexus-240m-to-440m.yaml"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "187.94M params" in result.stdout and "351.01M params" in result.stdout
    assert "hidden_size 768->1024" in result.stdout


BASE = {"out_dir": "x", "defaults": {"data": ".", "seq_len": 8}}


@pytest.mark.parametrize(
    ("stages", "message", "error"),
    [([{"name": "a", "model": "nexus-tiny", "learning_rate": 1}], r"stage 1 \(a\): unknown key 'learning_rate'",
      ConfigError),
     ([{"model": "nexus-tiny", "grow": {"nexus_m": 200}}], "the first stage has nothing to grow", ConfigError),
     ([{"model": "nexus-tiny"}, {"model": "qwen3-tiny"}], "only the first stage names a model", ConfigError),
     ([{"name": "a", "model": "nexus-tiny"}, {"name": "a"}], "stage names must be unique", ConfigError),
     ([{"model": "nexus-tiny"}, {"grow": {"nexus_m": 100}}], "would shrink nexus_m", GrowthError),
     ([{"model": "nexus-tiny"}, {"grow": {"rope_theta": 1e6}}], "stage stage2: field 'rope_theta' cannot be grown",
      GrowthError),
     ([{"model": "nexus-tiny"}, {"grow": {"num_hidden_layers": 5}, "grow_options": {"at": 1}}],
      "unknown growth option 'at'", ConfigError),
     ([{"model": "nexus-tiny"}, {"init": "ones"}], "unknown --init", GrowthError)],
)
def test_bad_plans(stages, message, error):
    with pytest.raises(error, match=message):
        plan_shapes(parse_plan({**BASE, "stages": stages}))


def test_plan_level_keys_are_checked():
    with pytest.raises(ConfigError, match="unknown plan key 'stage'"):
        parse_plan({**BASE, "stage": []})
    with pytest.raises(ConfigError, match="needs out_dir"):
        parse_plan({"stages": [{"model": "nexus-tiny"}]})


def _write_plan(path: Path, out: Path, defaults: dict, **stage) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"out_dir": str(out), "defaults": defaults,
                                    "stages": [{"name": "base", "model": "nexus-tiny", **stage}]}))
    return path


def _error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(err) == 1, err
    return err[0]


def test_plan_show_refuses_what_train_refuses(tmp_path, capsys):
    from growlm.cli.main import main

    out = tmp_path / "out"
    for defaults, message in (({"seq_len": 8}, "stage 1 (base): 'data' must name a folder"),
                              ({"data": str(tmp_path / "nowhere")}, "data folder '")):
        plan = _write_plan(tmp_path / "plan.yaml", out, defaults, max_steps=2)
        assert main(["plan", "show", str(plan)]) == 2
        shown = _error_line(capsys)
        assert message in shown
        assert main(["train", str(plan)]) == 2
        assert _error_line(capsys) == shown  # the same line, before anything is written
        assert not out.exists()
    # a folder that a data mapping of the plan prepares on first use is fine before it exists
    spec = {"inputs": ["x"], "tokenizer": "t", "out": str(tmp_path / "later")}
    plan = parse_plan({"out_dir": str(out), "stages": [{"model": "nexus-tiny", "data": spec},
                                                       {"data": str(tmp_path / "later")}]})
    assert len(plan_shapes(plan)) == 2


def test_a_plan_that_failed_before_any_stage_trained_starts_over(tmp_path, tiny_data, capsys):
    from growlm.cli.main import main

    out = tmp_path / "out"
    defaults = {"data": str(tiny_data), "seq_len": 16, "micro_batch_size": 2, "warmup_steps": 0, "log_every": 1,
                "eval_every": 2, "eval_batches": 1, "checkpoint_every": 2, "progress": False, "device": "cpu"}
    # passes validation, fails when stage 1 starts (the tokenizer does not fit the vocabulary)
    broken = _write_plan(tmp_path / "plan.yaml", out, defaults, max_steps=2,
                         model_overrides={"num_hidden_layers": 1, "vocab_size": 100})
    assert main(["train", str(broken)]) == 2
    line = _error_line(capsys)
    assert "vocab_size is 100" in line and f"no stage of {out} has trained yet" in line
    assert (out / "plan.yaml").exists()
    assert main(["train", "--resume", str(out)]) == 2  # the stored plan fails again, and says what to do
    assert "fix the plan file and run `growlm train PLAN.yaml` again" in _error_line(capsys)

    fixed = _write_plan(tmp_path / "plan.yaml", out, defaults, max_steps=2, model_overrides={"num_hidden_layers": 1})
    assert main(["train", str(fixed)]) == 0
    err = capsys.readouterr().err
    assert f"out_dir {out} holds a plan run in which no stage has trained: starting it again" in err
    assert json.loads((out / "ledger.json").read_text())["total"]["tokens"] == 2 * 2 * 16
    assert "vocab_size" not in (out / "plan.yaml").read_text()  # the plan run now holds the fixed plan

    assert main(["train", str(fixed)]) == 2  # a stage has trained: only --resume continues it now
    assert "already holds a plan run" in _error_line(capsys)
    assert main(["plan", "show", str(fixed)]) == 0
    assert f"note: out_dir {out} already holds a plan run" in capsys.readouterr().err
