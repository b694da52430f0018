"""``growlm_composite``: several growlm models on one frozen substrate, run side by side, outputs mixed.

Bochkov's modular composition (../shared/papers/NOTES.md section 2): models trained separately on the
*same* frozen token embeddings and vocabulary are merged by averaging their output
logits. The composite is a transformers model of its own, so ``from_pretrained``,
``generate()``, ``growlm eval`` and ``growlm generate`` work on it like on any growlm
checkpoint:

    logits(t) = sum_e w_e(t) * logits_e(t),   w(t) = softmax(b + G [h_1(t); ...; h_N(t)] / sqrt(H))

where ``logits_e`` and ``h_e`` are expert ``e``'s output logits and final (normed)
hidden state, and ``H`` the experts' total hidden size. ``mixing`` chooses what is learnt:

* ``mean`` (the paper's mean-logits mixture, the default): no parameters, ``w_e = 1/N``;
* ``weights``: one learnt weight per expert (``b``; ``G`` absent);
* ``gate``: weights per token from the experts' final hidden states (``b`` and ``G``).

The ``prob`` mixings (``prob``, ``prob_weights``, ``prob_gate``) take the same weights but
average the experts' *probabilities* instead of their logits (a mixture, an ensemble):

    log p(t) = logsumexp_e( log w_e(t) + log_softmax(logits_e(t)) ),   w_e = 1/N for ``prob``

and return ``log p`` as the logits, so ``softmax(logits)`` is exactly the mixture (``log p``
is already normalised) and every consumer of logits (loss, ``generate()``, scoring) sees
it. Because ``p >= w_e p_e`` for every ``e``, the mixture's loss per token is at most
``min_e (loss_e - log w_e)``: the better expert's loss plus ``ln N`` for ``prob``. A mean of
logits (a product of experts) has no such bound: where two confident experts disagree it
can be far worse than either.

With ``adapter: true`` a :class:`HiddenAdapter` (zero at init, ``growlm compose --finetune adapter``)
replaces each ``h_e`` by ``h_e + (A [h_1; ...; h_N] / sqrt(H))_e`` before the heads and the mixer.

``b`` and ``G`` start at zero, so a freshly composed ``weights`` or ``gate`` composite
computes exactly the mean (and a ``prob_weights`` or ``prob_gate`` one exactly ``prob``):
training the mixer (``growlm compose --mix-train``) starts from the untrained merge and
can only move away from it where the data says so.

Why weights over experts instead of the paper's "small adapter over the concatenated
logits": a linear map from ``N * V`` logits to ``V`` has ``N * V^2`` parameters (2 x 10^9
for two experts at V = 32k), far more than the experts; a weight per expert (and per
token) is the smallest mixer that can prefer the expert that knows the domain at hand.

Experts keep their own modules, parameter names (``experts.N.model.layers...``) and
geometry; each stores its copy of the (identical) substrate table, so any expert can be
taken back out unchanged. The key/value cache is one transformers cache holding every
expert's layers one after another (expert ``e``'s layer ``i`` at index ``offset_e + i``),
which is why ``num_hidden_layers`` of a composite is the experts' total: ``generate()``
and growlm's prefix-cached log-likelihood scoring cache every expert.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast

from growlm.errors import ConfigError, unknown_key_message
from growlm.models.base import _CACHE_FIELD, GrowLMConfig, GrowLMForCausalLM

MIXINGS = {
    "mean": "the mean of the experts' logits (the paper's merge; no parameters)",
    "weights": "a learnt softmax weight per expert",
    "gate": "softmax weights per token from the experts' final hidden states",
    "prob": "the mean of the experts' next-token probabilities (a mixture; no parameters)",
    "prob_weights": "a mixture with a learnt weight per expert",
    "prob_gate": "a mixture with weights per token from the experts' final hidden states",
}
# Mixings that average probabilities (in log space) rather than logits.
PROB_MIXINGS = ("prob", "prob_weights", "prob_gate")
# Mixings with no mixer (fixed, equal weights).
FIXED_MIXINGS = ("mean", "prob")


def _gated(mixing: str) -> bool:
    return mixing in ("gate", "prob_gate")

# Fields a composite copies from its first expert (they describe no single tensor of the composite,
# but code that reads a growlm config, e.g. the evaluation's context length, expects them).
_FROM_FIRST = ("intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim", "rope_theta",
               "rms_norm_eps", "initializer_range", "bos_token_id", "eos_token_id", "pad_token_id")


class CompositeConfig(GrowLMConfig):
    """The experts' configs (as dicts, in order) and the mixing rule.

    Derived fields: ``vocab_size`` (shared), ``max_position_embeddings`` (the smallest
    expert's), ``num_hidden_layers`` (the experts' total: the layers of the shared cache),
    ``hidden_size`` (the experts' total: the width of the gate's input); the others are the
    first expert's."""

    model_type = "growlm_composite"
    architecture = "composite"
    arch_fields: ClassVar[dict[str, type]] = {"mixing": str, "adapter": bool}

    experts: list | None = None
    mixing: str = "mean"
    adapter: bool = False  # a zero-initialised HiddenAdapter over the experts' final hidden states

    def __post_init__(self, **kwargs: Any) -> None:
        if self.experts:
            configs = self.expert_configs()
            first = configs[0]
            self.vocab_size = first.vocab_size
            self.max_position_embeddings = min(c.max_position_embeddings for c in configs)
            self.num_hidden_layers = sum(c.num_hidden_layers for c in configs)
            self.hidden_size = sum(c.hidden_size for c in configs)
            for name in _FROM_FIRST:
                setattr(self, name, getattr(first, name))
            for name in ("embedding", "embedding_dim", "embedding_scale", "embedding_cell", "embedding_seed"):
                if hasattr(first, name):  # the shared substrate's settings, where the architectures have them
                    setattr(self, name, getattr(first, name))
            self.tie_word_embeddings = False  # the composite's own; each expert keeps its tying
        super().__post_init__(**kwargs)

    def expert_configs(self) -> list[GrowLMConfig]:
        """The experts' configs as growlm config objects."""
        from growlm.models import ARCHITECTURES

        by_type = {config_cls.model_type: config_cls for config_cls, _ in ARCHITECTURES.values()
                   if config_cls is not CompositeConfig}
        configs = []
        for index, values in enumerate(self.experts or []):
            model_type = values.get("model_type") if isinstance(values, dict) else None
            if model_type not in by_type:
                raise ConfigError(f"expert {index} of the composite: " +
                                  unknown_key_message("model_type", str(model_type), by_type))
            configs.append(by_type[model_type].from_dict(values))
        return configs

    def validate(self) -> None:
        if self.mixing not in MIXINGS:
            raise ConfigError(unknown_key_message("mixing", str(self.mixing), MIXINGS))
        configs = self.expert_configs()
        if not configs:
            raise ConfigError("a composite needs at least one expert")
        for index, config in enumerate(configs):
            try:
                config.validate()
            except ConfigError as exc:
                raise ConfigError(f"expert {index} of the composite: {exc}") from exc
            if config.vocab_size != configs[0].vocab_size:
                raise ConfigError(f"expert {index} has vocab_size {config.vocab_size}, expert 0 "
                                  f"{configs[0].vocab_size}: experts must share one vocabulary")


