"""Outlier splits for static int8: each Transformer layer's outlier FFN channels get their own
static range (split_ffn_outliers), and so do the residual stream's outlier dimensions
(order_residual_outliers, split_residual_outliers; ExecuTorch's int8-static, section below).

Why: the FFN output linear's input is the GELU output, where one or two channels per layer reach
12-22 at [CLS] while every other channel stays under ~6 (BENCHMARKS.md, "int8-static passes"), so
one per-tensor static int8 range is 2-4x too coarse for all the rest. split_ffn_outliers moves
the outlier channels to the front of the FFN (the same function: GELU is elementwise) and
multiplies them by their own small linear (ChannelSplitLinear), which a static quantizer gives
its own range. Both static int8 paths use it: ExecuTorch's int8-static and int8-qat (qat.py) and
LiteRT's int8-static (litert_static.py). Plain torch, so neither runtime is imported here.
"""

from __future__ import annotations

import copy

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


def input_channel_max(model: nn.Module, modules: list[tuple[str, nn.Module]], calibration: list[tuple],
                      outputs: list[tuple[str, nn.Module]] = ()):
    """max |x| per channel (last dimension) of each module's first input over `calibration`, and of
    each of `outputs`' output.

    Args:
        model: runs each calibration tuple (`model(*x)`).
        modules: (name, module) pairs inside `model` whose inputs are measured.
        calibration: model inputs.
        outputs: (name, module) pairs inside `model` whose outputs are measured (names distinct
            from `modules`').

    Returns:
        (name -> per-channel max for every module that ran, model(*calibration[0]) in no-grad).
    """
    amax: dict[str, torch.Tensor] = {}

    def recorder(name):
        def hook(_module, args, *output):  # a pre-hook gets (module, args), a forward hook the output too
            y = output[0] if output else args[0]
            x = y.detach().abs().reshape(-1, y.shape[-1]).amax(0)
            amax[name] = torch.maximum(amax[name], x) if name in amax else x
        return hook

    hooks = [m.register_forward_pre_hook(recorder(name)) for name, m in modules]
    hooks += [m.register_forward_hook(recorder(name)) for name, m in outputs]
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


# --- The residual stream's outlier dimensions ------------------------------------------------------
#
# Why: BERT-style models write a few hidden dimensions of the residual stream 10-120x larger than
# the rest (the demo teacher's dimension 99 reaches 193 at its first FFN output; three more reach
# 45-64 in its last two, 14-22x the 99th percentile of the other dimensions). Those dimensions set
# the one static int8 range of every LayerNorm output (which Q, K, V and the FFN input linear read)
# and of every FFN output linear's output, so the ordinary dimensions get a few steps each. The
# residual split gives the K largest their own ranges in both places, with the partial results
# joined in fp32. Measured in PyTorch's reference graph (BENCHMARKS.md, "The residual stream's
# outlier dimensions"): the demo teacher's logit error halves (+4.5 / +5.3 dB on dev / test), the
# demo student's moves -0.8 to +0.3 dB. So it is chosen per model by measurement (executorch.py),
# not always on.

# a hidden dimension is a residual outlier when, at some LayerNorm output or Transformer sublayer
# output, its max |x| exceeds this many times the 99th percentile of the dimensions' maxima there
RESIDUAL_OUTLIER_RATIO = 4.0
# at most this many get their own range (the probe's K; more splits the ordinary dimensions' range too)
MAX_RESIDUAL_OUTLIER_DIMS = 4


class ResidualSplitLinear(ChannelSplitLinear):
    """A linear that reads the residual stream (Q, K, V, the FFN input linear) as two
    slices, the first k hidden dimensions (the outlier dimensions, moved there by
    permute_hidden) and the rest, so a static quantizer gives each slice its own int8 range. The
    same function as the wrapped linear; the two partial products are added in fp32 (the static
    quantizer leaves every op in this module but the linears unannotated: qat.is_split_join)."""


def _rows(module: nn.Module, start: int, stop: int) -> nn.Module:
    """A copy of a linear (or a ChannelSplitLinear) restricted to output rows start:stop."""
    if isinstance(module, ChannelSplitLinear):
        part = copy.deepcopy(module)
        part.outliers, part.rest = _rows(module.outliers, start, stop), _rows(module.rest, start, stop)
        return part
    if not isinstance(module, nn.Linear):
        raise ExportError(f"the residual outlier split expects a linear here, not {type(module).__name__}")
    part = nn.Linear(module.in_features, stop - start, bias=module.bias is not None)
    with torch.no_grad():
        part.weight.copy_(module.weight[start:stop])
        if module.bias is not None:
            part.bias.copy_(module.bias[start:stop])
    return part


