"""Freezing, LoRA through peft, and the FLOPs of what actually trains."""

import json

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from growlm.errors import ConfigError
from growlm.models import storage
from growlm.models.accounting import model_cost, training_flops_per_token
from growlm.training.trainable import apply_lora, merged_model, set_trainable
from growlm.training.trainer import read_metrics, resume_run, start_run
from tests.conftest import make_model, small_config, train_config

_cfg = train_config


def test_frozen_parameters_do_not_move(tiny_data, tmp_path):
    start_run(_cfg(tiny_data, tmp_path / "a", max_steps=1, checkpoint_every=1))
    first = storage.list_checkpoints(tmp_path / "a")[-1]
    summary = start_run(_cfg(tiny_data, tmp_path / "b", model=None, init_from=str(first),
                             trainable=["model.layers.3.*", "lm_head.weight"], frozen=["model.layers.3.mlp.*"]))
    before, after = storage.load_model(first), storage.load_model(tmp_path / "b")
    for (name, p0), (_, p1) in zip(before.named_parameters(), after.named_parameters(), strict=True):
        trains = (name.startswith("model.layers.3.") and ".mlp." not in name) or name == "lm_head.weight"
        assert torch.equal(p0, p1) != trains, name
    assert summary.trainable_parameters < summary.parameters


def test_lora_checkpoints_are_merged_and_resume_exactly(tiny_data, tmp_path):
    values = {"lora": {"target_modules": ["o_proj", "gate_proj"], "r": 4, "alpha": 8}}
    start_run(_cfg(tiny_data, tmp_path / "run", **values))
    straight = read_metrics(tmp_path / "run")
    final = storage.list_checkpoints(tmp_path / "run")[-1]
    assert (final / "lora" / "adapter" / "adapter_model.safetensors").exists()
    state = json.loads((final / "trainer_state.json").read_text())
    assert any(".lora_A." in n for n in state["param_names"])
    assert not any(n.startswith("base_model") for n in state["param_names"])
    # model.safetensors holds base + B A * scale; transformers loads it as a plain model
    plain = storage.load_model(final)
    from growlm.training.trainable import load_lora

    wrapped = load_lora(final / "lora", plain.config, values["lora"], torch.device("cpu"))
    ids = torch.randint(0, 32000, (2, 16))
    with torch.no_grad():
        assert torch.allclose(plain(ids).logits, wrapped(input_ids=ids).logits, atol=1e-5)
    # resume from step 10 reproduces steps 11-20
    import shutil

    shutil.rmtree(final)
    resume_run(tmp_path / "run")
    assert read_metrics(tmp_path / "run") == [{**r, "tokens_per_s": r2["tokens_per_s"], "elapsed_s": r2["elapsed_s"]}
                                              for r, r2 in zip(straight, read_metrics(tmp_path / "run"), strict=True)]


def test_bad_patterns_and_adapters_are_named():
    model = make_model(small_config("qwen3", 0))
    with pytest.raises(ConfigError, match=r"trainable pattern 'model\.blocks\.\*' matches no parameter"):
        set_trainable(model, ["model.blocks.*"], [], lora=False)
    with pytest.raises(ConfigError, match=r"lora.target_modules \['w_q'\] match no linear module"):
        apply_lora(model, {"target_modules": ["w_q"]})
    with pytest.raises(ConfigError, match="unknown lora key 'rank'"):
        apply_lora(model, {"target_modules": ["q_proj"], "rank": 4})


def _counted(model, seq):
    ids = torch.randint(0, model.config.vocab_size if hasattr(model, "config") else 512, (2, seq))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
    return counter.get_total_flops() / (2 * seq)


@pytest.mark.parametrize("arch", ["nexus", "qwen3", "llama", "tokenformer"])
def test_training_flops_match_the_counter(arch):
    config = small_config(arch, 2, num_hidden_layers=3, tie_word_embeddings=False)
    model = make_model(config).train()
    assert training_flops_per_token(model, 16) == model_cost(config, 16).train_flops_per_token == _counted(model, 16)
    set_trainable(model, ["model.layers.2.*", "lm_head.weight"], [], lora=False)
    frozen = training_flops_per_token(model, 16)
    assert frozen == _counted(model, 16) < model_cost(config, 16).train_flops_per_token


def test_lora_flops_are_an_upper_bound_of_the_counter():
    config = small_config("llama", 3, num_hidden_layers=2)
    model = apply_lora(make_model(config), {"target_modules": ["q_proj", "v_proj"], "r": 4}).train()
    set_trainable(model, None, [], lora=True)
    counted, ours = _counted(model, 16), training_flops_per_token(model, 16)
    assert counted <= ours <= 1.15 * counted
    assert merged_model(model).config.architecture == "llama"
