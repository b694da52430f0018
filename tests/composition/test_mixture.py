"""The ``prob`` mixings: a composite whose next-token distribution is the (weighted) mean of its experts'
softmaxes, returned as log-probabilities; its loss is bounded by the better expert's plus ln K, which a mean
of logits is not; it saves, loads, caches, generates, composes from the CLI and evaluates."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from growlm.cli.main import main
from growlm.data.tokenizer import load_tokenizer
from growlm.models import CompositeForCausalLM, storage
from tests.conftest import SP_MODEL, make_model, small_config

V = 512  # small_config's vocabulary: the model-level tests need no tokenizer


def _experts(k: int, perturb: float = 0.3) -> list:
    """K experts of different architectures on one table; ``perturb`` large enough that they are confident."""
    torch.manual_seed(7)
    table = torch.randn(V, 32)
    archs = ["qwen3", "llama", "nexus"]
    models = []
    for e in range(k):
        model = make_model(small_config(archs[e], seed=e + 1, hidden_size=32, tie_word_embeddings=False),
                           seed=e + 1, perturb=perturb)
        with torch.no_grad():
            model.get_input_embeddings().weight.copy_(table)
        models.append(model)
    return models


def _per_token_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy per position, ``(B, T-1)``."""
    return F.cross_entropy(logits[:, :-1].transpose(1, 2).double(), ids[:, 1:], reduction="none")


