"""``growlm data prepare``: text files in, token shards out.

Inputs are ``.txt`` files (one document each), ``.jsonl`` / ``.jsonl.gz`` files (one
JSON object per line with a text field), or folders searched recursively for those.
The output folder holds

* ``train-00000.bin``, ``val-00000.bin``, ...: flat arrays of token ids (``uint16``
  when the vocabulary fits, else ``uint32``), read back with ``numpy.memmap``; every
  document is followed by the end-of-document token;
* ``tokenizer/``: the transformers tokenizer that produced them;
* ``meta.json``: tokenizer, dtype, shard list and token/document/byte counts per split,
  every input file, and every line that was skipped, counted by reason with examples.

Nothing is dropped silently: each skipped line is counted under its reason
(invalid JSON, missing or non-string text field, empty text), and the summary is
printed and stored. The folder is written under a temporary name and renamed when
complete, so an interrupted run leaves no half-written data behind.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from tqdm.auto import tqdm

from growlm.data.tokenizer import end_of_document_id, load_tokenizer
from growlm.errors import DataError

FORMAT = "growlm-tokens-v1"
SUFFIXES = (".txt", ".jsonl", ".jsonl.gz", ".txt.gz")
EXAMPLES_PER_REASON = 5


def _suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in sorted(SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)


def list_input_files(inputs: Sequence[str | Path]) -> list[Path]:
    """Expand folders (recursively, sorted) and check that every named file exists and is supported."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _suffix(p))
            if not found:
                raise DataError(f"folder {path} contains no {', '.join(SUFFIXES)} files")
            files.extend(found)
        elif path.is_file():
            if not _suffix(path):
                raise DataError(f"input {path}: unsupported file type; expected one of {', '.join(SUFFIXES)}")
            files.append(path)
        else:
            raise DataError(f"input {path} does not exist")
    return files


