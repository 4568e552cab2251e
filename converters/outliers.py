"""The FFN outlier split: each Transformer layer's outlier FFN channels get their own static range.

Why: the FFN output linear's input is the GELU output, where one or two channels per layer reach
12-22 at [CLS] while every other channel stays under ~6 (BENCHMARKS.md, "int8-static passes"), so
one per-tensor static int8 range is 2-4x too coarse for all the rest. split_ffn_outliers moves
the outlier channels to the front of the FFN (the same function: GELU is elementwise) and
multiplies them by their own small linear (ChannelSplitLinear), which a static quantizer gives
its own range. Both static int8 paths use it: ExecuTorch's int8-static and int8-qat (qat.py) and
LiteRT's int8-static (litert_static.py). Plain torch, so neither runtime is imported here.
"""

from __future__ import annotations

import torch
from torch import nn

from .runtime import ExportError, pad_row

# A channel is an outlier when its calibrated max |GELU output| exceeds this many times the 99th
# percentile of all the layer's channel maxima (demo student: 12-22 against ~4.3; the next channel
# is ~6, so 2x separates them), at most MAX_OUTLIER_CHANNELS per layer.
OUTLIER_RATIO = 2.0
MAX_OUTLIER_CHANNELS = 8


class ChannelSplitLinear(nn.Module):
    """y = W[:, :k] x[..., :k] + W[:, k:] x[..., k:] + b: the same function as the wrapped linear,
    as two linears on two contiguous slices of the input, so a static quantizer gives the first k
    input channels (the outliers, moved there by split_ffn_outliers) their own int8 range."""

    def __init__(self, linear: nn.Linear, k: int):
        super().__init__()
        if not 0 < k < linear.in_features:
            raise ValueError(f"split at {k} of {linear.in_features} input channels")
        self.k = k
        self.outliers = nn.Linear(k, linear.out_features, bias=False)
        self.rest = nn.Linear(linear.in_features - k, linear.out_features, bias=linear.bias is not None)
        with torch.no_grad():
            self.outliers.weight.copy_(linear.weight[:, :k])
            self.rest.weight.copy_(linear.weight[:, k:])
            if linear.bias is not None:
                self.rest.bias.copy_(linear.bias)

    def forward(self, x: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        if isinstance(x, tuple):  # SplitIntermediate's (outliers, rest)
            return self.rest(x[1]) + self.outliers(x[0])
        return self.rest(x[..., self.k:]) + self.outliers(x[..., :self.k])


class SplitIntermediate(nn.Module):
    """A BERT FFN input block (dense, then the activation) computed as two: the first k output
    channels (the outliers) and the rest, each through the activation, returned as a pair that
    ChannelSplitLinear takes. The same function as the wrapped block; for a graph that quantizes
    the activation's output once before slicing it (LiteRT: a .tflite slice shares its input's
    scale), which would keep the outliers' range for every channel."""

    def __init__(self, intermediate: nn.Module, k: int):
        super().__init__()
        dense = intermediate.dense
        if not 0 < k < dense.out_features:
            raise ValueError(f"split at {k} of {dense.out_features} FFN channels")
        self.act = intermediate.intermediate_act_fn
        self.outliers = nn.Linear(dense.in_features, k, bias=dense.bias is not None)
        self.rest = nn.Linear(dense.in_features, dense.out_features - k, bias=dense.bias is not None)
        with torch.no_grad():
            self.outliers.weight.copy_(dense.weight[:k])
            self.rest.weight.copy_(dense.weight[k:])
            if dense.bias is not None:
                self.outliers.bias.copy_(dense.bias[:k])
                self.rest.bias.copy_(dense.bias[k:])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.act(self.outliers(x)), self.act(self.rest(x))


def _ffn_pairs(model: nn.Module) -> list[tuple[str, nn.Module, nn.Linear, nn.Linear]]:
    """(layer name, layer, FFN input linear, FFN output linear) of each BERT-style Transformer layer."""
    pairs = []
    for name, m in model.named_modules():
        inter = getattr(getattr(m, "intermediate", None), "dense", None)
        out = getattr(getattr(m, "output", None), "dense", None)
        if isinstance(inter, nn.Linear) and isinstance(out, nn.Linear) and inter.out_features == out.in_features:
            pairs.append((name, m, inter, out))
    return pairs


def input_channel_max(model: nn.Module, modules: list[tuple[str, nn.Module]], calibration: list[tuple]):
    """max |x| per input channel (last dimension) of each module's first input over `calibration`.

    Args:
        model: runs each calibration tuple (`model(*x)`).
        modules: (name, module) pairs inside `model` whose inputs are measured.
        calibration: model inputs.

    Returns:
        (name -> per-channel max for every module that ran, model(*calibration[0]) in no-grad).
    """
    amax: dict[str, torch.Tensor] = {}

    def recorder(name):
        def hook(_module, args):
            x = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(0)
            amax[name] = torch.maximum(amax[name], x) if name in amax else x
        return hook

    hooks = [m.register_forward_pre_hook(recorder(name)) for name, m in modules]
    first = None
    try:
        with torch.no_grad():
            for i, x in enumerate(calibration):
                y = model(*x)
                if i == 0:
                    first = y
    finally:
        for h in hooks:
            h.remove()
    return amax, first


def unpadded_inputs(rows: list[tuple[list[int], list[int]]], pad_id: int) -> list[tuple[torch.Tensor, ...]]:
    """Model inputs (ids, mask, type ids), each text at its own length: the split's calibration
    (padding's GELU outputs would count as channel maxima).

    Args:
        rows: tokenized (input_ids, token_type_ids) per text.
        pad_id: the tokenizer's pad id (unused at a row's own length; pad_row takes it).

    Returns:
        One (1, L) int64 tensor triple per row.
    """
    return [tuple(torch.from_numpy(a) for a in pad_row(ids, types, len(ids), pad_id)) for ids, types in rows]


SPLIT_FORMS = ("slice", "activation")


def split_ffn_outliers(module: nn.Module, calibration: list[tuple], ratio: float = OUTLIER_RATIO,
                       max_channels: int = MAX_OUTLIER_CHANNELS, form: str = "slice") -> list[dict]:
    """Give each Transformer layer's outlier FFN channels their own static int8 range, in place.

    Measures max |x| per input channel of every FFN output linear on `calibration`; channels over
    `ratio` x the 99th percentile of those maxima move to the front of the FFN input linear's
    outputs and the FFN output linear's inputs (GELU is elementwise, so the function is unchanged),
    and the FFN output linear becomes a ChannelSplitLinear. A layer without outliers is left alone.

    Args:
        module: the exportable classifier (its forward takes each calibration tuple).
        calibration: model inputs (real texts) that measure the channel ranges.
        ratio: how far over the 99th-percentile channel max an outlier channel is.
        max_channels: at most this many outlier channels per layer (the largest ones).
        form: "slice": the FFN output linear slices one activation output (ExecuTorch, whose
            XNNPACK quantizer leaves GELU in fp32 and quantizes each slice's linear input on its
            own); "activation": the FFN input block is split too (SplitIntermediate), so each part
            has its own activation output and range (LiteRT, whose slices share their input's
            quantized range).

    Returns:
        One record per Transformer layer: name, outlier channels (original indices), their
        calibrated max, and the largest remaining channel max.

    Raises:
        ExportError: no calibration input, a non-finite activation in it, an unknown form, or a
            model whose FFN is not BERT's (dense, activation, dense).
    """
    if form not in SPLIT_FORMS:
        raise ExportError(f"unknown FFN split form {form!r}; use one of {', '.join(SPLIT_FORMS)}")
    if not calibration:
        raise ExportError("the FFN outlier split needs calibration texts; pass the training split with "
                          "--calibration-data (int8-static) or --qad-data (int8-qat)")
    pairs = _ffn_pairs(module)
    amax, before = input_channel_max(module, [(name, out) for name, _, _, out in pairs], calibration)
    # every layer is checked and planned before any is changed, so an error leaves the module as it was
    records, plans = [], []
    for name, block, inter, out in pairs:
        if name not in amax:
            raise ExportError(f"{name}'s FFN did not run on the calibration texts; this model's layers are not "
                              "the BERT form the outlier split expects")
        m = amax[name]
        if not torch.isfinite(m).all():
            raise ExportError(f"non-finite FFN activation in {name} on the calibration texts; check the model")
        if form == "activation" and not hasattr(block.intermediate, "intermediate_act_fn"):
            raise ExportError(f"{name}'s FFN input block has no intermediate_act_fn; the activation form of the "
                              "outlier split expects BERT's (dense, activation) block")
        top = m.topk(min(max_channels, m.numel() - 1))
        # the percentile of the channels that are not candidates, so narrow FFNs' outliers do not raise it
        rest_of = torch.ones_like(m, dtype=torch.bool)
        rest_of[top.indices] = False
        threshold = ratio * torch.quantile(m[rest_of], 0.99)
        outliers = top.indices[top.values > threshold] if threshold > 0 else top.indices[:0]
        keep = torch.ones_like(m, dtype=torch.bool)
        keep[outliers] = False
        records.append({"layer": name, "channels": outliers.tolist(),
                        "channel_max": [round(float(v), 3) for v in m[outliers]],
                        "rest_max": round(float(m[keep].max()), 3)})
        if outliers.numel():
            plans.append((block, inter, out, int(outliers.numel()), torch.cat([outliers, keep.nonzero().flatten()])))
    for block, inter, out, k, order in plans:
        with torch.no_grad():
            inter.weight.copy_(inter.weight[order])
            if inter.bias is not None:
                inter.bias.copy_(inter.bias[order])
            out.weight.copy_(out.weight[:, order])
        block.output.dense = ChannelSplitLinear(out, k)
        if form == "activation":
            block.intermediate = SplitIntermediate(block.intermediate, k)
    with torch.no_grad():
        after = module(*calibration[0])
    if not torch.allclose(after, before, atol=1e-3, rtol=1e-3):
        raise ExportError(f"the FFN outlier split changed the fp32 outputs by {float((after - before).abs().max()):.3g}; "
                          "this model's feed-forward blocks are not the BERT form (dense, GELU, dense) it expects")
    return records
