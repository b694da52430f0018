"""Named model sizes: every Nexusformer and Qwen3 size of the Nexusformer paper
(Tables 6 and 7) plus tiny presets that train on a laptop CPU.

Decisions the paper leaves open (recorded in docs/models.md):

* Heads are 64 wide. Models trained from scratch make the attention width equal to
  D, as the paper's ``W_D: A -> D`` implies (480M: 10 heads of 80). The grown sizes
  (300M, 380M, 440M) keep the 12 x 64 heads of the 240M base they grow from, so
  growing 240M into them changes D, M and A but never the attention geometry.
* Nexusformer presets have untied embeddings (the FLAME framework's default); Qwen3
  presets tie them, as the small released Qwen3 models do, and use 64-wide heads with
  two query heads per key/value head.
* The paper's size labels do not follow from its shapes; ``growlm models`` prints the
  true counts.
"""

from __future__ import annotations

from typing import Any

from growlm.errors import ConfigError, unknown_key_message
from growlm.models import GrowLMConfig, architecture_classes
from growlm.overrides import check_fields


def _nexus(layers: int, d: int, ffn: int, m: int, a: int, heads: int, head_dim: int) -> dict[str, Any]:
    return dict(architecture="nexus", num_hidden_layers=layers, hidden_size=d, intermediate_size=ffn,
                nexus_m=m, nexus_a=a, num_attention_heads=heads, head_dim=head_dim, vocab_size=32000,
                max_position_embeddings=4096, tie_word_embeddings=False)


def _qwen3(layers: int, d: int, ffn: int) -> dict[str, Any]:
    heads = (d // 64) // 4 * 4
    return dict(architecture="qwen3", num_hidden_layers=layers, hidden_size=d, intermediate_size=ffn,
                num_attention_heads=heads, num_key_value_heads=heads // 2, head_dim=64, vocab_size=32000,
                max_position_embeddings=4096, tie_word_embeddings=True, rope_theta=1000000.0)


def _llama(layers: int, d: int, ffn: int, heads: int, head_dim: int = 64) -> dict[str, Any]:
    return dict(architecture="llama", num_hidden_layers=layers, hidden_size=d, intermediate_size=ffn,
                num_attention_heads=heads, head_dim=head_dim, vocab_size=32000, max_position_embeddings=4096,
                tie_word_embeddings=False)


def _tokenformer(layers: int, d: int, ffn_slots: int, qkv_slots: int, proj_slots: int, heads: int,
                 head_dim: int) -> dict[str, Any]:
    return dict(architecture="tokenformer", num_hidden_layers=layers, hidden_size=d, intermediate_size=ffn_slots,
                qkv_slots=qkv_slots, proj_slots=proj_slots, ffn_slots=ffn_slots, num_attention_heads=heads,
                head_dim=head_dim, vocab_size=32000, max_position_embeddings=4096, tie_word_embeddings=False)


PRESETS: dict[str, dict[str, Any]] = {
    # Table 6: trained from scratch
    "nexus-170m": _nexus(12, 768, 1706, 780, 800, 12, 64),
    "nexus-240m": _nexus(12, 768, 2048, 780, 960, 12, 64),
    "nexus-480m": _nexus(24, 800, 2304, 896, 968, 10, 80),
    "nexus-640m": _nexus(24, 1024, 2560, 1152, 1280, 16, 64),
    # Table 7: grown from nexus-240m
    "nexus-300m": _nexus(12, 768, 2048, 1088, 1228, 12, 64),
    "nexus-380m": _nexus(12, 800, 2048, 1340, 1530, 12, 64),
    "nexus-440m": _nexus(12, 1024, 2048, 1540, 1730, 12, 64),
    "qwen3-170m": _qwen3(12, 848, 3392),
    "qwen3-240m": _qwen3(12, 1088, 4032),
    "qwen3-480m": _qwen3(24, 1344, 3760),
    "qwen3-640m": _qwen3(24, 1536, 4608),
    "qwen3-300m": _qwen3(12, 1240, 4880),
    "qwen3-380m": _qwen3(12, 1300, 6912),
    "qwen3-440m": _qwen3(12, 1360, 6912),
    # Transformer++ (Llama), Table 6; 1632 is not a multiple of 64: 17 heads of 96
    "llama-170m": _llama(12, 512, 2048, 8),
    "llama-240m": _llama(12, 1024, 2560, 16),
    "llama-480m": _llama(24, 1408, 3648, 22),
    "llama-640m": _llama(24, 1632, 4243, 17, 96),
    # TokenFormer, Table 6 (FFN column = ffn_slots) and Table 7 (grown from tokenformer-240m)
    "tokenformer-170m": _tokenformer(12, 768, 4096, 1024, 768, 12, 64),
    "tokenformer-240m": _tokenformer(12, 768, 3072, 2088, 768, 12, 64),
    "tokenformer-480m": _tokenformer(24, 800, 5888, 1472, 800, 10, 80),
    "tokenformer-640m": _tokenformer(24, 1024, 6144, 1536, 1024, 16, 64),
    "tokenformer-300m": _tokenformer(12, 768, 3072, 2952, 768, 12, 64),
    "tokenformer-380m": _tokenformer(12, 800, 3072, 3960, 768, 12, 64),
    "tokenformer-440m": _tokenformer(12, 1024, 3072, 4824, 768, 12, 64),
    # CPU-sized, same vocabulary as the paper so they train on the shared 32k tokenizer
    "nexus-tiny": dict(architecture="nexus", num_hidden_layers=4, hidden_size=128, intermediate_size=384,
                       nexus_m=160, nexus_a=192, num_attention_heads=4, head_dim=32, vocab_size=32000,
                       max_position_embeddings=1024, tie_word_embeddings=False),
    "qwen3-tiny": dict(architecture="qwen3", num_hidden_layers=4, hidden_size=128, intermediate_size=384,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=32, vocab_size=32000,
                       max_position_embeddings=1024, tie_word_embeddings=True, rope_theta=1000000.0),
    "llama-tiny": dict(architecture="llama", num_hidden_layers=4, hidden_size=128, intermediate_size=384,
                       num_attention_heads=4, head_dim=32, vocab_size=32000, max_position_embeddings=1024,
                       tie_word_embeddings=False),
    "tokenformer-tiny": dict(architecture="tokenformer", num_hidden_layers=4, hidden_size=128,
                             intermediate_size=384, qkv_slots=128, proj_slots=128, ffn_slots=384,
                             num_attention_heads=4, head_dim=32, vocab_size=32000, max_position_embeddings=1024,
                             tie_word_embeddings=False),
}


def preset_names() -> list[str]:
    return list(PRESETS)


def build_config(preset: str, overrides: dict[str, Any] | None = None) -> GrowLMConfig:
    """The config of ``preset`` with ``overrides`` applied, type-checked and validated."""
    if preset not in PRESETS:
        raise ConfigError(unknown_key_message("preset", preset, PRESETS))
    fields = dict(PRESETS[preset])
    config_cls, _ = architecture_classes(fields.pop("architecture"))
    fields.update(check_fields(overrides or {}, config_cls.field_types(), f"{config_cls.architecture} field",
                               optional=config_cls.optional_fields()))
    config = config_cls(**fields)
    config.validate()
    return config
