"""Speed bookkeeping of ``growlm train`` (steady-state vs wall-clock, time to the first step) and
the compile modes (``training/compiling.py``)."""

import json
import types

import pytest
import torch

from growlm import system
from growlm.errors import ConfigError
from growlm.models import model_class_for
from growlm.models.presets import build_config
from growlm.training import compiling
from growlm.training.trainer import STEADY_SKIP_STEPS, Trainer, start_run, summary_line
from tests.conftest import train_config


class FakeClock:
    """``time.time`` for the trainer: time passes only when the test says so, in binary fractions of
    a second, so every sum the trainer forms is exact and so is every figure checked below."""

    def __init__(self) -> None:
        self.now = 1024.0

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


SETUP_S, FIRST_STEP_S, STEP_S, VALIDATE_S, SAVE_S = 2.0, 1.5, 0.125, 0.25, 0.5


def test_steady_state_leaves_out_the_slow_first_step(tiny_data, tmp_path, monkeypatch):
    """Steps of known length on a fake clock: setup takes 2 s, a first step stalls for 1.5 s (as
    compilation does), then 0.125 s each; each validation takes 0.25 s and each checkpoint 0.5 s.
    The stall shows in the time to the first step and in the run's average, not in the
    steady-state rate, which is tokens per step / 0.125 s; wall clock also counts setup,
    validation and checkpoints."""
    import growlm.training.trainer as trainer

    clock = FakeClock()
    monkeypatch.setattr(trainer, "time", types.SimpleNamespace(time=clock.time))
    calls = {"step": 0, "validate": 0, "save": 0}
    init, validate, save = Trainer.__init__, Trainer.validate, Trainer.save

    def setup(self, *args, **kwargs):
        init(self, *args, **kwargs)
        clock.advance(SETUP_S)

    def step(self):
        calls["step"] += 1
        clock.advance(FIRST_STEP_S if calls["step"] == 1 else STEP_S)
        return 1.0, 1.0

    def timed(name, original, seconds):
        def run(self, *args, **kwargs):
            calls[name] += 1
            result = original(self, *args, **kwargs)
            clock.advance(seconds)
            return result
        return run

    monkeypatch.setattr(Trainer, "__init__", setup)
    monkeypatch.setattr(Trainer, "_step", step)
    monkeypatch.setattr(Trainer, "validate", timed("validate", validate, VALIDATE_S))
    monkeypatch.setattr(Trainer, "save", timed("save", save, SAVE_S))
    steps = STEADY_SKIP_STEPS + 7
    cfg = train_config(tiny_data, tmp_path / "run", max_steps=steps, eval_every=5, checkpoint_every=5)
    summary = start_run(cfg)
    assert summary.session_steps == steps and calls["validate"] >= 2 and calls["save"] >= 2
    assert summary.first_step_s == FIRST_STEP_S
    assert summary.time_to_first_step_s == SETUP_S + FIRST_STEP_S
    assert summary.steady_tokens_per_s == round(cfg.tokens_per_step / STEP_S, 1)
    # the average over all steps carries the stall
    train_s = FIRST_STEP_S + (steps - 1) * STEP_S
    assert summary.train_seconds == round(train_s, 2)
    assert summary.tokens_per_s == round(summary.tokens / train_s, 1)
    # wall clock also counts setup, validation and checkpoints
    wall_s = SETUP_S + train_s + calls["validate"] * VALIDATE_S + calls["save"] * SAVE_S
    assert summary.wall_seconds == round(wall_s, 2) == round(clock.now - 1024.0, 2)
    assert summary.wall_tokens_per_s == round(summary.tokens / wall_s, 1)
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["steady_tokens_per_s"] == summary.steady_tokens_per_s
    assert "steady" in summary_line(summary) and "first step after 3.5 s" in summary_line(summary)


def test_too_short_a_run_has_no_steady_state(tiny_data, tmp_path):
    summary = start_run(train_config(tiny_data, tmp_path / "run", max_steps=STEADY_SKIP_STEPS))
    assert summary.steady_tokens_per_s is None and summary.time_to_first_step_s > 0


def test_compile_modes_are_checked(tiny_data, tmp_path):
    assert train_config(tiny_data, tmp_path, compile="regional").compile == "regional"
    with pytest.raises(ConfigError, match="compile must be true, false, auto, regional, graphs or autotune"):
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


@pytest.fixture
def compiler_config():
    """Puts back every torch compiler setting the test changes: they are process-wide, and a
    setting left behind would change how later tests compile."""
    import torch._dynamo.config
    import torch._functorch.config
    import torch._inductor.config

    modules = (torch._dynamo.config, torch._inductor.config, torch._functorch.config)
    saved = [m.get_config_copy() for m in modules]
    yield
    for module, before in zip(modules, saved, strict=True):
        after = module.get_config_copy()
        for key in [k for k in before if after[k] != before[k]]:
            setattr(module, key, before[key])
        assert module.get_config_copy() == before


