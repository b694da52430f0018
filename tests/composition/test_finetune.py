"""Fine-tuning a merged composite: a zero adapter leaves the merge's function unchanged, the full fine-tune and
the adapter really train (gradients non-zero, loss down on a tiny task), the substrate tables never move, and a
fine-tuned composite saves, loads, caches, generates, evaluates and runs from the CLI."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from growlm.cli.main import main
from growlm.composition import finetune
from growlm.composition.finetune import trainable_parameters
from growlm.data.tokenizer import load_tokenizer
from growlm.errors import ConfigError
from growlm.models import CompositeForCausalLM, storage
from growlm.models.accounting import model_cost
from tests.conftest import SP_MODEL, make_model, small_config

V = 512


def _experts(vocab: int = V, scale: float = 1.0) -> list:
    """Two experts on one table; the nexus one's head is tied to it (so a full fine-tune must leave it alone)."""
    torch.manual_seed(3)
    table = torch.randn(vocab, 32) * scale
    models = []
    for arch, seed, tied in (("qwen3", 1, False), ("nexus", 2, True)):
        config = small_config(arch, seed=seed, vocab_size=vocab, hidden_size=32, tie_word_embeddings=tied,
                              bos_token_id=1, eos_token_id=2)
        model = make_model(config, seed=seed, perturb=0.1)
        with torch.no_grad():
            model.get_input_embeddings().weight.copy_(table)
        models.append(model)
    return models


