"""ExecuTorch (.pte) export, XNNPACK-delegated, validated through ExecuTorch's Python runtime.

fp32: eager attention, lowered with the XNNPACK partitioner.
int8: PT2E with the XNNPACK quantizer, dynamic per-channel (int8 weights per output channel,
    activations quantized per inference), plus the word-embedding table stored as int8 rows
    with one fp32 scale per row (the table is 2/3 of the student's weights; left in fp32 the
    int8 .pte is 43 MB instead of 15).
int8-static: the same with static activation ranges calibrated on real training texts
    (--calibration-data; its agreement is reported like any other and is held to the threshold),
    once, on unpadded rows, for every method (_static_on_unpadded_rows says why). LayerNorm and
    the residual add before it ("Add & Norm") stay fp32, and the FFN output linear's outlier
    input channels get their own range (see qat.py for why). With --outlier-dims auto (the
    default) the residual stream's outlier dimensions get their own ranges too, where the
    calibration texts show it pays (outliers.py; _residual_outlier_split).
int8-qat: static int8 after quantization-aware distillation (qat.py) on training texts, with
    the fp32 model as teacher, on unpadded rows (see qat.py); every method, bucketed or fixed, is
    traced from the one converted graph.

Why not ExecuTorch's quantized_decomposed::embedding_byte op: the pip runtime's kernel library
does not register it, so a .pte using it could not be validated on the host. The int8 table is
written with portable ops instead (gather int8 rows, gather scales, multiply), which every
ExecuTorch runtime, the Android AAR included, has.

The HF mask builder stays out of the graph (see base.ExportableClassifier): that is the fix for
the stock quantizer's calibration crash. LayerNorm, the embedding gathers and a few view ops
run on ExecuTorch's portable kernels; every matmul is delegated (checked after lowering).

Length-aware: "dynamic" exports one method "forward" with a symbolic sequence dimension
(2..max_len); "buckets" exports one method per length ("seq32", ...) sharing one weight copy.
"""

from __future__ import annotations

import copy
import math
import time
from collections import Counter
from pathlib import Path

import torch
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
from executorch.backends.xnnpack.quantizer import xnnpack_quantizer as xq
from executorch.exir import to_edge_transform_and_lower
from torch import nn
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

from tinybert_edge.files import write_bytes_atomically

from .executorch_runtime import ExecuTorchRunner, method_names
from .export import (DEFAULT_TEXTS, ExportResult, QadSettings, calibration_sample, check_quantization_request,
                     check_weight_rounding, eager_logits, gptq_round_rows, load_for_export, sample_row)
from .outliers import no_outlier_dimension, residual_split, split_ffn_outliers, unpadded_inputs
from .qat import quantization_aware_distill, static_int8_quantizer
from .runtime import ExportError, ParityReport, SeqLenPolicy, pad_row, quiet_native_output, tokenize

QUANTIZATIONS = ("none", "int8", "int8-static", "int8-qat")
# int8-static's residual outlier split (outliers.py): "auto" tries it and keeps it when it lowers the
# calibration texts' logit error by RESIDUAL_SPLIT_GAIN_DB or more, "split" always, "off" never
OUTLIER_DIMS = ("auto", "split", "off")
# the split costs a second int8 linear and an fp32 join for each of Q, K, V and the FFN's linears
# (+9-11 % latency at 128 tokens on the demo models), so auto asks for a clear gain: on their
# calibration texts the demo teacher gains +6.0 dB (test split: 22.7 -> 27.8 dB) and the demo
# student +0.91 dB, just under the rule (BENCHMARKS.md, "The residual outlier split in `export`")
RESIDUAL_SPLIT_GAIN_DB = 1.0
MATMUL_OPS = ("mm", "bmm", "addmm", "linear", "matmul", "convolution")