class LogitMixer(nn.Module):
    """Softmax weights over the experts: ``softmax(bias + gate([h_1; ...; h_N]) / sqrt(width))``, zero at init.

    The gate reads the experts' normed final hidden states, whose entries are of order one; dividing
    by ``sqrt(width)`` (as attention divides by ``sqrt(head_dim)``) keeps a score of order
    ``|gate row|`` whatever the experts' widths, so one optimizer step moves the weights by about
    the same amount for narrow and wide experts (Adam's steps are ~lr per parameter)."""

    def __init__(self, hidden_sizes: list[int], conditioned: bool) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(len(hidden_sizes)))
        self.gate = nn.Linear(sum(hidden_sizes), len(hidden_sizes), bias=False) if conditioned else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.bias.zero_()
            if self.gate is not None:
                self.gate.weight.zero_()

    def forward(self, hiddens: list[torch.Tensor]) -> torch.Tensor:
        return torch.softmax(self.scores(hiddens), dim=-1)

    def log_weights(self, hiddens: list[torch.Tensor]) -> torch.Tensor:
        """``log`` of :meth:`forward`, computed as a log-softmax (finite even where a weight underflows)."""
        return torch.log_softmax(self.scores(hiddens), dim=-1)

    def scores(self, hiddens: list[torch.Tensor]) -> torch.Tensor:
        scores = self.bias.float()
        if self.gate is not None:
            return scores + self.gate(torch.cat(hiddens, dim=-1)).float() * self.gate.in_features**-0.5
        return scores.expand(*hiddens[0].shape[:-1], -1)


