"""growlm convert: transformers Qwen3 checkpoints in and out, same logits."""

import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM
from transformers import Qwen3Config as HFQwen3Config
from transformers import Qwen3ForCausalLM as HFQwen3

from growlm.errors import ConfigError
from growlm.models.storage import config_from_hf, load_model


def growlm(*args):
    """A real ``growlm`` process (test_round_trip_keeps_logits and the sharded folder's grow keep one
    per command: the entry point itself is part of what they test)."""
    return subprocess.run([sys.executable, "-m", "growlm.cli.main", *map(str, args)], capture_output=True, text=True)


def growlm_here(*args) -> int:
    """The same command in this process (its exit status): no interpreter and torch start-up per call."""
    from growlm.cli.main import main

    return main([str(a) for a in args])


@pytest.mark.parametrize("tie", [False, True])
def test_round_trip_keeps_logits(tmp_path, tie):
    torch.manual_seed(0)
    reference = HFQwen3(HFQwen3Config(vocab_size=400, hidden_size=64, intermediate_size=80, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                      tie_word_embeddings=tie, eos_token_id=3,
                                      rope_parameters={"rope_type": "default", "rope_theta": 1e6}))
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    reference.save_pretrained(tmp_path / "hf")
    # one case in real processes (the entry point), the other in this one
    cli = (lambda *args: growlm(*args).returncode) if not tie else growlm_here
    assert cli("convert", tmp_path / "hf", "--out", tmp_path / "g") == 0
    ours = load_model(tmp_path / "g")
    assert json.loads((tmp_path / "g" / "config.json").read_text())["model_type"] == "growlm_qwen3"
    ids = torch.randint(0, 400, (2, 30))
    with torch.no_grad():
        a, b = reference.eval()(ids).logits, ours(ids).logits
    assert (a - b).abs().max() / a.abs().max() <= 1e-4

    assert cli("convert", tmp_path / "g", "--out", tmp_path / "back", "--to-hf") == 0
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "back").eval()
    assert type(back).__name__ == "Qwen3ForCausalLM"
    with torch.no_grad():
        assert (back(ids).logits - a).abs().max() / a.abs().max() <= 1e-4


@pytest.mark.parametrize(
    ("change", "message"),
    [({"model_type": "mistral"}, "cannot convert model_type 'mistral'"),
     ({"attention_bias": True}, "attention_bias"),
     ({"pretraining_tp": 2}, "pretraining_tp=2"),
     ({"use_sliding_window": True}, "sliding-window"),
     ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
     ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0}}, "RoPE type 'yarn'")],
)
def test_unsupported_features_are_refused(change, message):
    base = HFQwen3Config(vocab_size=100, hidden_size=32, intermediate_size=40, num_hidden_layers=1,
                         num_attention_heads=2, head_dim=16).to_dict()
    with pytest.raises(ConfigError, match=message):
        config_from_hf({**base, **change})


def _llama(tmp_path, tie=False, kv_heads=2):
    from transformers import LlamaConfig as HFLlamaConfig
    from transformers import LlamaForCausalLM as HFLlama

    torch.manual_seed(1)
    reference = HFLlama(HFLlamaConfig(vocab_size=300, hidden_size=48, intermediate_size=72, num_hidden_layers=3,
                                      num_attention_heads=4, num_key_value_heads=kv_heads, head_dim=16,
                                      tie_word_embeddings=tie, rms_norm_eps=1e-5,
                                      rope_parameters={"rope_type": "default", "rope_theta": 500000.0}))
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    reference.save_pretrained(tmp_path / "hf")
    return reference.eval()


@pytest.mark.parametrize("tie", [False, True])
def test_llama_round_trip_keeps_logits(tmp_path, tie):
    reference = _llama(tmp_path, tie)
    assert growlm_here("convert", tmp_path / "hf", "--out", tmp_path / "g") == 0
    ours = load_model(tmp_path / "g")
    assert ours.config.architecture == "llama" and ours.config.rope_theta == 500000.0
    ids = torch.randint(0, 300, (2, 25))
    with torch.no_grad():
        a = reference(ids).logits
        assert (a - ours(ids).logits).abs().max() / a.abs().max() <= 1e-4
    assert growlm_here("convert", tmp_path / "g", "--out", tmp_path / "back", "--to-hf") == 0
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "back").eval()
    assert type(back).__name__ == "LlamaForCausalLM"
    with torch.no_grad():
        assert (back(ids).logits - a).abs().max() / a.abs().max() <= 1e-4


def test_converted_llama_grown_in_depth_and_width_keeps_logits(tmp_path):
    reference = _llama(tmp_path, tie=False)
    assert growlm_here("convert", tmp_path / "hf", "--out", tmp_path / "g") == 0
    assert growlm_here("grow", tmp_path / "g", "--out", tmp_path / "grown", "--set", "num_hidden_layers=5",
                       "--set", "hidden_size=64", "--set", "intermediate_size=96", "--set", "num_attention_heads=8",
                       "--layers-at", "interleave") == 0
    grown = AutoModelForCausalLM.from_pretrained(tmp_path / "grown").eval()
    assert (grown.config.num_hidden_layers, grown.config.hidden_size) == (5, 64)
    ids = torch.randint(0, 300, (2, 25))
    with torch.no_grad():
        a = reference(ids).logits
        assert (a - grown(ids).logits).abs().max() / a.abs().max() <= 1e-4
    # and back to transformers' own Llama, still the same function
    assert growlm_here("convert", tmp_path / "grown", "--out", tmp_path / "grown-hf", "--to-hf") == 0
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "grown-hf").eval()
    with torch.no_grad():
        assert (back(ids).logits - a).abs().max() / a.abs().max() <= 1e-4