class Int8RowwiseEmbedding(nn.Module):
    """An embedding table stored as int8 with one fp32 scale per row (symmetric, zero point 0).

    Args:
        embedding: the fp32 nn.Embedding to quantize.
    """

    def __init__(self, embedding: nn.Embedding):
        super().__init__()
        w = embedding.weight.detach().float()
        scale = (w.abs().amax(dim=1, keepdim=True) / 127.0).clamp_min(1e-12)
        self.register_buffer("qweight", torch.round(w / scale).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = nn.functional.embedding(ids, self.qweight)
        return rows.to(torch.float32) * nn.functional.embedding(ids, self.scale)


# The XNNPACK quantizer's weight observers floor every per-channel scale at 2^-12 (their eps), so a
# row whose weights all stay under 127 * 2^-12 = 0.031 (most of a TinyBERT pooler's rows) is stored
# on that coarser grid; GPTQ rounds onto the same grid (gptq.per_channel_scale).
XNNPACK_WEIGHT_EPS = 2.0 ** -12


def _word_embeddings_owner(model: nn.Module):
    emb = model.get_input_embeddings()
    for module in model.modules():
        for name, child in module.named_children():
            if child is emb:
                return module, name
    raise ExportError("could not find the word-embedding module to quantize")


def _export(module: nn.Module, sample: tuple, dynamic: bool, max_len: int):
    if not dynamic:
        return torch.export.export(module, sample)
    seq = torch.export.Dim("seq", min=2, max=max_len)
    return torch.export.export(module, sample, dynamic_shapes={n: {1: seq} for n in
                                                               ("input_ids", "attention_mask", "token_type_ids")})


def _dynamic_int8(exported, calibration: list[tuple], sample: tuple, dynamic: bool, max_len: int):
    quantizer = xq.XNNPACKQuantizer().set_global(xq.get_symmetric_quantization_config(is_per_channel=True,
                                                                                     is_dynamic=True))
    prepared = prepare_pt2e(exported.module(), quantizer)
    for inputs in calibration:
        prepared(*inputs)
    return _export(convert_pt2e(prepared), sample, dynamic, max_len)


def _tracing_sample(rows: list[tuple[list[int], list[int]]], length: int, tok) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(a) for a in pad_row(*sample_row(rows, length, tok.sep_token_id), length,
                                                       tok.pad_token_id))


def _static_on_unpadded_rows(module: nn.Module, calibration_rows: list[tuple[list[int], list[int]]],
                             rows: list[tuple[list[int], list[int]]], tok, max_len: int) -> nn.Module:
    """Static int8 ranges calibrated once, on unpadded rows, for every method: dynamic, fixed or
    bucketed.

    XNNPACK's quantizer sets each static range with a histogram observer that picks the clipping
    range minimising the error over every value it saw. Calibrating a bucket on rows padded to it
    fills that histogram with padded positions (58 % of the values at 64 tokens for Rotten
    Tomatoes' training texts), so the ranges fit the padding, which the mask then throws away.
    Calibrating the dynamic-length graph on unpadded rows and tracing each length from the
    converted graph gives every bucket the ranges of real tokens (and all the texts, not only
    those that fit it). Measured on the demo student at buckets 32/64/128: 98.72 % agreement
    calibrated per bucket on padded rows, 99.28 % this way (BENCHMARKS.md).

    Args:
        module: the exportable classifier (int8 embeddings and FFN split already applied).
        calibration_rows: tokenized calibration texts, each run at its own length.
        rows: tokenized check texts (one traces the graph).
        tok: the tokenizer (pad and [SEP] ids).
        max_len: the longest sequence the artifact takes.

    Returns:
        The converted (quantize/dequantize) module, traceable at any length up to max_len.
    """
    prepared = prepare_pt2e(_export(module, _tracing_sample(rows, max_len, tok), True, max_len).module(),
                            static_int8_quantizer(qat=False))
    for inputs in unpadded_inputs(calibration_rows, tok.pad_token_id):
        prepared(*inputs)
    return convert_pt2e(prepared)


def logit_sqnr(graph: nn.Module, reference: nn.Module, inputs: list[tuple]) -> float:
    """Signal-to-quantization-noise ratio, in dB, of `graph`'s outputs against `reference`'s on
    `inputs` (ParityReport's, rounded; an exact match gets the noise floor 1e-30, since metadata.json
    has no infinity)."""
    with torch.no_grad():
        ref = torch.cat([reference(*x) for x in inputs]).numpy()
        out = torch.cat([graph(*x) for x in inputs]).numpy()
    sqnr = ParityReport.compare(ref, out).sqnr_db
    if math.isinf(sqnr):
        sqnr = 10 * math.log10(max(float((ref.astype("float64") ** 2).sum()), 1e-30) / 1e-30)
    return round(sqnr, 2)


