"""Models on a frozen substrate: built, frozen, trained, saved, loaded without the font, grown."""

import json
import math

import pytest
import torch

from growlm.cli.main import main
from growlm.growth import grow_model, parse_init
from growlm.growth.verify import compare_logits, random_batch
from growlm.models import model_class_for, storage
from growlm.models.presets import build_config
from growlm.substrate import check_substrate, expected_table, install_substrate
from growlm.training.trainable import apply_lora, set_trainable
from tests.conftest import SP_MODEL, train_config

ARCHS = ["nexus", "qwen3", "llama", "tokenformer"]
SMALL = {"vocab_size": 32000, "num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 96,
         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "tie_word_embeddings": False}
EXTRA = {"nexus": {"nexus_m": 40, "nexus_a": 48}, "tokenformer": {"qkv_slots": 32, "proj_slots": 32, "ffn_slots": 48}}


def substrate_model(arch: str, kind: str = "binary", tokenizer=None, **fields):
    config = build_config(f"{arch}-tiny", {**SMALL, **EXTRA.get(arch, {}), "embedding": kind, **fields})
    torch.manual_seed(0)
    model = model_class_for(config)(config)
    install_substrate(model, tokenizer)
    return model


@pytest.mark.parametrize("arch", ARCHS)
def test_the_substrate_never_trains(arch):
    config = build_config(f"{arch}-tiny", {**SMALL, **EXTRA.get(arch, {}), "embedding": "random_binary"})
    assert torch.isnan(model_class_for(config)(config).model.embed_tokens.weight).all()  # not installed: NaN
    model = substrate_model(arch, "random_binary")
    weight = model.model.embed_tokens.weight
    assert not weight.requires_grad and torch.equal(weight, expected_table(model.config, None))
    for trainable in (None, ["*"], ["model.embed_tokens.weight", "lm_head.weight"]):
        set_trainable(model, trainable, None, lora=False)
        assert not weight.requires_grad
        decay, no_decay = storage.parameter_groups(model)
        assert "model.embed_tokens.weight" not in decay + no_decay
    lora = apply_lora(model, {"target_modules": ["lm_head"], "r": 2})
    set_trainable(lora, ["*"], None, lora=True)
    assert "model.embed_tokens.weight" not in storage.parameter_order(lora)
    model.train()
    ids = random_batch(32000, 0)
    model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
    assert weight.grad is None and model.lm_head.weight.grad is not None


