"""The data a training run reads: a config's ``data`` entry resolved into batches and a validation split.

Two kinds (docs/data.md): a prepared folder, memory-mapped and read at random by the
data position (so every process computes its share of a global batch from the position
alone), or a stream of sources (``data: {sources: ...}``), of which each process reads
its own share and whose state travels in checkpoints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from growlm.data.dataset import TokenSplit, WindowSampler, load_meta
from growlm.data.prepare import prepare
from growlm.data.sources import InMemorySplit, MixedStream, build_stream, check_source
from growlm.data.tokenizer import load_tokenizer
from growlm.errors import DataError


def resolve_data(spec: Any, say: Callable[[str], None]) -> Path:
    """The prepared data folder of a config's ``data`` entry, preparing it on first use."""
    if isinstance(spec, str):
        load_meta(spec)
        return Path(spec)
    out = Path(spec["out"])
    wanted = {k: spec.get(k) for k in sorted(spec) if k != "out"}
    if (out / "meta.json").exists():
        meta = load_meta(out)
        if meta.get("spec") not in (None, wanted):
            raise DataError(f"{out} was prepared from a different data spec; delete it or change data.out")
        return out
    say(f"preparing {out} from {', '.join(spec['inputs'])} (first use of this data spec)")
    meta = prepare(spec["inputs"], spec["tokenizer"], out, val_inputs=spec.get("val") or (),
                   val_fraction=spec.get("val_fraction", 0.01), text_field=spec.get("text_field", "text"),
                   max_docs_per_file=spec.get("max_docs_per_file"), max_tokens=spec.get("max_tokens"))
    meta["spec"] = wanted
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return out


class TrainingData:
    """One process's view of a run's data: the tokenizer, where batches come from, the validation split.

    Exactly one of ``stream`` (a stream of sources) and ``sampler`` (windows of the
    prepared folder ``data_dir``) is set."""

    def __init__(self, tokenizer: Any, val_split: TokenSplit | InMemorySplit | None, *,
                 stream: MixedStream | None = None, data_dir: Path | None = None,
                 sampler: WindowSampler | None = None) -> None:
        if (stream is None) == (sampler is None):
            raise ValueError("TrainingData takes a stream or a sampler, not both or neither")
        self.tokenizer = tokenizer
        self.val_split = val_split
        self.stream = stream
        self.data_dir = data_dir
        self.sampler = sampler

    def batch(self, position: int, rank: int, micro_batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's share (inputs, targets) of the global micro-batch at data ``position``."""
        if self.stream is not None:  # each process draws from its own share of the sources
            tokens = torch.from_numpy(self.stream.next_windows(micro_batch_size))
            return tokens[:, :-1], tokens[:, 1:]
        assert self.sampler is not None
        return self.sampler.batch(position + rank * micro_batch_size, micro_batch_size)


def open_training_data(spec: Any, seq_len: int, seed: int, rank: int, world: int,
                       barrier: Callable[[], None], say: Callable[[str], None]) -> TrainingData:
    """The data of a config's ``data`` entry for process ``rank`` of ``world``.

    A prepared folder is prepared on first use by rank 0 while the others wait at ``barrier``;
    ``say`` gets the messages (preparing, skipped documents, validation turned off)."""
    if isinstance(spec, dict) and "sources" in spec:
        tokenizer = load_tokenizer(spec["tokenizer"])
        stream = build_stream(spec, tokenizer, seq_len, seed, rank, world)  # this process's share of the sources
        val = spec.get("val")
        val_split: TokenSplit | InMemorySplit | None
        if val is None:
            val_split = None
        elif "prepared" in check_source(val, "data.val"):
            val_split = TokenSplit(val["prepared"], "val")
        else:
            val_split = InMemorySplit(val, tokenizer)
            if val_split.skipped:
                say(f"validation data: {val_split.skipped} documents without text skipped")
        data = TrainingData(tokenizer, _usable(val_split, seq_len, say), stream=stream)
    else:
        if rank == 0:  # rank 0 prepares the data on first use of a spec; the others wait
            data_dir = resolve_data(spec, say)
        barrier()
        if rank != 0:
            data_dir = resolve_data(spec, say)
        has_val = "val" in load_meta(data_dir)["splits"]
        data = TrainingData(load_tokenizer(data_dir / "tokenizer"),
                            _usable(TokenSplit(data_dir, "val") if has_val else None, seq_len, say),
                            data_dir=data_dir, sampler=WindowSampler(TokenSplit(data_dir, "train"), seq_len, seed))
    return data


def _usable(val_split: TokenSplit | InMemorySplit | None, seq_len: int,
            say: Callable[[str], None]) -> TokenSplit | InMemorySplit | None:
    if val_split is not None and val_split.num_windows(seq_len) == 0:
        say("warning: the validation data is shorter than one window; validation is off")
        return None
    return val_split
