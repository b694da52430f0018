"""Bad training configurations fail with one message that names the key."""

import pytest

from growlm.errors import ConfigError
from growlm.training.config import build_train_config, load_train_config

GOOD = {"model": "nexus-tiny", "data": "."}


@pytest.mark.parametrize(
    ("values", "message"),
    [({"lr_max": 1.0}, "unknown training config key 'lr_max'.*; valid: .*beta1.*lr.*"),
     ({"max_step": 5}, "did you mean 'max_steps'"),
     ({"max_steps": "many"}, "max_steps must be a int"),
     ({"max_steps": 0}, "max_steps must be positive"),
     ({"seq_len": -4}, "seq_len must be positive"),
     ({"lr": 0}, "lr must be positive"),
     ({"beta2": 1.5}, "beta2 must be in"),
     ({"schedule": "linear"}, "schedule must be one of cosine, wsd, constant"),
     ({"device": "tpu"}, "device must be one of"),
     ({"model": None}, "set exactly one of 'model'"),
     ({"init_from": "x"}, "set exactly one of 'model'"),
     ({"data": "/no/such/folder"}, "data folder '/no/such/folder' does not exist"),
     ({"data": {"inputs": ["a"], "tokenizer": "t"}}, "data.out is required"),
     ({"data": {"inputs": ["a"], "tokenizer": "t", "out": "o", "shuffle": True}}, "unknown data key 'shuffle'"),
     ({"model_overrides": 3}, "model_overrides must be a mapping")],
)
def test_bad_values(values, message):
    with pytest.raises(ConfigError, match=message):
        build_train_config({**GOOD, **values})


def test_set_overrides_and_dotted_keys():
    cfg = build_train_config(GOOD, {"max_steps": 7, "model_overrides.nexus_m": 170, "lr": 1})
    assert cfg.max_steps == 7 and cfg.model_overrides == {"nexus_m": 170} and cfg.lr == 1.0
    with pytest.raises(ConfigError, match=r"unknown training config key 'seq_len\.x'"):
        build_train_config(GOOD, {"seq_len.x": 1})


def test_yaml_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_train_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_train_config(bad)
    bad.write_text("- a list")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_train_config(bad)


def test_shipped_configs_load(shared):
    from tests.conftest import REPO

    for name in ("nexus-tiny", "qwen3-tiny", "llama-tiny", "tokenformer-tiny"):
        cfg = load_train_config(REPO / "configs" / f"{name}.yaml")
        assert cfg.model == name and cfg.data["tokenizer"].endswith("tokenizer.model")
