"""data prepare in several worker processes: the same bytes as one, huge documents tokenized exactly in
pieces, and bad lines (invalid UTF-8, invalid JSON) counted with file and line, never fatal."""

import gzip
import json

import pytest

from growlm.cli.main import main as cli_main
from growlm.data.chunking import Encoder, split_text
from growlm.data.prepare import SKIPPED_FILE, prepare
from growlm.data.tokenizer import load_tokenizer
from tests.conftest import SHARED, SP_MODEL

GPT2 = SHARED / "tokenizers" / "gpt2-50k"


def _corpus_texts(limit_chars: int) -> list[str]:
    """Documents of every shared-corpus source, in turn, up to ``limit_chars`` characters."""
    sources = []
    for path in sorted((SHARED / "corpus" / "val").glob("*.jsonl.gz")):
        with gzip.open(path, "rt") as lines:
            sources.append([json.loads(line)["text"] for line in lines])
    texts, total = [], 0
    for i in range(max(map(len, sources))):
        for docs in sources:
            if i < len(docs) and total < limit_chars:
                texts.append(docs[i])
                total += len(docs[i])
    return texts


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Many small documents with bad lines among them, a huge JSON line and a huge .txt document."""
    root = tmp_path_factory.mktemp("corpus")
    texts = _corpus_texts(300_000)
    huge = "\n".join(texts)
    small = [json.dumps({"text": huge[i: i + 1500]}).encode() for i in range(0, 90_000, 1500)]
    small[5] = b'{"text": "caf\xe9 in latin-1"}'  # not UTF-8
    small[9] = b'{"text": "unterminated'  # not JSON
    small[20] = b""  # blank
    (root / "a-small.jsonl").write_bytes(b"\n".join(small) + b"\n")
    with gzip.open(root / "b-huge.jsonl.gz", "wt") as out:
        out.write(json.dumps({"text": huge[:120_000]}) + "\n" + json.dumps({"text": "a short one"}) + "\n")
    (root / "c-huge.txt").write_text(huge[120_000:])
    (root / "d-bad.txt").write_bytes(b"\xff\xfe not utf-8")
    return root


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix in (".bin", ".txt")}


def _meta(meta):
    return {k: v for k, v in meta.items() if k not in ("seconds", "workers", "text_mb_per_s", "tokens_per_s")}


@pytest.mark.parametrize("limits", [{}, {"max_docs_per_file": 7, "val_fraction": 0.2},
                                    {"max_tokens": 20_000, "val_fraction": 0.1}])
def test_workers_write_the_same_bytes_as_one(corpus, tmp_path, limits):
    options = dict(piece_chars=5_000, batch_bytes=8_000, show_progress=False, **limits)
    one = prepare([corpus], str(SP_MODEL), tmp_path / "one", workers=1, **options)
    three = prepare([corpus], str(SP_MODEL), tmp_path / "three", workers=3, **options)
    assert one["workers"] == 1 and three["workers"] == 3
    assert _files(tmp_path / "one") == _files(tmp_path / "three")
    assert _meta(one) == _meta(three)
    if "max_docs_per_file" in limits:
        assert [f["documents"] for f in one["inputs"]] == [7, 2, 1, 0]
    if "max_tokens" in limits:
        assert 20_000 <= one["splits"]["train"]["tokens"] < 20_000 + 40_000


@pytest.mark.parametrize("spec", [SP_MODEL, GPT2], ids=["sentencepiece-32k", "gpt2-50k"])
def test_pieces_tokenize_exactly_as_the_whole(spec):
    tokenizer = load_tokenizer(spec)
    encoder = Encoder(tokenizer, "text", 2_000)
    assert encoder.disabled_reason is None
    text = "\n".join(_corpus_texts(150_000))
    pieces = encoder.split(text)
    assert len(pieces) > 20 and "".join(pieces) == text
    ids = encoder.encode(pieces, [i > 0 for i in range(len(pieces))])
    whole = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert [int(t) for piece in ids for t in piece] == whole


def test_huge_documents_in_pieces_equal_whole_documents(corpus, tmp_path):
    pieces = prepare([corpus / "b-huge.jsonl.gz", corpus / "c-huge.txt"], str(SP_MODEL), tmp_path / "p",
                     val_fraction=0.0, piece_chars=3_000, workers=2, batch_bytes=10_000, show_progress=False)
    whole = prepare([corpus / "b-huge.jsonl.gz", corpus / "c-huge.txt"], str(SP_MODEL), tmp_path / "w",
                    val_fraction=0.0, piece_chars=0, workers=1, show_progress=False)
    assert pieces["piece_chars"] == 3_000 and whole["piece_chars"] == 0
    assert _files(tmp_path / "p") == _files(tmp_path / "w")
    assert pieces["splits"] == whole["splits"] and pieces["splits"]["train"]["documents"] == 3


def test_split_points_are_after_a_newline_before_text():
    text = "aaaa\n  bbbb\n\ncccc\ndddd\neeee"
    assert split_text(text, 3) == ["aaaa\n  bbbb\n\ncccc\n", "dddd\n", "eeee"]
    assert split_text("no newline at all " * 10, 5) == ["no newline at all " * 10]


def test_a_tokenizer_that_merges_across_lines_gets_no_pieces():
    class Pairs:  # encodes character pairs from the text's start: a cut anywhere shifts every later pair
        def __call__(self, text, add_special_tokens=False):
            encode = lambda t: [hash(t[i: i + 2]) % 1000 for i in range(0, len(t), 2)]  # noqa: E731
            return {"input_ids": encode(text) if isinstance(text, str) else [encode(t) for t in text]}

    encoder = Encoder(Pairs(), "text", 100)
    assert encoder.piece_chars == 0 and encoder.disabled_reason.startswith("the tokenizer")
    assert encoder.split("x\ny" * 200) == ["x\ny" * 200]


def test_bad_lines_are_counted_with_file_and_line(corpus, tmp_path, capsys):
    cli_main(["data", "prepare", str(corpus / "a-small.jsonl"), str(corpus / "d-bad.txt"), "--tokenizer",
              str(SP_MODEL), "--out", str(tmp_path / "out"), "--val-fraction", "0", "--workers", "2"])
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    small = corpus / "a-small.jsonl"
    assert meta["skipped"]["by_reason"] == {"invalid_utf8": 2, "invalid_json": 1, "blank_line": 1}
    assert meta["skipped"]["examples"]["invalid_utf8"] == [f"{small}:6", str(corpus / "d-bad.txt")]
    assert meta["splits"]["train"]["documents"] == 57
    log = (tmp_path / "out" / SKIPPED_FILE).read_text().splitlines()
    assert log == [f"invalid_utf8\t{small}:6", f"invalid_json\t{small}:10", f"blank_line\t{small}:21",
                   f"invalid_utf8\t{corpus / 'd-bad.txt'}"]
    printed = capsys.readouterr().out
    assert "invalid_utf8: 1 line, 1 file" in printed and "invalid_json: 1 line" in printed and "MB/s" in printed
    assert "skipped 3 lines and 1 whole file" in printed  # d-bad.txt is one file, not a line
