"""Unpadded batches: a batch's chunks run end to end as one row, with no pad tokens.

A padded batch spends the model's time on its pad tokens too, and attention with a padding mask
cannot use the flash kernel. Packed, every token is real, and attention runs per chunk through
the variable-length flash kernel (`cu_seqlens`), the way inference servers do it.

It goes through transformers' own model code: an attention function registered with
transformers receives the chunk boundaries as keyword arguments, and each chunk's positions
restart at its first token. The pooling runs over each chunk's tokens, then the model's own
sentence-transformers layers after it (dense, normalize). A model whose architecture or pooling
is not listed here, or an attention kernel this torch lacks, keeps the padded batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

NAME = "alexandria_packed"

# Where an architecture's position ids start: RoBERTa counts from the pad id + 1.
POSITION_START = {"bert": 0, "gemma3_text": 0, "xlm-roberta": "pad+1", "roberta": "pad+1"}


@dataclass
class Packed:
    """One batch in packed form, built on the host."""

    input_ids: np.ndarray  # (tokens,)
    position_ids: np.ndarray  # (tokens,)
    cu_seqlens: np.ndarray  # (rows + 1,) int32: where each chunk starts
    row_of: np.ndarray  # (tokens,) int64: the chunk each token belongs to
    max_length: int

    @property
    def rows(self) -> int:
        return len(self.cu_seqlens) - 1


def position_start(config) -> int | None:
    start = POSITION_START.get(getattr(config, "model_type", ""))
    if start == "pad+1":
        return int(config.pad_token_id) + 1
    return start


def pack(rows: list[np.ndarray], start: int) -> Packed:
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    cu = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lengths, out=cu[1:])
    ids = np.concatenate(rows).astype(np.int64, copy=False)
    within = np.arange(len(ids), dtype=np.int64) - np.repeat(cu[:-1].astype(np.int64), lengths)
    row_of = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
    return Packed(ids, within + start, cu, row_of, int(lengths.max()))


def attention(module, query, key, value, attention_mask, scaling: float | None = None,
              dropout: float = 0.0, sliding_window: int | None = None,
              cu_seq_lens_q=None, max_length_q: int | None = None, **kwargs):
    """transformers' attention interface: per-chunk attention over a packed row, or plain
    SDPA for a padded batch (the users' recipe and single queries still come through here)."""
    if cu_seq_lens_q is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling,
                                      dropout=dropout, sliding_window=sliding_window, **kwargs)
    # (1, heads, tokens, dim) -> (tokens, heads, dim)
    q, k, v = (x[0].transpose(0, 1) for x in (query, key, value))
    causal = bool(getattr(module, "is_causal", False))
    window = (sliding_window - 1) if sliding_window else None  # transformers: |q - k| < window
    if q.is_cuda:
        import torch

        out = torch.ops.aten._flash_attention_forward(
            q, k, v, cu_seq_lens_q, cu_seq_lens_q, max_length_q, max_length_q, 0.0, causal, False,
            scale=scaling, window_size_left=window, window_size_right=None if causal else window,
        )[0]
    else:
        out = _attention_per_chunk(q, k, v, cu_seq_lens_q, scaling, causal, window)
    return out.unsqueeze(0), None


def _attention_per_chunk(q, k, v, cu, scaling, causal: bool, window: int | None):
    """The same result on the CPU, one chunk at a time."""
    import torch
    import torch.nn.functional as F

    out = torch.empty_like(q)
    repeat = q.shape[1] // k.shape[1]
    bounds = cu.tolist()
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        qs, ks, vs = (x[a:b].transpose(0, 1) for x in (q, k, v))
        if repeat > 1:
            ks, vs = ks.repeat_interleave(repeat, 0), vs.repeat_interleave(repeat, 0)
        mask = None
        if window is not None:
            i = torch.arange(b - a, device=q.device)
            d = i[:, None] - i[None, :]
            mask = (d <= window) & ((d >= 0) if causal else (d >= -window))
        out[a:b] = F.scaled_dot_product_attention(
            qs, ks, vs, attn_mask=mask, is_causal=causal and mask is None, scale=scaling,
        ).transpose(0, 1)
    return out


def _mask(*args, attention_mask=None, **kwargs):
    """No mask for a packed row (the kernel keeps each chunk to itself); SDPA's otherwise."""
    if attention_mask is None:
        return None
    from transformers.masking_utils import sdpa_mask

    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, _mask)


def pooling_mode(module) -> str | None:
    """cls, mean or lasttoken: the sentence-transformers poolings packed rows can do (one mode)."""
    if type(module).__name__ != "Pooling":
        return None
    mode = getattr(module, "pooling_mode", None)
    if mode is None:  # sentence-transformers before the single pooling_mode attribute
        legacy = {"cls_token": "cls", "mean_tokens": "mean", "lasttoken": "lasttoken",
                  "max_tokens": "max", "mean_sqrt_len_tokens": "sqrt", "weightedmean_tokens": "w"}
        mode = tuple(m for k, m in legacy.items() if getattr(module, f"pooling_mode_{k}", False))
    if isinstance(mode, (list, tuple)):
        mode = mode[0] if len(mode) == 1 else None
    return mode if mode in ("cls", "mean", "lasttoken") else None


def supported(model) -> str | None:
    """Why this model cannot run packed, or None if it can."""
    config = model[0].auto_model.config
    if position_start(config) is None:
        return f"architecture {getattr(config, 'model_type', '?')} is not one packing knows"
    if getattr(config, "attn_logit_softcapping", None):
        return "attention logit soft-capping"
    if len(model) < 2 or pooling_mode(model[1]) is None:
        return "no cls, mean or last-token pooling after the transformer"
    return None


def enable(model) -> None:
    register()
    model[0].auto_model.set_attn_implementation(NAME)


def forward(model, batch: Packed, transfer) -> Any:
    """Sentence embeddings of a packed batch: the transformer, the pooling over each chunk's
    tokens (never a (rows x longest) padded copy: one 8192-token parent in a batch of short
    chunks would make that gigabytes), then the model's own modules after the pooling."""
    import torch

    auto = model[0].auto_model
    ids = transfer(torch.from_numpy(batch.input_ids)).unsqueeze(0)
    positions = transfer(torch.from_numpy(batch.position_ids)).unsqueeze(0)
    cu = transfer(torch.from_numpy(batch.cu_seqlens))
    kwargs: dict[str, Any] = dict(input_ids=ids, position_ids=positions, cu_seq_lens_q=cu,
                                  cu_seq_lens_k=cu, max_length_q=batch.max_length,
                                  max_length_k=batch.max_length, return_dict=True)
    if getattr(auto.config, "layer_types", None):  # Gemma 3: no (tokens x tokens) masks to build
        kwargs["attention_mask"] = {t: None for t in set(auto.config.layer_types)}
    hidden = auto.forward(**kwargs).last_hidden_state[0]
    mode = pooling_mode(model[1])
    if mode == "cls":
        pooled = hidden[cu[:-1].long()]
    elif mode == "lasttoken":
        pooled = hidden[cu[1:].long() - 1]
    else:  # mean, summed in float32
        row_of = transfer(torch.from_numpy(batch.row_of))
        sums = hidden.new_zeros((batch.rows, hidden.shape[-1]), dtype=torch.float32)
        sums.index_add_(0, row_of, hidden.float())
        pooled = sums / (cu[1:] - cu[:-1]).unsqueeze(1)
    features = {"sentence_embedding": pooled.to(hidden.dtype)}
    for module in list(model)[2:]:
        features = module(features)
    return features["sentence_embedding"]