class HiddenAdapter(nn.Module):
    """``h_e <- h_e + (A [h_1; ...; h_N] / sqrt(H))_e``: a linear map of the experts' concatenated final hidden
    states added to each expert's own, ``A`` (``H x H``, ``H`` the experts' total width) zero at init.

    Why it preserves the function: at ``A = 0`` every expert's hidden state is returned unchanged (``h + 0``
    is exactly ``h`` in every dtype), so the heads, the mixer and the mixing see the very tensors they saw
    without it and the composite's logits are bit-identical (tested). Why hidden states and not logits: the
    paper's "small adapter over the concatenated logits", read literally, maps ``N * V`` logits to ``V``
    (``N * V^2`` parameters); this one lets every expert read all the others' features (a cross-expert
    correction) with ``H^2`` parameters, and its output still goes through each expert's own head. The
    ``1/sqrt(H)`` keeps one Adam step's effect of the same order whatever the widths, as in the gate."""

    def __init__(self, hidden_sizes: list[int]) -> None:
        super().__init__()
        self.hidden_sizes = list(hidden_sizes)
        width = sum(hidden_sizes)
        self.weight = nn.Parameter(torch.zeros(width, width))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.zero_()

    def forward(self, hiddens: list[torch.Tensor]) -> list[torch.Tensor]:
        joined = torch.cat(hiddens, dim=-1)
        delta = F.linear(joined, self.weight.to(joined.dtype)) * self.weight.shape[0] ** -0.5
        return [h + d for h, d in zip(hiddens, delta.split(self.hidden_sizes, dim=-1), strict=True)]


class _ExpertCache:
    """One expert's view of the composite's cache: its layers at an offset, the past length of this step.

    The past length is read once before any expert runs: after the first expert has
    written this step's keys, the shared cache's own length already includes them."""

    def __init__(self, cache: Any, offset: int, past: int) -> None:
        self.cache, self.offset, self.past = cache, offset, past

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any) -> Any:
        return self.cache.update(key, value, layer_idx + self.offset, *args)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.past


