"""data prepare: every input format, exact tokens, malformed lines counted, bad files refused."""

import gzip
import json

import numpy as np
import pytest

from growlm.data.prepare import SKIPPED_FILE, prepare, summary_lines
from growlm.data.tokenizer import load_tokenizer
from growlm.errors import DataError
from tests.conftest import SHARED, SP_MODEL


def _write_jsonl(path, rows, raw_lines=()):
    lines = [json.dumps(r) for r in rows] + list(raw_lines)
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(SP_MODEL)


def test_formats_tokens_and_end_of_document(tmp_path, tokenizer):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("The first document.\n\nIt has two paragraphs.")
    _write_jsonl(src / "sub" / "b.jsonl", [{"text": "Second document."}, {"text": "Third, with ünïcode — ok."}])
    _write_jsonl(src / "c.jsonl.gz", [{"id": 1, "text": "Fourth from gzip."}])
    meta = prepare([src], str(SP_MODEL), tmp_path / "out", val_fraction=0.0, show_progress=False)
    tokens = np.fromfile(tmp_path / "out" / "train-00000.bin", dtype=np.uint16).astype(np.int64)
    eod = tokenizer.eos_token_id
    docs = np.split(tokens, np.flatnonzero(tokens == eod) + 1)[:-1]
    texts = ["The first document.\n\nIt has two paragraphs.", "Fourth from gzip.", "Second document.",
             "Third, with ünïcode — ok."]
    assert len(docs) == 4
    for doc, text in zip(docs, texts, strict=True):
        assert doc[-1] == eod
        assert list(doc[:-1]) == tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(doc[:-1]) == text
    assert meta["splits"]["train"]["documents"] == 4
    assert meta["splits"]["train"]["tokens"] == len(tokens)
    assert meta["splits"]["train"]["bytes"] == sum(len(t.encode()) for t in texts)
    assert meta["dtype"] == "uint16" and meta["tokenizer"]["eod_id"] == eod
    assert (tmp_path / "out" / "tokenizer" / "tokenizer.json").exists()


def test_malformed_lines_are_counted_by_reason(tmp_path):
    path = tmp_path / "mixed.jsonl"
    _write_jsonl(path, [{"text": "good one"}, {"text": ""}, {"body": "no text"}, {"text": 5}, {"text": "good two"}],
                 raw_lines=["{not json", "[1, 2]", ""])
    meta = prepare([path], str(SP_MODEL), tmp_path / "out", val_fraction=0.0, show_progress=False)
    skipped = meta["skipped"]
    assert meta["splits"]["train"]["documents"] == 2
    assert skipped["by_reason"] == {"empty_text": 1, "missing_text_field": 1, "text_not_a_string": 1,
                                    "invalid_json": 1, "not_a_json_object": 1, "blank_line": 1}
    assert skipped["total"] == 6
    assert skipped["examples"]["invalid_json"] == [f"{path}:6"]