def _residual_outlier_split(base: nn.Module, plain: nn.Module | None, wrapper: nn.Module, split_inputs: list[tuple],
                            calibration_rows, rows, tok, max_len: int, mode: str):
    """int8-static with the residual stream's outlier dimensions given their own ranges
    (outliers.order_residual_outliers, split_ffn_outliers in its activation form,
    split_residual_outliers), converted like the plain graph; "auto" keeps it only when it beats
    the plain graph by RESIDUAL_SPLIT_GAIN_DB on the calibration texts (the texts that set both
    graphs' ranges; the validation texts judge the result, so they choose nothing). Under "auto"
    any failure of the trial (a model of another form, a rewrite that changed the outputs, a
    quantizer error) keeps the plain graph and records why.

    Args:
        base: the classifier with int8 embeddings, before the FFN split (not changed).
        plain: the converted graph without the split (None with mode "split").
        wrapper: the fp32 reference.
        split_inputs: unpadded calibration inputs (find the dimensions, score both graphs).
        calibration_rows, rows, tok, max_len: as _static_on_unpadded_rows takes them.
        mode: "auto" or "split".

    Returns:
        (converted graph to ship, the record for metadata, the FFN split's records when the
        residual split is shipped, else None).

    Raises:
        ExportError: with mode "split": a model of another form, no outlier dimension, or a
            failed rewrite, each naming --outlier-dims auto or off.
    """
    record: dict = {"mode": mode}
    try:
        variant = copy.deepcopy(base)
        found, ffn = residual_split(variant, split_inputs)
        record.update(found)
        if ffn is None:
            if mode == "split":
                raise ExportError(no_outlier_dimension(record))
            return plain, {**record, "applied": False, "reason": "no outlier dimension"}, None
        converted = _static_on_unpadded_rows(variant, calibration_rows, rows, tok, max_len)
        sqnr = {"with": logit_sqnr(converted, wrapper, split_inputs)}
    except Exception as e:  # noqa: BLE001 (under auto every failure of the trial keeps the plain graph)
        message = str(e) if isinstance(e, ExportError) else f"{type(e).__name__}: {e}"
        if mode == "split":
            raise ExportError(f"--outlier-dims split: {message}; export with --outlier-dims auto or off") from None
        return plain, {**record, "applied": False, "reason": f"the split failed: {message}"}, None
    if plain is not None:
        sqnr["without"] = logit_sqnr(plain, wrapper, split_inputs)
    record["calibration_sqnr_db"] = sqnr
    if plain is not None and sqnr["with"] - sqnr["without"] < RESIDUAL_SPLIT_GAIN_DB:
        return plain, {**record, "applied": False,
                       "reason": f"{sqnr['with'] - sqnr['without']:+.2f} dB on the calibration texts, under the "
                                 f"+{RESIDUAL_SPLIT_GAIN_DB} dB auto keeps it for"}, None
    return converted, {**record, "applied": True}, ffn


def _lower(module: nn.Module, quantization: str, policy: SeqLenPolicy, rows, tok, model_dir) -> tuple[Counter, bytes]:
    """Trace `module` at each method's length (int8: quantize each dynamically), lower every method
    to XNNPACK and serialize: (operators left outside the delegate, the .pte bytes).

    Raises:
        ExportError: a failed lowering, or a matmul left outside XNNPACK (nothing is written).
    """
    dynamic = policy.kind == "dynamic"
    programs = {}
    try:
        with quiet_native_output(), torch.no_grad():
            # int8-static and int8-qat: `module` is the converted graph, traced at each method's length
            for method, length in method_names(policy):
                sample = _tracing_sample(rows, length, tok)
                ep = _export(module, sample, dynamic, policy.max_len)
                if quantization == "int8":
                    # dynamic activation ranges need no statistics; a few passes only build the observers
                    calibration = [tuple(torch.from_numpy(a) for a in pad_row(ids, types, max(len(ids), 2) if dynamic
                                                                                else length, tok.pad_token_id))
                                   for ids, types in rows[:4] if len(ids) <= length]
                    ep = _dynamic_int8(ep, calibration or [sample], sample, dynamic, policy.max_len)
                programs[method] = ep
            edge = to_edge_transform_and_lower(programs if len(programs) > 1 else programs["forward"],
                                               partitioner=[XnnpackPartitioner()])
            outside = count_outside_delegate(edge)
            data = edge.to_executorch().buffer
    except ExportError as e:
        raise ExportError(f"ExecuTorch export of {model_dir} failed: {e}") from None
    matmuls = {op: n for op, n in outside.items() if op.split(".")[-1] in MATMUL_OPS}
    if matmuls:
        raise ExportError(f"matmuls left outside XNNPACK: {matmuls}; this executorch version does not delegate "
                          "them, the .pte would be slow, so nothing was written")
    return outside, data


