"""Validation loss, perplexity and bits per byte."""

import json
import math
import subprocess
import sys

import torch

from growlm.data.dataset import TokenSplit
from growlm.evaluation.perplexity import evaluate_loss
from growlm.models import storage
from growlm.training.config import build_train_config
from growlm.training.trainer import start_run


def test_metrics_are_consistent(tiny_data, tmp_path):
    start_run(build_train_config({"model": "qwen3-tiny", "data": str(tiny_data), "seq_len": 32,
                                  "micro_batch_size": 4, "max_steps": 10, "eval_every": 10, "eval_batches": 2,
                                  "out_dir": str(tmp_path / "run"), "progress": False}))
    folder = storage.list_checkpoints(tmp_path / "run")[-1]
    model = storage.load_model(folder)
    split = TokenSplit(tiny_data, "val")
    result = evaluate_loss(model, split, 32, 4, max_batches=3)
    assert result["tokens"] == 3 * 4 * 32
    assert result["perplexity"] == math.exp(result["loss"])
    expected_bpb = result["loss"] / math.log(2) * split.num_tokens / split.num_bytes
    assert math.isclose(result["bits_per_byte"], expected_bpb)
    # the loss is the mean cross-entropy of the same windows, computed independently
    from growlm.data.dataset import evaluation_batches

    losses = []
    with torch.no_grad():
        for x, y in evaluation_batches(split, 32, 4, 3):
            losses.append(model(input_ids=x, shift_labels=y).loss * y.numel())
    assert math.isclose(result["loss"], float(sum(losses)) / result["tokens"], rel_tol=1e-5)

    out = tmp_path / "eval"
    cli = subprocess.run([sys.executable, "-m", "growlm.cli.main", "eval", str(tmp_path / "run"), "--data",
                          str(tiny_data), "--max-batches", "3", "--batch-size", "4",
                          "--out", str(out)], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    written = json.loads((out / "results.json").read_text())["results"]["ppl"]
    assert written["seq_len"] == 32 and math.isclose  # the trained window length by default(written["loss"], result["loss"], rel_tol=1e-6)
    assert "perplexity" in cli.stdout and "bits_per_byte" in cli.stdout
