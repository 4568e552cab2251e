"""Static LiteRT quantization through ai-edge-quantizer: full-integer "int16x8" (int16 activations
with int8 weights) and "int8-static" (int8 activations and weights for every linear, the rest as
ExecuTorch's int8-static has it).

Why 16x8 is the full-integer path (int8-static below keeps float ops): on TinyBERT students
static int8 activations lose 2-8 points of label agreement in the ops between the linears (the GELU output feeding each FFN output
linear, LayerNorm, the residual adds; BENCHMARKS.md "int8 sensitivity"), while int16
activations with int8 weights kept 99.17-99.50 % on the full-profile student (BENCHMARKS.md,
"Full-integer LiteRT"). TFLite's 16x8 kernels are what Qualcomm's, MediaTek's and Arm's NPU
delegates take for full-integer transformers. On a CPU they run the reference int16 kernels and
are far slower than dynamic int8 (about 100x on the Intel Xeon): 16x8 is for accelerators.

What int16x8 does to the converted fp32 .tflite:
- every op the quantizer takes runs at int16 activations, with int8 per-channel weights;
- the embedding tables are int8 weights whose gathers output float (then QUANTIZE), because
  the quantizer has no integer gather for a 30k-row table feeding int16;
- the graph outputs are dequantized (one DEQUANTIZE after the int16 softmax), so the
  artifact's output is float32 probabilities like every other .tflite of the kit, and apps read
  it unchanged;
- padding is masked by a bounded additive bias (MASK_BIAS, made by the exporter's wrapper)
  instead of -3.4e38, so one int16 range can hold the scores and the bias;
- each LayerNorm sums the squares of its outlier channels apart from the rest's, and takes
  rsqrt in pieces of its variance's range (prepare_layer_norms): the two places where one int16
  range per tensor lost the quick demo student its agreement.

"int8-static" is ExecuTorch's int8-static rule on a .tflite (int8_static_recipe): every op the
quantizer takes runs at static int8 activations except LayerNorm, the adds whose sum flows into it
(the residual "Add & Norm"), the attention matmuls, softmax and GELU, which compute in float as
ExecuTorch's XNNPACK quantizer leaves them in fp32 (FLOAT_OP_KINDS); every linear (Q/K/V, attention
output, both FFN linears, pooler, classifier) takes int8 inputs and weights. The FFN outlier
channels get their own linear and GELU first (outliers.split_ffn_outliers, the "activation" form:
slicing one GELU output would keep the outliers' range), and padding is masked by the same bounded
bias. Measured on the demo student at buckets 32/64/128: 99.20 % with histogram ranges (passed),
98.96 % with min/max, 96.64 % without the split, 98.64 % with every op but Add & Norm at int8
(BENCHMARKS.md, "int8-static for LiteRT" and "Both formats' int8-static pass at buckets").

Activation ranges come from calibration rows run through the fp32 .tflite, on texts other than the
ones the artifact is validated on: int16x8 takes the envelope of every row's min/max (the same rows
choose the LayerNorm rewrite); int8-static takes the range ExecuTorch's int8-static would, a
histogram observer's error-minimising clip over the real (unpadded) tokens (histogram_ranges).
"""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
import torch
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter
from ai_edge_litert.tools import flatbuffer_utils
from ai_edge_quantizer import algorithm_manager, calibrator, qtyping, quantizer, recipe_manager
from ai_edge_quantizer.utils import qsv_utils, tfl_interpreter_utils
from torchao.quantization.pt2e.observer import HistogramObserver

from .export import LayerNorm4d
from .runtime import ExportError, quiet_native_output

INT16X8 = "int16x8"
INT8_STATIC = "int8-static"
STATIC_SCHEMES = (INT16X8, INT8_STATIC)  # calibrated on --calibration-data, padding masked by MASK_BIAS

# A padded key gets exp(-20) = 2e-9 of the softmax weight it would have had without the mask:
# negligible as long as padded keys do not outscore the real ones by ~10 (they are [PAD] tokens,
# and validation against the -3.4e38 model would show it if they did), and small enough that an
# int16 range of about [-25, 5] for the scores keeps a step near 1e-3 (a -3.4e38 bias would put
# every score of a padded row on one step).
MASK_BIAS = 20.0
MASK_INPUT = "args_1"  # the attention-mask input of every signature (litert._feed: ids, mask, types)


