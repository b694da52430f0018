"""Shared fixtures: the shared material, a small prepared data folder, tiny model configs."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch

import growlm  # noqa: F401 -- registers the architectures with transformers
from growlm.models import model_class_for
from growlm.models.presets import build_config
from growlm.system import tune_cpu_allocator

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GROWLM_SHARED", REPO.parent / "shared"))
SP_MODEL = SHARED / "tokenizers" / "mistral-v1-32k" / "tokenizer.model"

# The test process is an entry point like ``growlm``: glibc keeps freed blocks for reuse, which
# the CPU training in many tests needs to run fast (the library itself no longer tunes it).
tune_cpu_allocator()

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n N runs N worker processes side by side: one intra-op thread each keeps them
    # from oversubscribing the cores (the suite is many small models, not one large one).
    torch.set_num_threads(1)
    # ... and so do the growlm processes the tests start (training runs killed and resumed, CLI
    # commands): with a thread per core each, beside the other worker, they oversubscribe the
    # cores, and OpenMP's waiting threads make a few hundred tiny steps take minutes
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _messages_as_the_cli_shows_them() -> None:
    """growlm logs its messages; show them as the command line does (plain lines on stderr, or
    stdout for a command's results), so a test reads what a user reads."""
    from growlm.logs import show_messages

    show_messages()


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "corpus").is_dir():
        pytest.fail(f"the shared material is missing at {SHARED}; set GROWLM_SHARED")
    return SHARED


@pytest.fixture(scope="session")
def tiny_data(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few documents of each corpus source, tokenized with the 32k vocabulary."""
    from growlm.data.prepare import prepare

    out = tmp_path_factory.mktemp("data") / "tiny"
    prepare([shared / "corpus" / "train"], str(SP_MODEL), out, val_inputs=[shared / "corpus" / "val" / "sotu.jsonl.gz"],
            max_docs_per_file=4, show_progress=False)
    return out


def small_config(architecture: str = "nexus", seed: int = 0, **overrides):
    """A random small config of an architecture (vocab 512, 1-3 layers, GQA sometimes)."""
    rng = random.Random(seed)
    heads = rng.choice([2, 4])
    fields = {
        "vocab_size": 512,
        "num_hidden_layers": rng.randint(1, 3),
        "hidden_size": rng.choice([32, 48, 64]),
        "intermediate_size": rng.choice([40, 64, 96]),
        "num_attention_heads": heads,
        "num_key_value_heads": rng.choice([h for h in (1, 2, heads) if heads % h == 0]),
        "head_dim": rng.choice([8, 16]),
        "max_position_embeddings": 128,
        "tie_word_embeddings": rng.random() < 0.5,
    }
    if architecture == "nexus":
        m = rng.randint(16, 48)
        fields.update(nexus_m=m, nexus_a=m + rng.randint(0, 24))
    fields.update(overrides)
    return build_config(f"{architecture}-tiny", fields)


def train_config(data, out, **values):
    """A fast CPU training config on ``data`` writing to ``out`` (keys as in a config file)."""
    from growlm.training.config import build_train_config

    base = {"model": "nexus-tiny", "data": str(data), "seq_len": 32, "micro_batch_size": 4, "max_steps": 20,
            "lr": 3e-3, "warmup_steps": 2, "log_every": 5, "eval_every": 10, "eval_batches": 2,
            "checkpoint_every": 10, "out_dir": str(out), "progress": False, "device": "cpu"}
    return build_train_config({**base, **values})


def make_model(config, seed: int = 0, perturb: float = 0.0):
    """A model of ``config``; ``perturb`` adds noise so that norms and gains are not all ones."""
    torch.manual_seed(seed)
    model = model_class_for(config)(config).eval()
    if perturb:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * perturb)
    return model


def assert_same_loss_and_gradients(model_a, model_b, vocab: int = 512, loss_tol: float = 1e-12,
                                   grad_tol: float = 1e-10) -> None:
    """Two copies of one model (e.g. a fused and an unfused path, float64) give the same loss and
    the same gradient for every parameter on one random batch."""
    ids = torch.randint(0, vocab, (2, 9))
    losses = []
    for model in (model_a, model_b):
        loss = model(ids, labels=ids).loss
        loss.backward()
        losses.append(float(loss.detach()))
    assert abs(losses[0] - losses[1]) <= loss_tol
    for (name, p), (_, q) in zip(model_a.named_parameters(), model_b.named_parameters(), strict=True):
        assert float((p.grad - q.grad).norm() / q.grad.norm().clamp_min(1e-30)) <= grad_tol, name


def wait_until(condition, proc, deadline: float, what: str, poll_s: float = 0.02) -> None:
    """Poll ``condition()`` while the subprocess ``proc`` runs, failing if it ends first or if
    ``time.time()`` passes ``deadline`` (the kill-and-resume tests wait like this for a checkpoint)."""
    import time

    while not condition():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.time() < deadline, f"no {what} before the deadline"
        time.sleep(poll_s)
