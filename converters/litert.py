"""LiteRT (.tflite) export with litert-torch, validated through the ai-edge-litert runtime.

fp32: the eager graph converted as is. int8: litert-torch's full dynamic-range recipe (int8
weights, the word-embedding table included; activations stay float). Inputs are int32 of shape
(1, L) named args_0, args_1, args_2 = input_ids, attention_mask, token_type_ids.

Length-aware: litert-torch 0.10.0 cannot convert a symbolic sequence dimension of this model
(AssertionError on a float32[1, -9223372036854775808] shape), so `--dynamic` is refused here
and `--buckets` puts one signature per length ("seq32", "seq64", ...) into one file; the
weights are stored once.

Outputs are softmax probabilities (inside the graph) and the file carries TFLite Model Metadata:
the BERT tokenizer with vocab.txt and the labels (tflite_metadata.py). A single-signature file (the
"mediapipe" format: fixed length) is what MediaPipe Tasks' TextClassifier loads with no code of
ours; MediaPipe refuses files with several subgraphs, so a bucketed .tflite is for the kit and the
app's LiteRT engine.

Full-integer: "int16x8" (int16 activations, int8 weights, for NPU delegates; litert_static.py)
is calibrated on real texts other than the validation texts. "int8-static" (static int8
activations and weights for every linear; LayerNorm, the Add & Norm adds, the attention matmuls,
softmax and GELU in float; the FFN outlier channels split off: ExecuTorch's int8-static rule) is
calibrated on them too, with ExecuTorch's histogram ranges over the real tokens (litert_static.
histogram_ranges). Weight rounding "gptq" (gptq.py) rounds
the int8 weights of "int8", "int16x8" and "int8-static" to minimise each linear's output error on calibration
texts instead of to the nearest step; the artifact is still held against the unrounded model.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import litert_torch
import torch
from litert_torch.generative.quantize import quant_recipes

from tinybert_edge.files import write_bytes_atomically

from .export import (DEFAULT_TEXTS, ExportResult, calibration_sample, check_weight_rounding, eager_logits,
                     gptq_round_rows, load_for_export, sample_row)
from .litert_runtime import LiteRTRunner, signature_names
from .litert_static import (INT8_STATIC, INT16X8, MASK_BIAS, STATIC_SCHEMES, check_ranges,
                            op_dtypes_by_signature, prepare_layer_norms, quantize_static)
from .outliers import no_outlier_dimension, residual_split, split_ffn_outliers, unpadded_inputs
from .runtime import ExportError, ParityReport, SeqLenPolicy, pad_row, quiet_native_output, tokenize
from .tflite_metadata import with_metadata

QUANTIZATIONS = ("none", "int8", INT16X8, INT8_STATIC)
RECIPES = {"none": "fp32",
           "int8": "litert_torch quant_recipes.full_dynamic_recipe (int8 weights incl. embeddings, float activations)",
           INT16X8: f"ai-edge-quantizer static 16x8: int16 activations, int8 per-channel weights, every op the "
                    f"quantizer takes; embedding gathers int8 weights with float output; outputs dequantized to float32; "
                    f"padding masked by a -{MASK_BIAS:g} bias",
           INT8_STATIC: f"ai-edge-quantizer static int8: int8 activations and per-channel weights for every op but "
                        f"LayerNorm, Add & Norm, attention matmuls, softmax and GELU, which are in float (ExecuTorch's "
                        f"int8-static rule); FFN outlier channels split off; embedding gathers int8 weights with "
                        f"float output; padding masked by a -{MASK_BIAS:g} bias"}


def export_tflite(model_dir: str | Path, out_path: str | Path, *, quantization: str = "none",
                  policy: SeqLenPolicy | None = None, texts: list[str] | None = None,
                  text_pairs: list[str] | None = None, seq_len: int | None = None,
                  fmt: str = "tflite", keep_mask: bool = False, calibration_texts: list[str] | None = None,
                  calibration_text_pairs: list[str] | None = None, calibration_size: int = 128,
                  weight_rounding: str = "nearest", calibration_ranges: str | None = None,
                  layer_norm_rewrite: bool = True, outlier_dims: str = "off") -> ExportResult:
    """Convert a sequence classifier to .tflite and check it against eager PyTorch.

    Args:
        model_dir: HF sequence-classifier directory (e.g. a distilled student).
        out_path: the .tflite file to write (atomically: temp file, then rename).
        quantization: "none" (fp32), "int8" (dynamic range, embeddings included), "int16x8"
            (full-integer, int16 activations calibrated on `calibration_texts`; litert_static.py) or
            "int8-static" (static int8 activations calibrated on `calibration_texts`; the ops
            ExecuTorch's int8-static leaves in fp32 (LayerNorm, Add & Norm, attention matmuls,
            softmax, GELU) in float; the FFN outlier channels split off on the same texts;
            litert_static.py).
        policy: sequence-length policy (default fixed 128; "dynamic" is refused, see module doc).
        texts: inputs for the parity check (default: three built-in sentences).
        text_pairs: second segments for pair tasks, aligned with texts.
        seq_len: shorthand for a fixed policy of that length.
        fmt: "tflite", or "mediapipe" (fixed length only: one subgraph, which MediaPipe needs).
        keep_mask: mask padding after the softmax (keep_mask_attention) instead of adding a
            -3.4e38 bias to the scores: the graph static quantization needs (same outputs).
        calibration_texts, calibration_text_pairs: real texts (not the validation texts) that
            calibrate int16x8's and int8-static's activation ranges and GPTQ's Hessians; `calibration_size` of them
            are used (a seeded sample when there are more).
        weight_rounding: "nearest" or "gptq" (int8, int16x8 and int8-static; after int8-static's
            FFN outlier split).
        calibration_ranges: int16x8's and int8-static's range rule, "minmax", "ema" or "histogram"
            (litert_static.calibrate_ranges); None: the scheme's own (int8-static "histogram",
            int16x8 "minmax").
        layer_norm_rewrite: int16x8 only: split each LayerNorm's variance and rsqrt for int16
            (litert_static.prepare_layer_norms; the same function in float). False: the plain
            LayerNorm, for comparison.
        outlier_dims: int8-static only: "split" gives the residual stream's outlier dimensions
            their own ranges as ExecuTorch's int8-static does (outliers.py; the joins in float,
            litert_static.is_split_join_scope), "off" (default) not.

    Returns:
        ExportResult with the parity report (on probabilities) through the ai-edge-litert runtime.

    Raises:
        ExportError: unknown quantization, bad policy, missing runtime, a failed conversion,
            int16x8/int8-static/gptq with fewer calibration texts than `calibration_size`, an
            unknown `calibration_ranges` ("histogram" included for int16x8), or GPTQ calibration
            activations that are not finite.
        tinybert_edge.errors.ModelError: the directory is not a BERT-family classifier.
    """
    if quantization not in QUANTIZATIONS:
        raise ExportError(f"unknown quantization {quantization!r} for tflite; use one of {', '.join(QUANTIZATIONS)}")
    policy = policy or SeqLenPolicy.make(seq_len or 128)
    if policy.kind == "dynamic":
        raise ExportError("litert-torch 0.10.0 cannot convert a dynamic sequence length for BERT; "
                          "use --buckets 32,64,128 for a length-aware .tflite")
    if fmt == "mediapipe" and policy.kind != "fixed":
        raise ExportError("MediaPipe's TextClassifier loads single-signature models only: export the mediapipe "
                          "format with a fixed --seq-len (the tflite format takes --buckets)")
    check_weight_rounding(weight_rounding, quantization, ("int8", INT16X8, INT8_STATIC))
    if outlier_dims not in ("split", "off"):
        raise ExportError(f"--outlier-dims {outlier_dims!r} is not offered for tflite; use split or off")
    if outlier_dims == "split" and (quantization != INT8_STATIC or weight_rounding != "nearest"):
        raise ExportError("--outlier-dims split applies to --quantize int8-static with --weight-rounding nearest "
                          f"(here: {quantization}, {weight_rounding})")
    calibration_ranges = check_ranges(calibration_ranges, quantization)  # before the conversion, not after it
    if keep_mask and quantization in STATIC_SCHEMES:
        raise ExportError(f"{quantization} masks padding with a bounded additive bias (litert_static.MASK_BIAS); "
                          "keep_mask is for the probes' keep-mask graph, not this one")
    calibrating = quantization in STATIC_SCHEMES or weight_rounding == "gptq"
    if calibrating:
        calibration_texts, calibration_text_pairs = calibration_sample(
            calibration_texts, calibration_text_pairs, calibration_size,
            f"{quantization}'s activation ranges" if quantization in STATIC_SCHEMES else "GPTQ")
    out_path = Path(out_path)
    # int16x8: LayerNorm as MEAN/SUB/MUL/RSQRT (LayerNorm4d), which the quantizer all takes at
    # int16 (torch's layer_norm converts to a SQUARED_DIFFERENCE it leaves in float); int8-static:
    # the same form, whose ops litert_static.add_and_norm_scopes finds and leaves in float
    wrapper, tok, config = load_for_export(model_dir, probabilities=True, keep_mask=keep_mask,
                                           xnnpack=quantization in STATIC_SCHEMES,
                                           mask_bias=MASK_BIAS if quantization in STATIC_SCHEMES else None)
    # the artifact is held against the model as the user has it: -3.4e38 mask, weights unrounded
    reference_wrapper = load_for_export(model_dir, probabilities=True)[0] if calibrating else wrapper
    policy.check(config.max_position_embeddings)
    rows = tokenize(tok, texts or DEFAULT_TEXTS, text_pairs, policy.max_len)
    calibration_rows = tokenize(tok, calibration_texts, calibration_text_pairs, policy.max_len) if calibrating else []
    details: dict = {}
    t0 = time.perf_counter()
    # every calibration row, fitted to each signature's length, calibrates that signature
    calibration_feeds = {name: [_feed(sample_row([row], length, tok.sep_token_id), length, tok.pad_token_id)
                                for row in calibration_rows]
                         for name, length in signature_names(policy)} if quantization in STATIC_SCHEMES else {}
    if quantization == INT8_STATIC:
        # each text at its own length: padding's GELU outputs would count as channel maxima; the
        # activation form: a .tflite slice shares its input's quantized range, so each part needs
        # its own GELU output
        split_inputs = unpadded_inputs(calibration_rows, tok.pad_token_id)
        if outlier_dims == "split":
            # the slices read the float LayerNorm output, so each of the split's linears quantizes its
            # own slice (the slices, sums and placement stay float: litert_static.is_split_join_scope)
            found, details["ffn_outlier_split"] = residual_split(wrapper, split_inputs)
            if details["ffn_outlier_split"] is None:
                raise ExportError(f"--outlier-dims split: {no_outlier_dimension(found)}; export with --outlier-dims off")
            details["residual_outlier_split"] = {"mode": "split", **found, "applied": True}
        else:
            details["ffn_outlier_split"] = split_ffn_outliers(wrapper, split_inputs, form="activation")
    if weight_rounding == "gptq":
        # after the outlier split: each half of a split FFN linear gets its own per-channel grid
        details["weight_rounding"] = gptq_round_rows(wrapper, calibration_rows, tok.pad_token_id)
    layer_norms = {}
    if quantization == INT16X8 and layer_norm_rewrite:
        # on the rounded weights, which are what the artifact computes with
        layer_norms = prepare_layer_norms(
            wrapper, [tuple(torch.from_numpy(a.astype("int64")) for a in feed.values())
                      for feeds in calibration_feeds.values() for feed in feeds])
    try:
        with quiet_native_output():
            kwargs = {}
            if quantization == "int8":
                kwargs["quant_config"] = quant_recipes.full_dynamic_recipe()
            samples = {length: tuple(torch.from_numpy(a) for a in
                                     pad_row(*sample_row(rows, length, tok.sep_token_id), length, tok.pad_token_id))
                       for _, length in signature_names(policy)}
            if policy.kind == "buckets":
                builder = None
                for name, length in signature_names(policy):
                    builder = (litert_torch if builder is None else builder).signature(name, wrapper, samples[length])
                edge = builder.convert(**kwargs)
            else:
                edge = litert_torch.convert(wrapper, samples[policy.max_len], **kwargs)
            with tempfile.TemporaryDirectory() as tmp:
                staged = Path(tmp) / out_path.name
                edge.export(str(staged))
                data = staged.read_bytes()
    except ExportError as e:
        raise ExportError(f"LiteRT conversion of {model_dir} failed: {e}") from None
    if quantization in STATIC_SCHEMES:
        data = quantize_static(data, calibration_feeds, calibration_ranges, quantization)
        details["calibration"] = {"rows": len(calibration_rows), "ranges": calibration_ranges,
                                  **({"layer_norms": layer_norms} if quantization == INT16X8 else {})}
        details["ops_in_float"] = {sig: kinds.get("float32", {}) for sig, kinds in op_dtypes_by_signature(data).items()}
    labels = [config.id2label[i] for i in range(len(config.id2label))]
    vocab = "".join(t + "\n" for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1]))
    data = with_metadata(data, vocab, labels, policy.max_len, name=Path(str(model_dir)).name)
    write_bytes_atomically(out_path, data)
    seconds = time.perf_counter() - t0
    reference = eager_logits(reference_wrapper, rows, policy, tok.pad_token_id)
    candidate = LiteRTRunner(out_path, policy, pad_id=tok.pad_token_id).scores(rows)
    details.update({"params": sum(p.numel() for p in wrapper.parameters()), "runtime": "ai-edge-litert", "input_dtype": "int32",
               "outputs": "probabilities",
               "mediapipe": {"metadata": True, "signature": signature_names(policy)[0][0], "seq_len": policy.max_len,
                             "loadable": policy.kind == "fixed"},
               "recipe": RECIPES[quantization] + (
                   f"; residual outlier dimensions {details['residual_outlier_split']['dims']} their own ranges "
                   "(LayerNorm outputs read as two slices, FFN outputs written as two parts, joined in float)"
                   if "residual_outlier_split" in details else ""),
               "signatures": [{"name": n, "seq_len": length} for n, length in signature_names(policy)]})
    return ExportResult(fmt, quantization, out_path, out_path.stat().st_size, seconds, policy,
                        ParityReport.compare(reference, candidate), details, reference, candidate)


def _feed(row: tuple[list[int], list[int]], length: int, pad_id: int) -> dict:
    return {f"args_{i}": a.astype("int32") for i, a in enumerate(pad_row(*row, length, pad_id))}