# LayerNorm in 16x8 (prepare_layer_norms). Two int16 limits, both measured on the quick demo
# student (BENCHMARKS.md, "LayerNorm in int16"):
# - BERT-family models have a few outlier channels at LayerNorm inputs (Bondarenko et al., 2021,
#   "Understanding and Overcoming the Challenges of Efficient Transformer Quantization"): channel
#   76 reaches 195 after layer 0's FFN while the median channel's maximum is 2.2, so the squares'
#   int16 range is [0, 38000], a step of 1.16, and a token whose variance is 0.3 has its 312
#   squares rounded to 0 or 1.16. A channel is an outlier when its largest |x - mean| over the
#   calibration tokens is over OUTLIER_FACTOR times the median channel's (2, 4 and 8 were
#   measured); MAX_OUTLIER_CHANNELS bounds the split where no channel stands out.
# - TFLite's int16 RSQRT is accurate over a narrow input range only: over [0.2, 351] it is 15 %
#   off near 0.2, while the variances of one LayerNorm span [0.29, 123]. Pieces at most
#   RSQRT_PIECE_RATIO wide (hi / lo) keep every RSQRT's input within [1, 4].
OUTLIER_FACTOR = 4.0
MAX_OUTLIER_CHANNELS = 16
RSQRT_PIECE_RATIO = 4.0
MAX_RSQRT_PIECES = 8


def rsqrt_cuts(lo: float, hi: float, ratio: float = RSQRT_PIECE_RATIO) -> list[float]:
    """The cuts of LayerNorm4d.split_rsqrt for variances in [lo, hi].

    Args:
        lo, hi: the smallest and largest variance (+ eps) seen on the calibration rows.
        ratio: the widest piece, hi / lo of one piece.

    Returns:
        lo, lo*ratio, lo*ratio^2, ... below hi, rounded to 6 significant digits (what metadata.json
        records is what the graph uses); [] when one piece covers [lo, hi] (the plain rsqrt is then
        as accurate). At most MAX_RSQRT_PIECES: a variance near eps (a token whose hidden state is
        nearly constant) would otherwise add a piece per factor of `ratio` down to 1e-12, so lo is
        raised to hi / ratio^MAX_RSQRT_PIECES and anything below that rides on the first piece.

    Raises:
        ExportError: lo not positive, hi below lo, a bound not finite, or a ratio not over 1.
    """
    if not (0 < lo <= hi < math.inf and ratio > 1):
        raise ExportError(f"rsqrt pieces need 0 < lo <= hi (finite) and a ratio over 1, got lo={lo!r}, hi={hi!r}, "
                          f"ratio={ratio!r}")
    lo = max(lo, hi / ratio**MAX_RSQRT_PIECES)
    if hi <= ratio * lo:
        return []
    return [float(f"{lo * ratio**i:.6g}") for i in range(int(math.ceil(math.log(hi / lo, ratio))))]


