"""``growlm bench``: the micro-batch search, out-of-memory handling, profile summary and options."""

import json
import math

import pytest
import torch

from growlm import bench as bench_module
from growlm.bench import bench, find_batch, kernel_group, largest_fitting, set_activation_checkpointing
from growlm.models import model_class_for
from growlm.models.presets import build_config
from growlm.runtime import RuntimeOptions


@pytest.mark.parametrize("limit", [1, 64, 1000])
@pytest.mark.parametrize("start", [1, 8, 100])
@pytest.mark.parametrize("truth", [0, 1, 5, 37, 64, 999, 5000])
def test_largest_fitting_finds_the_threshold_in_logarithmic_tries(truth, start, limit):
    found, tries, bounded = largest_fitting(lambda n: n <= truth, start, limit)
    assert found == min(truth, limit) and not bounded
    assert all(ok == (n <= truth) for n, ok in tries)
    assert len(tries) <= 2 * math.ceil(math.log2(max(limit, start, 2))) + 2
    assert len({n for n, _ in tries}) == len(tries)  # never the same size twice


def test_largest_fitting_stops_at_the_budget_with_a_lower_bound():
    ticks = iter(range(100))
    found, tries, bounded = largest_fitting(lambda n: n <= 300, 1, 1024, budget_s=3.5, clock=lambda: next(ticks))
    assert bounded and 0 < found <= 300 and len(tries) <= 5
    assert (found, True) in tries


def _tiny_nexus():
    config = build_config("nexus-tiny", {"vocab_size": 256, "num_hidden_layers": 1})
    torch.manual_seed(0)
    return model_class_for(config)(config), config


def test_find_batch_catches_out_of_memory_and_frees_between_tries(monkeypatch):
    real = bench_module.TrainLoop.step
    seen = []

    def step(self, tokens):
        seen.append(tokens.shape[0])
        if tokens.shape[0] > 6:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, tokens)

    monkeypatch.setattr(bench_module.TrainLoop, "step", step)
    model, config = _tiny_nexus()
    row = find_batch(model, "nexus-tiny", 8, torch.device("cpu"), False, config.vocab_size, start=2, limit=64,
                     say=lambda _: None)
    assert row["max_micro_batch"] == 6 and not row["bounded"]
    assert [(t["micro_batch"], t["fits"]) for t in row["tries"]] == [(2, True), (4, True), (8, False), (6, True),
                                                                      (7, False)]
    assert all(p.grad is None for p in model.parameters())  # nothing of a failed try is kept
    assert max(seen) == 8


def test_find_batch_does_not_hide_other_errors(monkeypatch):
    def step(self, tokens):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(bench_module.TrainLoop, "step", step)
    model, config = _tiny_nexus()
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        find_batch(model, "nexus-tiny", 8, torch.device("cpu"), False, config.vocab_size, say=lambda _: None)


def test_activation_checkpointing_switch_reaches_growlm_and_transformers_models():
    model, _ = _tiny_nexus()
    set_activation_checkpointing(model, True)
    assert model.model.gradient_checkpointing
    set_activation_checkpointing(model, False)
    assert not model.model.gradient_checkpointing
    reference = bench_module._reference_model(build_config("qwen3-tiny", {"vocab_size": 256, "num_hidden_layers": 1}))
    set_activation_checkpointing(reference, True)
    assert getattr(reference, "is_activation_checkpointing", None) or reference.is_gradient_checkpointing


def test_kernel_groups():
    assert kernel_group("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64") == "matmul"
    assert kernel_group("nvjet_tst_128x256_64x4_1x2_h_bz_coopA_TNT") == "matmul"
    assert kernel_group("void pytorch_flash::flash_bwd_dq_dk_dv_loop_seqk_parallel_kernel") == "attention"
    assert kernel_group("triton_poi_fused_gelu_mul_3") == "fused elementwise (compiler)"
    assert kernel_group("Memcpy DtoD (Device -> Device)") == "copies"
    assert kernel_group("aten::bmm") == "matmul"