def test_quiet_inputs_are_named_and_files_are_not_lines(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.txt").write_text("A short document.")
    (src / "empty.txt").write_text("  \n")
    (src / "notes.md").write_text("# notes, not read")
    _write_jsonl(src / "b.jsonl", [{"text": "Another short document."}], raw_lines=["{not json"])
    capsys.readouterr()
    meta = prepare([src], str(SP_MODEL), tmp_path / "out", show_progress=False)  # val_fraction 0.01
    err = capsys.readouterr().err
    assert f"note: ignored 1 file(s) of other types in the input folders: {src / 'notes.md'}" in err
    assert "warning: the validation split is empty (val_fraction 0.01 of 2 document(s) drew none)" in err
    assert meta["ignored_files"] == [str(src / "notes.md")] and meta["splits"]["val"]["tokens"] == 0
    assert (meta["skipped"]["lines"], meta["skipped"]["files"], meta["skipped"]["total"]) == (1, 1, 2)
    lines = summary_lines(meta)
    assert f"skipped 1 line and 1 whole file (all listed in {SKIPPED_FILE}):" in lines
    assert f"  empty_file: 1 file (e.g. {src / 'empty.txt'})" in lines
    assert "ignored 1 file of other types (listed in meta.json)" in lines

    prepare([src / "a.txt", src / "b.jsonl"], str(SP_MODEL), tmp_path / "quiet", val_fraction=0.0,
            show_progress=False)
    err = capsys.readouterr().err  # no val asked for, no folder: nothing to say
    assert "validation split is empty" not in err and "ignored" not in err


def test_val_split_from_files_and_fraction(tmp_path):
    train, val = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    _write_jsonl(train, [{"text": f"train document number {i}"} for i in range(200)])
    _write_jsonl(val, [{"text": "held out"}])
    meta = prepare([train], str(SP_MODEL), tmp_path / "a", val_inputs=[val], show_progress=False)
    assert meta["splits"]["val"]["documents"] == 1 and meta["splits"]["train"]["documents"] == 200
    meta = prepare([train], str(SP_MODEL), tmp_path / "b", val_fraction=0.2, seed=3, show_progress=False)
    assert 20 <= meta["splits"]["val"]["documents"] <= 60
    assert meta["splits"]["val"]["documents"] + meta["splits"]["train"]["documents"] == 200


def test_limits_and_shards(tmp_path):
    path = tmp_path / "d.jsonl"
    _write_jsonl(path, [{"text": "word " * 50} for _ in range(40)])
    meta = prepare([path], str(SP_MODEL), tmp_path / "a", val_fraction=0.0, max_tokens=300, shard_tokens=128,
                   show_progress=False)
    info = meta["splits"]["train"]
    assert 300 <= info["tokens"] < 300 + 60 and len(info["shards"]) == -(-info["tokens"] // 128)
    meta = prepare([path], str(SP_MODEL), tmp_path / "b", val_fraction=0.0, max_docs_per_file=3, show_progress=False)
    assert meta["splits"]["train"]["documents"] == 3


def test_gpt2_tokenizer_files(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("GPT-2 byte-level BPE works too.")
    meta = prepare([path], str(SHARED / "tokenizers" / "gpt2-50k"), tmp_path / "out", val_fraction=0.0,
                   show_progress=False)
    assert meta["tokenizer"]["vocab_size"] == 50257 and meta["tokenizer"]["eod_id"] == 50256


@pytest.mark.parametrize(
    ("setup", "message"),
    [(lambda p: p.write_text(""), "no usable documents"),
     (lambda p: p.write_bytes(b"\x1f\x8b\x08\x00garbage"), "cannot read"),
     (lambda p: None, "does not exist")],
)
def test_bad_input_files(tmp_path, setup, message):
    path = tmp_path / ("bad.jsonl.gz" if "cannot" in message else "bad.jsonl")
    setup(path)
    with pytest.raises(DataError, match=message):
        prepare([path], str(SP_MODEL), tmp_path / "out", show_progress=False)
    assert not (tmp_path / "out").exists()


def test_refuses_to_overwrite(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("text")
    prepare([path], str(SP_MODEL), tmp_path / "out", val_fraction=0.0, show_progress=False)
    with pytest.raises(DataError, match="exists and is not empty"):
        prepare([path], str(SP_MODEL), tmp_path / "out", show_progress=False)
    prepare([path], str(SP_MODEL), tmp_path / "out", val_fraction=0.0, overwrite=True, show_progress=False)


def test_unknown_tokenizer_spec(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_tokenizer("./no/such/tokenizer.model")


def test_tokenizer_specs_load_the_same_tokenizer(tmp_path, tokenizer):
    """A saved folder and its tokenizer.json give the tokenizer the SentencePiece model was converted to
    (the folder path goes through AutoTokenizer.from_pretrained, the same call a hub name takes)."""
    tokenizer.save_pretrained(tmp_path / "saved")
    text = "Growth keeps what the model learned.\n  Indented line."
    expected = tokenizer(text, add_special_tokens=False)["input_ids"]
    for spec in (tmp_path / "saved", tmp_path / "saved" / "tokenizer.json"):
        assert load_tokenizer(spec)(text, add_special_tokens=False)["input_ids"] == expected
    (tmp_path / "vocab.bin").write_bytes(b"x")
    with pytest.raises(DataError, match=r"neither a SentencePiece \.model nor a tokenizer\.json"):
        load_tokenizer(tmp_path / "vocab.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"holds no tokenizer\.json"):
        load_tokenizer(tmp_path / "empty")