def prepare_layer_norms(wrapper: torch.nn.Module, feeds: list[tuple[torch.Tensor, ...]],
                        factor: float | None = OUTLIER_FACTOR, rsqrt_ratio: float | None = RSQRT_PIECE_RATIO,
                        max_channels: int = MAX_OUTLIER_CHANNELS) -> dict[str, dict[str, list]]:
    """Rewrite each LayerNorm4d for int16 from calibration rows (the same function in float).

    Args:
        wrapper: the export wrapper, loaded with xnnpack=True (its LayerNorms are LayerNorm4d).
        feeds: the calibration rows as the graph sees them, (input_ids, attention_mask,
            token_type_ids) int64 tensors of shape (1, L), padding included (padded positions set
            the artifact's ranges too).
        factor: outlier threshold over the median channel's maximum (LayerNorm4d.split_variance);
            None: no channel is split off.
        rsqrt_ratio: the widest piece of the variance's range, hi/lo (LayerNorm4d.split_rsqrt);
            None: one rsqrt.
        max_channels: at most this many outlier channels per LayerNorm (the largest ones).

    Returns:
        {LayerNorm module name: {"outlier_channels": [...], "rsqrt_cuts": [...]}}, for metadata.

    Raises:
        ExportError: no feeds, a wrapper without LayerNorm4d modules, a factor not over 1 (which
            would call half the channels outliers) or a ratio not over 1.
    """
    for name, value in (("outlier factor", factor), ("rsqrt piece ratio", rsqrt_ratio)):
        if value is not None and not value > 1:
            raise ExportError(f"LayerNorm {name} {value!r}: use a number over 1")
    norms = [(name, m) for name, m in wrapper.named_modules() if isinstance(m, LayerNorm4d)]
    if not feeds or not norms:
        raise ExportError("the int16 LayerNorm rewrite needs calibration rows and a wrapper loaded with xnnpack=True")
    peak: dict[str, torch.Tensor] = {}
    var_range: dict[str, tuple[float, float]] = {}

    def record(name, eps):
        def hook(_module, inputs):
            x = inputs[0].detach().float()
            if not torch.isfinite(x).all():
                raise ExportError(f"{name} received non-finite values on a calibration row; check the model's "
                                  "weights (a corrupted or diverged checkpoint)")
            centred = x - x.mean(-1, keepdim=True)
            m = centred.abs().reshape(-1, x.shape[-1]).amax(0)
            peak[name] = m if name not in peak else torch.maximum(peak[name], m)
            v = (centred * centred).mean(-1) + eps
            lo, hi = var_range.get(name, (float("inf"), 0.0))
            var_range[name] = (min(lo, float(v.min())), max(hi, float(v.max())))
        return hook

    for _, m in norms:  # measure the plain form (the rewrites do not change the function)
        m.split_variance([])
        m.split_rsqrt([])
    handles = [m.register_forward_pre_hook(record(name, m.eps)) for name, m in norms]
    try:
        with torch.inference_mode():
            for feed in feeds:
                wrapper(*feed)
    finally:
        for h in handles:
            h.remove()
    chosen = {}
    unreached = [name for name, _ in norms if name not in peak]
    if unreached:
        raise ExportError(f"the calibration rows never reached {', '.join(unreached)}; the int16 LayerNorm rewrite "
                          "needs every LayerNorm on the path from the inputs to the logits")
    for name, m in norms:
        channels, cuts = [], []
        if factor is not None and peak[name].median() > 0:  # with most channels dead no channel stands out
            p = peak[name]
            over = torch.nonzero(p > factor * p.median()).flatten()
            channels = sorted(int(c) for c in over[torch.argsort(p[over], descending=True)][:max_channels])
        if rsqrt_ratio is not None:
            cuts = rsqrt_cuts(*var_range[name], rsqrt_ratio)
        m.split_variance(channels)
        m.split_rsqrt(cuts)
        chosen[name] = {"outlier_channels": channels, "rsqrt_cuts": cuts}
    return chosen


def _static_recipe(activation_bits: int, float_scopes: list[str] = (), float_inputs: bool = False):
    """Static activations of `activation_bits` and int8 per-channel weights for every op the
    quantizer takes, by op kind (so it fits any BERT .tflite); the ops named in `float_scopes` in
    float (a later config wins where its regex matches; a scope ends in ';'); the embedding tables
    int8 weights with float output; the graph outputs float (the quantizer ends each signature
    with a DEQUANTIZE) and, with float_inputs, float graph inputs too."""
    op = qtyping.TFLOperationName
    rm = recipe_manager.RecipeManager()
    rm.add_static_config(regex=".*", operation_name=op.ALL_SUPPORTED, activation_num_bits=activation_bits,
                         weight_num_bits=8)
    if float_scopes:
        rm.add_quantization_config(regex="^(" + "|".join(re.escape(s) for s in float_scopes) + ");$",
                                   operation_name=op.ALL_SUPPORTED,
                                   algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)
    rm.add_dynamic_config(regex=".*", operation_name=op.EMBEDDING_LOOKUP, num_bits=8)
    for end in (op.INPUT, op.OUTPUT) if float_inputs else (op.OUTPUT,):
        rm.add_quantization_config(regex=".*", operation_name=end, algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)
    return rm


def int16x8_recipe() -> recipe_manager.RecipeManager:
    """The ai-edge-quantizer recipe of the module doc: every op at int16 activations.

    Returns:
        A RecipeManager (its get_quantization_recipe() is what Quantizer takes).
    """
    return _static_recipe(16)


_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def _text(value) -> str:
    """A flatbuffer string (tensor name, signature key): bytes or str depending on the reader."""
    return value.decode() if isinstance(value, bytes) else value