def test_transformers_folder_loads_and_grows_without_convert(tmp_path, caplog):
    """A transformers Llama folder (sharded safetensors) is read directly by load_model and grow."""
    reference = _llama(tmp_path, tie=False)
    reference.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    caplog.set_level("INFO", logger="growlm")
    ours = load_model(tmp_path / "sharded")
    notes = caplog.messages
    assert ours.config.architecture == "llama" and "transformers llama checkpoint" in notes[0]
    ids = torch.randint(0, 300, (2, 25))
    with torch.no_grad():
        a = reference(ids).logits
        assert (a - ours(ids).logits).abs().max() / a.abs().max() <= 1e-4
    result = growlm("grow", tmp_path / "sharded", "--out", tmp_path / "grown", "--set", "num_hidden_layers=4")
    assert result.returncode == 0, result.stderr
    grown = AutoModelForCausalLM.from_pretrained(tmp_path / "grown").eval()
    assert grown.config.model_type == "growlm_llama" and grown.config.num_hidden_layers == 4
    with torch.no_grad():
        assert (a - grown(ids).logits).abs().max() / a.abs().max() <= 1e-4


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_to_hf_names_what_it_converts_and_reads_run_folders(tmp_path, capsys):
    from growlm.cli.main import main
    from growlm.models import storage
    from tests.conftest import make_model, small_config

    for arch in ("nexus", "tokenformer"):  # growlm-only architectures: one line, no traceback
        storage.save_model(make_model(small_config(arch)), tmp_path / arch)
        capsys.readouterr()
        assert main(["convert", str(tmp_path / arch), "--out", str(tmp_path / f"{arch}-hf"), "--to-hf"]) == 2
        line = _one_error_line(capsys)
        assert f"growlm {arch} model" in line and "Qwen3- and Llama-shaped models" in line
        assert not (tmp_path / f"{arch}-hf").exists()

    # a run folder: its newest good checkpoint, as eval, grow and generate read it
    qwen = make_model(small_config("qwen3", seed=2, tie_word_embeddings=False), perturb=0.05)
    for step, model in ((10, make_model(small_config("qwen3", seed=2, tie_word_embeddings=False))), (20, qwen)):
        folder = tmp_path / "run" / "checkpoints" / f"step-{step:08d}"
        storage.save_model(model, folder)
        storage.write_manifest(folder)
    capsys.readouterr()
    assert main(["convert", str(tmp_path / "run"), "--out", str(tmp_path / "run-hf"), "--to-hf"]) == 0
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "run-hf").eval()
    assert type(back).__name__ == "Qwen3ForCausalLM"
    ids = torch.randint(0, 512, (2, 20))
    with torch.no_grad():
        assert torch.allclose(back(ids).logits, qwen(ids).logits, atol=1e-5)

    # the other direction names the flag instead of a missing config.json
    capsys.readouterr()
    assert main(["convert", str(tmp_path / "run"), "--out", str(tmp_path / "x")]) == 2
    assert "is a growlm run" in _one_error_line(capsys)
    assert main(["convert", str(tmp_path / "nexus"), "--out", str(tmp_path / "x")]) == 2
    assert "already a growlm model (growlm_nexus); add --to-hf" in _one_error_line(capsys)


@pytest.mark.parametrize("arch", ["qwen3", "llama"])
def test_a_frozen_substrate_survives_the_transformers_round_trip(tmp_path, capsys, arch):
    """growlm -> transformers -> growlm keeps the substrate: kind, options, frozen, the same table."""
    from growlm.cli.main import main
    from growlm.composition import compose, fingerprint
    from growlm.data.tokenizer import load_tokenizer
    from growlm.models import storage
    from growlm.substrate import install_substrate
    from tests.conftest import SP_MODEL, make_model, small_config

    tokenizer = load_tokenizer(SP_MODEL)
    config = small_config(arch, seed=3, vocab_size=32000, hidden_size=32, embedding="binary",
                          tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    model = make_model(config, seed=3, perturb=0.02)
    install_substrate(model, tokenizer)
    storage.save_model(model, tmp_path / "g", tokenizer)

    assert main(["convert", str(tmp_path / "g"), "--out", str(tmp_path / "hf"), "--to-hf"]) == 0
    assert "frozen binary substrate is kept" in capsys.readouterr().out
    hf = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert hf["model_type"] == arch and hf["growlm_embedding"]["embedding"] == "binary"
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")  # transformers' own class still loads it
    assert type(plain).__name__ in ("Qwen3ForCausalLM", "LlamaForCausalLM")

    assert main(["convert", str(tmp_path / "hf"), "--out", str(tmp_path / "back")]) == 0
    for folder in (tmp_path / "back", tmp_path / "hf"):  # converted, or read directly
        back = storage.load_model(folder)
        assert back.config.embedding == "binary" and back.config.frozen_embedding
        assert back.config.embedding_dim == model.config.embedding_dim
        assert not back.get_input_embeddings().weight.requires_grad
        assert fingerprint(back, "b", folder).table_sha256 == fingerprint(model, "a").table_sha256
        assert fingerprint(back, "b").embedding_fields == fingerprint(model, "a").embedding_fields
    record = compose([tmp_path / "g", tmp_path / "back"], tmp_path / "composed")
    assert record["substrate"]["embedding_fields"]["embedding"] == "binary"
