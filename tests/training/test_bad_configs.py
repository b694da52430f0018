"""A table of bad training configurations: each fails with one line that names the key."""

import pytest
import yaml

from growlm.cli.main import main

GOOD = {"model": "nexus-tiny", "data": ".", "out_dir": "unused"}

TABLE = [
    ({"lernrate": 0.1}, "unknown training config key 'lernrate'"),
    ({"max_steps": "ten"}, "max_steps must be a int"),
    ({"lr": "fast"}, "lr must be a float"),
    ({"trainable": "layers.*"}, "trainable must be a list"),
    ({"seq_len": -128}, "seq_len must be positive"),
    ({"micro_batch_size": 0}, "micro_batch_size must be positive"),
    ({"warmup_steps": -1}, "warmup_steps must not be negative"),
    ({"model_overrides": {"hidden_size": 0}}, "hidden_size must be a positive integer"),
    ({"model_overrides": {"num_attention_heads": 4, "num_key_value_heads": 3}},
     "num_key_value_heads=3 must divide num_attention_heads=4"),
    ({"model_overrides": {"depth": 3}}, "unknown nexus field 'depth'"),
    ({"model": "nexus-huge"}, "unknown preset 'nexus-huge'"),
    ({"data": "/no/such/prepared/folder"}, "data folder '/no/such/prepared/folder' does not exist"),
    ({"data": {"inputs": ["x"], "tokenizer": "t"}}, "data.out is required"),
    ({"schedule": "linear"}, "schedule must be one of cosine, wsd, constant"),
    ({"distributed": "zero3"}, "distributed must be one of"),
    ({"compile": "maybe"}, "compile must be true, false, auto, regional, graphs or autotune"),
    ({"lora": {"targets": ["q_proj"]}}, "unknown lora key 'targets'"),
]


@pytest.mark.parametrize(("change", "message"), TABLE)
def test_bad_config_gives_one_line_naming_the_key(tmp_path, capsys, change, message):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**GOOD, **change}))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
