"""A stream of sources under several processes (simulated: rank and world passed explicitly): each rank
reads only its share (datasets.distributed.split_dataset_by_node), the shares cover the source exactly
once, the per-rank state resumes exactly on the same world size and is refused on another."""

import json

import numpy as np
import pytest

from growlm.data.sources import DatasetSource, build_stream, combined_state
from growlm.errors import DataError
from tests.conftest import SP_MODEL


@pytest.fixture(scope="module")
def tokenizer():
    from growlm.data.tokenizer import load_tokenizer

    return load_tokenizer(SP_MODEL)


@pytest.fixture
def shards(tmp_path):
    """Two JSON files (two shards) of 21 and 16 documents, each with a unique id."""
    files = []
    for k, count in enumerate((21, 16)):
        path = tmp_path / f"part-{k}.jsonl"
        path.write_text("\n".join(json.dumps({"id": f"{k}-{i}", "text": f"shard {k} document {i}: "
                                              + " ".join(f"w{(i * 5 + j) % 37}" for j in range(15 + i % 9))})
                                  for i in range(count)))
        files.append(str(path))
    return files


def _ids(source: DatasetSource) -> list[str]:
    return [record["id"] for record in source._open()]


@pytest.mark.parametrize("streaming", [True, False])
@pytest.mark.parametrize("files", [1, 2], ids=["one-shard-split-by-example", "two-shards-split-by-shard"])
def test_each_rank_reads_its_own_share_and_the_shares_cover_the_source(shards, tokenizer, streaming, files):
    spec = {"dataset": "json", "data_files": shards[:files], "streaming": streaming}
    everything = _ids(DatasetSource(spec, tokenizer, 16))
    assert len(everything) == (21 if files == 1 else 37)
    shares = [_ids(DatasetSource(spec, tokenizer, 16, rank=r, world=2)) for r in range(2)]
    assert shares[0] and shares[1] and not set(shares[0]) & set(shares[1])
    assert sorted(shares[0] + shares[1]) == sorted(everything)


def test_a_rank_resumes_its_share_after_consumed_documents(shards, tokenizer):
    spec = {"dataset": "json", "data_files": shards, "streaming": True}
    source = DatasetSource(spec, tokenizer, 16, rank=1, world=2)
    share = _ids(source)
    source.documents = 5  # as after consuming five of its documents
    assert _ids(source) == share[5:]


def _spec(shards, tiny_data):
    return {"tokenizer": str(SP_MODEL), "sources": [
        {"dataset": "json", "data_files": shards, "streaming": True, "weight": 2.0},
        {"dataset": "json", "data_files": shards[:1], "weight": 1.0},
        {"prepared": str(tiny_data), "weight": 1.0}]}


def test_per_rank_state_resumes_exactly_on_the_same_world(shards, tokenizer, tiny_data):
    spec = _spec(shards, tiny_data)
    ranks = [build_stream(spec, tokenizer, 16, seed=5, rank=r, world=2) for r in range(2)]
    first = [s.next_windows(20) for s in ranks]
    assert not np.array_equal(first[0], first[1])
    saved = json.loads(json.dumps(combined_state([s.state() for s in ranks])))  # what a checkpoint keeps
    assert saved["world"] == 2 and len(saved["ranks"]) == 2
    later = [s.next_windows(150) for s in ranks]  # past the end of the small sources: next epochs
    for r in range(2):
        again = build_stream(spec, tokenizer, 16, seed=5, rank=r, world=2)
        again.load_state(saved)
        assert np.array_equal(again.next_windows(150), later[r]), r


def test_the_mixture_draws_are_the_single_process_draws_dealt_out(shards, tokenizer, tiny_data):
    """Rank r's j-th window comes from the source the one-process stream picks for window j * world + r."""
    spec = {"tokenizer": str(SP_MODEL), "sources": [{"prepared": str(tiny_data)}]}
    one = build_stream(spec, tokenizer, 16, seed=2).next_windows(12)
    ranks = [build_stream(spec, tokenizer, 16, seed=2, rank=r, world=2).next_windows(6) for r in range(2)]
    assert np.array_equal(np.stack([ranks[0], ranks[1]], axis=1).reshape(12, -1), one)


def test_another_world_size_is_refused_with_the_reason(shards, tokenizer, tiny_data):
    spec = _spec(shards, tiny_data)
    ranks = [build_stream(spec, tokenizer, 16, seed=5, rank=r, world=2) for r in range(2)]
    for stream in ranks:
        stream.next_windows(3)
    saved = combined_state([s.state() for s in ranks])
    with pytest.raises(DataError, match=r"saved by 2 process\(es\) and this run has 1.*--nproc_per_node 2"):
        build_stream(spec, tokenizer, 16, seed=5).load_state(saved)
    with pytest.raises(DataError, match=r"saved by 2 process\(es\) and this run has 4"):
        build_stream(spec, tokenizer, 16, seed=5, rank=3, world=4).load_state(saved)
    single = build_stream(spec, tokenizer, 16, seed=5)
    single.next_windows(3)
    one_state = combined_state([single.state()])
    with pytest.raises(DataError, match=r"saved by 1 process\(es\) and this run has 2"):
        build_stream(spec, tokenizer, 16, seed=5, rank=0, world=2).load_state(one_state)
    with pytest.raises(DataError, match="saved by a single process and this run has 2"):
        build_stream(spec, tokenizer, 16, seed=5, rank=0, world=2).load_state(single.state())
    with pytest.raises(DataError, match="rank 2 is outside a world of 2"):
        build_stream(spec, tokenizer, 16, seed=5, rank=2, world=2)