def test_bench_on_cpu_writes_results_profile_and_variant(tmp_path):
    out = tmp_path / "bench.json"
    rows = bench("nexus-tiny", seq_len=16, micro_batch=1, steps=1, warmup=1, device="cpu", out=out,
                 profile=tmp_path / "prof", profile_steps=1, options=RuntimeOptions(nexus_fused=False),
                 say=lambda _: None)
    saved = json.loads(out.read_text())
    assert saved == rows and len(rows) == 1
    row = rows[0]
    assert row["tokens_per_s"] > 0 and row["first_step_s"] > 0 and not row["compiled"]
    assert row["variant"] == {"fused_linears": False, "nexus_fused": False, "nexus_pad": 1}  # CPU: auto = unfused
    assert {"device_name", "torch", "transformers", "date", "commit", "growlm", "source_hash"} <= set(row)
    profile = json.loads(next((tmp_path / "prof").glob("profile-*.json")).read_text())
    assert math.isclose(sum(g["share"] for g in profile["groups"].values()), 1.0, rel_tol=1e-9)
    assert "matmul" in profile["groups"] and profile["top_kernels"][0]["time_us"] > 0
    assert (tmp_path / "prof" / (next((tmp_path / "prof").glob("profile-*.json")).stem + ".txt")).exists()


def test_bench_records_inline_rotary_tables_and_the_pattention_kernel_and_restores_the_default():
    kwargs = dict(seq_len=16, micro_batch=1, steps=1, warmup=1, device="cpu", say=lambda _: None)
    row = bench("tokenformer-tiny", options=RuntimeOptions(rotary_opaque=False), **kwargs)[0]
    assert row["variant"] == {"fused_linears": False, "rotary_inline": True, "pattention_kernel": False}
    # the inline tables were for that run only: the next one, told nothing, has the opaque op again
    assert bench("tokenformer-tiny", **kwargs)[0]["variant"] == {"fused_linears": False, "pattention_kernel": False}


def test_activation_checkpointing_does_not_change_the_loss():
    kwargs = dict(seq_len=16, micro_batch=2, steps=2, warmup=1, device="cpu", say=lambda _: None)
    plain = bench("qwen3-tiny", **kwargs)[0]
    checkpointed = bench("qwen3-tiny", activation_checkpointing=True, **kwargs)[0]
    assert checkpointed["activation_checkpointing"] and not plain["activation_checkpointing"]
    assert checkpointed["final_loss"] == pytest.approx(plain["final_loss"], rel=1e-6)


def test_profile_records_each_attention_call_with_its_layout(tmp_path):
    """The attention probe of issue 23: every SDPA call of the profiled steps, its arguments' shapes,
    strides and flags, for growlm's model and transformers' (eager, on CPU)."""
    for reference in (False, True):
        prof = tmp_path / f"prof-{reference}"
        bench("qwen3-tiny", seq_len=16, micro_batch=2, steps=1, warmup=1, device="cpu", reference=reference,
              profile=prof, profile_steps=2, say=lambda _: None)
        for path in prof.glob("profile-*.json"):
            attention = json.loads(path.read_text())["attention"]
            sdpa = [s for s in attention["signatures"] if s["op"] == "F.scaled_dot_product_attention"]
            layers = build_config("qwen3-tiny").num_hidden_layers
            assert sum(s["count"] for s in sdpa) == 2 * layers  # one call per layer and profiled step
            q, k, _ = sdpa[0]["args"][:3]
            assert q["shape"][0] == 2 and q["shape"][2] == 16 and len(q["stride"]) == 4
            flags = sdpa[0]["kwargs"]
            assert flags.get("is_causal") is True and flags.get("attn_mask") is None
            assert flags.get("enable_gqa") == (q["shape"][1] != k["shape"][1])
            op = next(r for r in attention["ops"] if r["op"] == "aten::scaled_dot_product_attention")
            assert op["calls"] == 2 * layers and op["calls_per_step"] == layers


def test_attention_spy_restores_the_functions_it_wraps():
    import torch.nn.functional as F

    from growlm.bench import attention_spy

    before = (torch._ops.OpOverload.__call__, F.scaled_dot_product_attention)
    calls = {}
    q = torch.randn(1, 2, 4, 8)
    with attention_spy(calls):
        torch.ops.aten.scaled_dot_product_attention.default(q, q, q, is_causal=True)
        F.scaled_dot_product_attention(q, q, q)
    assert (torch._ops.OpOverload.__call__, F.scaled_dot_product_attention) == before
    assert set(calls) == {"aten::scaled_dot_product_attention", "F.scaled_dot_product_attention"}
    described = json.loads(next(iter(calls["aten::scaled_dot_product_attention"])))
    assert described["args"][0] == {"shape": [1, 2, 4, 8], "stride": [64, 32, 8, 1], "dtype": "float32",
                                    "contiguous": True, "device": "cpu"}
    assert described["kwargs"] == {"is_causal": True}
