"""Training data as a resumable stream of windows, from prepared shards, Hugging Face datasets, or a mix.

A config's ``data`` is either a prepared folder (the fast path: memory-mapped shards
in a seeded order, ``dataset.py``) or a mapping with ``sources``::

    data:
      tokenizer: ../shared/tokenizers/mistral-v1-32k/tokenizer.model
      sources:
        - {dataset: HuggingFaceFW/fineweb, name: sample-10BT, split: train, streaming: true, weight: 0.8}
        - {dataset: json, data_files: [more/*.jsonl.gz], split: train, weight: 0.1}
        - {prepared: data/shared-corpus-mistral32k, weight: 0.1}
      val: {prepared: data/shared-corpus-mistral32k}     # or a dataset entry (its first documents)

A ``dataset`` source goes through ``datasets.load_dataset(dataset, name, split=...,
data_files=..., streaming=...)`` -- a hub name when online, or a local builder such as
``json``/``parquet`` with ``data_files``, through the same call. Its documents are
tokenized on the fly, each followed by the end-of-document token, and cut into
windows of ``seq_len + 1`` tokens exactly as ``data prepare`` + ``dataset.py`` would; at
the end of the data it starts over (next epoch).

Mixing: window ``i`` of the training stream comes from source ``k`` drawn with
probabilities proportional to the weights by a generator seeded with ``(seed, i)``, so
the draw is a function of the window index alone.

Resuming: the stream's state is the number of windows drawn and, per source, how far
it has read: for a prepared source its own window position, for a dataset source the
number of documents consumed, the epoch and the tokens already tokenized but not yet
used. That state is in every checkpoint; a resumed run re-opens each dataset, skips
the consumed documents and continues with identical windows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from growlm.data.dataset import TokenSplit, WindowSampler
from growlm.data.tokenizer import end_of_document_id
from growlm.errors import ConfigError, DataError, unknown_key_message

SOURCE_KEYS = {"dataset": str, "name": str, "split": str, "data_files": list, "text_field": str, "streaming": bool,
               "weight": float, "prepared": str, "max_documents": int}


def check_source(spec: Any, where: str) -> dict[str, Any]:
    from growlm.overrides import coerce

    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be a mapping with keys {', '.join(SOURCE_KEYS)}")
    for key, value in spec.items():
        if key not in SOURCE_KEYS:
            raise ConfigError(f"{where}: " + unknown_key_message("source key", key, SOURCE_KEYS))
        if key == "data_files" and isinstance(value, str):
            continue
        coerce(f"{where}.{key}", value, SOURCE_KEYS[key], optional=True)
    if ("dataset" in spec) == ("prepared" in spec):
        raise ConfigError(f"{where} needs exactly one of 'dataset' (a datasets name or builder) and 'prepared' "
                          "(a folder written by growlm data prepare)")
    if spec.get("weight", 1.0) <= 0:
        raise ConfigError(f"{where}.weight must be positive")
    return spec


class PreparedSource:
    """Windows of a prepared folder in its seeded order; state: its own window position."""

    def __init__(self, folder: str | Path, seq_len: int, seed: int) -> None:
        self.sampler = WindowSampler(TokenSplit(folder, "train"), seq_len, seed)
        self.position = 0

    def next_window(self) -> np.ndarray:
        window = self.sampler.window(self.position)
        self.position += 1
        return window

    def state(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state(self, state: dict[str, Any]) -> None:
        self.position = int(state["position"])


def open_dataset(spec: dict[str, Any]):
    """The documents of a ``dataset`` source, through ``datasets.load_dataset``."""
    import datasets

    kwargs: dict[str, Any] = {"split": spec.get("split", "train"), "streaming": bool(spec.get("streaming", False))}
    if spec.get("data_files"):
        kwargs["data_files"] = spec["data_files"]
    try:
        return datasets.load_dataset(spec["dataset"], spec.get("name"), **kwargs)
    except Exception as exc:  # many kinds (network, missing files, schema): name the source and say why
        raise DataError(f"cannot open dataset {spec['dataset']!r} ({spec.get('name') or 'default'}, "
                        f"{kwargs['split']}): {exc}") from exc


class DatasetSource:
    """Documents of a ``datasets`` source, tokenized on the fly into windows."""

    def __init__(self, spec: dict[str, Any], tokenizer: Any, seq_len: int, batch_documents: int = 64) -> None:
        self.spec, self.tokenizer, self.seq_len = spec, tokenizer, seq_len
        self.eod = end_of_document_id(tokenizer)
        self.text_field = spec.get("text_field", "text")
        self.batch_documents = batch_documents
        self.documents = 0  # consumed in this epoch
        self.epoch = 0
        self.buffer: list[int] = []
        self.skipped = 0
        self._iterator: Iterator[dict[str, Any]] | None = None

    def _open(self) -> Iterator[dict[str, Any]]:
        data = open_dataset(self.spec)
        limit = self.spec.get("max_documents")
        if hasattr(data, "skip"):  # streaming: skip reads and discards
            data = data.skip(self.documents)
            if limit:
                data = data.take(max(0, limit - self.documents))
        else:
            end = len(data) if not limit else min(len(data), limit)
            data = data.select(range(min(self.documents, end), end))
        return iter(data)

    def _fill(self) -> None:
        if self._iterator is None:
            self._iterator = self._open()
        texts, empty_epoch = [], True
        while len(texts) < self.batch_documents:
            try:
                record = next(self._iterator)
            except StopIteration:
                if empty_epoch and not texts and self.documents == 0:
                    raise DataError(f"dataset {self.spec['dataset']!r} has no documents with a "
                                    f"'{self.text_field}' field") from None
                self.epoch += 1
                self.documents = 0
                self._iterator = self._open()
                break
            self.documents += 1
            empty_epoch = False
            text = record.get(self.text_field)
            if isinstance(text, str) and text.strip():
                texts.append(text)
            else:
                self.skipped += 1
        for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []:
            self.buffer.extend(ids)
            self.buffer.append(self.eod)

    def next_window(self) -> np.ndarray:
        while len(self.buffer) < self.seq_len + 1:
            self._fill()
        window = np.asarray(self.buffer[: self.seq_len + 1], dtype=np.int64)
        del self.buffer[: self.seq_len]  # consecutive windows share their boundary token, like prepared data
        return window

    def state(self) -> dict[str, Any]:
        return {"documents": self.documents, "epoch": self.epoch, "buffer": list(self.buffer),
                "skipped": self.skipped}

    def load_state(self, state: dict[str, Any]) -> None:
        self.documents, self.epoch = int(state["documents"]), int(state["epoch"])
        self.buffer, self.skipped = list(state["buffer"]), int(state.get("skipped", 0))
        self._iterator = None


class MixedStream:
    """Windows drawn from several sources by weight; the whole state is a small dict."""

    def __init__(self, sources: list[PreparedSource | DatasetSource], weights: list[float], seed: int) -> None:
        self.sources = sources
        self.probabilities = np.asarray(weights, dtype=np.float64) / float(sum(weights))
        self.seed = seed
        self.windows = 0

    def next_windows(self, count: int) -> np.ndarray:
        rows = []
        for _ in range(count):
            pick = int(np.random.default_rng([self.seed, self.windows]).choice(len(self.sources),
                                                                              p=self.probabilities))
            rows.append(self.sources[pick].next_window())
            self.windows += 1
        return np.stack(rows)

    @property
    def skipped_documents(self) -> int:
        """Documents of dataset sources without usable text (empty or not a string) so far."""
        return sum(getattr(s, "skipped", 0) for s in self.sources)

    def state(self) -> dict[str, Any]:
        return {"windows": self.windows, "sources": [s.state() for s in self.sources]}

    def load_state(self, state: dict[str, Any]) -> None:
        if len(state.get("sources", [])) != len(self.sources):
            raise DataError(f"the saved data state has {len(state.get('sources', []))} sources, the config "
                            f"{len(self.sources)}")
        self.windows = int(state["windows"])
        for source, saved in zip(self.sources, state["sources"], strict=True):
            source.load_state(saved)


def build_stream(spec: dict[str, Any], tokenizer: Any, seq_len: int, seed: int) -> MixedStream:
    sources, weights = [], []
    for i, entry in enumerate(spec["sources"]):
        entry = check_source(entry, f"data.sources[{i}]")
        if "prepared" in entry:
            sources.append(PreparedSource(entry["prepared"], seq_len, seed + i))
        else:
            sources.append(DatasetSource(entry, tokenizer, seq_len))
        weights.append(float(entry.get("weight", 1.0)))
    return MixedStream(sources, weights, seed)


class InMemorySplit:
    """A validation split built from a ``dataset`` source's first documents (same interface as TokenSplit)."""

    def __init__(self, spec: dict[str, Any], tokenizer: Any, max_documents: int = 512) -> None:
        source = DatasetSource({**spec, "max_documents": spec.get("max_documents", max_documents)}, tokenizer, 1)
        data = source._open()
        tokens: list[int] = []
        self.num_bytes = self.skipped = 0
        for record in data:
            text = record.get(source.text_field)
            if isinstance(text, str) and text.strip():
                tokens += tokenizer(text, add_special_tokens=False)["input_ids"] + [source.eod]
                self.num_bytes += len(text.encode("utf-8"))
            else:
                self.skipped += 1
        if not tokens:
            raise DataError(f"validation source {spec.get('dataset')!r} yielded no documents")
        self.tokens = np.asarray(tokens, dtype=np.int64)
        self.num_tokens = len(self.tokens)
        self.split = "val"
        self.dir = Path(str(spec.get("dataset")))

    def num_windows(self, seq_len: int) -> int:
        return max(0, (self.num_tokens - 1) // seq_len)

    def window(self, index: int, seq_len: int) -> np.ndarray:
        return self.tokens[index * seq_len: index * seq_len + seq_len + 1]