class Placement(nn.Linear):
    """The fp32 (k -> width) selection that puts RowSplitLinear's k head rows at the front of the
    full width: a linear with a 0/1 weight, because XNNPACK's compiler refuses a constant pad fed
    by a quantized tensor (StaticConstantPad: xnn_status_invalid_parameter) and the quantizer gives a
    torch.cat one shared range whatever its filter says. Kept out of the int8 ranges
    (qat.is_split_join); k x width multiply-adds a token (4 x 384 for a BERT-base-like FFN)."""

    def __init__(self, k: int, width: int):
        super().__init__(k, width, bias=False)
        with torch.no_grad():
            self.weight.copy_(torch.eye(width, k))


class RowSplitLinear(nn.Module):
    """A linear that writes the residual stream (the FFN output linear) as two parts, each with its
    own static int8 output range, added in fp32: `head`, output rows 0:k (the outlier dimensions),
    and `tail`, the full width with rows 0:k zero (k zero rows cost a fraction k/width more, and
    spare a pad, which XNNPACK refuses after a quantized tensor); `place` puts the head's k
    outputs at the front."""

    def __init__(self, linear: nn.Module, k: int, width: int):
        super().__init__()
        if not 0 < k < width:
            raise ValueError(f"split at {k} of {width} output rows")
        self.head, self.tail = _rows(linear, 0, k), _rows(linear, 0, width)
        with torch.no_grad():
            for part in ([self.tail.outliers, self.tail.rest] if isinstance(self.tail, ChannelSplitLinear)
                         else [self.tail]):
                part.weight[:k] = 0.0
                if part.bias is not None:
                    part.bias[:k] = 0.0
        self.place = Placement(k, width)

    def forward(self, x):
        return self.tail(x) + self.place(self.head(x))


def bert_body(module: nn.Module) -> nn.Module | None:
    """The BERT encoder inside an exportable classifier (the module with `embeddings` and an
    `encoder.layer` list), or None for a model of another form."""
    for m in module.modules():
        if hasattr(m, "embeddings") and hasattr(getattr(m, "encoder", None), "layer"):
            return m
    return None


def _module_at(parent: nn.Module, path: str, kind: type = nn.Linear) -> nn.Module:
    m = parent
    for part in path.split("."):
        m = getattr(m, part, None)
    if not isinstance(m, kind):
        raise ExportError(f"{path} is not a {kind.__name__} here; the residual outlier split expects BERT's layers")
    return m


def residual_outlier_scores(module: nn.Module, calibration: list[tuple],
                            exclude: int = MAX_RESIDUAL_OUTLIER_DIMS) -> torch.Tensor:
    """How far each hidden dimension stands out of the residual stream, on real texts.

    For every LayerNorm output a linear reads (the inputs of Q and of the FFN input block) and every
    sublayer output written into the stream (the attention and FFN output linears' outputs): max |x|
    per dimension over `calibration`, divided by the 99th percentile of the maxima of all but the
    `exclude` largest; the score is the largest ratio a dimension reaches anywhere.

    Args:
        module: the exportable classifier, before any residual split (its forward takes each tuple).
        calibration: model inputs (real texts, each at its own length).
        exclude: how many of the largest maxima at each place the percentile leaves out.

    Returns:
        One score per hidden dimension.

    Raises:
        ExportError: not a BERT encoder, no calibration input, or a site that never ran or is not finite.
    """
    body = bert_body(module)
    if body is None:
        raise ExportError(f"{type(module).__name__} has no BERT encoder (embeddings, encoder.layer); the residual "
                          "outlier split expects one")
    if not calibration:
        raise ExportError("the residual outlier split needs calibration texts; pass --calibration-data TRAIN")
    sites = {False: [], True: []}  # measured at the input (LayerNorm outputs) / output (sublayer outputs)
    for i, layer in enumerate(body.encoder.layer):
        for path, out in (("attention.self.query", False), ("intermediate", False),
                          ("attention.output.dense", True), ("output.dense", True)):
            sites[out].append((f"{i}.{path}", _module_at(layer, path, nn.Module)))
    maxima, _ = input_channel_max(module, sites[False], calibration, outputs=sites[True])
    ratios = []
    for name, v in maxima.items():
        if not torch.isfinite(v).all():
            raise ExportError(f"non-finite activation at layer {name} on the calibration texts; check the model")
        # the percentile of the dimensions that are not candidates, so that a few outliers of a narrow
        # model (or the teacher's four of 384) do not raise it (as split_ffn_outliers does)
        rest = v.sort().values[: max(1, v.numel() - exclude)]
        ratios.append(v / torch.quantile(rest, 0.99).clamp_min(1e-12))
    return torch.stack(ratios).amax(0)


