"""Capture pre-softmax attention scores QK^T/sqrt(d) from BERT-family models.

Hugging Face returns post-softmax probabilities (eager) or nothing (SDPA); TinyBERT matches the
unnormalized scores. Two ways to get them:

- "inside" (default): for the duration of a forward, the model's attention runs through a
  registered attention function that keeps the scores it computes anyway (one QK^T per layer,
  as eager attention does). No extra matmul, no extra backward: this is what cut the
  distillation step's overhead (BENCHMARKS.md, "Distillation step overhead").
- "hooks": hook the query and key projections and form QK^T again afterwards; the model's own
  forward and kernel (SDPA included) are untouched. For models whose attention does not go
  through Hugging Face's attention interface.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

from .errors import ModelError

RECORDING_ATTENTION = "tinybert_edge_scores"


def recording_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                        **kwargs):
    """Eager attention that also keeps its pre-softmax scores on `module` when asked to.

    Shapes: query/key/value (B, h, T, d); returns ((B, T, h, d), None) like HF's eager attention.
    """
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, h, T, T)
    if getattr(module, "_tinybert_record", False):
        module._tinybert_scores = scores
    weights = scores + attention_mask if attention_mask is not None else scores
    weights = nn.functional.softmax(weights, dim=-1)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), None


AttentionInterface.register(RECORDING_ATTENTION, recording_attention)
# the additive float mask of eager attention, which recording_attention adds to the scores
AttentionMaskInterface.register(RECORDING_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["eager"])


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

    def __init__(self, model: nn.Module, layers: list[int] | tuple[int, ...], mode: str = "inside"):
        if mode not in ("inside", "hooks"):
            raise ValueError(f"mode must be inside or hooks, got {mode!r}")
        self._model, self.mode = model, mode
        self._mods = self_attention_modules(model)
        for n in layers:
            if not 1 <= n <= len(self._mods):
                raise ModelError(f"cannot record layer {n}: the model has {len(self._mods)} layers")
        self.layers = tuple(sorted(set(layers)))
        self._q: dict[int, torch.Tensor] = {}
        self._k: dict[int, torch.Tensor] = {}
        self._handles: list = []
        self._saved_impl: str | None = None

    def __enter__(self) -> "AttentionScoreRecorder":
        self.clear()
        if self.mode == "inside":
            config = self._model.config
            self._saved_impl = config._attn_implementation
            config._attn_implementation = RECORDING_ATTENTION
            for n in self.layers:
                self._mods[n - 1]._tinybert_record = True
            return self
        for n in self.layers:
            sa = self._mods[n - 1]
            self._handles.append(sa.query.register_forward_hook(self._store(self._q, n)))
            self._handles.append(sa.key.register_forward_hook(self._store(self._k, n)))
        return self

    def __exit__(self, *exc) -> None:
        if self.mode == "inside":
            self._model.config._attn_implementation = self._saved_impl
            for n in self.layers:
                self._mods[n - 1]._tinybert_record = False
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
        if self.mode == "inside":
            scores = getattr(self._mods[layer - 1], "_tinybert_scores", None) if layer in self.layers else None
            if scores is None:
                raise KeyError(f"layer {layer} was not recorded (recorded: {list(self.layers)})")
            return scores
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
        """Drop the stored scores and projections so their memory can be freed."""
        self._q.clear()
        self._k.clear()
        for sa in self._mods:
            sa.__dict__.pop("_tinybert_scores", None)