@pytest.mark.parametrize("k", [2, 3])
def test_mixture_probabilities_are_the_mean_of_the_experts_softmaxes(k):
    experts = _experts(k)
    ids = torch.randint(0, V, (2, 10), generator=torch.Generator().manual_seed(k))
    with torch.no_grad():
        softmaxes = torch.stack([torch.softmax(e(ids).logits.double(), -1) for e in experts])
        composite = CompositeForCausalLM.from_experts(copy.deepcopy(experts), "prob")
        got = composite(ids).logits
        assert got.dtype == torch.float32
        assert torch.allclose(torch.softmax(got.double(), -1), softmaxes.mean(0), rtol=0, atol=1e-6)
        # the logits are already the mixture's log-probabilities: normalised
        assert torch.allclose(got.double().logsumexp(-1), torch.zeros(2, 10, dtype=torch.float64), atol=1e-5)

        weighted = CompositeForCausalLM.from_experts(copy.deepcopy(experts), "prob_weights")
        assert torch.equal(weighted(ids).logits, got)  # zero init: the plain mixture
        weighted.mixer.bias.copy_(torch.linspace(-1.0, 1.0, k))
        w = torch.softmax(weighted.mixer.bias.double(), -1)
        expected = (w[:, None, None, None] * softmaxes).sum(0)
        assert torch.allclose(torch.softmax(weighted(ids).logits.double(), -1), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("k", [2, 3])
def test_mixture_loss_is_at_most_the_better_experts_plus_ln_k(k):
    """p_mix >= p_e / K for every expert e, so -log p_mix <= min_e(-log p_e) + ln K, token by token."""
    experts = _experts(k, perturb=0.5)
    composite = CompositeForCausalLM.from_experts(copy.deepcopy(experts), "prob")
    weighted = CompositeForCausalLM.from_experts(copy.deepcopy(experts), "prob_gate")
    with torch.no_grad():
        weighted.mixer.bias.copy_(torch.linspace(-2.0, 2.0, k))
        weighted.mixer.gate.weight.normal_(0, 1.0)
    spread = 0.0
    for seed in range(3):
        ids = torch.randint(0, V, (2, 12), generator=torch.Generator().manual_seed(100 + seed))
        with torch.no_grad():
            losses = torch.stack([_per_token_loss(e(ids).logits, ids) for e in experts])
            best = losses.min(0).values
            mix = _per_token_loss(composite(ids).logits, ids)
            assert (mix <= best + math.log(k) + 1e-5).all()
            spread = max(spread, float((losses.max(0).values - best).max()))
            # with weights w_e(t): -log p_mix <= -log p_e - log w_e for every e
            out = weighted(ids, output_hidden_states=True)
            log_w = weighted.mixer.log_weights(list(out.hidden_states))[:, :-1].permute(2, 0, 1).double()
            bound = (losses - log_w).min(0).values
            assert (_per_token_loss(out.logits, ids) <= bound + 1e-5).all()
    assert spread > math.log(k)  # the experts disagree enough for the bound to say something


def test_logit_averaging_can_break_the_bound_that_the_mixture_keeps():
    """Two confident experts that disagree: B is A with its head negated, so the mean of their logits is zero
    (uniform: ln V per token) while A is nearly certain of the labels; the mixture stays within ln 2 of A."""
    a = _experts(1)[0]
    with torch.no_grad():
        a.lm_head.weight.mul_(200.0)  # confident
    b = copy.deepcopy(a)
    with torch.no_grad():
        b.lm_head.weight.neg_()
    ids = torch.randint(0, V, (2, 12), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        labels = torch.cat([ids[:, :1], a(ids).logits[:, :-1].argmax(-1)], 1)  # what A predicts
        loss_a = _per_token_loss(a(ids).logits, labels)
        loss_b = _per_token_loss(b(ids).logits, labels)
        best = torch.minimum(loss_a, loss_b)
        mean = _per_token_loss(CompositeForCausalLM.from_experts([a, b], "mean")(ids).logits, labels)
        mix = _per_token_loss(CompositeForCausalLM.from_experts([a, b], "prob")(ids).logits, labels)
    assert float(loss_a.max()) < 0.1
    assert torch.allclose(mean, torch.full_like(mean, math.log(V)), atol=1e-4)
    assert (mean > best + math.log(2) + 1.0).all()  # logit averaging: far outside the bound
    assert (mix <= best + math.log(2) + 1e-6).all()  # the mixture: inside it


def test_mixture_saves_loads_caches_and_generates(tmp_path):
    experts = _experts(2)
    model = CompositeForCausalLM.from_experts(experts, "prob_gate")
    with torch.no_grad():
        model.mixer.bias.copy_(torch.tensor([0.7, -0.3]))
        model.mixer.gate.weight.normal_(0, 0.5)
    storage.save_model(model, tmp_path / "mix")
    ids = torch.randint(0, V, (2, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(ids).logits
        for loaded in (storage.load_model(tmp_path / "mix"), AutoModelForCausalLM.from_pretrained(tmp_path / "mix")):
            assert loaded.config.mixing == "prob_gate"
            assert torch.equal(loaded(ids).logits, expected)
        full = model(ids, use_cache=False).logits
        out = model(ids[:, :4], use_cache=True)
        cache, steps = out.past_key_values, [out.logits]
        for t in range(4, 9):
            out = model(ids[:, t: t + 1], past_key_values=cache, use_cache=True)
            steps.append(out.logits)
        assert float((torch.cat(steps, 1) - full).abs().max()) <= 1e-4
        cached = model.generate(ids[:, :5], attention_mask=torch.ones_like(ids[:, :5]), max_new_tokens=5,
                                do_sample=False, pad_token_id=0)
        manual = ids[:, :5]
        for _ in range(5):
            manual = torch.cat([manual, model(manual, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(cached, manual)


def test_cli_compose_with_prob_mixing_and_eval(tmp_path, tiny_data, capsys):
    """``growlm compose ... --mixing prob`` on two tiny models on one substrate; ``growlm eval`` scores it, and its
    perplexity loss is within ln 2 of the better expert's (the bound, averaged over tokens)."""
    from growlm.evaluation.runner import evaluate_checkpoint

    tokenizer = load_tokenizer(SP_MODEL)
    torch.manual_seed(11)
    table = torch.randn(32000, 32) * 0.02
    folders = []
    for arch, seed in (("qwen3", 1), ("nexus", 2)):
        model = make_model(small_config(arch, seed=seed, vocab_size=32000, hidden_size=32, bos_token_id=1,
                                        eos_token_id=2, tie_word_embeddings=False), seed=seed, perturb=0.05)
        with torch.no_grad():
            model.get_input_embeddings().weight.copy_(table)
        storage.save_model(model, tmp_path / arch, tokenizer)
        folders.append(str(tmp_path / arch))
    out = tmp_path / "mixture"
    assert main(["compose", *folders, "--out", str(out), "--mixing", "prob"]) == 0
    assert "mixing prob" in capsys.readouterr().out
    assert json.loads((out / "composition.json").read_text())["mixing"] == "prob"
    composite = storage.load_model(out)
    assert composite.config.mixing == "prob" and composite.mixer is None
    assert main(["compose", *folders, "--out", str(tmp_path / "x"), "--mixing", "prob",
                 "--mix-train", str(tiny_data)]) == 2
    assert "prob has none" in capsys.readouterr().err
    gated = tmp_path / "gated"  # a mixture's weights train like the mean's, experts frozen
    assert main(["compose", *folders, "--out", str(gated), "--mixing", "prob_gate", "--mix-train", str(tiny_data),
                 "--steps", "2", "--seq-len", "32", "--batch-size", "2", "--device", "cpu"]) == 0
    trained = storage.load_model(gated)
    assert trained.config.mixing == "prob_gate" and trained.mixer.gate.weight.abs().sum() > 0

    losses = {}
    for name, folder in (("mix", out), *((f, f) for f in folders)):
        report = evaluate_checkpoint(folder, ["ppl"], out=tmp_path / "eval" / str(len(losses)), ppl_data=tiny_data,
                                     max_batches=1, batch_size=2, device="cpu", progress=False, seq_len=32)
        losses[name] = report["results"]["ppl"]["loss"]
    assert 0 < losses["mix"] <= min(losses[f] for f in folders) + math.log(2) + 1e-4