@pytest.mark.parametrize("mixing", ["mean", "gate", "prob", "prob_gate"])
def test_a_zero_adapter_computes_exactly_the_merge(mixing):
    experts = _experts()
    plain = CompositeForCausalLM.from_experts(copy.deepcopy(experts), mixing)
    if plain.mixer is not None:  # a trained-looking mixer, so that the adapter's output really feeds it
        with torch.no_grad():
            plain.mixer.bias.copy_(torch.tensor([0.4, -0.4]))
            if plain.mixer.gate is not None:
                plain.mixer.gate.weight.normal_(0, 0.5)
    adapted = copy.deepcopy(plain)
    adapter = adapted.add_hidden_adapter()
    built = CompositeForCausalLM.from_experts(copy.deepcopy(experts), mixing, adapter=True)
    assert adapted.config.adapter and adapter.weight.shape == (64, 64) and not adapter.weight.any()
    ids = torch.randint(0, V, (2, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = plain(ids).logits
        assert float((adapted(ids).logits - expected).abs().max()) <= 1e-6
        if plain.mixer is None:
            assert float((built(ids).logits - expected).abs().max()) <= 1e-6
    # and its parameters count: H^2 more than the plain composite
    assert model_cost(adapted.config).total_params == model_cost(plain.config).total_params + 64 * 64
    assert model_cost(adapted.config).total_params == sum(p.numel() for p in adapted.parameters())


@pytest.mark.parametrize("mode", ["full", "adapter"])
def test_finetune_modes_train_their_parameters_and_never_the_substrate(mode):
    """A few AdamW steps on one fixed batch: every trainable tensor gets a non-zero gradient at the first step,
    the loss falls, and each expert's embedding table (and the tied head, which is that table) is unchanged."""
    model = CompositeForCausalLM.from_experts(_experts(), "mean")
    tables = [e.get_input_embeddings().weight.detach().clone() for e in model.experts]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = trainable_parameters(model, mode)
    names = {id(p): n for n, p in model.named_parameters()}
    trained = {names[id(p)] for p in params}
    if mode == "adapter":
        assert trained == {"adapter.weight"}
    else:
        assert not any("embed_tokens" in n for n in trained) and "experts.0.lm_head.weight" in trained
        assert "experts.1.lm_head.weight" not in trained  # tied to the frozen table
        assert len(trained) == sum(1 for n, p in model.named_parameters() if "embed_tokens" not in n)
    optimizer = torch.optim.AdamW(params, lr=1e-2 if mode == "adapter" else 3e-3, weight_decay=0.0)
    ids = torch.randint(0, V, (4, 16), generator=torch.Generator().manual_seed(1))
    losses = []
    model.train()
    for step in range(12):
        loss = model(ids, labels=ids, use_cache=False).loss
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] - 0.05
    for expert, table in zip(model.experts, tables, strict=True):
        assert torch.equal(expert.get_input_embeddings().weight, table)
        assert not expert.get_input_embeddings().weight.requires_grad
    assert model.experts[1].lm_head.weight is model.experts[1].get_input_embeddings().weight
    after = model.state_dict()
    expert_keys = [k for k in before if k.startswith("experts.") and "embed_tokens" not in k]
    changed = [k for k in expert_keys if not torch.equal(before[k], after[k])]
    if mode == "adapter":
        assert not changed  # the experts are bit-identical
    else:
        assert "experts.0.lm_head.weight" in changed and len(changed) >= len(expert_keys) - 2


def test_unknown_mode_is_refused_by_name():
    model = CompositeForCausalLM.from_experts(_experts(), "mean")
    with pytest.raises(ConfigError, match="unknown finetune 'lora'; valid: adapter, full"):
        trainable_parameters(model, "lora")


@pytest.fixture(scope="module")
def expert_folders(tmp_path_factory):
    """Two saved experts on the 32k vocabulary (so the tiny corpus trains them) and one shared table."""
    root = tmp_path_factory.mktemp("ft-experts")
    tokenizer = load_tokenizer(SP_MODEL)
    folders = []
    for index, model in enumerate(_experts(vocab=32000, scale=0.02)):
        storage.save_model(model, root / str(index), tokenizer)
        folders.append(str(root / str(index)))
    return folders


def test_fine_tuned_composites_save_load_generate_and_run_from_the_cli(expert_folders, tiny_data, tmp_path, capsys):
    from growlm.data.dataset import TokenSplit
    from growlm.evaluation.perplexity import evaluate_loss
    from growlm.evaluation.runner import evaluate_checkpoint

    out = tmp_path / "adapter"
    assert main(["compose", *expert_folders, "--out", str(out), "--finetune", "adapter", "--finetune-data",
                 str(tiny_data), "--finetune-steps", "3", "--seq-len", "32", "--batch-size", "2", "--device",
                 "cpu"]) == 0
    assert "fine-tuned (adapter, 4,096 parameters) for 3 steps" in capsys.readouterr().out
    record = json.loads((out / "composition.json").read_text())["finetune"]
    assert record["mode"] == "adapter" and record["steps"] == 3 and record["lr"] == 1e-3
    plain_loss = evaluate_loss(CompositeForCausalLM.from_experts([storage.load_model(f) for f in expert_folders]),
                               TokenSplit(tiny_data, "val"), 32, 2, 8, torch.device("cpu"), None)["loss"]
    assert abs(record["val_loss_before"] - plain_loss) <= 1e-6  # the fine-tune started from the merge itself
    model = storage.load_model(out)
    assert model.config.adapter and model.adapter.weight.abs().sum() > 0
    experts = [storage.load_model(f) for f in expert_folders]
    for index, expert in enumerate(experts):  # the experts as they were
        state = model.experts[index].state_dict()
        assert all(torch.equal(state[k], v) for k, v in expert.state_dict().items())
    again = tmp_path / "again"
    storage.save_model(model, again)
    ids = torch.randint(3, 32000, (2, 8), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = model(ids).logits
        for loaded in (storage.load_model(again), AutoModelForCausalLM.from_pretrained(again)):
            a, b = model.state_dict(), loaded.state_dict()
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
            assert torch.equal(loaded(ids).logits, expected)
        plain = CompositeForCausalLM.from_experts(experts, "mean")
        assert not torch.equal(plain(ids).logits, expected)  # the adapter changed the function
        out_cache = model(ids[:, :4], use_cache=True)
        cache, steps = out_cache.past_key_values, [out_cache.logits]
        for t in range(4, 8):
            step = model(ids[:, t: t + 1], past_key_values=cache, use_cache=True)
            steps.append(step.logits)
        assert float((torch.cat(steps, 1) - expected).abs().max()) <= 1e-4
        generated = model.generate(ids[:, :4], attention_mask=torch.ones_like(ids[:, :4]), max_new_tokens=3,
                                   do_sample=False, pad_token_id=0)
    assert generated.shape == (2, 7)

    full = tmp_path / "full"  # the whole composite, substrate frozen, through the Python API
    assert main(["compose", *expert_folders, "--out", str(full)]) == 0
    record = finetune(full, tiny_data, steps=3, mode="full", seq_len=32, batch_size=2, device="cpu",
                      eval_batches=1)
    tuned = storage.load_model(full)
    assert record["frozen_params"] == 2 * 32000 * 32  # the two tables, nothing else
    for index, expert in enumerate(experts):
        assert torch.equal(tuned.experts[index].get_input_embeddings().weight, expert.get_input_embeddings().weight)
    assert not torch.equal(tuned.experts[0].lm_head.weight, experts[0].lm_head.weight)
    report = evaluate_checkpoint(full, ["ppl"], out=tmp_path / "eval", ppl_data=tiny_data, max_batches=1,
                                 batch_size=2, device="cpu", progress=False, seq_len=32)
    assert report["results"]["ppl"]["loss"] > 0
    assert main(["compose", *expert_folders, "--out", str(tmp_path / "x"), "--finetune", "full"]) == 2
    assert "--finetune full needs data" in capsys.readouterr().err