def _op_kind(model, op) -> str:
    """The builtin name of a flatbuffer op ("ADD", ...; "CUSTOM" for others)."""
    code = model.operatorCodes[op.opcodeIndex]
    return _OP_NAMES.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")


# LayerNorm4d's ops carry its module path in their output tensor names (litert-torch names a
# tensor after the module that made it); the first ';'-separated part is the op's own module
LAYER_NORM_SCOPE = "LayerNorm4d"


# What ExecuTorch's XNNPACK quantizer leaves unannotated in int8-static (it computes them in fp32 on
# int8-rounded inputs): the attention's batch matmuls, the softmax and GELU. LiteRT's int8-static
# leaves them in float too, so both formats' int8-static are the same scheme.
FLOAT_OP_KINDS = ("BATCH_MATMUL", "SOFTMAX", "GELU")

# The residual outlier split's joins (outliers.ResidualSplitLinear's slices and sum, RowSplitLinear's
# placement and sum) compute in float, as ExecuTorch's quantizer leaves them (qat.is_split_join); the
# split's own linears (torch Linear modules inside them; a one-column linear converts to a MUL) stay int8.
_SPLIT_MODULE = re.compile(r"\.outliers\.(ResidualSplitLinear|RowSplitLinear)_")
_TORCH_LINEAR = "torch.nn.modules.linear.Linear_"


# the op kinds a linear converts to: FULLY_CONNECTED, or MUL for a one-column linear
_LINEAR_KINDS = ("FULLY_CONNECTED", "MUL")


def is_split_join_scope(scope: str, kind: str) -> bool:
    """Whether a .tflite op (its output tensor's name, litert-torch's 'module path;...' with path
    segments 'class_attr', and its builtin kind) is a join of the residual outlier split, which
    computes in float: a slice or sum inside a split module, or the placement linear. A linear
    inside a split module stays int8 even when the converter names its output after the split
    module (a fused name's first part can be the enclosing module's)."""
    path = scope.split(";")[0].split("/")
    if not any(_SPLIT_MODULE.search(seg) for seg in path):
        return False
    if kind in _LINEAR_KINDS:
        return ".outliers.Placement_" in path[-1]
    return not path[-1].startswith(_TORCH_LINEAR)


def add_and_norm_scopes(model: bytes, op_kinds: tuple[str, ...] = ()) -> list[str]:
    """ai-edge-quantizer scopes (output tensor names) of every LayerNorm op, every Add & Norm add and
    every join of the residual outlier split (is_split_join_scope), and of every op of the kinds
    `op_kinds`.

    An Add & Norm add is an ADD outside LayerNorm whose sum flows, through ADDs and RESHAPEs only,
    into a LayerNorm op: the residual adds, the embeddings' sums before the first LayerNorm, and a
    split FFN output's two halves (the same rule as ExecuTorch's qat.is_add_and_norm). Read from
    the flatbuffer, every signature's subgraph.

    Args:
        model: an fp32 .tflite converted from a wrapper loaded with xnnpack=True (LayerNorm4d).
        op_kinds: TFLite builtin op names chosen as well (FLOAT_OP_KINDS for int8-static).

    Returns:
        The scope names, sorted.

    Raises:
        ExportError: no LayerNorm op found (not a wrapper with LayerNorm4d), or a tensor name that
            names a chosen op and another op (the names would select the wrong op).
    """
    m = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    chosen, others = set(), set()
    for graph in m.subgraphs:
        def name(t):
            return _text(graph.tensors[t].name)
        kinds, consumers = {}, {}
        for op in graph.operators:
            kinds[id(op)] = _op_kind(m, op)
            for t in op.inputs:
                consumers.setdefault(int(t), []).append(op)

        def in_layer_norm(op):
            return len(op.outputs) > 0 and LAYER_NORM_SCOPE in name(op.outputs[0]).split(";")[0]

        def feeds_layer_norm(t, depth=0):
            for user in consumers.get(int(t), []):
                if in_layer_norm(user):
                    return True
                if depth < 8 and kinds[id(user)] in ("ADD", "RESHAPE") and feeds_layer_norm(user.outputs[0], depth + 1):
                    return True
            return False

        for op in graph.operators:
            if not len(op.outputs):
                continue
            scope = name(op.outputs[0])
            if in_layer_norm(op) or kinds[id(op)] in op_kinds or is_split_join_scope(scope, kinds[id(op)]) or (
                    kinds[id(op)] == "ADD" and feeds_layer_norm(op.outputs[0])):
                chosen.add(scope)
            else:
                others.add(scope)
    if not any(LAYER_NORM_SCOPE in n.split(";")[0] for n in chosen):
        raise ExportError("no LayerNorm op in this .tflite; int8-static needs the model converted with LayerNorm as "
                          "LayerNorm4d (load_for_export(..., xnnpack=True))")
    both = chosen & others
    if both:
        raise ExportError(f"tensor name {sorted(both)[0]!r} names both an op int8-static keeps in float and another "
                          "op in this .tflite, so the quantizer cannot tell them apart; export this model with "
                          "--quantize int8 or int16x8 instead")
    return sorted(chosen)