def permute_hidden(module: nn.Module, order: torch.Tensor) -> None:
    """Reorder the hidden dimensions of a BERT classifier in place: new dimension i is old
    dimension order[i]. Every parameter that reads or writes the hidden size is permuted (the
    embedding tables' columns, or ELECTRA's embedding projection's rows; every LayerNorm; the input
    columns of Q, K, V, the FFN input linear and the pooler, or RoBERTa's and ELECTRA's
    classification head; the output rows of the attention and FFN output linears), so the function
    is unchanged (LayerNorm and the residual adds are per-dimension or symmetric in them).

    Args:
        module: the exportable classifier; its FFN must not be split yet (split_ffn_outliers after).
        order: a permutation of range(hidden size).

    Raises:
        ExportError: not a BERT encoder, a layer or head of another form, or LayerNorms already
            rewritten for int16x8.
    """
    body = bert_body(module)
    if body is None:
        raise ExportError("the residual outlier split expects a BERT encoder (embeddings, encoder.layer)")
    size = order.numel()
    if not torch.equal(order.sort().values, torch.arange(size)):
        raise ExportError("permute_hidden needs a permutation of the hidden dimensions")

    def norm(ln):
        for t in (getattr(ln, "weight", None), getattr(ln, "bias", None)):
            if t is not None:
                t.copy_(t[order])

    def reads(linear):
        linear.weight.copy_(linear.weight[:, order])

    def writes(linear):
        linear.weight.copy_(linear.weight[order])
        if linear.bias is not None:
            linear.bias.copy_(linear.bias[order])

    for m in module.modules():
        if getattr(m, "outlier_channels", None):  # LayerNorm4d's int16 variance split (LiteRT's int16x8)
            raise ExportError("a LayerNorm of this model already sums its outlier channels apart (int16x8's rewrite); "
                              "the residual outlier split is for int8-static")
    # what reads the stream after the last layer: BERT's pooler, or (RoBERTa, XLM-R, ELECTRA: no pooler)
    # the classification head's first linear, which takes the [CLS] row of the stream
    pooler = getattr(body, "pooler", None)
    head = getattr(pooler, "dense", None) if pooler is not None else \
        getattr(getattr(getattr(module, "model", module), "classifier", None), "dense", None)
    if not isinstance(head, nn.Linear) or head.in_features != size:
        raise ExportError("found no pooler or classification-head linear reading the hidden states; the residual "
                          "outlier split expects a BERT-family sequence classifier")
    emb = body.embeddings
    project = getattr(body, "embeddings_project", None)  # ELECTRA whose embedding size is not the hidden size
    with torch.no_grad():
        if isinstance(project, nn.Linear):
            writes(project)  # the tables and their LayerNorm are in the embedding size: left as they are
        for name in ("word_embeddings", "position_embeddings", "token_type_embeddings") if project is None else ():
            table = getattr(emb, name, None)
            if table is None:
                continue
            # nn.Embedding's weight, or an int8 table's rows (executorch.Int8RowwiseEmbedding: one scale
            # per row, so a column permutation leaves its scales exact)
            t = next((getattr(table, a) for a in ("weight", "qweight") if isinstance(getattr(table, a, None), torch.Tensor)),
                     None)
            if t is None or t.shape[-1] != size:
                raise ExportError(f"embeddings.{name} has no (rows, {size}) table; the residual outlier split "
                                  "expects BERT's embeddings")
            t.copy_(t[:, order])
        if project is None:
            norm(emb.LayerNorm)
        for layer in body.encoder.layer:
            for path in ("attention.self.query", "attention.self.key", "attention.self.value", "intermediate.dense"):
                reads(_module_at(layer, path))
            for path in ("attention.output.dense", "output.dense"):
                writes(_module_at(layer, path))
            norm(layer.attention.output.LayerNorm)
            norm(layer.output.LayerNorm)
        reads(head)