def count_outside_delegate(edge) -> Counter:
    """Operator -> count of the call_function nodes that stay outside any delegate, all methods."""
    outside: Counter = Counter()
    for name in edge.methods:
        for node in edge.exported_program(name).graph_module.graph.nodes:
            if node.op != "call_function":
                continue
            target = getattr(node.target, "__name__", str(node.target))  # e.g. "aten.native_layer_norm.default"
            if "call_delegate" in target or target == "getitem":
                continue
            parts = target.split(".")
            outside[".".join(parts[:2]) if len(parts) >= 2 else target] += 1
    return outside


def export_pte(model_dir: str | Path, out_path: str | Path, *, quantization: str = "none",
               policy: SeqLenPolicy | None = None, texts: list[str] | None = None,
               text_pairs: list[str] | None = None, seq_len: int | None = None,
               calibration_size: int = 128, qad_texts: list[str] | None = None,
               qad_text_pairs: list[str] | None = None, qad: QadSettings | None = None,
               calibration_texts: list[str] | None = None, calibration_text_pairs: list[str] | None = None,
               weight_rounding: str = "nearest", outlier_dims: str = "auto") -> ExportResult:
    """Export a sequence classifier to an XNNPACK-delegated .pte and check it against eager PyTorch.

    Args:
        model_dir: HF sequence-classifier directory (e.g. a distilled student).
        out_path: the .pte file to write (atomically: temp file, then rename).
        quantization: "none" (fp32), "int8" (dynamic per-channel, int8 embeddings),
            "int8-static" (static activations calibrated on `calibration_texts`) or "int8-qat"
            (static int8 after quantization-aware distillation on `qad_texts`).
        policy: sequence-length policy (default fixed 128).
        texts: inputs for calibration and the parity check (default: three built-in sentences).
        text_pairs: second segments for pair tasks, aligned with texts.
        seq_len: shorthand for a fixed policy of that length.
        calibration_size: how many texts calibrate int8-static and its FFN outlier split (fewer
            texts is an error); int8-qat's split uses as many of `qad_texts`.
        qad_texts, qad_text_pairs: int8-qat's training texts (labels not needed).
        qad: int8-qat's training settings (default QadSettings()).
        calibration_texts, calibration_text_pairs: real texts (not `texts`) whose activations
            calibrate GPTQ and int8-static's ranges and FFN outlier split (`calibration_size` of
            them, a seeded sample when there are more; int8-static without them calibrates on the
            first `calibration_size` of `texts`).
        weight_rounding: "nearest", or "gptq" (int8 and int8-static; export.gptq_round_rows, after
            int8-static's FFN outlier split). The artifact is still held against the unrounded model.
        outlier_dims: int8-static: "auto" (default) gives the residual stream's outlier
            dimensions their own ranges when that lowers the calibration texts' logit error by
            RESIDUAL_SPLIT_GAIN_DB or more; "split" always (an error for a model without them);
            "off" never. Not tried with GPTQ rounding (auto), refused with it (split).
            int8-qat: "split" trains the split graph; "auto" and "off" leave it unsplit.

    Returns:
        ExportResult; details hold the operators left outside XNNPACK.

    Raises:
        ExportError: unknown quantization, bad policy, missing package, a failed lowering, a
            matmul left outside the XNNPACK delegate, fewer calibration texts than asked,
            int8-qat without training texts, GPTQ calibration activations that are not finite, an
            unknown outlier_dims, or "split" for another scheme, with GPTQ, or on a model without
            outlier dimensions.
        tinybert_edge.errors.ModelError: the directory is not a BERT-family classifier.
    """
    if quantization not in QUANTIZATIONS:
        raise ExportError(f"unknown quantization {quantization!r} for executorch; use one of "
                          f"{', '.join(QUANTIZATIONS)}")
    policy = policy or SeqLenPolicy.make(seq_len or 128)
    out_path = Path(out_path)
    # int8-static calibrates on --calibration-data when given (export_bundles always gives it), so the
    # validation texts never set the ranges they are judged on; the Python API may still pass none
    static_from_calibration = quantization == "int8-static" and bool(calibration_texts)
    n_static = len(calibration_texts) if static_from_calibration else len(texts or DEFAULT_TEXTS)
    check_quantization_request(quantization, n_static, calibration_size, bool(qad_texts),
                               qad)
    check_weight_rounding(weight_rounding, quantization, ("int8", "int8-static"))
    if outlier_dims not in OUTLIER_DIMS:
        raise ExportError(f"unknown --outlier-dims {outlier_dims!r}; use one of {', '.join(OUTLIER_DIMS)}")
    if outlier_dims == "split" and (quantization not in ("int8-static", "int8-qat") or weight_rounding != "nearest"
                                    or (quantization == "int8-static" and not calibration_texts)):
        raise ExportError("--outlier-dims split applies to --quantize int8-static (with --calibration-data) or "
                          f"int8-qat, with --weight-rounding nearest (here: {quantization}, {weight_rounding}, "
                          f"{'with' if calibration_texts else 'without'} calibration texts); leave it at auto for "
                          "this export")
    if weight_rounding == "gptq":
        calibration_texts, calibration_text_pairs = calibration_sample(calibration_texts, calibration_text_pairs,
                                                                       calibration_size, "GPTQ")
    # Static int8 masks padding after the softmax: an additive mask bias would share the scores'
    # quantized range and flatten them (keep_mask_attention).
    wrapper, tok, config = load_for_export(model_dir, xnnpack=True, keep_mask=quantization in ("int8-static", "int8-qat"))
    policy.check(config.max_position_embeddings)
    rows = tokenize(tok, texts or DEFAULT_TEXTS, text_pairs, policy.max_len)
    static_rows = rows
    if static_from_calibration:
        static_texts, static_pairs = calibration_sample(calibration_texts, calibration_text_pairs, calibration_size,
                                                        "int8-static ranges")
        static_rows = tokenize(tok, static_texts, static_pairs, policy.max_len)

    t0 = time.perf_counter()
    module = wrapper
    if quantization != "none":
        module = copy.deepcopy(wrapper)
        owner, name = _word_embeddings_owner(module.model)
        setattr(owner, name, Int8RowwiseEmbedding(getattr(owner, name)))
    qad_summary = None
    ffn_split = None
    residual_base = residual = None
    if quantization == "int8-static" and outlier_dims == "auto" and weight_rounding != "nearest":
        residual = {"mode": outlier_dims, "applied": False, "reason": f"not tried with --weight-rounding {weight_rounding}"}
    elif quantization == "int8-static" and outlier_dims == "auto" and not static_from_calibration:
        # the choice is made on calibration texts, never on the texts the artifact is validated on
        residual = {"mode": outlier_dims, "applied": False, "reason": "not tried without calibration texts"}
    if quantization in ("int8-static", "int8-qat"):
        # the outlier channels are found on the texts that also set the static ranges
        if quantization == "int8-static":
            split_rows = static_rows[:calibration_size]
        else:  # a seeded sample: training files often come sorted by label
            qad_sample = calibration_sample(qad_texts, qad_text_pairs, min(calibration_size, len(qad_texts)),
                                            "int8-qat's FFN outlier split")
            split_rows = tokenize(tok, *qad_sample, policy.max_len)
        split_inputs = unpadded_inputs(split_rows, tok.pad_token_id)
        if residual is None and quantization == "int8-static" and outlier_dims != "off":
            residual_base = copy.deepcopy(module)  # the residual split reorders the model before its FFN split
        if quantization == "int8-qat" and outlier_dims == "split":
            # QAD trains the split graph, from int8-static's ranges on it (no auto: QAD is the slow part)
            try:
                found, ffn_split = residual_split(module, split_inputs)
                residual = {"mode": "split", **found}
                if ffn_split is None:
                    raise ExportError(no_outlier_dimension(found))
            except ExportError as e:
                raise ExportError(f"--outlier-dims split: {e}; export with --outlier-dims off") from None
            residual["applied"] = True
        else:
            ffn_split = split_ffn_outliers(module, split_inputs)
    rounding = None
    if weight_rounding == "gptq":  # the copy only: `wrapper` stays the unrounded reference
        # after the outlier split, so that each half of a split FFN output linear is rounded on its own
        # per-channel grid (the quantizer gives each half its own weight scales)
        rounding = gptq_round_rows(module, tokenize(tok, calibration_texts, calibration_text_pairs, policy.max_len),
                                   tok.pad_token_id, min_scale=XNNPACK_WEIGHT_EPS)
    if quantization == "int8-qat":
        qad_rows = tokenize(tok, qad_texts, qad_text_pairs, policy.max_len)
        # the ranges QAD starts from (and keeps) are int8-static's on the split's texts
        module, qad_summary = quantization_aware_distill(module, wrapper, qad_rows, policy.max_len,
                                                         qad or QadSettings(),
                                                         calibration=split_inputs)
    fallback = None  # under auto, the plain graph to ship if the chosen split graph fails to lower or run
    if quantization == "int8-static":  # one set of ranges, from unpadded rows, for every method
        try:
            with quiet_native_output(), torch.no_grad():
                calibration_rows = static_rows[:calibration_size]
                plain = None if outlier_dims == "split" else _static_on_unpadded_rows(module, calibration_rows, rows,
                                                                                      tok, policy.max_len)
                module = plain
                if residual_base is not None:
                    plain_ffn_split = ffn_split
                    module, residual, residual_ffn = _residual_outlier_split(
                        residual_base, plain, wrapper, split_inputs, calibration_rows, rows, tok, policy.max_len,
                        outlier_dims)
                    if residual_ffn is not None:
                        ffn_split = residual_ffn
                        fallback = plain
        except ExportError as e:
            raise ExportError(f"ExecuTorch export of {model_dir} failed: {e}") from None
    while True:
        try:
            outside, data = _lower(module, quantization, policy, rows, tok, model_dir)
            write_bytes_atomically(out_path, data)
            candidate = ExecuTorchRunner(out_path, policy, pad_id=tok.pad_token_id).scores(rows)
            break
        except ExportError as e:
            if fallback is None:
                raise
            # XNNPACK refused the split graph (its compiler checks more than lowering does): ship the plain one
            module, fallback, ffn_split = fallback, None, plain_ffn_split
            residual = {**residual, "applied": False, "reason": f"the split graph failed to lower or run: {e}"}
    seconds = time.perf_counter() - t0
    reference = eager_logits(wrapper, rows, policy, tok.pad_token_id)
    split_layers = sum(bool(r["channels"]) for r in ffn_split or [])
    split_note = f", FFN outlier channels split off in {split_layers} of {len(ffn_split)} layers" if ffn_split else ""
    if residual and residual["applied"]:
        split_note += (f", residual outlier dimensions {residual['dims']} their own ranges (FFN split in its "
                       "activation form, LayerNorm outputs read as two slices, FFN outputs written as two parts, "
                       "joined in fp32)")
    recipes = {"none": "fp32",
               "int8": "PT2E XNNPACKQuantizer dynamic per-channel int8 linears; int8 row-wise word embeddings",
               "int8-static": "PT2E XNNPACKQuantizer static per-channel int8 (calibrated on "
                              f"{min(calibration_size, len(static_rows))} "
                              f"{'--calibration-data' if static_from_calibration else 'check'} texts)"
                              f"{split_note}, Add & Norm fp32; int8 row-wise word embeddings",
               "int8-qat": "PT2E XNNPACKQuantizer static per-channel int8 after quantization-aware distillation "
                           "from the fp32 model" + (f" ({qad_summary['steps']} steps on {qad_summary['rows']} "
                                                     "texts)" if qad_summary else "")
                           + f"{split_note}, Add & Norm fp32; int8 row-wise word embeddings"}
    details = {"params": sum(p.numel() for p in wrapper.parameters()), "runtime": "executorch", "input_dtype": "int64", "recipe": recipes[quantization],
               "delegate": "XnnpackPartitioner",
               "ops_outside_delegate": dict(sorted(outside.items())),
               "ops_outside_delegate_total": sum(outside.values()),
               "signatures": [{"name": n, "seq_len": length} for n, length in method_names(policy)],
               **({"quantization_aware_distillation": qad_summary} if qad_summary else {}),
               **({"weight_rounding": rounding} if rounding else {}),
               **({"ffn_outlier_split": ffn_split} if ffn_split is not None else {}),
               **({"residual_outlier_split": residual} if residual is not None else {}),
               # XNNPACK's quantizer observes static ranges with histogram observers
               **({"calibration": {"rows": len(static_rows), "ranges": "histogram"}}
                  if static_from_calibration else {})}
    return ExportResult("executorch", quantization, out_path, out_path.stat().st_size, seconds, policy,
                        ParityReport.compare(reference, candidate), details, reference, candidate)