def int8_static_recipe(float_scopes: list[str]) -> recipe_manager.RecipeManager:
    """Static int8 activations and int8 per-channel weights for every op the quantizer takes,
    except the ops named in `float_scopes`, which compute in float (the quantizer puts a
    DEQUANTIZE before them and a QUANTIZE after). Float graph inputs stay float (the kit's inputs
    are int32 ids; a float input is a probe's).

    Args:
        float_scopes: ai-edge-quantizer scopes (add_and_norm_scopes).

    Returns:
        A RecipeManager.
    """
    return _static_recipe(8, float_scopes, float_inputs=True)


RANGES = ("minmax", "ema", "histogram")
# int8-static takes ExecuTorch's histogram ranges (98.96 % -> 99.20 % on the demo student, BENCHMARKS.md);
# int16x8 keeps min/max, with which it was measured (its 65,536 steps need no clipping)
DEFAULT_RANGES = {INT16X8: "minmax", INT8_STATIC: "histogram"}


def check_ranges(ranges: str | None, scheme: str | None = None) -> str:
    """The range rule to use: `ranges`, or `scheme`'s default (DEFAULT_RANGES) when None.

    Args:
        ranges: a rule of RANGES, or None.
        scheme: the static scheme (INT16X8, INT8_STATIC) or None (no scheme-specific check).

    Returns:
        The rule.

    Raises:
        ExportError: a rule not in RANGES, or "histogram" for int16x8 (its observer picks int8 ranges).
    """
    if ranges is None:
        return DEFAULT_RANGES.get(scheme, "minmax")
    if ranges not in RANGES:
        raise ExportError(f"unknown calibration ranges {ranges!r}; use one of {', '.join(RANGES)}")
    if ranges == "histogram" and scheme == INT16X8:
        raise ExportError("histogram ranges are chosen for int8 activations; int16x8 takes minmax or ema")
    return ranges


def calibrate_ranges(float_model: bytes, recipe: recipe_manager.RecipeManager, calibration: dict[str, list[dict]],
                     ranges: str) -> dict:
    """Activation ranges (ai-edge-quantizer QSVs) of `float_model`'s tensors over the calibration rows.

    Args:
        float_model: the fp32 .tflite.
        recipe: the RecipeManager the model will be quantized with (it says which tensors need ranges).
        calibration: {signature name: [feeds]}.
        ranges: "minmax": the envelope of every row (no activation is clipped); "ema":
            ai-edge-quantizer's default moving average (0.95 old + 0.05 new per row), which clips
            rows beyond the average, the logits included; "histogram": int8 ranges chosen over real
            tokens as ExecuTorch's int8-static chooses them (histogram_ranges).

    Returns:
        {tensor name: QSV}, what Quantizer.quantize takes.

    Raises:
        ExportError: an unknown `ranges`, or a histogram feed without its attention mask.
    """
    ranges = check_ranges(ranges)
    # Quantizer.calibrate has no option for the update rule; the Calibrator it wraps has
    update = {"qsv_update_func": qsv_utils.min_max_update} if ranges != "ema" else {}
    cal = calibrator.Calibrator(float_model, num_threads=1, **update)
    cal.calibrate(calibration, recipe)
    qsvs = cal.get_model_qsvs()
    if ranges == "histogram":
        qsvs = histogram_ranges(float_model, calibration, qsvs)
    return qsvs


