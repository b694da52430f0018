"""Building a substrate once per (tokenizer, options), caching it, and putting it into a model.

The codes of a substrate depend on the tokenizer's pieces, the kind and its options
(and for glyphs on the font file); building the 32k glyph table takes seconds (drawing
32,000 tokens, one PCA), so glyph codes are cached on disk under
``$GROWLM_CACHE/substrate/`` (default ``~/.cache/growlm/substrate/``), one safetensors
file per key. The key is a SHA-256 of everything the codes depend on, so a changed
tokenizer, option or font can never pick up a stale table.

The codes are stored as float32 and every use goes through that float32 copy, also the
use right after a fresh build: a model built with a cold cache and one built with a warm
cache get bit-identical tables.

Models carry the table as their ``model.embed_tokens.weight`` (saved in every checkpoint),
so nothing here is needed to load, evaluate or generate with a model; only creating one
(``growlm init --tokenizer``, ``growlm train`` from a preset) builds or reads the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from growlm.errors import CheckpointError, ConfigError, unknown_key_message
from growlm.models.base import FROZEN_EMBEDDINGS, SUBSTRATE_PARAMETER, GrowLMConfig, GrowLMForCausalLM
from growlm.substrate.codes import binary_codes, glyph_codes, random_binary_codes, table_from_codes
from growlm.substrate.text import token_texts

FORMAT_VERSION = 1


def cache_dir() -> Path:
    root = os.environ.get("GROWLM_CACHE") or Path.home() / ".cache" / "growlm"
    return Path(root) / "substrate"


@dataclass
class SubstrateSpec:
    """What a substrate's codes depend on, besides the tokenizer."""

    kind: str
    vocab_size: int
    dim: int
    cell: int = 32
    seed: int = 0
    font: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FROZEN_EMBEDDINGS:
            raise ConfigError(unknown_key_message("substrate kind", self.kind, FROZEN_EMBEDDINGS))

    @classmethod
    def from_config(cls, config: GrowLMConfig, font: str | Path | None = None) -> SubstrateSpec:
        if not config.frozen_embedding:
            raise ConfigError("this model's embedding is 'learned': it has no substrate to build")
        if config.embedding_dim is None:  # set at creation for every frozen embedding
            raise ConfigError(f"embedding={config.embedding} needs embedding_dim, which this config leaves unset")
        return cls(config.embedding, config.vocab_size, config.embedding_dim, config.embedding_cell,
                   config.embedding_seed, str(font) if font else None)

    def options(self) -> dict[str, Any]:
        """The options that matter for this kind (what the cache key and reports show)."""
        extra = {"glyph": {"cell": self.cell}, "random_binary": {"seed": self.seed}}.get(self.kind, {})
        return {"kind": self.kind, "vocab_size": self.vocab_size, "dim": self.dim, **extra}


@dataclass
class Substrate:
    """Unit-norm codes (float32 values held as float64) and what building them found."""

    spec: SubstrateSpec
    codes: torch.Tensor
    key: str
    info: dict[str, Any] = field(default_factory=dict)
    bits: np.ndarray | None = None  # the glyph pictures (V x cell^2, 0/1) when built here, not read from the cache

    def table(self, hidden_size: int, scale: float = 1.0) -> torch.Tensor:
        return table_from_codes(self.codes, hidden_size, scale)


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def substrate_key(spec: SubstrateSpec, tokenizer: Any) -> tuple[str, dict[str, Any]]:
    """The cache key of ``spec`` for ``tokenizer`` and the inputs it hashes."""
    inputs: dict[str, Any] = {"format": FORMAT_VERSION, **spec.options()}
    if spec.kind == "glyph":
        from growlm.substrate.glyphs import find_font

        texts = token_texts(tokenizer, spec.vocab_size)
        inputs["texts_sha256"] = hashlib.sha256(
            json.dumps([(t.text, t.style) for t in texts], ensure_ascii=False).encode()).hexdigest()
        inputs["font_sha256"] = _sha256_file(find_font(spec.font))
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:24]
    return f"{spec.kind}-{digest}", inputs


def _compute(spec: SubstrateSpec, tokenizer: Any) -> tuple[torch.Tensor, dict[str, Any], np.ndarray | None]:
    if spec.kind == "glyph":
        from growlm.substrate.glyphs import glyph_bits

        bits, stats = glyph_bits(token_texts(tokenizer, spec.vocab_size), spec.font, spec.cell)
        codes, info = glyph_codes(bits, spec.dim)
        return codes, {**info, **stats.as_dict()}, bits
    if spec.kind == "binary":
        return (*binary_codes(spec.vocab_size, spec.dim), None)
    return (*random_binary_codes(spec.vocab_size, spec.dim, spec.seed), None)


