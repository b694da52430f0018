"""growlm's Qwen3 computes exactly what transformers' Qwen3ForCausalLM computes."""

import pytest
import torch
from transformers import Qwen3Config as HFQwen3Config
from transformers import Qwen3ForCausalLM as HFQwen3

from growlm.models.qwen3 import Qwen3Config, Qwen3ForCausalLM


def _pair(tie: bool, kv_heads: int, seed: int = 0):
    torch.manual_seed(seed)
    shape = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=kv_heads, head_dim=24, tie_word_embeddings=tie, rms_norm_eps=1e-6)
    reference = HFQwen3(HFQwen3Config(**shape, rope_parameters={"rope_type": "default", "rope_theta": 5000.0}))
    with torch.no_grad():  # break the ones/zeros symmetry of a fresh init, norms included
        for p in reference.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ours = Qwen3ForCausalLM(Qwen3Config(**shape, rope_theta=5000.0))
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference.eval(), ours.eval()


@pytest.mark.parametrize(("tie", "kv_heads"), [(False, 2), (True, 4), (True, 1)])
def test_same_logits_as_transformers(tie, kv_heads):
    reference, ours = _pair(tie, kv_heads)
    ids = torch.randint(0, 300, (3, 21))
    mask = torch.ones_like(ids)
    mask[0, :6] = 0
    with torch.no_grad():
        a, b = reference(ids).logits, ours(ids).logits
        assert (a - b).abs().max() / a.abs().max() <= 1e-5
        a, b = reference(ids, attention_mask=mask).logits, ours(ids, attention_mask=mask).logits
        assert (a - b)[mask.bool()].abs().max() / a.abs().max() <= 1e-5


def test_same_greedy_generation_as_transformers():
    reference, ours = _pair(False, 2, seed=1)
    ids = torch.randint(1, 300, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    kwargs = dict(attention_mask=mask, max_new_tokens=10, do_sample=False, pad_token_id=0)
    assert torch.equal(reference.generate(ids, **kwargs), ours.generate(ids, **kwargs))