def test_a_trained_glyph_model_keeps_its_table_and_loads_without_the_font(tiny_data, tmp_path, glyph32k,
                                                                          tokenizer32k, monkeypatch):
    from growlm.training.trainer import start_run

    start_run(train_config(tiny_data, tmp_path / "run", model="llama-tiny", max_steps=6, checkpoint_every=3,
                           eval_every=6, model_overrides={"embedding": "glyph", "num_hidden_layers": 1}))
    first, last = storage.list_checkpoints(tmp_path / "run")
    built = glyph32k[0].table(128)  # the table built at the start of the session, before any model
    before, after = storage.load_model(first), storage.load_model(last)
    assert after.config.embedding == "glyph" and after.config.embedding_dim == 128
    assert torch.equal(after.model.embed_tokens.weight, built)
    assert torch.equal(before.model.embed_tokens.weight, built)
    assert not torch.equal(before.lm_head.weight, after.lm_head.weight)  # the rest trained
    names = json.loads((last / "trainer_state.json").read_text())["param_names"]
    assert "model.embed_tokens.weight" not in names and "lm_head.weight" in names
    optimizer = torch.load(last / "optimizer.pt", weights_only=False)
    assert len(optimizer["state"]) == len(names)
    check_substrate(after, tokenizer32k)
    # loading needs neither the font nor the cache nor Pillow's drawing
    from transformers import AutoModelForCausalLM

    import growlm.substrate.glyphs as glyphs

    def no_font(*_args, **_kwargs):
        raise AssertionError("loading a model must not draw glyphs")

    monkeypatch.setattr(glyphs, "find_font", no_font)
    monkeypatch.setattr(glyphs, "GlyphRenderer", no_font)
    monkeypatch.setenv("GROWLM_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("GROWLM_SHARED", str(tmp_path / "nowhere"))
    loaded = AutoModelForCausalLM.from_pretrained(last)
    assert torch.equal(loaded.model.embed_tokens.weight, built)
    assert not loaded.model.embed_tokens.weight.requires_grad
    assert not storage.load_model(last).model.embed_tokens.weight.requires_grad


@pytest.mark.parametrize(("arch", "kind"), [("nexus", "binary"), ("tokenformer", "random_binary"),
                                            ("llama", "glyph"), ("qwen3", "binary")])
def test_hidden_size_growth_is_exact_and_keeps_the_substrate(arch, kind, tokenizer32k, glyph32k):
    fields = {"hidden_size": 128} if kind == "glyph" else {}  # the session's cached glyph width
    model = substrate_model(arch, kind, tokenizer32k, **fields).eval()
    d = model.config.hidden_size
    ids = random_batch(32000, 1)
    once = grow_model(model, {"hidden_size": d + d // 2}, parse_init("preserve"))
    twice = grow_model(once.model, {"hidden_size": 2 * d}, parse_init("random"))  # the substrate ignores the scheme
    assert compare_logits(model, once.model, ids).max_rel_diff < 1e-5
    for result, width in ((once, d + d // 2), (twice, 2 * d)):
        config = result.model.config
        assert config.embedding_dim == d and config.embedding_scale == pytest.approx(math.sqrt(width / d))
        assert not result.model.model.embed_tokens.weight.requires_grad
        assert check_substrate(result.model, tokenizer32k) <= 1e-6 * config.embedding_scale
        assert not any(b.param == "model.embed_tokens.weight" for b in result.blocks)
    from growlm.growth.verify import gradient_reach

    reach = gradient_reach(once.model, once.blocks, ids)
    assert reach.every_block_got_gradient, [b.block.param for b in reach.blocks if not b.first_step_with_gradient]


def test_cli_init_and_substrate(tmp_path, capsys, glyph32k):
    assert main(["init", "llama-tiny", "--out", str(tmp_path / "no-tok"), "--set", "embedding=glyph"]) == 2
    assert "needs the tokenizer (--tokenizer)" in capsys.readouterr().err
    assert main(["init", "llama-tiny", "--out", str(tmp_path / "m"), "--set", "embedding=glyph", "--set",
                 "num_hidden_layers=1", "--tokenizer", str(SP_MODEL)]) == 0
    model = storage.load_model(tmp_path / "m")
    assert torch.equal(model.model.embed_tokens.weight, glyph32k[0].table(128))
    assert main(["substrate", str(SP_MODEL), "--kind", "random_binary", "--dim", "64", "--out",
                 str(tmp_path / "show")]) == 0
    report = json.loads((tmp_path / "show" / "substrate.json").read_text())
    assert report["collisions"]["share_sharing_a_row"] == 0 and report["collisions"]["tokens"] == 32000
    assert len(report["nearest_neighbours"]["▁the"]) == 5
    assert (tmp_path / "show" / "cells.png").stat().st_size > 1000
    assert main(["substrate", str(SP_MODEL), "--kind", "pixels", "--out", str(tmp_path / "bad")]) == 2
    assert "unknown substrate kind 'pixels'; valid: binary, glyph, random_binary" in capsys.readouterr().err


def test_fingerprints_tell_substrates_apart():
    from growlm.substrate import substrate_fingerprint

    a, b = substrate_model("llama", "binary"), substrate_model("nexus", "binary")
    c = substrate_model("llama", "random_binary", embedding_seed=1)
    assert substrate_fingerprint(a) == substrate_fingerprint(b)  # same substrate, different architectures
    fa, fc = substrate_fingerprint(a), substrate_fingerprint(c)
    assert fa["table_sha256"] != fc["table_sha256"]
    assert fc["embedding_fields"]["embedding"] == "random_binary" and fc["embedding_fields"]["embedding_seed"] == 1


def test_training_refuses_a_substrate_that_was_never_built(tiny_data, tmp_path):
    from growlm.errors import ConfigError
    from growlm.training.trainer import start_run

    config = build_config("llama-tiny", {"embedding": "binary", "num_hidden_layers": 1})
    storage.save_model(model_class_for(config)(config), tmp_path / "raw")
    with pytest.raises(ConfigError, match="frozen substrate embedding was never built"):
        start_run(train_config(tiny_data, tmp_path / "run", model=None, init_from=str(tmp_path / "raw")))
