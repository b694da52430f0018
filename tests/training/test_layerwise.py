"""Layer-wise constructive growth: the recipe expands to the right stages, refuses bad specs by
name, and a real 3-block run keeps frozen blocks bit-identical, changes them in the holistic
stage by exactly the merged LoRA deltas, trains every new block, and ledgers exact FLOPs."""

import copy
import json

import pytest
import torch

from growlm.data.tokenizer import load_tokenizer
from growlm.errors import ConfigError, GrowthError
from growlm.growth import parse_init
from growlm.growth.grow import grow_model, verify_growth
from growlm.models import model_class_for, storage
from growlm.models.accounting import model_cost
from growlm.models.presets import build_config
from growlm.overrides import read_yaml
from growlm.substrate.build import expected_table
from growlm.training.layerwise import expand_layerwise
from growlm.training.plan import load_plan, parse_plan, plan_shapes, run_plan
from tests.conftest import REPO
from tests.training.conftest import LAYERWISE_TINY, block, check_lora_merge, final_checkpoint


def test_tiny_plan_expands_to_the_recipe():
    plan = load_plan(LAYERWISE_TINY)
    names = [s.name for s in plan.stages]
    assert names == ["block-01", "block-02", "block-03-holistic", "block-04-holistic"]
    first = plan.stages[0]
    assert first.train["model_overrides"] == {"embedding": "glyph", "tie_word_embeddings": False,
                                              "num_hidden_layers": 1}
    assert "frozen" not in first.train  # a substrate is never trainable; nothing to freeze
    for k, stage in enumerate(plan.stages[1:], start=2):
        assert stage.grow == {"num_hidden_layers": k} and stage.init == "fresh"
        assert stage.train["trainable"] == [f"model.layers.{k - 1}.*", "lm_head.weight", "model.norm.weight"]
        assert ("lora" in stage.train) == (k >= 3)
        if k >= 3:
            assert stage.train["lora"]["layers"] == list(range(k - 1))
    rows = plan_shapes(plan)
    assert [r["config"]["num_hidden_layers"] for r in rows] == [1, 2, 3, 4]
    gpu = load_plan(REPO / "plans" / "frozen-substrate-gpu.yaml")
    assert [r["config"]["num_hidden_layers"] for r in plan_shapes(gpu)] == list(range(1, 9))


BASE = {"model": "nexus-tiny", "depth": 3, "tokens_per_block": 256}


@pytest.mark.parametrize("spec, message", [
    ({**BASE, "depht": 3}, "depht"),
    ({**BASE, "model": "qwen3-tiny"}, "tie_word_embeddings"),
    ({**BASE, "holistic_from": 2}, "needs layerwise.lora"),
    ({**BASE, "holistic_from": 1, "lora": {"target_modules": ["o_proj"]}}, "at least 2"),
    ({**BASE, "lora": {"target_modules": ["o_proj"]}}, "holistic_from"),
    ({**BASE, "model_overrides": {"num_hidden_layers": 2}}, "num_hidden_layers"),
    ({**BASE, "max_steps_per_block": 3}, "exactly one"),
    ({**BASE, "grown": {"trainable": ["x"]}}, "cannot set trainable"),
    ({**BASE, "depth": 0}, "depth"),
])
def test_bad_layerwise_specs_are_refused_by_name(spec, message):
    with pytest.raises(ConfigError, match=message):
        expand_layerwise(spec)


def test_learned_embeddings_are_frozen_by_the_recipe():
    stages = expand_layerwise(BASE)
    assert stages[0]["frozen"] == ["model.embed_tokens.weight"] and "frozen" not in stages[1]
    assert "frozen" not in expand_layerwise({**BASE, "freeze_embeddings": False})[0]


def test_stages_and_layerwise_together_are_refused():
    with pytest.raises(ConfigError, match="not both"):
        parse_plan({"out_dir": "x", "layerwise": BASE, "stages": [{"model": "nexus-tiny"}]})


def test_fresh_init_draws_a_from_scratch_block_and_changes_the_function():
    config = build_config("llama-tiny", {"num_hidden_layers": 1, "vocab_size": 256})
    torch.manual_seed(0)
    model = model_class_for(config)(config)
    result = grow_model(model, {"num_hidden_layers": 3}, parse_init("fresh"), seed=5)
    state = result.model.state_dict()
    for name, value in model.state_dict().items():  # old tensors untouched
        assert torch.equal(state[name], value)
    new = state["model.layers.2.mlp.down_proj.weight"]
    assert abs(float(new.std()) - config.initializer_range) < 0.1 * config.initializer_range
    assert torch.equal(state["model.layers.1.input_layernorm.weight"], torch.ones(config.hidden_size))
    assert not torch.equal(new, state["model.layers.1.mlp.down_proj.weight"])  # each block its own draw
    again = grow_model(model, {"num_hidden_layers": 3}, parse_init("fresh"), seed=5).model.state_dict()
    assert all(torch.equal(again[k], v) for k, v in state.items())  # seeded
    check = verify_growth(model, result)
    assert check.passed and check.logits.max_rel_diff > 1e-3  # trains; not lossless
    with pytest.raises(GrowthError, match="depth growth"):
        grow_model(model, {"num_hidden_layers": 2, "intermediate_size": 512}, parse_init("fresh"))


