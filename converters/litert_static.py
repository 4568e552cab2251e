"""Full-integer LiteRT: int16 activations with int8 weights ("16x8"), through ai-edge-quantizer.

Why 16x8 and not int8 activations: on TinyBERT students static int8 activations lose 2-8 points
of label agreement in the ops between the linears (the GELU output feeding each FFN output
linear, LayerNorm, the residual adds; BENCHMARKS.md "int8 sensitivity"), while int16
activations with int8 weights kept 99.17-99.50 % on the full-profile student (BENCHMARKS.md,
"Full-integer LiteRT"). TFLite's 16x8 kernels are what Qualcomm's, MediaTek's and Arm's NPU
delegates take for full-integer transformers. On a CPU they run the reference int16 kernels and
are far slower than dynamic int8 (about 100x on the Intel Xeon): 16x8 is for accelerators.

What this module does to the converted fp32 .tflite:
- every op the quantizer takes runs at int16 activations, with int8 per-channel weights;
- the embedding tables are int8 weights whose gathers output float (then QUANTIZE), because
  the quantizer has no integer gather for a 30k-row table feeding int16;
- the graph outputs are dequantized (one DEQUANTIZE after the int16 softmax), so the
  artifact's output is float32 probabilities like every other .tflite of the kit, and apps read
  it unchanged;
- padding is masked by a bounded additive bias (MASK_BIAS, made by the exporter's wrapper)
  instead of -3.4e38, so one int16 range can hold the scores and the bias.

Activation ranges come from calibration rows run through the fp32 .tflite (ai-edge-quantizer's
moving average of each row's min/max), on texts other than the ones the artifact is validated on.
"""

from __future__ import annotations

from collections import Counter

from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter
from ai_edge_litert.tools import flatbuffer_utils
from ai_edge_quantizer import algorithm_manager, calibrator, qtyping, quantizer, recipe_manager
from ai_edge_quantizer.utils import qsv_utils

from .runtime import ExportError, quiet_native_output

INT16X8 = "int16x8"

# A padded key gets exp(-20) = 2e-9 of the softmax weight it would have had without the mask:
# negligible as long as padded keys do not outscore the real ones by ~10 (they are [PAD] tokens,
# and validation against the -3.4e38 model would show it if they did), and small enough that an
# int16 range of about [-25, 5] for the scores keeps a step near 1e-3 (a -3.4e38 bias would put
# every score of a padded row on one step).
MASK_BIAS = 20.0


def int16x8_recipe() -> recipe_manager.RecipeManager:
    """The ai-edge-quantizer recipe of the module doc (by op kind, so it fits any BERT .tflite).

    Returns:
        A RecipeManager (its get_quantization_recipe() is what Quantizer takes).
    """
    op = qtyping.TFLOperationName
    rm = recipe_manager.RecipeManager()
    rm.add_static_config(regex=".*", operation_name=op.ALL_SUPPORTED, activation_num_bits=16, weight_num_bits=8)
    rm.add_dynamic_config(regex=".*", operation_name=op.EMBEDDING_LOOKUP, num_bits=8)
    # the graph outputs stay float: the quantizer ends each signature with a DEQUANTIZE
    rm.add_quantization_config(regex=".*", operation_name=op.OUTPUT,
                               algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)
    return rm


RANGES = ("minmax", "ema")


def check_ranges(ranges: str) -> None:
    """Raises ExportError unless `ranges` is one of RANGES (see calibrate_ranges)."""
    if ranges not in RANGES:
        raise ExportError(f"unknown calibration ranges {ranges!r}; use one of {', '.join(RANGES)}")


def calibrate_ranges(float_model: bytes, recipe: recipe_manager.RecipeManager, calibration: dict[str, list[dict]],
                     ranges: str) -> dict:
    """Activation ranges (ai-edge-quantizer QSVs) of `float_model`'s tensors over the calibration rows.

    Args:
        float_model: the fp32 .tflite.
        recipe: the RecipeManager the model will be quantized with (it says which tensors need ranges).
        calibration: {signature name: [feeds]}.
        ranges: "minmax": the envelope of every row (no activation is clipped); "ema":
            ai-edge-quantizer's default moving average (0.95 old + 0.05 new per row), which clips
            rows beyond the average, the logits included.

    Returns:
        {tensor name: QSV}, what Quantizer.quantize takes.

    Raises:
        ExportError: an unknown `ranges`.
    """
    check_ranges(ranges)
    # Quantizer.calibrate has no option for the update rule; the Calibrator it wraps has
    update = {"qsv_update_func": qsv_utils.min_max_update} if ranges == "minmax" else {}
    cal = calibrator.Calibrator(float_model, num_threads=1, **update)
    cal.calibrate(calibration, recipe)
    return cal.get_model_qsvs()


def quantize_int16x8(float_model: bytes, calibration: dict[str, list[dict]], ranges: str = "minmax") -> bytes:
    """Quantize an fp32 .tflite to 16x8 with ranges from real calibration rows.

    Args:
        float_model: the fp32 .tflite (bounded mask bias, see MASK_BIAS), all its signatures.
        calibration: {signature name: [feeds]}, a feed being {"args_0": int32 (1, L), ...} of that
            signature's length; every signature needs at least one row.
        ranges: how the rows' ranges combine, "minmax" or "ema" (see calibrate_ranges).

    Returns:
        The quantized .tflite bytes (no metadata; the caller adds it).

    Raises:
        ExportError: a signature without calibration rows, or a failed quantization.
    """
    missing = [k for k in Interpreter(model_content=float_model).get_signature_list() if not calibration.get(k)]
    if missing:
        raise ExportError(f"no calibration rows for signature(s) {', '.join(missing)}: pass --calibration-data TRAIN")
    check_ranges(ranges)
    rm = int16x8_recipe()
    q = quantizer.Quantizer(float_model, rm.get_quantization_recipe())
    try:
        with quiet_native_output("quantization"):
            qsvs = calibrate_ranges(float_model, rm, calibration, ranges)
            return bytes(q.quantize(qsvs, enable_progress_report=False).quantized_model)
    except Exception as e:  # noqa: BLE001 (a third-party failure of any kind is one clear error, exit 2)
        raise ExportError(f"ai-edge-quantizer could not quantize the model to {INT16X8}: "
                          f"{type(e).__name__}: {e}") from None


def op_dtypes_by_signature(model: bytes) -> dict[str, dict[str, dict[str, int]]]:
    """What each signature computes in: the output dtype of every op of its subgraph.

    An op whose output is float32 computes in float (DEQUANTIZE included); int8/int16 is the
    activation width it runs at. (The interpreter's op listing covers the first subgraph only,
    so this reads the flatbuffer.)

    Args:
        model: a .tflite file's bytes.

    Returns:
        {signature: {dtype name ("float32", "int16", ...): {op name: count}}}.

    Raises:
        Whatever ai_edge_litert's flatbuffer reader raises on bytes that are not a .tflite.
    """
    ops = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    dtypes = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    m = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    out = {}
    for sig in m.signatureDefs:
        graph = m.subgraphs[sig.subgraphIndex]
        counts: dict[str, Counter] = {}
        for op in graph.operators:
            code = m.operatorCodes[op.opcodeIndex]
            name = ops.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
            counts.setdefault(dtypes[graph.tensors[op.outputs[0]].type], Counter())[name] += 1
        key = sig.signatureKey.decode() if isinstance(sig.signatureKey, bytes) else sig.signatureKey
        out[key] = {k: dict(sorted(v.items())) for k, v in sorted(counts.items())}
    return out
