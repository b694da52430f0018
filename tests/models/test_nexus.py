"""Nexusformer: the Nexus-Rank map, its variant, config checks, transformers round trip."""

import math
import re

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForCausalLM

from growlm.errors import ConfigError
from growlm.models.nexus import NexusRank
from growlm.models.presets import build_config
from tests.conftest import make_model, small_config


def test_nexus_rank_is_the_papers_formula():
    config = small_config("nexus", 0)
    layer = NexusRank(config.hidden_size, 24, config)
    x = torch.randn(5, config.hidden_size)
    wm, wa, wd = layer.m_proj.weight, layer.a_proj.weight, layer.d_proj.weight
    expected = F.gelu(F.gelu(x @ wm.T) @ wa.T) @ wd.T
    assert torch.allclose(layer(x), expected, atol=1e-6)
    assert wm.shape == (config.nexus_m, config.hidden_size)
    assert wa.shape == (config.nexus_a, config.nexus_m)
    assert wd.shape == (24, config.nexus_a)
    assert all(m.bias is None for m in (layer.m_proj, layer.a_proj, layer.d_proj))


def test_l2_variant_normalises_before_each_gelu():
    config = small_config("nexus", 1, nexus_norm="l2")
    assert config.nexus_scale_m == pytest.approx(math.sqrt(config.nexus_m))
    layer = NexusRank(config.hidden_size, 16, config)
    x = torch.randn(3, config.hidden_size)
    u1 = F.normalize(layer.m_proj(x), dim=-1) * config.nexus_scale_m
    u2 = F.normalize(layer.a_proj(F.gelu(u1)), dim=-1) * config.nexus_scale_a
    assert torch.allclose(layer(x), layer.d_proj(F.gelu(u2)), atol=1e-6)


def test_qkv_are_nexus_rank_and_o_ffn_are_linear():
    model = make_model(small_config("nexus", 2))
    attn = model.model.layers[0].self_attn
    assert all(isinstance(getattr(attn, f"{p}_proj"), NexusRank) for p in "qkv")
    assert isinstance(attn.o_proj, torch.nn.Linear)
    assert isinstance(model.model.layers[0].mlp.gate_proj, torch.nn.Linear)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"nexus_m": 0}, "nexus_m must be a positive integer"),
     ({"nexus_norm": "layer"}, "nexus_norm must be one of"),
     ({"num_attention_heads": 4, "num_key_value_heads": 3}, "must divide"),
     ({"hidden_size": -8}, "hidden_size must be a positive integer"),
     ({"nexus_mm": 3}, "unknown nexus field 'nexus_mm' (did you mean 'nexus_m'?)"),
     ({"nexus_m": "wide"}, "nexus_m must be a int")],
)
def test_bad_config_values_are_named(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_config("nexus-tiny", overrides)


@pytest.mark.parametrize("arch", ["nexus", "qwen3"])
def test_save_and_load_with_automodel(arch, tmp_path):
    model = make_model(small_config(arch, 3, tie_word_embeddings=True), perturb=0.05)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    assert AutoConfig.from_pretrained(tmp_path).model_type == f"growlm_{arch}"
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    ids = torch.randint(0, 512, (2, 11))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)


def test_m_above_a_warns_instead_of_refusing():
    """The paper's Table 9 ablations (M/A = 1180/960, 1130/1010) depart from M <= A: allowed, with a warning."""
    with pytest.warns(UserWarning, match="nexus_m=118 exceeds nexus_a=96: departs from the main"):
        config = build_config("nexus-tiny", {"nexus_m": 118, "nexus_a": 96})
    model = make_model(config)
    assert model.model.layers[0].self_attn.q_proj.a_proj.weight.shape == (96, 118)
