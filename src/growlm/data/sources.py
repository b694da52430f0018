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

Several processes (``rank`` of ``world``): each process reads only its share. A dataset
source is split with ``datasets.distributed.split_dataset_by_node`` (whole shards --
files -- per process when their number is a multiple of the world size, else every
world-th document; a contiguous block of rows for a map-style dataset); a prepared
source gives process r the window positions r, r + world, r + 2 world, ...; the
mixture draws process r's j-th window with the generator seeded by ``(seed, j * world
+ r)``. Every process thus has its own stream and its own state. A checkpoint keeps
all of them (``{"world": N, "ranks": [...]}``), so a run resumed on the same number of
processes continues every share exactly; on another number the shares would be other
documents, so :meth:`MixedStream.load_state` refuses with a message saying so.
"""

from __future__ import annotations

import itertools
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
    """Windows of a prepared folder in its seeded order; state: its own window position.

    Under ``world`` processes, process ``rank`` takes the positions ``rank, rank + world, ...``."""

    def __init__(self, folder: str | Path, seq_len: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.sampler = WindowSampler(TokenSplit(folder, "train"), seq_len, seed)
        self.rank, self.world = rank, world
        self.position = 0

    def next_window(self) -> np.ndarray:
        window = self.sampler.window(self.position * self.world + self.rank)
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
    """Documents of a ``datasets`` source (this process's share of them), tokenized on the fly into windows."""

    def __init__(self, spec: dict[str, Any], tokenizer: Any, seq_len: int, batch_documents: int = 64,
                 rank: int = 0, world: int = 1) -> None:
        self.spec, self.tokenizer, self.seq_len = spec, tokenizer, seq_len
        self.rank, self.world = rank, world
        self.eod = end_of_document_id(tokenizer)
        self.text_field = spec.get("text_field", "text")
        self.batch_documents = batch_documents
        self.documents = 0  # consumed in this epoch
        self.epoch = 0
        self.buffer: list[int] = []
        self.skipped = 0
        self._iterator: Iterator[dict[str, Any]] | None = None

    def _open(self) -> Iterator[dict[str, Any]]:
        """This process's documents, from the first one not consumed yet in this epoch."""
        data = open_dataset(self.spec)
        limit = self.spec.get("max_documents")
        streaming = not hasattr(data, "select")
        if limit:  # the source's first documents, then shared among the processes
            data = data.take(limit) if streaming else data.select(range(min(len(data), limit)))
        if self.world > 1:
            from datasets.distributed import split_dataset_by_node

            data = split_dataset_by_node(data, rank=self.rank, world_size=self.world)
        if streaming:  # read and discard what this process consumed (after the split: its own documents)
            return itertools.islice(iter(data), self.documents, None)
        return iter(data.select(range(min(self.documents, len(data)), len(data))))

    def _fill(self) -> None:
        if self._iterator is None:
            self._iterator = self._open()
        texts: list[str] = []
        empty_epoch = True
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
    """Windows drawn from several sources by weight; the whole state is a small dict.

    ``rank``/``world``: this process's share (see the module docstring); ``windows`` counts
    this process's windows."""

    def __init__(self, sources: list[PreparedSource | DatasetSource], weights: list[float], seed: int,
                 rank: int = 0, world: int = 1) -> None:
        self.sources = sources
        self.probabilities = np.asarray(weights, dtype=np.float64) / float(sum(weights))
        self.seed, self.rank, self.world = seed, rank, world
        self.windows = 0

    def next_windows(self, count: int) -> np.ndarray:
        rows = []
        for _ in range(count):
            draw = self.windows * self.world + self.rank
            pick = int(np.random.default_rng([self.seed, draw]).choice(len(self.sources), p=self.probabilities))
            rows.append(self.sources[pick].next_window())
            self.windows += 1
        return np.stack(rows)

    @property
    def skipped_documents(self) -> int:
        """Documents of dataset sources without usable text (empty or not a string) so far."""
        return sum(getattr(s, "skipped", 0) for s in self.sources)

    def state(self) -> dict[str, Any]:
        """This process's state; a checkpoint keeps every process's, through :func:`combined_state`."""
        return {"windows": self.windows, "sources": [s.state() for s in self.sources]}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's data state: :func:`combined_state`'s form, or one process's."""
        if "ranks" in state:
            saved_world = int(state["world"])
            if saved_world != self.world:
                raise DataError(
                    f"the streaming data state was saved by {saved_world} process(es) and this run has "
                    f"{self.world}: each process reads its own share of the streaming sources, and the "
                    f"position within each share exists only for {saved_world} process(es). Resume with "
                    f"{saved_world} process(es) (torchrun --nproc_per_node {saved_world}), or start the data "
                    "afresh (init_from with continue_data: false)")
            state = state["ranks"][self.rank]
        elif self.world != 1:
            raise DataError(f"the streaming data state was saved by a single process and this run has {self.world}; "
                            "resume with one process, or start the data afresh (init_from with continue_data: false)")
        if len(state.get("sources", [])) != len(self.sources):
            raise DataError(f"the saved data state has {len(state.get('sources', []))} sources, the config "
                            f"{len(self.sources)}")
        self.windows = int(state["windows"])
        for source, saved in zip(self.sources, state["sources"], strict=True):
            source.load_state(saved)


def combined_state(states: list[dict[str, Any]]) -> dict[str, Any]:
    """Every process's :meth:`MixedStream.state`, in rank order, as a checkpoint keeps them."""
    return {"world": len(states), "ranks": states}


def build_stream(spec: dict[str, Any], tokenizer: Any, seq_len: int, seed: int, rank: int = 0,
                 world: int = 1) -> MixedStream:
    """The training stream of a ``data: {sources: ...}`` config, for process ``rank`` of ``world``."""
    if not 0 <= rank < world:
        raise DataError(f"rank {rank} is outside a world of {world} process(es)")
    sources: list[PreparedSource | DatasetSource] = []
    weights: list[float] = []
    for i, entry in enumerate(spec["sources"]):
        entry = check_source(entry, f"data.sources[{i}]")
        if "prepared" in entry:
            sources.append(PreparedSource(entry["prepared"], seq_len, seed + i, rank, world))
        else:
            sources.append(DatasetSource(entry, tokenizer, seq_len, rank=rank, world=world))
        weights.append(float(entry.get("weight", 1.0)))
    return MixedStream(sources, weights, seed, rank, world)


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
