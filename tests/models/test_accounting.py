"""Parameter counts are exact and the analytic FLOPs match torch's flop counter.

``accounting.py`` and ``torch.utils.flop_counter`` follow one convention: matrix multiplications
only (norms, activations, softmax, the embedding lookup and the loss are left out by both), and
the full T x T attention product. So the comparisons below are exact, not within a tolerance:
any difference is a matmul the formula misses or counts twice.
"""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from growlm.models import model_class_for
from growlm.models.accounting import model_cost
from growlm.models.presets import PRESETS, build_config
from tests.conftest import make_model, small_config


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_builds_and_is_counted(preset):
    """Each preset at its real size: the forward pass on the meta device (shapes only, no arithmetic)
    is counted by the flop counter and equals the formula's forward FLOPs."""
    config = build_config(preset)
    seq = 16
    cost = model_cost(config, seq)
    assert cost.total_params > 0 and 0 < cost.non_embedding_params < cost.total_params
    with torch.device("meta"):
        model = model_class_for(config)(config)
    ids = torch.zeros((1, seq), dtype=torch.long, device="meta")
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(ids, labels=ids, use_cache=False)
    assert counter.get_total_flops() == seq * cost.forward_flops_per_token


def test_paper_shapes_are_the_presets():
    c = build_config("nexus-240m")
    assert (c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.nexus_m, c.nexus_a) == (12, 768, 2048, 780, 960)
    c = build_config("nexus-440m")
    assert (c.hidden_size, c.nexus_m, c.nexus_a) == (1024, 1540, 1730)
    assert build_config("qwen3-240m").hidden_size == 1088


@pytest.mark.parametrize(("arch", "seed"), [("nexus", 0), ("nexus", 1), ("qwen3", 2), ("qwen3", 3)])
def test_counts_equal_the_built_model(arch, seed):
    config = small_config(arch, seed)
    model = make_model(config)
    cost = model_cost(config)
    unique = {p.data_ptr(): p.numel() for p in model.parameters()}
    assert cost.total_params == sum(unique.values())
    embed = config.vocab_size * config.hidden_size
    assert cost.embedding_params == embed * (1 if config.tie_word_embeddings else 2)


@pytest.mark.parametrize(("arch", "seed"), [("nexus", 0), ("nexus", 5), ("qwen3", 2), ("qwen3", 6)])
def test_flops_match_the_flop_counter(arch, seed):
    config = small_config(arch, seed)
    model = make_model(config).train()
    batch, seq = 2, 32
    ids = torch.randint(0, config.vocab_size, (batch, seq))
    # The math backend spells attention out as bmm, which the counter sees; the fused CPU flash kernel is
    # not registered with the flop counter and would be missed.
    with sdpa_kernel(SDPBackend.MATH):
        with FlopCounterMode(display=False) as forward:
            loss = model(ids, labels=ids, use_cache=False).loss
        with FlopCounterMode(display=False) as backward:
            loss.backward()
    cost = model_cost(config, seq)
    assert forward.get_total_flops() == batch * seq * cost.forward_flops_per_token
    # measured, not assumed: the backward pass costs twice the forward (input and weight gradients)
    assert forward.get_total_flops() + backward.get_total_flops() == batch * seq * cost.train_flops_per_token
