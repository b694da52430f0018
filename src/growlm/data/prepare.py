"""``growlm data prepare``: text files in, token shards out.

Inputs are ``.txt`` files (one document each), ``.jsonl`` / ``.jsonl.gz`` files (one
JSON object per line with a text field), or folders searched recursively for those.
The output folder holds

* ``train-00000.bin``, ``val-00000.bin``, ...: flat arrays of token ids (``uint16``
  when the vocabulary fits, else ``uint32``), read back with ``numpy.memmap``; every
  document is followed by the end-of-document token;
* ``tokenizer/``: the transformers tokenizer that produced them;
* ``meta.json``: tokenizer, dtype, shard list and token/document/byte counts per split,
  every input file, and every line that was skipped, counted by reason with examples;
* ``skipped.txt``: every skipped line, ``reason<TAB>file:line``.

Nothing is dropped silently, and no bad line stops the run: each skipped line (not
UTF-8, invalid JSON, missing or non-string text field, empty text) is counted under
its reason, and the summary is printed and stored. The folder is written under a
temporary name and renamed when complete, so an interrupted run leaves no
half-written data behind.

Speed: tokenizing is the whole cost (about 1 MB/s per core for the 32k SentencePiece
vocabulary), reading and decompressing a hundred times cheaper. So this process reads
the files in order and hands batches of raw lines -- byte ranges of the input -- to
``workers`` processes, which parse and tokenize them; huge documents are cut into
pieces that tokenize exactly as the whole (``chunking.py``), so that a corpus of a few
huge documents keeps every worker busy too. The output does not depend on the number
of workers (see ``_Run``). No ``datasets`` dependency: local files only need this.
"""

from __future__ import annotations

import gzip
import json
import logging
import multiprocessing
import multiprocessing.context
import os
import sys
import time
from collections import Counter, deque
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import numpy as np
from tqdm.auto import tqdm

from growlm.data.chunking import Encoder, init_worker, parse_line, run_in_worker
from growlm.data.tokenizer import end_of_document_id, load_tokenizer
from growlm.errors import DataError
from growlm.folders import atomic_dir

logger = logging.getLogger(__name__)

FORMAT = "growlm-tokens-v1"
SUFFIXES = (".txt", ".jsonl", ".jsonl.gz", ".txt.gz")
EXAMPLES_PER_REASON = 5
SKIPPED_FILE = "skipped.txt"
PIECE_CHARS = 1 << 14  # documents longer than this are tokenized in pieces of about this size (fastest)
BATCH_BYTES = 1 << 20  # text per work item: ~1 s of one core's tokenizing, small enough to balance


def _suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in sorted(SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)


