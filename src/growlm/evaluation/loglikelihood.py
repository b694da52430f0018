"""Log-likelihoods of continuations, tokenized as lm-evaluation-harness tokenizes them,
computed with each context run once for all of its continuations.

Tokenization (identical to the harness's ``TemplateLM._encode_pair``): trailing spaces of
the context move to the continuation; ``context_ids = encode(context)`` and
``continuation_ids = encode(context + continuation)[len(context_ids):]``, with the
tokenizer's default special tokens; an empty context becomes the BOS (else EOS) token.
The model input is ``context_ids + continuation_ids`` minus the last token, truncated
from the left to the model's ``max_position_embeddings``.

Computation: a batch of questions runs its contexts once (left-padded, keeping their
keys and values in a small prefix cache); the cache is then repeated for every
continuation of every question and all continuations run as one right-padded batch.
The first continuation token is scored from the context's last logits, the others from
the continuation pass. Sequences longer than the model's context window fall back to
the harness's own truncated single pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from growlm.evaluation.perplexity import autocast_context


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    if not context:
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        return [prefix], tokenizer.encode(continuation)
    spaces = len(context) - len(context.rstrip())
    if spaces:
        continuation = context[-spaces:] + continuation
        context = context[:-spaces]
    whole = tokenizer.encode(context + continuation)
    context_ids = tokenizer.encode(context)
    return context_ids, whole[len(context_ids):]


class PrefixKV:
    """The key/value store growlm's attention writes to (``update``, ``get_seq_length``)."""

    def __init__(self, keys: list[torch.Tensor] | None = None, values: list[torch.Tensor] | None = None) -> None:
        self.keys = keys or []
        self.values = values or []

    def update(self, k: torch.Tensor, v: torch.Tensor, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        if layer_idx == len(self.keys):
            self.keys.append(k)
            self.values.append(v)
        else:
            self.keys[layer_idx] = torch.cat([self.keys[layer_idx], k], dim=2)
            self.values[layer_idx] = torch.cat([self.values[layer_idx], v], dim=2)
        return self.keys[layer_idx], self.values[layer_idx]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.keys[0].shape[2] if self.keys else 0

    def repeat_rows(self, rows: torch.Tensor) -> PrefixKV:
        return PrefixKV([k.index_select(0, rows) for k in self.keys], [v.index_select(0, rows) for v in self.values])


@dataclass
class Score:
    loglikelihood: float
    is_greedy: bool


class LoglikelihoodScorer:
    """Scores (context, [continuations]) groups with a growlm model."""

    def __init__(self, model: PreTrainedModel, tokenizer: Any, device: torch.device,
                 autocast: torch.dtype | None = None, batch_size: int = 16) -> None:
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.autocast, self.batch_size = autocast, batch_size
        self.max_length = int(model.config.max_position_embeddings)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad = int(pad if pad is not None else 0)

    @torch.no_grad()
    def score(self, groups: Sequence[tuple[str, Sequence[str]]], desc: str = "scoring",
              progress: bool = True) -> list[list[Score]]:
        encoded = []
        for context, continuations in groups:
            pairs = [encode_pair(self.tokenizer, context, c) for c in continuations]
            encoded.append((pairs[0][0] if pairs else [], [cont for _, cont in pairs]))
        results: list[list[Score | None]] = [[None] * len(conts) for _, conts in encoded]
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))
        shared = []
        for i in order:
            ctx, conts = encoded[i]
            for j, cont in enumerate(conts):
                if len(ctx) + len(cont) - 1 > self.max_length:
                    results[i][j] = self._single(ctx, cont)
            if any(r is None for r in results[i]):
                shared.append(i)
        batches = [shared[s: s + self.batch_size] for s in range(0, len(shared), self.batch_size)]
        for batch in tqdm(batches, desc=desc, disable=not progress, leave=False):
            self._score_batch(batch, encoded, results)
        return results  # type: ignore[return-value]

    def _forward(self, **kwargs) -> torch.Tensor:
        with autocast_context(self.device, self.autocast):
            logits = self.model(**kwargs).logits
        return logits if logits.dtype == torch.float64 else logits.float()

    def _single(self, ctx: list[int], cont: list[int]) -> Score:
        """The harness's own path: one left-truncated sequence."""
        ids = (ctx + cont)[-(self.max_length + 1):][:-1]
        logits = self._forward(input_ids=torch.tensor([ids], device=self.device), use_cache=False)[0, -len(cont):]
        return _score(logits, torch.tensor(cont, device=self.device))

    def _score_batch(self, batch: list[int], encoded, results) -> None:
        device = self.device
        contexts = [encoded[i][0] for i in batch]
        lc = max(len(c) for c in contexts)
        ctx_ids = torch.full((len(batch), lc), self.pad, dtype=torch.long)
        ctx_mask = torch.zeros((len(batch), lc), dtype=torch.long)
        for row, ctx in enumerate(contexts):  # left padding: every context ends at position lc - 1
            ctx_ids[row, lc - len(ctx):] = torch.tensor(ctx)
            ctx_mask[row, lc - len(ctx):] = 1
        ctx_ids, ctx_mask = ctx_ids.to(device), ctx_mask.to(device)
        positions = (ctx_mask.cumsum(-1) - 1).clamp(min=0)
        cache = PrefixKV()
        last = self._forward(input_ids=ctx_ids, attention_mask=ctx_mask, position_ids=positions,
                             past_key_values=cache, use_cache=True, logits_to_keep=1)[:, -1]

        rows = [(b, i, j) for b, i in enumerate(batch) for j in range(len(encoded[i][1])) if results[i][j] is None]
        conts = [encoded[i][1][j] for _, i, j in rows]
        lt = max(len(c) for c in conts)
        owner = torch.tensor([b for b, _, _ in rows], device=device)
        cont_ids = torch.full((len(rows), lt), self.pad, dtype=torch.long)
        cont_mask = torch.zeros((len(rows), lt), dtype=torch.long)
        for r, cont in enumerate(conts):
            cont_ids[r, : len(cont)] = torch.tensor(cont)
            cont_mask[r, : len(cont)] = 1
        cont_ids, cont_mask = cont_ids.to(device), cont_mask.to(device)
        mask = torch.cat([ctx_mask.index_select(0, owner), cont_mask], dim=1)
        lengths = ctx_mask.sum(-1).index_select(0, owner)
        cont_positions = lengths[:, None] + torch.arange(lt, device=device)[None]
        logits = self._forward(input_ids=cont_ids, attention_mask=mask, position_ids=cont_positions,
                               past_key_values=cache.repeat_rows(owner), use_cache=True)
        # token 0 is predicted by the context's last position, token t > 0 by continuation position t - 1
        first = _token_scores(last.index_select(0, owner)[:, None], cont_ids[:, :1])
        rest = _token_scores(logits[:, :-1], cont_ids[:, 1:])
        logprob = torch.cat([first[0], rest[0]], dim=1)
        hit = torch.cat([first[1], rest[1]], dim=1)
        real = cont_mask.bool()
        totals = (logprob * real).sum(-1).tolist()
        greedy = (hit | ~real).all(-1).tolist()
        for r, (_, i, j) in enumerate(rows):
            results[i][j] = Score(totals[r], greedy[r])


def _token_scores(logits: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position log-probability of ``tokens`` and whether each is the argmax (no full log-softmax copy)."""
    picked = logits.gather(-1, tokens[..., None])[..., 0]
    return picked - torch.logsumexp(logits, dim=-1), logits.argmax(-1) == tokens


def _score(logits: torch.Tensor, tokens: torch.Tensor) -> Score:
    logprob, hit = _token_scores(logits, tokens)
    return Score(float(logprob.sum()), bool(hit.all()))


def score_groups(model, tokenizer, groups, device, autocast=None, batch_size: int = 16, desc: str = "scoring",
                 progress: bool = True) -> list[list[Score]]:
    return LoglikelihoodScorer(model, tokenizer, device, autocast, batch_size).score(groups, desc, progress)

