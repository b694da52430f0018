"""Speed bookkeeping of ``growlm train`` (steady-state vs wall-clock, time to the first step) and
the compile modes (``training/compiling.py``)."""

import json
import time

import pytest
import torch

from growlm.errors import ConfigError
from growlm.models import model_class_for
from growlm.models.presets import build_config
from growlm.training import compiling
from growlm.training.trainer import STEADY_SKIP_STEPS, Trainer, start_run, summary_line
from tests.conftest import train_config


def test_steady_state_leaves_out_the_slow_first_step(tiny_data, tmp_path, monkeypatch):
    """Steps of known length: a first step that stalls for 1.5 s (as compilation does), then 0.1 s
    each. The stall shows in the time to the first step and in the run's average, not in the
    steady-state rate, which is tokens per step / 0.1 s."""
    calls = []

    def step(self):
        calls.append(1)
        time.sleep(1.5 if len(calls) == 1 else 0.1)
        return 1.0, 1.0

    monkeypatch.setattr(Trainer, "_step", step)
    steps = STEADY_SKIP_STEPS + 7
    cfg = train_config(tiny_data, tmp_path / "run", max_steps=steps, eval_every=5)
    summary = start_run(cfg)
    assert summary["session_steps"] == steps
    assert 1.5 <= summary["first_step_s"] <= summary["time_to_first_step_s"] <= summary["wall_seconds"]
    expected = cfg.tokens_per_step / 0.1
    assert 0.8 * expected <= summary["steady_tokens_per_s"] <= expected
    # the average over all steps carries the stall: tokens / (1.5 + (steps - 1) * 0.1) s at most
    assert summary["tokens_per_s"] <= summary["tokens"] / (1.5 + (steps - 1) * 0.1)
    # wall clock also counts setup, evaluation and checkpoints
    assert summary["wall_tokens_per_s"] < summary["tokens_per_s"]
    assert summary["wall_tokens_per_s"] == pytest.approx(summary["tokens"] / summary["wall_seconds"], rel=0.05)
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["steady_tokens_per_s"] == summary["steady_tokens_per_s"]
    assert "steady" in summary_line(summary) and "first step after" in summary_line(summary)


def test_too_short_a_run_has_no_steady_state(tiny_data, tmp_path):
    summary = start_run(train_config(tiny_data, tmp_path / "run", max_steps=STEADY_SKIP_STEPS))
    assert summary["steady_tokens_per_s"] is None and summary["time_to_first_step_s"] > 0


def test_compile_modes_are_checked(tiny_data, tmp_path):
    assert train_config(tiny_data, tmp_path, compile="regional").compile == "regional"
    with pytest.raises(ConfigError, match="compile must be true, false, auto or regional"):
        train_config(tiny_data, tmp_path, compile="fast")
    assert compiling.resolve_mode("auto", torch.device("cpu")) is False
    assert compiling.resolve_mode("regional", torch.device("cpu")) == "regional"


def test_regional_compilation_finds_the_layers_of_every_wrapper():
    from growlm.training.trainable import apply_lora

    config = build_config("nexus-tiny", {"vocab_size": 256, "num_hidden_layers": 3})
    model = model_class_for(config)(config)
    assert compiling.decoder_layers(model) is model.model.layers
    wrapped = apply_lora(model, {"target_modules": ["o_proj"], "r": 2})
    assert len(compiling.decoder_layers(wrapped)) == 3
    from transformers import Qwen3Config, Qwen3ForCausalLM

    reference = Qwen3ForCausalLM(Qwen3Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=2, num_key_value_heads=2, head_dim=16))
    assert compiling.decoder_layers(reference) is reference.model.layers
    with pytest.raises(ConfigError, match="found no decoder layers"):
        compiling.decoder_layers(torch.nn.Linear(2, 2))


def test_compiler_configuration_raises_the_recompile_limit(monkeypatch):
    import torch._dynamo

    name = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
    monkeypatch.setattr(torch._dynamo.config, name, 8)
    compiling.configure_compiler()
    assert getattr(torch._dynamo.config, name) == compiling.RECOMPILE_LIMIT
    import torch._inductor.config

    assert torch._inductor.config.fx_graph_cache