@dataclass
class SkipLog:
    """Lines that produced no document, counted by reason, with a few examples each."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] += 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < EXAMPLES_PER_REASON:
            examples.append(where)

    def as_dict(self) -> dict[str, Any]:
        return {"total": sum(self.counts.values()), "by_reason": dict(self.counts), "examples": self.examples}


def read_documents(path: Path, text_field: str, skips: SkipLog, progress: tqdm | None = None) -> Iterator[str]:
    """Yield the documents of one input file; malformed lines go to ``skips``."""
    suffix = _suffix(path)
    try:
        raw = open(path, "rb")  # noqa: SIM115 -- closed below, and tell() is needed for progress
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from exc
    done = 0
    try:
        stream = gzip.GzipFile(fileobj=raw) if suffix.endswith(".gz") else raw
        if suffix.startswith(".txt"):
            text = stream.read().decode("utf-8")
            if text.strip():
                yield text
            else:
                skips.add("empty_file", str(path))
            return
        for lineno, line in enumerate(stream, 1):
            if progress is not None and lineno % 256 == 0:
                progress.update(raw.tell() - done)
                done = raw.tell()
            where = f"{path}:{lineno}"
            if not line.strip():
                skips.add("blank_line", where)
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                skips.add("invalid_json", where)
                continue
            if not isinstance(record, dict):
                skips.add("not_a_json_object", where)
                continue
            if text_field not in record:
                skips.add(f"missing_{text_field}_field", where)
                continue
            text = record[text_field]
            if not isinstance(text, str):
                skips.add(f"{text_field}_not_a_string", where)
                continue
            if not text.strip():
                skips.add(f"empty_{text_field}", where)
                continue
            yield text
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    finally:
        if progress is not None:
            progress.update(max(0, os.path.getsize(path) - done))
        raw.close()


class ShardWriter:
    """Appends token arrays to ``{split}-NNNNN.bin`` files of at most ``shard_tokens`` tokens."""

    def __init__(self, folder: Path, split: str, dtype: np.dtype, shard_tokens: int) -> None:
        self.folder, self.split, self.dtype, self.shard_tokens = folder, split, dtype, shard_tokens
        self.shards: list[dict[str, Any]] = []
        self.handle: BinaryIO | None = None
        self.tokens = self.documents = self.bytes = 0

    def _open_next(self) -> None:
        if self.handle:
            self.handle.close()
        name = f"{self.split}-{len(self.shards):05d}.bin"
        self.handle = open(self.folder / name, "wb")  # noqa: SIM115 -- lives across calls, closed in close()
        self.shards.append({"file": name, "tokens": 0})

    def write(self, ids: np.ndarray, text_bytes: int) -> None:
        self.documents += 1
        self.bytes += text_bytes
        while len(ids):
            if self.handle is None or self.shards[-1]["tokens"] >= self.shard_tokens:
                self._open_next()
            room = self.shard_tokens - self.shards[-1]["tokens"]
            part, ids = ids[:room], ids[room:]
            part.astype(self.dtype).tofile(self.handle)
            self.shards[-1]["tokens"] += len(part)
            self.tokens += len(part)

    def close(self) -> dict[str, Any]:
        if self.handle:
            self.handle.close()
        return {"tokens": self.tokens, "documents": self.documents, "bytes": self.bytes, "shards": self.shards}


def prepare(
    inputs: Sequence[str | Path],
    tokenizer_spec: str,
    out_dir: str | Path,
    val_inputs: Sequence[str | Path] = (),
    val_fraction: float = 0.01,
    text_field: str = "text",
    max_docs_per_file: int | None = None,
    max_tokens: int | None = None,
    shard_tokens: int = 100_000_000,
    seed: int = 0,
    overwrite: bool = False,
    batch_docs: int = 256,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Tokenize ``inputs`` into ``out_dir``; returns the metadata written to meta.json."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DataError(f"output folder {out} exists and is not empty (pass --overwrite to replace it)")
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val fraction must be in [0, 1), got {val_fraction}")
    train_files = list_input_files(inputs)
    val_files = list_input_files(val_inputs) if val_inputs else []
    tokenizer = load_tokenizer(tokenizer_spec)
    eod = end_of_document_id(tokenizer)
    vocab = len(tokenizer)
    dtype = np.dtype(np.uint16 if vocab <= np.iinfo(np.uint16).max + 1 else np.uint32)

    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    writers = {s: ShardWriter(tmp, s, dtype, shard_tokens) for s in ("train", "val")}
    rng = np.random.default_rng(seed)
    skips = SkipLog()
    files_meta = []
    started = time.time()
    total_bytes = sum(os.path.getsize(p) for p in [*train_files, *val_files])
    bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc="tokenizing", disable=not show_progress)

    def flush(batch: list[tuple[str, str]]) -> bool:
        """Tokenize and write a batch; False once the train split reached max_tokens."""
        if batch:
            encoded = tokenizer([text for _, text in batch], add_special_tokens=False)["input_ids"]
            for (split, text), ids in zip(batch, encoded, strict=True):
                if split == "train" and max_tokens and writers["train"].tokens >= max_tokens:
                    continue  # past the requested limit: the rest of the batch is not part of the slice
                writers[split].write(np.asarray([*ids, eod], dtype=np.int64), len(text.encode("utf-8")))
            batch.clear()
        return not (max_tokens and writers["train"].tokens >= max_tokens)

    try:
        train_full = False
        for split_files, fixed_split in ((train_files, None), (val_files, "val")):
            for path in split_files:
                if fixed_split is None and train_full:
                    break
                batch: list[tuple[str, str]] = []
                docs = 0
                for text in read_documents(path, text_field, skips, bar):
                    split = fixed_split or ("val" if val_fraction and not val_files and rng.random() < val_fraction
                                            else "train")
                    batch.append((split, text))
                    docs += 1
                    if len(batch) >= batch_docs and not flush(batch) and fixed_split is None:
                        train_full = True
                        break
                    if fixed_split is None and max_docs_per_file and docs >= max_docs_per_file:
                        break
                if not flush(batch) and fixed_split is None:
                    train_full = True
                files_meta.append({"path": str(path), "split": fixed_split or "train+val", "documents": docs})
                if docs == 0:
                    tqdm.write(f"warning: {path} contains no usable document", file=sys.stderr)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        for writer in writers.values():
            writer.close()
        bar.close()

    splits = {s: w.close() for s, w in writers.items()}
    if splits["train"]["documents"] == 0:
        shutil.rmtree(tmp)
        raise DataError(
            f"no usable documents in {', '.join(map(str, train_files))} "
            f"(skipped lines: {dict(skips.counts) or 'none'})"
        )
    tokenizer.save_pretrained(tmp / "tokenizer")
    meta = {
        "format": FORMAT,
        "tokenizer": {"source": str(tokenizer_spec), "class": type(tokenizer).__name__, "vocab_size": vocab,
                      "eod_id": eod, "path": "tokenizer"},
        "dtype": dtype.name,
        "splits": splits,
        "inputs": files_meta,
        "skipped": skips.as_dict(),
        "text_field": text_field,
        "val_fraction": val_fraction if not val_files else None,
        "seed": seed,
        "seconds": round(time.time() - started, 2),
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return meta


def summary_lines(meta: dict[str, Any]) -> list[str]:
    """Human-readable account of a preparation, skipped lines included."""
    lines = []
    for split, info in meta["splits"].items():
        lines.append(f"{split}: {info['tokens']:,} tokens, {info['documents']:,} documents, "
                     f"{info['bytes']:,} bytes, {len(info['shards'])} shard(s)")
    skipped = meta["skipped"]
    if skipped["total"]:
        lines.append(f"skipped {skipped['total']:,} line(s):")
        for reason, count in sorted(skipped["by_reason"].items()):
            examples = ", ".join(skipped["examples"].get(reason, []))
            lines.append(f"  {reason}: {count:,} (e.g. {examples})")
    else:
        lines.append("skipped 0 lines")
    return lines
