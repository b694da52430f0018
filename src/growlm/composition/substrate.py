"""Do these models share one substrate? The check ``growlm compose`` runs before merging anything.

Averaging logits is only meaningful when every expert reads the same token ids through the
same input table: the same tokenizer (ids mean the same text), the same vocabulary size
and the same frozen embedding table (../shared/papers/NOTES.md section 2: "composition is only defined for
models that share the substrate"). A model's substrate is described by its
:class:`Fingerprint`:

* ``vocab_size`` from its config;
* its tokenizer files (a SHA-256 over their names and bytes). Byte-identical files are
  one tokenizer; only when they differ are both tokenizers loaded and compared by
  vocabulary (token -> id), special-token ids and, for fast tokenizers, a SHA-256 of the
  whole serialised pipeline (normaliser, pre-tokeniser, merges), so that files which
  differ in form only (a rewritten ``tokenizer_config.json``) still compose, and two
  tokenizers with one vocabulary but different rules are told apart;
* its embedding *settings*: every config field whose name starts with ``embedding``
  (``embedding: glyph | binary | random_binary | learned`` and its options); a config
  without the field is a ``learned`` one, so checkpoints from before the field existed
  compare correctly;
* its embedding *table*: shape, dtype and a SHA-256 of the bytes of
  ``get_input_embeddings().weight``. Equal settings are not enough (two ``learned``
  models trained apart have different tables), and equal bytes are what the mean of
  logits relies on.

The first difference found is raised as one :class:`CompositionError` line naming the two
models and the difference; nothing is compared approximately.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from growlm.errors import GrowlmError
from growlm.substrate.build import substrate_fingerprint


class CompositionError(GrowlmError):
    """Models that cannot be composed (different substrates, tokenizers or vocabularies)."""


TOKENIZER_MARKERS = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


@dataclass
class Fingerprint:
    """What must be equal between experts, for one model."""

    name: str
    vocab_size: int
    embedding_fields: dict[str, Any]
    table_shape: list[int]
    table_dtype: str
    table_sha256: str
    tokenizer_files_sha256: str | None = None  # None: the folder holds no tokenizer
    folder: str | None = None
    tokenizer_size: int | None = None  # these four are filled in only when files differ (see describe_tokenizer)
    tokenizer_vocab_sha256: str | None = None
    tokenizer_pipeline_sha256: str | None = None
    special_tokens: dict[str, int | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def tokenizer_files_sha256(folder: Path | None) -> str | None:
    """SHA-256 over the names and bytes of a folder's tokenizer files; None when it holds no tokenizer."""
    from growlm.models.storage import TOKENIZER_FILES

    if folder is None or not any((folder / f).exists() for f in TOKENIZER_MARKERS):
        return None
    digest = hashlib.sha256()
    for name in TOKENIZER_FILES:
        if (folder / name).exists():
            digest.update(name.encode() + b"\0" + (folder / name).read_bytes() + b"\0")
    return digest.hexdigest()


def describe_tokenizer(fp: Fingerprint) -> Any:
    """Load ``fp``'s tokenizer and fill in its vocabulary, pipeline and special-token fields; returns it."""
    from growlm.data.tokenizer import load_tokenizer

    if fp.folder is None:
        raise CompositionError(f"{fp.name}: no folder to read the tokenizer from")
    tokenizer = load_tokenizer(fp.folder)
    vocab = tokenizer.get_vocab()
    fp.tokenizer_size = len(tokenizer)
    fp.tokenizer_vocab_sha256 = hashlib.sha256(
        json.dumps(sorted(vocab.items(), key=lambda kv: kv[1])).encode()).hexdigest()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    fp.tokenizer_pipeline_sha256 = hashlib.sha256(backend.to_str().encode()).hexdigest() if backend else None
    fp.special_tokens = {name: getattr(tokenizer, f"{name}_token_id", None) for name in ("bos", "eos", "pad", "unk")}
    return tokenizer


def fingerprint(model: Any, name: str, folder: Path | None = None) -> Fingerprint:
    """The substrate of ``model`` (its tokenizer files read from ``folder``)."""
    if getattr(model.config, "architecture", None) == "composite":
        raise CompositionError(f"{name} is itself a composite; compose its experts' folders instead")
    return Fingerprint(name=name, **substrate_fingerprint(model), tokenizer_files_sha256=tokenizer_files_sha256(folder),
                       folder=None if folder is None else str(folder))


