"""Capture pre-softmax attention scores QK^T/sqrt(d) from BERT-family models.

Hugging Face returns post-softmax probabilities (eager) or nothing (SDPA). TinyBERT matches
the unnormalized scores, so we hook the query and key projections of the layers we need and
form the scores ourselves. The model's own forward is untouched and may use any attention
kernel (SDPA included); only the mapped layers pay for one extra QK^T matmul.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .errors import ModelError


def self_attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention module of each Transformer layer, in order.

    Works for BERT, RoBERTa, XLM-R and ELECTRA encoders (`encoder.layer[i].attention.self`
    with `query` and `key` linears), with or without a task head.

    Raises:
        ModelError: the model has no such layout (not a BERT-family encoder).
    """
    base = getattr(model, "base_model", model)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if layers is None:
        raise ModelError(
            f"{type(model).__name__} has no encoder.layer list; tinybert-edge distills BERT-family "
            "encoders (bert, roberta, xlm-roberta, electra)"
        )
    mods = []
    for i, layer in enumerate(layers):
        sa = getattr(getattr(layer, "attention", None), "self", None)
        if sa is None or not hasattr(sa, "query") or not hasattr(sa, "key"):
            raise ModelError(f"layer {i} of {type(model).__name__} has no attention.self.query/key; not BERT-family")
        mods.append(sa)
    return mods


class AttentionScoreRecorder:
    """Record QK^T/sqrt(d_head) for chosen layers during forward passes.

    Use as a context manager around a forward; afterwards `scores(layer)` gives (B, h, T, T)
    for each requested 1-based layer, without the padding mask (losses mask explicitly).

    Args:
        model: a BERT-family model.
        layers: 1-based Transformer layer indices to record.
    """

    def __init__(self, model: nn.Module, layers: list[int] | tuple[int, ...]):
        self._mods = self_attention_modules(model)
        for n in layers:
            if not 1 <= n <= len(self._mods):
                raise ModelError(f"cannot record layer {n}: the model has {len(self._mods)} layers")
        self.layers = tuple(sorted(set(layers)))
        self._q: dict[int, torch.Tensor] = {}
        self._k: dict[int, torch.Tensor] = {}
        self._handles: list = []

    def __enter__(self) -> "AttentionScoreRecorder":
        self._q.clear()
        self._k.clear()
        for n in self.layers:
            sa = self._mods[n - 1]
            self._handles.append(sa.query.register_forward_hook(self._store(self._q, n)))
            self._handles.append(sa.key.register_forward_hook(self._store(self._k, n)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    @staticmethod
    def _store(into: dict, n: int):
        def hook(_module, _inputs, output):
            into[n] = output

        return hook

    def scores(self, layer: int) -> torch.Tensor:
        """(B, h, T, T) pre-softmax scores of 1-based `layer` from the last forward."""
        if layer not in self._q:
            raise KeyError(f"layer {layer} was not recorded (recorded: {sorted(self._q)})")
        sa = self._mods[layer - 1]
        heads = sa.num_attention_heads
        q, k = self._q[layer], self._k[layer]  # (B, T, h*d)
        b, t, hd = q.shape
        d = hd // heads
        q = q.view(b, t, heads, d).transpose(1, 2)  # (B, h, T, d)
        k = k.view(b, t, heads, d).transpose(1, 2)
        scale = getattr(sa, "scaling", 1.0 / math.sqrt(d))
        return torch.matmul(q, k.transpose(-1, -2)) * scale  # (B, h, T, T)

    def clear(self) -> None:
        """Drop the stored projections so their memory can be freed."""
        self._q.clear()
        self._k.clear()