class CompositeForCausalLM(PreTrainedModel, GenerationMixin):
    """N growlm experts whose logits are mixed (transformers model type ``growlm_composite``)."""

    config_class = CompositeConfig
    config: CompositeConfig
    base_model_prefix = "composite"
    _no_split_modules = ["DecoderLayer"]  # noqa: RUF012 (an instance attribute in transformers)
    _supports_sdpa = True

    def __init__(self, config: CompositeConfig) -> None:
        from growlm.models import model_class_for

        config.validate()
        super().__init__(config)
        self.experts = nn.ModuleList([model_class_for(c)(c) for c in config.expert_configs()])
        self.mixer = None if config.mixing in FIXED_MIXINGS else LogitMixer(
            [e.config.hidden_size for e in self.expert_models], conditioned=_gated(config.mixing))
        self.adapter = HiddenAdapter([e.config.hidden_size for e in self.expert_models]) if config.adapter else None
        self.post_init()
        self.collect_expert_ties()

    @classmethod
    def from_experts(cls, experts: list[GrowLMForCausalLM], mixing: str = "mean",
                     adapter: bool = False) -> CompositeForCausalLM:
        """A composite holding these expert models themselves (no copy, no initialisation of them)."""
        config = CompositeConfig(experts=[e.config.to_dict() for e in experts], mixing=mixing, adapter=adapter)
        with torch.device("meta"):
            model = cls(config)
        model.experts = nn.ModuleList(experts)
        if model.mixer is not None:
            model.mixer = LogitMixer([e.config.hidden_size for e in experts], conditioned=_gated(mixing))
            model.mixer.to(next(experts[0].parameters()).device)
        model.adapter = None
        if adapter:
            model.add_hidden_adapter()
        model.collect_expert_ties()
        return model.eval()

    def add_hidden_adapter(self) -> HiddenAdapter:
        """Give this composite a zero :class:`HiddenAdapter` (``config.adapter`` set, so it saves and loads);
        the function is unchanged. Returns the adapter (an existing one is kept as it is)."""
        if self.adapter is None:
            weight = next(self.experts[0].parameters())
            self.adapter = HiddenAdapter([e.config.hidden_size for e in self.expert_models]).to(weight.device,
                                                                                               weight.dtype)
            self.config.adapter = True
        return self.adapter

    @property
    def expert_models(self) -> list[GrowLMForCausalLM]:
        """The experts, typed (an ``nn.ModuleList`` only knows it holds modules)."""
        return cast(list[GrowLMForCausalLM], list(self.experts))

    def collect_expert_ties(self) -> None:
        """Tell transformers about each expert's tied LM head (it does not look inside a ModuleList),
        so that ``save_pretrained`` stores a tied head once and loading re-ties it."""
        self.all_tied_weights_keys = self.get_expanded_tied_weights_keys(all_submodels=True)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (LogitMixer, HiddenAdapter)):
            module.reset_parameters()

    def get_input_embeddings(self) -> nn.Embedding:
        """The first expert's table (every expert holds an identical one: the shared substrate)."""
        return self.expert_models[0].get_input_embeddings()

    def get_output_embeddings(self) -> None:
        return None  # several heads; nothing to resize or tie at this level

    def expert_weights(self, hiddens: list[torch.Tensor]) -> torch.Tensor | None:
        """The mixing weights per position, ``(..., N)``; None for the equal weights of ``mean`` and ``prob``."""
        return None if self.mixer is None else self.mixer(hiddens)

    def mixture_log_probs(self, hiddens: list[torch.Tensor]) -> torch.Tensor:
        """``log sum_e w_e softmax(logits_e)`` (fp32), accumulated one expert at a time with ``logaddexp``.

        Working in log space keeps it exact where a probability underflows in fp32 (a confident
        expert's log-probabilities of -200 are fine, their ``exp`` is not), and accumulating
        pairwise holds two ``(..., V)`` tensors at a time instead of all N."""
        log_w = None if self.mixer is None else self.mixer.log_weights(hiddens)
        uniform = -math.log(len(self.experts))
        mixture: torch.Tensor | None = None
        for index, (expert, hidden) in enumerate(zip(self.expert_models, hiddens, strict=True)):
            part = F.log_softmax(expert.lm_head(hidden).float(), dim=-1)
            part = part + (uniform if log_w is None else log_w[..., index: index + 1])
            mixture = part if mixture is None else torch.logaddexp(mixture, part)
        assert mixture is not None  # validate() requires at least one expert
        return mixture

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        output_hidden_states: bool | None = None,
        shift_labels: torch.LongTensor | None = None,
        cache: Cache | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Mixed logits (fp32; for the ``prob`` mixings the mixture's log-probabilities) and, given
        ``labels`` or ``shift_labels``, the mean cross-entropy, as :meth:`GrowLMForCausalLM.forward`
        computes them. ``hidden_states`` (with
        ``output_hidden_states``) holds each expert's final normed hidden state; the chunked loss of
        the experts (``loss_chunk_tokens``) is not offered: the mixture needs every expert's logits."""
        if past_key_values is None:
            past_key_values = cache
        use_cache = use_cache if use_cache is not None else (self.config.use_cache and not self.training)
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache()
        cache = past_key_values if use_cache else None
        past = cache.get_seq_length() if cache is not None else 0
        hiddens, offset = [], 0
        for expert in self.expert_models:
            view = _ExpertCache(cache, offset, past) if cache is not None else None
            hidden, _ = expert.model(input_ids, inputs_embeds, attention_mask, position_ids, view)
            offset += expert.config.num_hidden_layers
            if isinstance(logits_to_keep, int) and logits_to_keep > 0:
                hidden = hidden[:, -logits_to_keep:]
            elif isinstance(logits_to_keep, torch.Tensor):
                hidden = hidden[:, logits_to_keep]
            hiddens.append(hidden)
        if self.adapter is not None:
            hiddens = self.adapter(hiddens)
        if self.config.mixing in PROB_MIXINGS:
            logits = self.mixture_log_probs(hiddens)
        else:
            weights = self.expert_weights(hiddens)
            mixed: torch.Tensor | None = None
            for index, (expert, hidden) in enumerate(zip(self.expert_models, hiddens, strict=True)):
                part = expert.lm_head(hidden).float()
                part = part / len(self.experts) if weights is None else part * weights[..., index: index + 1]
                mixed = part if mixed is None else mixed + part
            assert mixed is not None  # validate() requires at least one expert
            logits = mixed
        targets: torch.Tensor | None = shift_labels
        if labels is not None and targets is None:
            targets = F.pad(labels, (0, 1), value=-100)[:, 1:]
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
        cache_out: dict[str, Any] = {_CACHE_FIELD: cache}
        return CausalLMOutputWithPast(loss=loss, logits=logits,
                                      hidden_states=tuple(hiddens) if output_hidden_states else None, **cache_out)
