"""Hugging Face datasets as a source (offline, on local JSON and parquet files through the same
``load_dataset`` call a hub name takes), weighted mixing, and exact resume of the stream."""

import json

import numpy as np
import pytest

from growlm.data.dataset import TokenSplit
from growlm.data.prepare import prepare
from growlm.data.sources import DatasetSource, build_stream
from growlm.data.tokenizer import load_tokenizer
from growlm.errors import ConfigError, DataError
from growlm.training.config import build_train_config
from growlm.training.trainer import read_metrics, resume_run, start_run
from tests.conftest import SP_MODEL


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(SP_MODEL)


def _documents(n, tag):
    return [{"text": f"{tag} document {i}: " + " ".join(f"word{(i * 7 + j) % 50}" for j in range(20 + i % 13))}
            for i in range(n)]


@pytest.fixture
def files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("\n".join(json.dumps(d) for d in _documents(40, "json")))
    parquet = tmp_path / "docs.parquet"
    pq.write_table(pa.Table.from_pylist(_documents(30, "parquet")), parquet)
    return jsonl, parquet


@pytest.mark.parametrize("streaming", [False, True])
def test_dataset_windows_equal_prepared_windows(files, tokenizer, tmp_path, streaming):
    jsonl, _ = files
    prepare([jsonl], str(SP_MODEL), tmp_path / "prepared", val_fraction=0.0, show_progress=False)
    split = TokenSplit(tmp_path / "prepared", "train")
    source = DatasetSource({"dataset": "json", "data_files": [str(jsonl)], "streaming": streaming}, tokenizer, 16)
    for i in range(split.num_windows(16)):
        assert np.array_equal(source.next_window(), split.window(i, 16)), i


def test_mixing_follows_the_weights_and_resumes(files, tokenizer, tiny_data):
    jsonl, parquet = files
    spec = {"tokenizer": str(SP_MODEL), "sources": [
        {"dataset": "json", "data_files": [str(jsonl)], "weight": 3.0},
        {"dataset": "parquet", "data_files": [str(parquet)], "streaming": True, "weight": 1.0},
        {"prepared": str(tiny_data), "weight": 1.0}]}
    stream = build_stream(spec, tokenizer, 16, seed=3)
    first = stream.next_windows(50)
    counts = np.bincount([np.random.default_rng([3, i]).choice(3, p=[0.6, 0.2, 0.2]) for i in range(400)])
    assert counts[0] > counts[1] and counts[0] > counts[2]
    saved = json.loads(json.dumps(stream.state()))  # what a checkpoint keeps
    more = stream.next_windows(200)  # crosses the end of the small datasets: next epoch
    again = build_stream(spec, tokenizer, 16, seed=3)
    again.load_state(saved)
    assert np.array_equal(again.next_windows(200), more)
    fresh = build_stream(spec, tokenizer, 16, seed=3)
    assert np.array_equal(fresh.next_windows(50), first)


def test_training_on_a_stream_resumes_exactly(files, tiny_data, tmp_path):
    import shutil

    jsonl, parquet = files
    config = {"model": "nexus-tiny", "model_overrides": {"num_hidden_layers": 2}, "seq_len": 32,
              "micro_batch_size": 2, "max_steps": 12, "lr": 3e-3, "warmup_steps": 2, "log_every": 1,
              "eval_every": 6, "eval_batches": 2, "checkpoint_every": 4, "progress": False, "device": "cpu",
              "data": {"tokenizer": str(SP_MODEL), "val": {"dataset": "json", "data_files": [str(jsonl)],
                                                            "max_documents": 10},
                       "sources": [{"dataset": "json", "data_files": [str(jsonl)], "streaming": True},
                                   {"dataset": "parquet", "data_files": [str(parquet)], "weight": 0.5},
                                   {"prepared": str(tiny_data), "weight": 0.5}]}}
    start_run(build_train_config({**config, "out_dir": str(tmp_path / "a")}))
    straight = [(r["step"], r["loss"], r.get("val_loss")) for r in read_metrics(tmp_path / "a")]
    assert any(r[2] is not None for r in straight)
    shutil.rmtree(tmp_path / "a" / "checkpoints" / "step-00000012")
    shutil.rmtree(tmp_path / "a" / "checkpoints" / "step-00000008")
    resume_run(tmp_path / "a")
    assert [(r["step"], r["loss"], r.get("val_loss")) for r in read_metrics(tmp_path / "a")] == straight


def test_bad_sources_are_named(tmp_path):
    base = {"model": "nexus-tiny", "out_dir": str(tmp_path / "x")}
    with pytest.raises(ConfigError, match="unknown source key 'path'"):
        build_train_config({**base, "data": {"tokenizer": "t", "sources": [{"path": "x"}]}})
    with pytest.raises(ConfigError, match="exactly one of 'dataset'"):
        build_train_config({**base, "data": {"tokenizer": "t", "sources": [{"weight": 1.0}]}})
    with pytest.raises(ConfigError, match=r"data\.tokenizer is required"):
        build_train_config({**base, "data": {"sources": [{"dataset": "json"}]}})
    with pytest.raises(ConfigError, match="weight must be positive"):
        build_train_config({**base, "data": {"tokenizer": "t", "sources": [{"dataset": "json", "weight": 0}]}})
    source = DatasetSource({"dataset": "json", "data_files": [str(tmp_path / "none.jsonl")]}, load_tokenizer(SP_MODEL),
                           16)
    with pytest.raises(DataError, match="cannot open dataset 'json'"):
        source.next_window()


def test_documents_without_text_are_counted(tokenizer, tmp_path):
    rows = _documents(12, "json")
    for i in (2, 5, 9):
        rows[i] = {"text": "   "} if i != 5 else {"title": "no text field"}
    path = tmp_path / "gaps.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    spec = {"tokenizer": str(SP_MODEL), "sources": [{"dataset": "json", "data_files": [str(path)]}]}
    stream = build_stream(spec, tokenizer, 16, seed=0)
    for _ in range(1000):  # one full pass over the file (12 short documents: far fewer windows)
        if stream.sources[0].epoch > 0:
            break
        stream.next_windows(1)
    assert stream.sources[0].epoch > 0, "no full pass over 12 documents in 1000 windows"
    assert stream.skipped_documents == 3
    from growlm.data.sources import InMemorySplit

    assert InMemorySplit({"dataset": "json", "data_files": [str(path)]}, tokenizer).skipped == 3
