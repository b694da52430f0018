"""Modular composition: the composite computes the mean of its experts' logits, refuses mismatched
substrates in one line, saves and loads, generates with a cache, evaluates, and trains its mixer only."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM

from growlm.cli.main import main
from growlm.composition import CompositionError, check_same_substrate, compose, fingerprint, train_mixer
from growlm.data.tokenizer import load_tokenizer
from growlm.models import CompositeForCausalLM, storage
from growlm.models.accounting import model_cost
from tests.conftest import SHARED, SP_MODEL, make_model, small_config

VOCAB = 32000  # the shared tokenizer's, so that evaluation and mixer training run on real tokens


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(SP_MODEL)


def _expert(architecture: str, seed: int, table: torch.Tensor | None, **fields):
    config = small_config(architecture, seed=seed, vocab_size=VOCAB, hidden_size=32, bos_token_id=1,
                          eos_token_id=2, **fields)
    model = make_model(config, seed=seed, perturb=0.02)
    if table is not None:  # the shared frozen substrate
        with torch.no_grad():
            model.get_input_embeddings().weight.copy_(table)
    return model


@pytest.fixture(scope="module")
def experts(tmp_path_factory, tokenizer):
    """Three experts of different architectures and depths on one embedding table, each a saved folder."""
    root = tmp_path_factory.mktemp("experts")
    torch.manual_seed(123)
    table = torch.randn(VOCAB, 32) * 0.02
    specs = [("nexus", 1, {"tie_word_embeddings": True}), ("qwen3", 2, {"tie_word_embeddings": False}),
             ("tokenformer", 3, {"tie_word_embeddings": False})]
    folders = []
    for arch, seed, fields in specs:
        model = _expert(arch, seed, table, **fields)
        folder = root / arch
        storage.save_model(model, folder, tokenizer)
        folders.append(folder)
    return folders


@pytest.fixture(scope="module")
def composite(experts, tmp_path_factory):
    out = tmp_path_factory.mktemp("composite") / "mean"
    compose(experts, out)
    return out


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_composite_logits_are_the_mean_of_its_experts(experts, composite):
    ids = torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :5] = 0  # left padding on one row
    loaded = [storage.load_model(f) for f in experts]
    with torch.no_grad():
        expected = torch.stack([m(ids, attention_mask=mask).logits for m in loaded]).mean(0)
        for model in (storage.load_model(composite), AutoModelForCausalLM.from_pretrained(composite)):
            assert isinstance(model, CompositeForCausalLM)
            got = model(ids, attention_mask=mask).logits
            assert got.dtype == torch.float32 and _relative(got, expected) <= 1e-5


def test_each_token_written_through_the_shared_cache_matches_the_full_pass(composite):
    """Expert e's layer i lives at cache index offset_e + i; a token-by-token pass reproduces the full one."""
    model = storage.load_model(composite)
    ids = torch.randint(0, VOCAB, (1, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids, use_cache=False).logits
        out = model(ids[:, :5], use_cache=True)
        cache, steps = out.past_key_values if hasattr(out, "past_key_values") else out.cache, [out.logits]
        for t in range(5, 12):
            out = model(ids[:, t: t + 1], past_key_values=cache, use_cache=True)
            steps.append(out.logits)
    assert _relative(torch.cat(steps, dim=1), full) <= 1e-5
    assert len(cache.layers) == model.config.num_hidden_layers == sum(e.config.num_hidden_layers
                                                                      for e in model.experts)


def test_generate_with_cache_is_greedy_decoding_of_the_mean(composite):
    model = storage.load_model(composite)
    ids = torch.randint(3, VOCAB, (2, 6), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        cached = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                                pad_token_id=0)
        manual = ids
        for _ in range(6):
            manual = torch.cat([manual, model(manual, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(cached, manual)


def test_save_load_round_trip_keeps_every_tensor_and_the_ties(experts, tmp_path):
    out = tmp_path / "gate"
    compose(experts, out, mixing="gate")
    model = storage.load_model(out)
    with torch.no_grad():  # a mixer that is not at its zero init, so that its tensors are really checked
        model.mixer.bias.copy_(torch.tensor([0.5, -0.25, 0.1]))
        model.mixer.gate.weight.normal_(0, 0.1)
    again = tmp_path / "again"
    storage.save_model(model, again)
    for loaded in (storage.load_model(again), AutoModelForCausalLM.from_pretrained(again)):
        assert loaded.config.mixing == "gate" and len(loaded.experts) == 3
        a, b = model.state_dict(), loaded.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        head, table = loaded.experts[0].lm_head.weight, loaded.experts[0].get_input_embeddings().weight
        assert head is table  # the nexus expert's tied head is tied again, not a copy
    ids = torch.randint(0, VOCAB, (1, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, storage.load_model(again)(ids).logits)
    cost = model_cost(model.config)
    assert cost.total_params == sum(p.numel() for p in model.parameters())
    assert cost.total_params == sum(model_cost(e.config).total_params for e in model.experts) + 3 + 3 * 96


def test_mixer_training_moves_only_the_mixer(experts, tiny_data, tmp_path):
    out = tmp_path / "mixed"
    compose(experts, out, mixing="gate")
    before = storage.load_model(out).state_dict()
    record = train_mixer(out, tiny_data, steps=4, seq_len=32, batch_size=2, eval_batches=2, device="cpu")
    after = storage.load_model(out).state_dict()
    experts_keys = [k for k in before if k.startswith("experts.")]
    assert experts_keys and all(torch.equal(before[k], after[k]) for k in experts_keys)
    assert not torch.equal(before["mixer.gate.weight"], after["mixer.gate.weight"])
    assert json.loads((out / "composition.json").read_text())["mix_train"]["steps"] == 4
    assert record["val_loss_before"] > 0 and record["val_loss_after"] > 0


def test_eval_scores_a_composite_with_the_prefix_cache_as_with_full_passes(composite, shared, tiny_data, tmp_path):
    from growlm.evaluation.loglikelihood import LoglikelihoodScorer
    from growlm.evaluation.runner import evaluate_checkpoint

    report = evaluate_checkpoint(composite, ["ppl", "arc_easy"], out=tmp_path, data_dir=shared / "benchmarks",
                                 ppl_data=tiny_data, limit=3, max_batches=1, batch_size=4, device="cpu",
                                 progress=False, seq_len=32)
    assert report["model"]["architecture"] == "composite"
    assert report["results"]["ppl"]["loss"] > 0 and report["results"]["arc_easy"]["n"] == 3
    model, tok = storage.load_model(composite), load_tokenizer(composite)
    scorer = LoglikelihoodScorer(model, tok, torch.device("cpu"), batch_size=4)
    groups = [("The cat sat on the", [" mat", " hat and coat"]), ("Python is a", [" language", " snake"])]
    batched = scorer.score(groups, progress=False)
    with torch.no_grad():
        single = [[scorer._single(*_pair(tok, c, x)) for x in conts] for c, conts in groups]
    for row_b, row_s in zip(batched, single, strict=True):
        for b, s in zip(row_b, row_s, strict=True):
            assert b.loglikelihood == pytest.approx(s.loglikelihood, rel=1e-5) and b.is_greedy == s.is_greedy


def _pair(tokenizer, context, continuation):
    from growlm.evaluation.loglikelihood import encode_pair

    return encode_pair(tokenizer, context, continuation)


# -- refusals -----------------------------------------------------------------------------------------
def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_different_embedding_tables_are_refused_in_one_line(experts, tokenizer, tmp_path):
    other = tmp_path / "other"
    storage.save_model(_expert("llama", 9, None), other, tokenizer)
    with pytest.raises(CompositionError) as exc:
        compose([experts[0], other], tmp_path / "x")
    message = _one_line(exc)
    assert "different substrates" in message and "embedding tables differ in" in message
    assert str(experts[0]) in message and str(other) in message


def test_different_vocabularies_and_tokenizers_are_refused(experts, tokenizer, tmp_path):
    small = tmp_path / "small"
    model = make_model(small_config("qwen3", seed=4, vocab_size=512, hidden_size=32))
    storage.save_model(model, small, tokenizer)
    with pytest.raises(CompositionError) as exc:
        compose([experts[1], small], tmp_path / "x")
    assert "different vocabularies (vocab_size 32000 vs 512)" in _one_line(exc)

    gpt2 = load_tokenizer(SHARED / "tokenizers" / "gpt2-50k")
    table = storage.load_model(experts[0]).get_input_embeddings().weight
    foreign = tmp_path / "foreign"
    storage.save_model(_expert("qwen3", 5, table), foreign, gpt2)
    with pytest.raises(CompositionError) as exc:
        compose([experts[0], foreign], tmp_path / "y")
    assert "different tokenizers (32000 vs 50257 tokens)" in _one_line(exc)

    rewritten = tmp_path / "rewritten"  # the same tokenizer, its config file rewritten: composes
    shutil.copytree(experts[1], rewritten)
    config = json.loads((rewritten / "tokenizer_config.json").read_text())
    (rewritten / "tokenizer_config.json").write_text(json.dumps({**config, "comment": "saved elsewhere"}, indent=4))
    compose([experts[0], rewritten], tmp_path / "ok")

    bare = tmp_path / "bare"
    storage.save_model(_expert("qwen3", 6, table), bare)
    with pytest.raises(CompositionError) as exc:
        compose([experts[0], bare], tmp_path / "z")
    assert f"{bare} holds no tokenizer" in _one_line(exc)


def test_different_embedding_settings_are_refused_even_with_equal_bytes(experts):
    """The substrate fields are compared as well as the bytes; a config without the field counts as learned."""
    loaded = [storage.load_model(f) for f in experts[:2]]
    a, b = fingerprint(loaded[0], "A"), fingerprint(loaded[1], "B")
    assert a.embedding_fields == {"embedding": "learned"} and a.table_sha256 == b.table_sha256
    check_same_substrate([(a, loaded[0]), (b, loaded[1])])  # equal: no error
    glyph = dataclasses.replace(b, embedding_fields={"embedding": "glyph", "embedding_font": "unifont"})
    with pytest.raises(CompositionError) as exc:
        check_same_substrate([(a, loaded[0]), (glyph, loaded[1])])
    assert _one_line(exc) == ("cannot compose A and B: different substrates (embedding='learned' vs 'glyph', "
                              "embedding_font=None vs 'unifont')")


def test_cli_compose_and_its_one_line_error(experts, tokenizer, tmp_path, capsys):
    assert main(["compose", str(experts[0]), str(experts[1]), "--out", str(tmp_path / "c")]) == 0
    assert "composed 2 experts" in capsys.readouterr().out
    other = tmp_path / "other"
    storage.save_model(_expert("llama", 8, None), other, tokenizer)
    assert main(["compose", str(experts[0]), str(other), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot compose {experts[0]} and {other}: different substrates")
    assert main(["compose", str(experts[0]), str(experts[1]), "--out", str(tmp_path / "e"), "--mixing", "mean",
                 "--mix-train", str(tmp_path)]) == 2


def test_experts_on_a_built_substrate_compose_and_other_kinds_are_refused(tokenizer, tmp_path):
    """Experts whose config names a frozen substrate (growlm.substrate) compose; another kind is refused by name."""
    from growlm.substrate import install_substrate

    folders = {}
    for name, arch, seed, kind in (("a", "qwen3", 1, "binary"), ("b", "llama", 2, "binary"),
                                   ("c", "qwen3", 3, "random_binary")):
        model = _expert(arch, seed, None, embedding=kind, tie_word_embeddings=False)
        install_substrate(model, tokenizer)
        folders[name] = tmp_path / name
        storage.save_model(model, folders[name], tokenizer)
    record = compose([folders["a"], folders["b"]], tmp_path / "ab")
    assert record["substrate"]["embedding_fields"]["embedding"] == "binary"
    composite = storage.load_model(tmp_path / "ab")
    assert composite.config.embedding == "binary"
    with pytest.raises(CompositionError) as exc:
        compose([folders["a"], folders["c"]], tmp_path / "ac")
    assert "different substrates (embedding='binary' vs 'random_binary')" in _one_line(exc)