def test_compiler_configuration_raises_the_recompile_limit(compiler_config):
    import torch._dynamo
    import torch._inductor.config

    name = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
    setattr(torch._dynamo.config, name, 8)
    torch._inductor.config.fx_graph_cache = False
    system.configure_compiler()  # what configure_process applies (compiling itself changes no setting)
    assert getattr(torch._dynamo.config, name) == system.RECOMPILE_LIMIT
    assert torch._inductor.config.fx_graph_cache


# -- compile: graphs (CUDA graphs; issue 23) ----------------------------------------------------
class CompileSpy:
    """Stands in for ``torch.compile``: records the mode asked for and returns the model itself, so a
    test sees how growlm compiles without paying for a compilation."""

    def __init__(self) -> None:
        self.modes: list[str | None] = []

    def __call__(self, model, mode=None, **_):
        self.modes.append(mode)
        return model


def test_graphs_without_cuda_falls_back_to_compile_true_with_one_message(monkeypatch, caplog):
    spy = CompileSpy()
    monkeypatch.setattr(torch, "compile", spy)
    model = torch.nn.Linear(2, 2)
    caplog.set_level("INFO", logger="growlm")
    assert compiling.resolve_mode("graphs", torch.device("cpu"), model) is True
    forward = compiling.compile_model(model, "graphs", torch.device("cpu"))
    said = caplog.messages
    assert forward is model and spy.modes == [None]  # plain torch.compile, no reduce-overhead
    assert len(said) == 2 and said[0] == said[1]
    assert "compile: graphs needs a CUDA device (this run is on cpu)" in said[0] and "compile: true" in said[0]


def test_graphs_on_cuda_compiles_with_reduce_overhead_and_marks_every_step(monkeypatch, caplog):
    spy, marks = CompileSpy(), []
    monkeypatch.setattr(torch, "compile", spy)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(len(marks)))
    model = torch.nn.Linear(3, 2)
    caplog.set_level("INFO", logger="growlm")
    forward = compiling.compile_model(model, "graphs", torch.device("cuda"))
    assert isinstance(forward, compiling.GraphedStep) and spy.modes == ["reduce-overhead"] and not caplog.messages
    x = torch.randn(4, 3)
    for calls in (1, 2):
        assert torch.equal(forward(x), model(x)) and len(marks) == calls
    # gradient accumulation: a gradient held from the last micro-step leaves the graphs' memory first
    model(x).sum().backward()
    held = model.weight.grad
    forward(x).sum().backward()
    assert model.weight.grad is not held and torch.allclose(model.weight.grad, 2 * held)


def test_autotune_asks_inductor_for_max_autotune_on_cuda_and_falls_back_on_cpu(monkeypatch, caplog):
    spy = CompileSpy()
    monkeypatch.setattr(torch, "compile", spy)
    model = torch.nn.Linear(2, 2)
    caplog.set_level("INFO", logger="growlm")
    assert compiling.compile_model(model, "autotune", torch.device("cpu")) is model
    assert spy.modes == [None] and len(caplog.messages) == 1
    assert "compile: autotune needs a CUDA device (this run is on cpu)" in caplog.messages[0]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    compiling.compile_model(model, "autotune", torch.device("cuda"))
    assert spy.modes == [None, "max-autotune-no-cudagraphs"] and len(caplog.messages) == 1
    with pytest.raises(ConfigError, match="autotune"):
        compiling.check_mode("max-autotune")


def test_graphs_wrapper_check_names_ddp_and_fsdp(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    class FSDPModule(torch.nn.Module):
        pass

    cuda = torch.device("cuda")
    assert "DDP/FSDP" in compiling.graphs_unavailable(cuda, torch.nn.Sequential(FSDPModule()))
    assert compiling.graphs_unavailable(cuda, torch.nn.Sequential(torch.nn.Linear(2, 2))) is None


def test_train_with_compile_graphs_on_cpu_trains_as_compile_true(tiny_data, tmp_path, monkeypatch, capsys):
    """The trainer passes its messages to the fallback, and the run is the plain run's (torch.compile
    replaced by the identity: the point is the wiring, not the compiler)."""
    monkeypatch.setattr(torch, "compile", CompileSpy())
    runs = {}
    for mode in ("graphs", False):
        cfg = train_config(tiny_data, tmp_path / str(mode), compile=mode, max_steps=6, log_every=2, eval_every=100)
        assert cfg.compile == mode
        start_run(cfg)
        runs[mode] = [json.loads(line)["loss"] for line in (tmp_path / str(mode) / "metrics.jsonl").read_text()
                      .splitlines() if "loss" in json.loads(line)]
    assert runs["graphs"] == runs[False] and len(runs[False]) == 3
    assert capsys.readouterr().err.count("compile: graphs needs a CUDA device") == 1