def order_residual_outliers(module: nn.Module, calibration: list[tuple], ratio: float = RESIDUAL_OUTLIER_RATIO,
                            max_dims: int = MAX_RESIDUAL_OUTLIER_DIMS) -> dict:
    """Find the residual stream's outlier dimensions and move them to the front, in place (the same
    function; checked on the first calibration input).

    Args:
        module: the exportable classifier, before split_ffn_outliers.
        calibration: model inputs (real texts) that measure the dimensions.
        ratio: how far over the 99th percentile a dimension's max must reach (residual_outlier_scores).
        max_dims: at most this many dimensions, the highest scores.

    Returns:
        {"dims": the outlier dimensions (original indices, highest score first), "score": their
        scores, "next_score": the highest score of the rest}; no dims leaves the module unchanged.

    Raises:
        ExportError: see residual_outlier_scores and permute_hidden; or a permutation that changed
            the outputs (a model whose layers are not BERT's).
    """
    score = residual_outlier_scores(module, calibration)
    ranked = score.argsort(descending=True)
    dims = [int(d) for d in ranked[:max_dims] if score[d] > ratio]
    record = {"dims": dims, "score": [round(float(score[d]), 2) for d in dims],
              "next_score": round(float(score[ranked[len(dims)]]), 2)}
    if not dims:
        return record
    chosen = torch.tensor(dims)
    keep = torch.ones_like(score, dtype=torch.bool)
    keep[chosen] = False
    with torch.no_grad():
        before = module(*calibration[0])
        permute_hidden(module, torch.cat([chosen, keep.nonzero().flatten()]))
        after = module(*calibration[0])
    if not torch.allclose(after, before, atol=1e-3, rtol=1e-3):
        raise ExportError(f"reordering the hidden dimensions changed the fp32 outputs by "
                          f"{float((after - before).abs().max()):.3g}; this model's layers are not the BERT form "
                          "the residual outlier split expects")
    return record


def no_outlier_dimension(record: dict) -> str:
    """Why a model gets no residual split (order_residual_outliers found no dimension), for errors."""
    return (f"no hidden dimension of this model stands out of the residual stream (the largest is "
            f"{record['next_score']}x the 99th percentile, under {RESIDUAL_OUTLIER_RATIO}x)")


def residual_split(module: nn.Module, calibration: list[tuple]) -> tuple[dict, list[dict] | None]:
    """The whole residual outlier split, in place: order_residual_outliers, then split_ffn_outliers
    in its activation form (each FFN outlier part its own GELU output), then split_residual_outliers.

    Args:
        module: the exportable classifier, not split yet.
        calibration: model inputs (real texts) that find the dimensions and the FFN channels.

    Returns:
        (order_residual_outliers' record, the FFN split's records); (record, None) with the module
        unchanged when no dimension stands out (no_outlier_dimension says why).

    Raises:
        ExportError: see order_residual_outliers, split_ffn_outliers and split_residual_outliers.
    """
    record = order_residual_outliers(module, calibration)
    if not record["dims"]:
        return record, None
    ffn = split_ffn_outliers(module, calibration, form="activation")
    split_residual_outliers(module, len(record["dims"]), calibration)
    return record, ffn


def split_residual_outliers(module: nn.Module, k: int, calibration: list[tuple]) -> None:
    """Give the first k hidden dimensions (order_residual_outliers put the outliers there) their own
    static int8 ranges, in place: Q, K, V and the FFN input linear(s) read the stream as two slices
    (ResidualSplitLinear), and each FFN output linear writes it as two parts (RowSplitLinear).
    Call after split_ffn_outliers (either form).

    Args:
        module: the exportable classifier.
        k: how many leading hidden dimensions are outliers (> 0).
        calibration: model inputs; the first checks that the function is unchanged.

    Raises:
        ExportError: not a BERT encoder, a layer of another form, or changed outputs.
    """
    body = bert_body(module)
    if body is None:
        raise ExportError("the residual outlier split expects a BERT encoder (embeddings, encoder.layer)")
    with torch.no_grad():
        before = module(*calibration[0])
    width = body.config.hidden_size
    for layer in body.encoder.layer:
        attention = layer.attention.self
        for name in ("query", "key", "value"):
            setattr(attention, name, ResidualSplitLinear(_module_at(attention, name), k))
        inter = layer.intermediate
        for name in (("outliers", "rest") if isinstance(inter, SplitIntermediate) else ("dense",)):
            setattr(inter, name, ResidualSplitLinear(_module_at(inter, name), k))
        layer.output.dense = RowSplitLinear(layer.output.dense, k, width)
    # the pooler is left whole: its input is one [CLS] row per text, whose range holds 0-2 % of the
    # static-int8 error of the demo models (BENCHMARKS.md, "Where static int8's error sits"), and
    # split on a model with a planted outlier dimension it cost 7 dB where every other split cost none
    with torch.no_grad():
        after = module(*calibration[0])
    if not torch.allclose(after, before, atol=1e-3, rtol=1e-3):
        raise ExportError(f"the residual outlier split changed the fp32 outputs by "
                          f"{float((after - before).abs().max()):.3g}")