def _first_token_difference(a: Any, b: Any) -> str:
    by_id_a = {i: t for t, i in a.get_vocab().items()}
    by_id_b = {i: t for t, i in b.get_vocab().items()}
    for index in sorted(set(by_id_a) | set(by_id_b)):
        if by_id_a.get(index) != by_id_b.get(index):
            return f"token {index} is {by_id_a.get(index)!r} in one and {by_id_b.get(index)!r} in the other"
    return "the same tokens"


def _rows_differing(a: torch.Tensor, b: torch.Tensor) -> int:
    return int((a.detach().cpu() != b.detach().cpu()).any(dim=-1).sum())


def _check_tokenizers(prefix: str, a: str, b: str, ref: Fingerprint, fp: Fingerprint) -> None:
    if (ref.tokenizer_files_sha256 is None) != (fp.tokenizer_files_sha256 is None):
        holder, lacker = (a, b) if fp.tokenizer_files_sha256 is None else (b, a)
        raise CompositionError(f"{prefix} {lacker} holds no tokenizer but {holder} does; the experts must "
                               "share one (copy it in with tokenizer.save_pretrained)")
    if fp.tokenizer_files_sha256 == ref.tokenizer_files_sha256:
        return  # byte-identical tokenizer files (or none on either side)
    ref_tok, tok = describe_tokenizer(ref), describe_tokenizer(fp)
    if fp.tokenizer_size != ref.tokenizer_size:
        raise CompositionError(f"{prefix} different tokenizers ({ref.tokenizer_size} vs {fp.tokenizer_size} tokens)")
    if fp.tokenizer_vocab_sha256 != ref.tokenizer_vocab_sha256:
        raise CompositionError(f"{prefix} different tokenizers ({_first_token_difference(ref_tok, tok)})")
    if fp.special_tokens != ref.special_tokens:
        diff = {k: (ref.special_tokens.get(k), v) for k, v in fp.special_tokens.items()
                if ref.special_tokens.get(k) != v}
        raise CompositionError(f"{prefix} different special tokens "
                               + ", ".join(f"{k}_token_id {x} vs {y}" for k, (x, y) in diff.items()))
    if fp.tokenizer_pipeline_sha256 != ref.tokenizer_pipeline_sha256:
        raise CompositionError(f"{prefix} different tokenizers (same vocabulary, but different "
                               "normalisation, pre-tokenisation or merges)")


def check_same_substrate(experts: list[tuple[Fingerprint, Any]]) -> None:
    """Raise :class:`CompositionError` (one line) at the first way an expert differs from the first.

    ``experts`` holds ``(fingerprint, model)`` per model, in order."""
    if len(experts) < 2:
        raise CompositionError(f"composition needs at least two models, got {len(experts)}")
    ref, ref_model = experts[0]
    a = ref.name
    for fp, model in experts[1:]:
        b = fp.name
        prefix = f"cannot compose {a} and {b}:"
        if fp.vocab_size != ref.vocab_size:
            raise CompositionError(f"{prefix} different vocabularies (vocab_size {ref.vocab_size} vs {fp.vocab_size})")
        _check_tokenizers(prefix, a, b, ref, fp)
        if fp.embedding_fields != ref.embedding_fields:
            keys = sorted(set(fp.embedding_fields) | set(ref.embedding_fields))
            diff = [f"{k}={ref.embedding_fields.get(k)!r} vs {fp.embedding_fields.get(k)!r}" for k in keys
                    if fp.embedding_fields.get(k) != ref.embedding_fields.get(k)]
            raise CompositionError(f"{prefix} different substrates ({', '.join(diff)})")
        if fp.table_shape != ref.table_shape or fp.table_dtype != ref.table_dtype:
            raise CompositionError(f"{prefix} different substrates (embedding tables "
                                   f"{'x'.join(map(str, ref.table_shape))} {ref.table_dtype} vs "
                                   f"{'x'.join(map(str, fp.table_shape))} {fp.table_dtype})")
        if fp.table_sha256 != ref.table_sha256:
            rows = _rows_differing(ref_model.get_input_embeddings().weight, model.get_input_embeddings().weight)
            raise CompositionError(f"{prefix} different substrates (embedding tables differ in {rows} of "
                                   f"{ref.table_shape[0]} rows, sha256 {ref.table_sha256[:12]} vs "
                                   f"{fp.table_sha256[:12]}; experts must be trained on one frozen table)")