def test_layerwise_run_freezes_merges_and_ledgers_exactly(tmp_path, tiny_data):
    values = copy.deepcopy(read_yaml(LAYERWISE_TINY, "plan file"))
    values["out_dir"] = str(tmp_path / "run")
    values["defaults"].update(data=str(tiny_data), seq_len=32, micro_batch_size=2, warmup_steps=1,
                              log_every=2, eval_every=4, eval_batches=1, checkpoint_every=4, progress=False)
    values["layerwise"].update(depth=3, tokens_per_block=4 * 64)  # 4 steps of 2 x 32 tokens per block
    out = tmp_path / "run"
    ledger = run_plan(parse_plan(values))
    assert [s.stage for s in ledger.stages] == ["block-01", "block-02", "block-03-holistic"]
    s1, s2, s3 = (storage.load_state(final_checkpoint(out, s))
                  for s in ("stage-01-block-01", "stage-02-block-02", "stage-03-block-03-holistic"))

    # the glyph substrate never moves: every stage holds the table built from the tokenizer, bit for bit
    config = build_config("nexus-tiny", {"num_hidden_layers": 1, "tie_word_embeddings": False, "embedding": "glyph"})
    table = expected_table(config, load_tokenizer(tiny_data / "tokenizer"))
    for state in (s1, s2, s3):
        assert torch.equal(state["model.embed_tokens.weight"], table)

    # stage 2: block 0 frozen, bit-identical; the fresh block 1 and the head train
    assert all(torch.equal(v, s1[k]) for k, v in block(s2, 0).items())
    grown2 = storage.load_state(out / "stage-02-block-02" / "grown")
    assert all(not torch.equal(v, grown2[k]) for k, v in block(s2, 1).items() if v.dim() == 2)
    assert not torch.equal(s2["lm_head.weight"], s1["lm_head.weight"])

    # stage 3 (holistic): the unmerged base of blocks 0-1 is bit-identical to stage 2's result, and the
    # merged weights differ from it by exactly scale * B @ A on the adapted modules, nothing elsewhere
    lora_dir = final_checkpoint(out, "stage-03-block-03-holistic") / "lora"
    settings = json.loads((lora_dir / "adapter" / "adapter_config.json").read_text())
    adapted, adapter = check_lora_merge(lora_dir, s2, s3, (0, 1), settings["lora_alpha"] / settings["r"])
    assert adapted == {f"model.layers.{i}.{m}" for i in (0, 1) for m in ("self_attn.o_proj", "mlp.down_proj")}
    assert not any(".layers.2." in k for k in adapter)  # no adapter on the new block: it trains fully
    grown3 = storage.load_state(out / "stage-03-block-03-holistic" / "grown")
    assert all(not torch.equal(v, grown3[k]) for k, v in block(s3, 2).items() if v.dim() == 2)

    # FLOPs ledger, known answer for stage 2: a full training step of the 2-block model minus block 0's
    # backward (input and weight gradients: 4 FLOPs per weight, 8 * heads * head_dim * T for attention)
    cfg2 = build_config("nexus-tiny", {"num_hidden_layers": 2, "tie_word_embeddings": False})
    block0 = sum(v.numel() for v in block(s2, 0).values() if v.dim() == 2)
    attn = cfg2.num_attention_heads * cfg2.head_dim * 32
    assert ledger.stages[1].train_flops_per_token == model_cost(cfg2, 32).train_flops_per_token \
        - 4 * block0 - 8 * attn
    assert ledger.stages[1].train_flops == ledger.stages[1].train_flops_per_token * 4 * 64
    # holistic: every block back-propagates, weight gradients only for adapters, block 2, norm, head
    full3 = model_cost(build_config("nexus-tiny", {"num_hidden_layers": 3, "tie_word_embeddings": False}), 32)
    frozen_matmul = sum(v.numel() for v in block(s2, 0).values() if v.dim() == 2) * 2
    lora_params = sum(v.numel() for v in adapter.values())
    assert ledger.stages[2].train_flops_per_token == full3.train_flops_per_token - 2 * frozen_matmul \
        + 6 * lora_params