def mask_bias_tensors(model: bytes) -> set[str]:
    """Names of the tensors that carry the padding mask's bias: everything computed from the
    attention-mask input (the bias itself, each layer's scores plus bias) up to, not through, the
    softmax. Read from the flatbuffer, every signature.

    Args:
        model: an fp32 .tflite of the kit's wrapper (signature inputs args_0 ids, args_1 mask,
            args_2 token types).

    Returns:
        The tensor names.
    """
    m = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    names = set()
    for sig in m.signatureDefs:
        graph = m.subgraphs[sig.subgraphIndex]
        reached = {int(t.tensorIndex) for t in sig.inputs if _text(t.name) == MASK_INPUT}
        for op in graph.operators:  # flatbuffer order is an execution order
            if _op_kind(m, op) != "SOFTMAX" and any(int(t) in reached for t in op.inputs):
                reached.update(int(t) for t in op.outputs)
        names.update(_text(graph.tensors[t].name) for t in reached)
    return names


def real_tokens(x: np.ndarray, length: int, real: int) -> np.ndarray:
    """The part of an activation of a `length`-token signature that belongs to the first `real`
    (unpadded) tokens, where its token axes are unambiguous.

    A tensor with one axis of size `length`, not the last, has that axis as its tokens ((1, L, H),
    (h, L, d), (1, L, 1, H)); one whose last two axes (and only those) are `length`, behind a
    heads axis, is a score tensor (queries x keys: (h, L, L), (1, h, L, L)), cut on both. Any
    other tensor is returned whole: where a head count or a width equals `length` ((1, L, L) is a
    hidden state of width L as well as one head's scores) the token axis cannot be told apart,
    and cutting the wrong axis would leave heads or channels unobserved.

    Args:
        x: the tensor's value for one row.
        length: the signature's sequence length.
        real: how many leading tokens are real (the attention mask's sum).

    Returns:
        The real tokens' values (a view or a copy; `x` itself when nothing is cut).
    """
    axes = [i for i, d in enumerate(x.shape) if d == length]
    if len(axes) == 1 and axes[0] != x.ndim - 1:
        return np.take(x, np.arange(real), axis=axes[0])
    if axes == [x.ndim - 2, x.ndim - 1] and math.prod(x.shape[:-2]) > 1:
        return x[..., :real, :real]
    return x


def histogram_ranges(float_model: bytes, calibration: dict[str, list[dict]], qsvs: dict) -> dict:
    """int8 ranges chosen as ExecuTorch's int8-static chooses them: XNNPACK's quantizer observes
    each activation with a histogram observer that clips the range where that lowers the int8
    rounding error over the values seen; min/max keeps every outlier, and spends the 256 steps of
    a tensor on a few values. Only real tokens count (real_tokens): a padded position's activations
    are thrown away by the mask, and at bucketed lengths they are most of the values (58 % at 64
    tokens on Rotten Tomatoes), so they would set the ranges (the same defect ExecuTorch's
    int8-static had at buckets). The mask-bias tensors (mask_bias_tensors) keep their min/max:
    clipping the bias would let padding back into the softmax. A tensor name is shared by every
    signature's copy of that op, so all the signatures' feeds observe one range, as in
    ExecuTorch's one graph. The feeds are min/max's: every calibration row in every signature, cut
    to it where longer. (Each row once, in the signature it runs in, as ExecuTorch weighs rows,
    measured 99.04 % on the demo student against 99.20 % this way: two rows, no reason to prefer it.)

    Args:
        float_model: the fp32 .tflite.
        calibration: {signature name: [feeds]}, a feed being {"args_0": ids, "args_1": 0/1 mask,
            ...}, each of shape (1, L).
        qsvs: min/max QSVs of the tensors to quantize (calibrate_ranges), keyed by tensor name.

    Returns:
        The QSVs with each observed float tensor's min/max replaced by the histogram's range.

    Raises:
        ExportError: a feed without the attention-mask input args_1, or with more than one row.
    """
    interpreter = tfl_interpreter_utils.create_tfl_interpreter(float_model, use_xnnpack=True, num_threads=1,
                                                               preserve_all_tensors=True)
    observed = qsvs.keys() - mask_bias_tensors(float_model)
    observers: dict[str, HistogramObserver] = {}
    for key, feeds in calibration.items():
        subgraph = tfl_interpreter_utils.get_signature_main_subgraph_index(interpreter, key)
        # only the tensors to range, not every tensor (the embedding tables are 38 MB a copy)
        details = [d for d in interpreter.get_tensor_details(subgraph) if d["name"] in observed]
        for feed in feeds:
            mask = feed.get(MASK_INPUT)
            if mask is None or mask.ndim != 2 or mask.shape[0] != 1:
                raise ExportError(f"histogram ranges need each calibration feed's attention mask {MASK_INPUT} of shape "
                                  f"(1, L) to tell real tokens from padding; got {None if mask is None else mask.shape}")
            length, real = mask.shape[1], int(mask.sum())
            tfl_interpreter_utils.invoke_interpreter_signature(interpreter, feed, key)
            for d in details:
                x = interpreter.get_tensor(d["index"], subgraph)
                if x.dtype != np.float32:
                    continue
                if d["name"] not in observers:
                    observers[d["name"]] = HistogramObserver(dtype=torch.int8, qscheme=torch.per_tensor_affine,
                                                             quant_min=-128, quant_max=127, eps=2 ** -12)
                observers[d["name"]](torch.from_numpy(np.ascontiguousarray(real_tokens(x, length, real))))
    out = dict(qsvs)
    for name, observer in observers.items():
        scale, zero_point = (float(v) for v in observer.calculate_qparams())
        lo, hi = (-128 - zero_point) * scale, (127 - zero_point) * scale
        out[name] = {**qsvs[name], "min": np.full_like(qsvs[name]["min"], lo), "max": np.full_like(qsvs[name]["max"], hi)}
    return out


