"""Two CPU processes (gloo, torchrun) training on a streaming source: each reads its own share, a
checkpoint resumes exactly on two processes and is refused, with the reason, on one."""

import json
import shutil
import subprocess
import sys

import yaml

from tests.conftest import REPO, SP_MODEL
from tests.training.test_distributed import _losses, _run, _torchrun


def test_two_processes_stream_their_shares_and_resume_exactly(tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps({"text": f"document {i}: " + " ".join(f"w{(i * 7 + j) % 41}"
                                                                              for j in range(30 + i % 11))})
                              for i in range(200)))
    config = {"model": "nexus-tiny", "model_overrides": {"num_hidden_layers": 1}, "seq_len": 32,
              "micro_batch_size": 2, "max_steps": 8, "lr": 3e-3, "warmup_steps": 2, "log_every": 1,
              "eval_every": 100, "checkpoint_every": 4, "progress": False, "device": "cpu",
              "out_dir": str(tmp_path / "run"),
              "data": {"tokenizer": str(SP_MODEL),
                       "sources": [{"dataset": "json", "data_files": [str(docs)], "streaming": True}]}}
    path = tmp_path / "stream.yaml"
    path.write_text(yaml.safe_dump(config))
    _run(_torchrun(2, str(path)))
    straight = _losses(tmp_path / "run")
    state = json.loads((tmp_path / "run" / "checkpoints" / "step-00000008" / "trainer_state.json").read_text())
    shares = state["data_state"]
    assert shares["world"] == 2 and len(shares["ranks"]) == 2
    consumed = [r["sources"][0]["documents"] for r in shares["ranks"]]
    assert all(c > 0 for c in consumed) and shares["ranks"][0] != shares["ranks"][1]

    shutil.rmtree(tmp_path / "run" / "checkpoints" / "step-00000008")
    one = subprocess.run([sys.executable, "-m", "growlm.cli.main", "train", "--resume", str(tmp_path / "run")],
                         cwd=REPO, capture_output=True, text=True)
    assert one.returncode == 2
    assert "saved by 2 process(es) and this run has 1" in one.stderr and "--nproc_per_node 2" in one.stderr
    _run(_torchrun(2, "--resume", str(tmp_path / "run")))
    assert _losses(tmp_path / "run") == straight