def list_input_files(inputs: Sequence[str | Path], ignored: list[Path] | None = None) -> list[Path]:
    """Expand folders (recursively, sorted) and check that every named file exists and is supported.

    Files of other types found in folders are left out and appended to ``ignored``, so that the
    caller can name them."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            everything = sorted(p for p in path.rglob("*") if p.is_file())
            found = [p for p in everything if _suffix(p)]
            if not found:
                raise DataError(f"folder {path} contains no {', '.join(SUFFIXES)} files")
            files.extend(found)
            if ignored is not None:
                ignored.extend(p for p in everything if not _suffix(p))
        elif path.is_file():
            if not _suffix(path):
                raise DataError(f"input {path}: unsupported file type; expected one of {', '.join(SUFFIXES)}")
            files.append(path)
        else:
            raise DataError(f"input {path} does not exist")
    return files


class SkipLog:
    """Lines (and whole ``.txt`` files) that produced no document: counted by reason, a few examples
    each, all in a log file. A whole file is counted as a file, not as a line."""

    def __init__(self, log_path: Path | None = None) -> None:
        self.counts: Counter = Counter()
        self.file_counts: Counter = Counter()  # the part of ``counts`` that is whole files
        self.examples: dict[str, list[str]] = {}
        self.log: TextIO | None = open(log_path, "w") if log_path else None  # noqa: SIM115 -- see close()

    def add(self, reason: str, where: str, whole_file: bool = False) -> None:
        self.counts[reason] += 1
        if whole_file:
            self.file_counts[reason] += 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < EXAMPLES_PER_REASON:
            examples.append(where)
        if self.log:
            self.log.write(f"{reason}\t{where}\n")

    def close(self) -> None:
        if self.log:
            self.log.close()
            self.log = None

    def as_dict(self) -> dict[str, Any]:
        files = sum(self.file_counts.values())
        return {"total": sum(self.counts.values()), "lines": sum(self.counts.values()) - files, "files": files,
                "by_reason": dict(self.counts), "files_by_reason": dict(self.file_counts),
                "examples": self.examples}


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
        # lives across calls, closed in close(); a large buffer: documents arrive a few hundred tokens at a time
        self.handle = open(self.folder / name, "wb", buffering=1 << 22)  # noqa: SIM115
        self.shards.append({"file": name, "tokens": 0})

    def write(self, ids: np.ndarray, text_bytes: int) -> None:
        self.documents += 1
        self.bytes += text_bytes
        while len(ids):
            if self.handle is None or self.shards[-1]["tokens"] >= self.shard_tokens:
                self._open_next()
            room = self.shard_tokens - self.shards[-1]["tokens"]
            part, ids = ids[:room], ids[room:]
            assert self.handle is not None  # _open_next() opened it
            self.handle.write(part.astype(self.dtype, copy=False).tobytes())
            self.shards[-1]["tokens"] += len(part)
            self.tokens += len(part)

    def close(self) -> dict[str, Any]:
        if self.handle:
            self.handle.close()
        return {"tokens": self.tokens, "documents": self.documents, "bytes": self.bytes, "shards": self.shards}


WAIT = object()  # the reader has more to give, but not before an in-flight batch is consumed


def _starts_document(item: tuple) -> bool:
    """A line, or the first piece of a huge document: what a per-file document limit counts."""
    return item[0] == "line" or (item[0] == "piece" and item[2])


class _Done:
    """A computed result with a future's interface (the one-worker path runs in this process)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self) -> Any:
        return self.value


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork starts workers in milliseconds and shares the loaded tokenizer; spawn where fork is unsafe (macOS)
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def default_workers() -> int:
    """All the cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _Run:
    """One preparation: the reader, the ordered pipeline through the workers and the writers.

    Determinism: the reader cuts the input into batches of work items (lines, or pieces
    of huge documents) in file order; workers encode batches in any order, but results
    are consumed strictly in submission order, and every decision that shapes the output
    (the train/val draw, the document and token limits, the skip log) is taken while
    consuming. The output is therefore the same for any number of workers; only the
    amount of work done past a limit (and then discarded) depends on it.
    """

    def __init__(self, train_files: list[Path], val_files: list[Path], encoder: Encoder, writers: dict,
                 eod: int, val_fraction: float, seed: int, max_docs_per_file: int | None,
                 max_tokens: int | None, batch_bytes: int, skips: SkipLog, bar: tqdm) -> None:
        self.files = [(p, None) for p in train_files] + [(p, "val") for p in val_files]
        self.encoder, self.writers, self.eod = encoder, writers, eod
        self.val_fraction, self.has_val_files = val_fraction, bool(val_files)
        self.rng = np.random.default_rng(seed)
        self.max_docs, self.max_tokens, self.batch_bytes = max_docs_per_file, max_tokens, batch_bytes
        self.skips, self.bar = skips, bar
        self.docs = [0] * len(self.files)
        self.in_flight = [0] * len(self.files)  # items that may become documents, submitted, not consumed
        self.train_full = False
        self.pieces: list[np.ndarray] = []
        self.piece_bytes = 0

    # -- what to read ----------------------------------------------------------------------
    def _ignored(self, f: int) -> bool:
        """Whether file ``f`` contributes nothing more (past a training limit)."""
        if self.files[f][1] is not None:
            return False
        return self.train_full or bool(self.max_docs and self.docs[f] >= self.max_docs)

    def _budget(self, f: int) -> float:
        if self.files[f][1] is not None or not self.max_docs:
            return float("inf")
        return self.max_docs - self.docs[f] - self.in_flight[f]

    def _items(self, f: int) -> Generator[tuple[tuple, int], None, None]:
        """The work items of file ``f`` with their line numbers (0 for a whole-file document)."""
        path = self.files[f][0]
        suffix = _suffix(path) or ""  # files are listed by their suffix: never empty here
        try:
            raw = open(path, "rb")  # noqa: SIM115 -- closed below, and tell() is needed for progress
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror}") from exc
        done = 0
        try:
            stream = gzip.GzipFile(fileobj=raw) if suffix.endswith(".gz") else raw
            if suffix.startswith(".txt"):
                data = stream.read()
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    yield ("skip", "invalid_utf8"), 0
                    return
                if not text.strip():
                    yield ("skip", "empty_file"), 0
                    return
                pieces = self.encoder.split(text)
                for k, piece in enumerate(pieces):
                    yield ("piece", piece, k == 0, k == len(pieces) - 1), 0
                return
            for lineno, line in enumerate(stream, 1):
                if lineno % 256 == 0:
                    self.bar.update(raw.tell() - done)
                    done = raw.tell()
                if self.encoder.piece_chars and len(line) > self.batch_bytes:
                    # a huge line: parse and cut it here, so that its pieces spread over the workers
                    line_text, reason = parse_line(line, self.encoder.text_field)
                    if line_text is None:  # then reason says why
                        yield ("skip", reason), lineno
                        continue
                    pieces = self.encoder.split(line_text)
                    for k, piece in enumerate(pieces):
                        yield ("piece", piece, k == 0, k == len(pieces) - 1), lineno
                else:
                    yield ("line", line), lineno
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise DataError(f"cannot read {path}: {exc}") from exc
        finally:
            self.bar.update(max(0, os.path.getsize(path) - done))
            raw.close()

    def batches(self) -> Iterator[Any]:
        """Batches ``(items, where)`` in file order, or WAIT while a document limit needs results first."""
        for f in range(len(self.files)):
            items: list[tuple] = []
            where: list[tuple[int, int]] = []
            size = 0
            reader = self._items(f)
            for item, lineno in reader:
                while self._budget(f) <= 0 and not self._ignored(f) and _starts_document(item):
                    if items:
                        yield items, where
                        items, where, size = [], [], 0
                    else:
                        yield WAIT
                if self._ignored(f):
                    break
                items.append(item)
                where.append((f, lineno))
                if _starts_document(item):
                    self.in_flight[f] += 1
                size += len(item[1]) if item[0] != "skip" else 0
                if size >= self.batch_bytes:
                    yield items, where
                    items, where, size = [], [], 0
            reader.close()  # closes the file now when a limit stopped reading early
            if items:
                yield items, where

    # -- what to keep ----------------------------------------------------------------------
    def consume(self, items: list[tuple], where: list[tuple[int, int]], results: list[tuple]) -> None:
        for item, (f, lineno), result in zip(items, where, results, strict=True):
            if _starts_document(item):
                self.in_flight[f] -= 1
            if self._ignored(f):
                continue
            path, fixed_split = self.files[f]
            if result[0] == "skip":
                self.skips.add(result[1], f"{path}:{lineno}" if lineno else str(path), whole_file=not lineno)
                continue
            _, ids, nbytes = result
            if item[0] == "piece" and not item[3]:
                self.pieces.append(ids)
                self.piece_bytes += nbytes
                continue
            if self.pieces:
                ids, nbytes = np.concatenate([*self.pieces, ids]), nbytes + self.piece_bytes
                self.pieces, self.piece_bytes = [], 0
            self.docs[f] += 1
            split = fixed_split or ("val" if self.val_fraction and not self.has_val_files
                                    and self.rng.random() < self.val_fraction else "train")
            self.writers[split].write(ids, nbytes)  # the end-of-document token is already there
            if split == "train" and self.max_tokens and self.writers["train"].tokens >= self.max_tokens:
                self.train_full = True

    def run(self, workers: int, tokenizer: Any) -> None:
        """Read, encode (in ``workers`` processes, or here for one) and write, in order."""
        executor = None
        if workers > 1:
            configured = "TOKENIZERS_PARALLELISM" in os.environ
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # workers are the parallelism
            executor = ProcessPoolExecutor(workers, mp_context=_pool_context(), initializer=init_worker,
                                           initargs=(tokenizer, self.encoder.text_field,
                                                     self.encoder.piece_chars, self.eod, self.encoder.dtype.str))
            if not configured:
                os.environ.pop("TOKENIZERS_PARALLELISM")
        window = 3 * workers
        pending: deque = deque()
        try:
            batches = self.batches()
            exhausted = False
            while True:
                while not exhausted and len(pending) < window:
                    batch = next(batches, None)
                    if batch is None:
                        exhausted = True
                    elif batch is WAIT:
                        break
                    else:
                        items, where = batch
                        job = executor.submit(run_in_worker, items) if executor else _Done(self.encoder.run(items))
                        pending.append((items, where, job))
                if not pending:
                    if exhausted:
                        break
                    raise AssertionError("the reader waits for results but none is in flight")
                items, where, job = pending.popleft()
                self.consume(items, where, job.result())
        finally:
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)


@dataclass
class PrepareSettings:
    """How :func:`prepare` reads and writes (``growlm data prepare``'s flags, one field each; its
    ``--help`` says what each does). :func:`prepare` also takes these fields as keywords."""

    val_inputs: Sequence[str | Path] = ()
    val_fraction: float = 0.01
    text_field: str = "text"
    max_docs_per_file: int | None = None
    max_tokens: int | None = None
    shard_tokens: int = 100_000_000
    seed: int = 0
    overwrite: bool = False
    workers: int | None = None
    piece_chars: int | None = PIECE_CHARS
    batch_bytes: int = BATCH_BYTES
    show_progress: bool = True


def prepare(inputs: Sequence[str | Path], tokenizer_spec: str, out_dir: str | Path,
            settings: PrepareSettings | None = None, **fields: Any) -> dict[str, Any]:
    """Tokenize ``inputs`` into ``out_dir``; returns the metadata written to meta.json.

    ``workers``: encoding processes (default: every core; fewer when the input is smaller
    than a few batches). The output is byte-for-byte the same for any number.
    ``piece_chars``: documents longer than this are encoded in pieces (exactly; see
    ``chunking.py``), 0 to encode every document whole. ``batch_bytes``: text per work item.
    """
    o = replace(settings or PrepareSettings(), **fields)
    val_inputs, val_fraction, text_field, seed = o.val_inputs, o.val_fraction, o.text_field, o.seed
    max_docs_per_file, max_tokens, shard_tokens, workers = o.max_docs_per_file, o.max_tokens, o.shard_tokens, o.workers
    piece_chars, batch_bytes, show_progress = o.piece_chars, o.batch_bytes, o.show_progress
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not o.overwrite:
        raise DataError(f"output folder {out} exists and is not empty (pass --overwrite to replace it)")
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val fraction must be in [0, 1), got {val_fraction}")
    if workers is not None and workers < 1:
        raise DataError(f"workers must be at least 1, got {workers}")
    piece_chars = PIECE_CHARS if piece_chars is None else piece_chars
    if piece_chars < 0 or batch_bytes < 1:
        raise DataError(f"piece_chars must be >= 0 and batch_bytes >= 1 (got {piece_chars}, {batch_bytes})")
    ignored: list[Path] = []
    train_files = list_input_files(inputs, ignored)
    val_files = list_input_files(val_inputs, ignored) if val_inputs else []
    if ignored:
        shown = ", ".join(map(str, ignored[:5])) + (f" and {len(ignored) - 5} more" if len(ignored) > 5 else "")
        logger.info(f"note: ignored {len(ignored)} file(s) of other types in the input folders: {shown} "
                    f"(read: {', '.join(SUFFIXES)})")
    tokenizer = load_tokenizer(tokenizer_spec)
    eod = end_of_document_id(tokenizer)
    vocab = len(tokenizer)
    dtype = np.dtype(np.uint16 if vocab <= np.iinfo(np.uint16).max + 1 else np.uint32)
    encoder = Encoder(tokenizer, text_field, piece_chars, eod=eod, dtype=dtype)
    if encoder.disabled_reason:
        logger.info(f"note: documents are tokenized whole ({encoder.disabled_reason})")
    total_bytes = sum(os.path.getsize(p) for p in [*train_files, *val_files])
    requested = workers or default_workers()
    used = max(1, min(requested, -(-total_bytes // batch_bytes)))  # no processes for a few batches' work

    with atomic_dir(out) as tmp:  # a failure leaves no folder behind, and an earlier one as it was
        writers = {s: ShardWriter(tmp, s, dtype, shard_tokens) for s in ("train", "val")}
        skips = SkipLog(tmp / SKIPPED_FILE)
        started = time.time()
        bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc=f"tokenizing ({used} workers)",
                   disable=not show_progress)
        run = _Run(train_files, val_files, encoder, writers, eod, val_fraction, seed, max_docs_per_file, max_tokens,
                   batch_bytes, skips, bar)
        try:
            run.run(used, tokenizer)
        except BaseException:
            skips.close()
            for writer in writers.values():
                writer.close()
            raise
        finally:
            bar.close()
        skips.close()
        seconds = time.time() - started
        splits = {s: w.close() for s, w in writers.items()}
        files_meta = []
        for f, (path, fixed_split) in enumerate(run.files):
            files_meta.append({"path": str(path), "split": fixed_split or "train+val", "documents": run.docs[f]})
            if run.docs[f] == 0:
                logger.warning(f"warning: {path} contains no usable document")
        if splits["train"]["documents"] == 0:
            raise DataError(
                f"no usable documents in {', '.join(map(str, train_files))} "
                f"(skipped lines: {dict(skips.counts) or 'none'})"
            )
        if splits["val"]["documents"] == 0 and (val_files or val_fraction > 0):
            why = (f"{', '.join(map(str, val_files))} gave no usable document" if val_files else
                   f"val_fraction {val_fraction} of {splits['train']['documents']} document(s) drew none")
            logger.warning(f"warning: the validation split is empty ({why}), so training will run without validation; "
                           "give held-out files with --val (data.val) or a larger --val-fraction")
        tokenizer.save_pretrained(tmp / "tokenizer")
        text_bytes = sum(info["bytes"] for info in splits.values())
        tokens = sum(info["tokens"] for info in splits.values())
        meta = {
            "format": FORMAT,
            "tokenizer": {"source": str(tokenizer_spec), "class": type(tokenizer).__name__, "vocab_size": vocab,
                          "eod_id": eod, "path": "tokenizer"},
            "dtype": dtype.name,
            "splits": splits,
            "inputs": files_meta,
            "skipped": skips.as_dict(),
            "ignored_files": [str(p) for p in ignored],
            "text_field": text_field,
            "val_fraction": val_fraction if not val_files else None,
            "seed": seed,
            "piece_chars": encoder.piece_chars,
            "workers": used,
            "seconds": round(seconds, 2),
            "text_mb_per_s": round(text_bytes / 1e6 / max(seconds, 1e-9), 3),
            "tokens_per_s": round(tokens / max(seconds, 1e-9), 1),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def summary_lines(meta: dict[str, Any]) -> list[str]:
    """Human-readable account of a preparation, skipped lines included."""
    lines = []
    for split, info in meta["splits"].items():
        lines.append(f"{split}: {info['tokens']:,} tokens, {info['documents']:,} documents, "
                     f"{info['bytes']:,} bytes, {len(info['shards'])} shard(s)")
    skipped = meta["skipped"]
    files_by_reason = skipped.get("files_by_reason", {})  # absent in folders prepared before it was counted
    if skipped["total"]:
        files = sum(files_by_reason.values())
        lines.append(f"skipped {_count(skipped['total'] - files, 'line')} and {_count(files, 'whole file')} "
                     f"(all listed in {SKIPPED_FILE}):")
        for reason, count in sorted(skipped["by_reason"].items()):
            examples = ", ".join(skipped["examples"].get(reason, []))
            whole = files_by_reason.get(reason, 0)
            parts = [_count(n, unit) for n, unit in ((count - whole, "line"), (whole, "file")) if n]
            lines.append(f"  {reason}: {', '.join(parts)} (e.g. {examples})")
    else:
        lines.append("skipped 0 lines")
    if meta.get("ignored_files"):
        lines.append(f"ignored {_count(len(meta['ignored_files']), 'file')} of other types (listed in meta.json)")
    return lines


def _count(n: int, unit: str) -> str:
    return f"{n:,} {unit}{'' if n == 1 else 's'}"
