"""Which static int8 activations cost label agreement, with the PyTorch-simulated quantized graph.

Issue #14 asks for full-integer int8 (static activations) that keeps >= 99 % label agreement
with fp32. This script answers where post-training quantization loses it: the student is
exported as ExecuTorch's int8-static path exports it (keep-mask attention, XNNPACK quantizer,
static per-tensor activations, per-channel weights), calibrated on rows that are not scored, and
then scored with some operator groups left in fp32. The graph runs in PyTorch with its
quantize/dequantize pairs (convert_pt2e), so no runtime is involved: it shows the quantizer's
error, not a kernel's.

Usage:
    python -m benchmarks.scripts.int8_sensitivity --model runs/demo/student/model \
        --data dev.tsv [--seq-len 64] [--rows 400] [--calibration 128] [--smooth-alpha 0.8] \
        [--split-cls] [--split-outliers] [--out benchmarks/results/int8_sensitivity]
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import torch


def _module_path(node) -> str:
    return " ".join(v[0] for v in (node.meta.get("nn_module_stack") or {}).values())


def _is_ffn_output_path(path: str) -> bool:
    """A module path (a node's nn_module_stack, or a module name) inside an FFN output linear."""
    return "output.dense" in path and "attention" not in path


def _is_ffn_output(node) -> bool:
    return _is_ffn_output_path(_module_path(node))


def _is_linear(node) -> bool:
    return "linear" in str(node.target)


def _linear_group(node) -> str:
    """Which of the Transformer layer's linears a node belongs to (the rest: pooler, classifier)."""
    path = _module_path(node)
    if "attention" in path and any(k in path for k in ("query", "key", "value")):
        return "Q/K/V"
    if "attention" in path and "output.dense" in path:
        return "attention output"
    if "intermediate" in path:
        return "FFN input (intermediate)"
    if "output.dense" in path:
        return "FFN output"
    return "pooler and classifier"


def _is_layer_norm(node) -> bool:
    from tinybert_edge.converters.qat import is_layer_norm

    return is_layer_norm(node)


def _is_add_and_norm(node) -> bool:
    from tinybert_edge.converters.qat import is_add_and_norm

    return is_add_and_norm(node)


def _is_smoothing_mul(node) -> bool:
    stack = list((node.meta.get("nn_module_stack") or {}).values())
    return "mul" in str(node.target) and bool(stack) and "SmoothedLinear" in str(stack[-1][1])


def _is_attention_matmul(node) -> bool:
    """QK^T and probabilities x V (matmul/bmm, not the linears)."""
    return any(k in str(node.target) for k in ("matmul", "bmm"))


# name -> which annotated nodes stay quantized (the XNNPACK quantizer's filter function)
VARIANTS = {
    "every op the quantizer takes (LayerNorm included)": lambda n: True,
    "residual adds left fp32": lambda n: "add" not in str(n.target),
    "muls left fp32 (score scaling, softmax mask, LayerNorm)": lambda n: "mul" not in str(n.target),
    "FFN output linear left fp32 (its input is the GELU output)": lambda n: not _is_ffn_output(n),
    "linears only": _is_linear,
    "linears only, FFN output left fp32": lambda n: _is_linear(n) and not _is_ffn_output(n),
    "every op but LayerNorm (what int8-static exported from the fourth to the fifteenth sitting)": lambda n: not _is_layer_norm(n),
    # what the 2 to 3 points between "linears only" and "every op but LayerNorm" are made of
    "every op but LayerNorm and the residual adds (what int8-static exports now, with --split-outliers)":
        lambda n: not _is_layer_norm(n) and not _is_add_and_norm(n),
    "every op but LayerNorm and the attention matmuls": lambda n: not _is_layer_norm(n) and not _is_attention_matmul(n),
    "every op but LayerNorm and the muls": lambda n: not _is_layer_norm(n) and "mul" not in str(n.target),
    **{f"only the {g} linears": (lambda g: lambda n: _is_linear(n) and _linear_group(n) == g)(g)
       for g in ("Q/K/V", "attention output", "FFN input (intermediate)", "FFN output", "pooler and classifier")},
}


class SmoothedLinear(torch.nn.Module):
    """y = (W diag(s)) (x / s): the same function, with per-input-channel range moved from the
    activation into the weight (SmoothQuant, Xiao et al. 2023). In post-LN BERT the inputs of
    Q/K/V and the FFN are the residual stream and the FFN output's input is a GELU, so the 1/s
    cannot be folded into the op before; it stays an fp32 multiply, kept out of quantization."""

    def __init__(self, linear: torch.nn.Linear, s: torch.Tensor):
        super().__init__()
        self.linear = linear
        self.register_buffer("inv_s", 1.0 / s)
        with torch.no_grad():
            linear.weight.mul_(s[None, :])

    def forward(self, x):
        return self.linear(x * self.inv_s)


class ClsSplitLinear(torch.nn.Module):
    """The same linear applied to the [CLS] position and to the other positions separately, then
    concatenated: the same function, but a static quantizer now gives the two inputs (and outputs)
    their own per-tensor ranges. In this student the FFN output's input (a GELU output) reaches
    15-25 at [CLS] and about 2 elsewhere, so one range for all tokens leaves the words a few
    int8 steps. Slices and a concatenation are integer ops: the graph stays full-integer."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.linear = linear

    def forward(self, x):
        return torch.cat([self.linear(x[:, :1]), self.linear(x[:, 1:])], dim=1)


def split_cls_ffn_outputs(model: torch.nn.Module) -> int:
    """Wrap every Transformer layer's FFN output linear (`*.output.dense` outside attention) in a
    ClsSplitLinear, in place.

    Returns:
        How many linears were wrapped.
    """
    modules = dict(model.named_modules())
    names = [n for n, m in modules.items() if isinstance(m, torch.nn.Linear) and n.endswith("output.dense")
             and _is_ffn_output_path(n)]
    for name in names:
        parent, _, child = name.rpartition(".")
        setattr(modules[parent], child, ClsSplitLinear(modules[name]))
    return len(names)


def smooth_linears(model: torch.nn.Module, calibration: list[tuple], alpha: float) -> torch.nn.Module:
    """Replace every nn.Linear of `model` (in place) by a SmoothedLinear with
    s_j = max|x_j|^alpha / max|W_:,j|^(1 - alpha), x's ranges measured on `calibration` inputs.

    Args:
        model: the classifier wrapper (its forward takes each calibration tuple).
        calibration: model inputs that measure the activation ranges.
        alpha: migration strength in [0, 1] (0: s = 1/max|W|, 1: s = max|x|).

    Returns:
        `model`, whose fp32 outputs are unchanged up to rounding.
    """
    from tinybert_edge.converters.outliers import input_channel_max

    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    amax, _ = input_channel_max(model, linears, calibration)
    modules = dict(model.named_modules())
    for name, m in linears:
        w = m.weight.detach().abs().amax(0).clamp(min=1e-5)
        s = (amax[name].clamp(min=1e-5) ** alpha / w ** (1 - alpha)).clamp(1e-2, 1e2)
        parent, _, child = name.rpartition(".")
        setattr(modules[parent], child, SmoothedLinear(m, s))
    return model


def measure(model: Path, data: Path, seq_len: int, rows: int, calibration: int,
            smooth_alpha: float | None = None, split_cls: bool = False, only: list[str] | None = None,
            split_outliers: bool = False) -> dict:
    """Label agreement and max |logit difference| vs fp32 of each variant on the first `rows` rows.

    Args:
        smooth_alpha: first apply SmoothQuant-style smoothing of every linear's input
            (smooth_linears) with this alpha, calibrated on the calibration rows; None: no smoothing.
        split_cls: give the FFN output linears' [CLS] row its own static range (ClsSplitLinear).
        split_outliers: first split each FFN output linear's outlier input channels off into their
            own linear (converters.outliers.split_ffn_outliers, what int8-static exports), found on the
            calibration rows.
        only: run only the variants whose name contains one of these strings (None: all).

    Raises:
        tinybert_edge.errors.DataError: fewer than rows + calibration examples in `data`.
        tinybert_edge.errors.ConfigError: `only` matches no variant.
    """
    from executorch.backends.xnnpack.quantizer import xnnpack_quantizer as xq
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from tinybert_edge.benchmarks.harness import machine_info
    from tinybert_edge.converters.export import load_for_export, read_validation_data
    from tinybert_edge.converters.runtime import pad_row, tokenize
    from tinybert_edge.errors import ConfigError, DataError

    variants = {k: v for k, v in VARIANTS.items() if not only or any(o in k for o in only)}
    if not variants:
        raise ConfigError(f"--variants {', '.join(only)} matches none of: {'; '.join(VARIANTS)}")
    wrapper, tok, config = load_for_export(model, xnnpack=True, keep_mask=True)
    texts, pairs, _ = read_validation_data(data, config)
    if len(texts) < rows + calibration:
        raise DataError(f"{data} has {len(texts)} examples; --rows {rows} + --calibration {calibration} need more "
                        "(lower them)")
    encoded = tokenize(tok, texts, pairs, seq_len)
    inputs = [tuple(torch.from_numpy(a) for a in pad_row(i, t, seq_len, tok.pad_token_id)) for i, t in encoded]
    with torch.no_grad():
        reference = torch.cat([wrapper(*x) for x in inputs[:rows]])
    if smooth_alpha is not None:
        smooth_linears(wrapper, inputs[rows:rows + calibration], smooth_alpha)
    if split_cls:
        split_cls_ffn_outputs(wrapper)
    if split_outliers:
        from tinybert_edge.converters.outliers import split_ffn_outliers

        split_ffn_outliers(wrapper, inputs[rows:rows + calibration])  # checks the fp32 function is kept
    exported = torch.export.export(wrapper, inputs[0])
    results = []
    for name, keep in variants.items():
        quantizer = xq.XNNPACKQuantizer().set_global(
            xq.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
        # the smoothing multiplies stay fp32 (they carry the per-channel 1/s), like LayerNorm
        quantizer.set_filter_function(lambda n, keep=keep: keep(n) and not _is_smoothing_mul(n))
        prepared = prepare_pt2e(exported.module(), quantizer)
        with torch.no_grad():
            for x in inputs[rows:rows + calibration]:  # calibrated on rows that are not scored
                prepared(*x)
            quantized = convert_pt2e(prepared)
            out = torch.cat([quantized(*x) for x in inputs[:rows]])
        agreement = float((out.argmax(-1) == reference.argmax(-1)).float().mean())
        results.append({"variant": name, "label_agreement": agreement,
                        "max_abs_logit_diff": float((out - reference).abs().max())})
        print(f"{name:62s} agreement {100 * agreement:6.2f} %", flush=True)
    return {"schema": "tinybert-edge/int8-sensitivity", "date": date.today().isoformat(),
            "machine": machine_info()["cpu"], "model": str(model), "data": str(data),
            "seq_len": seq_len, "rows": rows, "calibration_rows": calibration, "smooth_alpha": smooth_alpha,
            "split_cls": split_cls, "split_outliers": split_outliers,
            "torch": torch.__version__, "results": results}


def to_markdown(report: dict) -> str:
    lines = [f"Static int8 sensitivity, {report['rows']} rows of {Path(report['data']).name} scored, "
             f"{report['calibration_rows']} others calibrate, seq {report['seq_len']}, {report['date']}"
             + (f", linears smoothed (SmoothQuant, alpha {report['smooth_alpha']})"
                if report.get("smooth_alpha") is not None else "")
             + (", FFN output linears split at [CLS] (own static range)" if report.get("split_cls") else "")
             + (", FFN outlier channels split off (own static range)" if report.get("split_outliers") else ""),
             "", "| left in fp32 / quantized | label agreement | max abs logit diff |", "|---|---:|---:|"]
    for r in report["results"]:
        lines.append(f"| {r['variant']} | {100 * r['label_agreement']:.2f} % | {r['max_abs_logit_diff']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from tinybert_edge.errors import KitError
    from tinybert_edge.files import write_bytes_atomically, write_json_atomically

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="sequence-classifier directory")
    p.add_argument("--data", required=True, help="labelled file (e.g. the dev split)")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--rows", type=int, default=400, help="rows scored")
    p.add_argument("--calibration", type=int, default=128, help="other rows that calibrate the ranges")
    p.add_argument("--smooth-alpha", type=float, default=None,
                   help="smooth every linear's input first (SmoothQuant migration strength, 0-1)")
    p.add_argument("--split-cls", action="store_true",
                   help="run each FFN output linear on the [CLS] row and the other rows separately "
                        "(own static ranges)")
    p.add_argument("--split-outliers", action="store_true",
                   help="split each FFN output linear's outlier input channels into their own linear first")
    p.add_argument("--variants", help="comma-separated parts of variant names to run (default: all)")
    p.add_argument("--threads", type=int, default=2, help="PyTorch threads")
    p.add_argument("--out", default="benchmarks/results/int8_sensitivity")
    a = p.parse_args(argv)
    if a.smooth_alpha is not None and not 0.0 <= a.smooth_alpha <= 1.0:
        p.error(f"--smooth-alpha {a.smooth_alpha}: use a value from 0 to 1")
    torch.set_num_threads(max(1, a.threads))
    try:
        report = measure(Path(a.model), Path(a.data), a.seq_len, a.rows, a.calibration, a.smooth_alpha, a.split_cls,
                         [v.strip() for v in a.variants.split(",") if v.strip()] if a.variants else None,
                         a.split_outliers)
    except KitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomically(out / "int8_sensitivity.json", report)
    write_bytes_atomically(out / "int8_sensitivity.md", to_markdown(report).encode())
    print(f"wrote {out}/int8_sensitivity.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