def quantize_static(float_model: bytes, calibration: dict[str, list[dict]], ranges: str | None = None,
                    scheme: str = INT16X8) -> bytes:
    """Quantize an fp32 .tflite to `scheme` with activation ranges from real calibration rows.

    Args:
        float_model: the fp32 .tflite (bounded mask bias, see MASK_BIAS), all its signatures.
        calibration: {signature name: [feeds]}, a feed being {"args_0": int32 (1, L), ...} of that
            signature's length; every signature needs at least one row.
        ranges: the range rule (see calibrate_ranges); None: the scheme's (DEFAULT_RANGES).
        scheme: INT16X8 (int16x8_recipe) or INT8_STATIC (int8_static_recipe: LayerNorm, Add & Norm
            and FLOAT_OP_KINDS in float; the float model must come from a LayerNorm4d wrapper).

    Returns:
        The quantized .tflite bytes (no metadata; the caller adds it).

    Raises:
        ExportError: a signature without calibration rows, an unknown scheme, an unknown range rule
            or "histogram" for int16x8, a histogram feed without its mask, or a failed quantization.
    """
    if scheme not in STATIC_SCHEMES:
        raise ExportError(f"unknown static LiteRT scheme {scheme!r}; use one of {', '.join(STATIC_SCHEMES)}")
    missing = [k for k in Interpreter(model_content=float_model).get_signature_list() if not calibration.get(k)]
    if missing:
        raise ExportError(f"no calibration rows for signature(s) {', '.join(missing)}: pass --calibration-data TRAIN")
    ranges = check_ranges(ranges, scheme)
    rm = int16x8_recipe() if scheme == INT16X8 else int8_static_recipe(add_and_norm_scopes(float_model,
                                                                                           FLOAT_OP_KINDS))
    q = quantizer.Quantizer(float_model, rm.get_quantization_recipe())
    try:
        with quiet_native_output("quantization"):
            qsvs = calibrate_ranges(float_model, rm, calibration, ranges)
            return bytes(q.quantize(qsvs, enable_progress_report=False).quantized_model)
    except ExportError:
        raise
    except Exception as e:  # noqa: BLE001 (a third-party failure of any kind is one clear error, exit 2)
        raise ExportError(f"ai-edge-quantizer could not quantize the model to {scheme}: "
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
    dtypes = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    m = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    out = {}
    for sig in m.signatureDefs:
        graph = m.subgraphs[sig.subgraphIndex]
        counts: dict[str, Counter] = {}
        for op in graph.operators:
            counts.setdefault(dtypes[graph.tensors[op.outputs[0]].type], Counter())[_op_kind(m, op)] += 1
        out[_text(sig.signatureKey)] = {k: dict(sorted(v.items())) for k, v in sorted(counts.items())}
    return out