def build_substrate(spec: SubstrateSpec, tokenizer: Any, use_cache: bool = True) -> Substrate:
    """The substrate of ``spec`` for ``tokenizer``, from the disk cache or freshly built (and cached)."""
    if tokenizer is not None and len(tokenizer) > spec.vocab_size:
        raise ConfigError(f"the tokenizer has {len(tokenizer)} tokens but vocab_size is {spec.vocab_size}")
    if spec.kind == "glyph" and tokenizer is None:
        raise ConfigError("embedding=glyph draws every token's text: it needs the tokenizer (--tokenizer)")
    key, inputs = substrate_key(spec, tokenizer)
    path = cache_dir() / f"{key}.safetensors"
    use_cache = use_cache and spec.kind == "glyph"  # the id codes take milliseconds: not worth a file
    if use_cache and path.exists():
        try:
            with safe_open(str(path), "pt") as stored:
                info = json.loads((stored.metadata() or {}).get("info", "{}"))
                return Substrate(spec, stored.get_tensor("codes").double(), key, info)
        except Exception:  # a damaged cache entry is rebuilt, never trusted
            pass
    codes, info, bits = _compute(spec, tokenizer)
    codes32 = codes.float().contiguous()
    info = {**info, "inputs": inputs}
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
            tmp_path = Path(tmp.name)
        save_file({"codes": codes32}, tmp_path, metadata={"info": json.dumps(info)})
        tmp_path.chmod(0o644)
        os.replace(tmp_path, path)  # atomic: concurrent builders (ranks, test workers) never see half a file
    return Substrate(spec, codes32.double(), key, info, bits)


def expected_table(config: GrowLMConfig, tokenizer: Any, font: str | Path | None = None) -> torch.Tensor:
    """The table a model of ``config`` must hold: ``embedding_scale * [codes | 0]`` at its hidden size."""
    substrate = build_substrate(SubstrateSpec.from_config(config, font), tokenizer)
    return substrate.table(config.hidden_size, config.embedding_scale)


def install_substrate(model: GrowLMForCausalLM, tokenizer: Any, font: str | Path | None = None) -> Substrate:
    """Write the substrate of ``model.config`` into the model's (frozen) input embedding."""
    config = model.config
    substrate = build_substrate(SubstrateSpec.from_config(config, font), tokenizer)
    weight = model.get_input_embeddings().weight
    table = substrate.table(config.hidden_size, config.embedding_scale)
    with torch.no_grad():
        weight.copy_(table.to(dtype=weight.dtype, device=weight.device))
    weight.requires_grad_(False)
    return substrate


def check_substrate(model: GrowLMForCausalLM, tokenizer: Any, font: str | Path | None = None) -> float:
    """Raise :class:`CheckpointError` unless the model holds the substrate its config names; returns the
    largest difference.

    A model whose hidden size never grew holds it bit for bit (``embedding_scale`` 1). Hidden-size
    growth multiplies the table by ``sqrt(D'/D)`` in float32, one rounding per growth, so there
    the table may differ from a fresh ``embedding_scale * codes`` by float32 rounding: up to
    ``1e-6 * embedding_scale`` is accepted."""
    weight = model.get_input_embeddings().weight.detach().float().cpu()
    expected = expected_table(model.config, tokenizer, font)
    scale = model.config.embedding_scale
    diff = (weight - expected).abs().max().item() if weight.shape == expected.shape else float("inf")
    if not (diff == 0 or (scale != 1.0 and diff <= 1e-6 * scale)):
        raise CheckpointError(f"{SUBSTRATE_PARAMETER} is not the {model.config.embedding} substrate its config "
                              f"describes for this tokenizer (largest difference {diff:.3g})")
    return diff


def embedding_fields(config: Any) -> dict[str, Any]:
    """The substrate settings of a config: every ``embedding*`` field (``embedding`` absent = learned).

    A ``learned`` table's options mean nothing (its bytes decide), so they are left out: a
    checkpoint from before the field existed and one with ``embedding: learned`` and default
    options describe the same kind of substrate."""
    values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    found = {k: v for k, v in values.items() if k.startswith("embedding")}
    if found.get("embedding", "learned") == "learned":
        return {"embedding": "learned"}
    return dict(sorted(found.items()))


def tensor_sha256(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's bytes as stored (any dtype, bf16 included)."""
    data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
    return hashlib.sha256(data.tobytes()).hexdigest()


def substrate_fingerprint(model: GrowLMForCausalLM) -> dict[str, Any]:
    """What a model's input substrate is, for telling models apart without a tokenizer or a font:
    ``vocab_size``, its ``embedding*`` settings (``embedding_fields``), and the table's shape,
    dtype and SHA-256 of its bytes as stored. ``growlm compose`` builds its per-expert
    fingerprint from this (plus the tokenizer files; ``composition/substrate.py``)."""
    table = model.get_input_embeddings().weight
    return {"vocab_size": int(model.config.vocab_size), "embedding_fields": embedding_fields(model.config),
            "table_shape": list(table.shape), "table_dtype": str(table.dtype).replace("torch.", ""),
            "table_sha256": tensor_sha256(table)}
