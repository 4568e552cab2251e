"""Full-integer LiteRT through ai-edge-quantizer: which activation widths keep label agreement?

Issue #14 asks for full-integer models (what NPUs and DSPs run) that keep >= 99 % label agreement
with fp32. litert-torch's PT2E route left 27 adds, the attention-value matmuls and LayerNorm in
float and agreed on 76 % (BENCHMARKS.md). ai-edge-quantizer, Google's post-training quantizer for
.tflite files (installed with litert-torch, which uses it for its own dynamic recipe), quantizes the
float .tflite itself, op by op, and also offers 16-bit activations with 8-bit weights (TFLite's
"16x8" kernels, which Qualcomm's and MediaTek's NPUs run). This probe converts the student to an
fp32 .tflite at one fixed length, quantizes it with several recipes, calibrates on real rows that
are not scored, runs every scored row through the ai-edge-litert runtime and reports, per recipe:
label agreement with the fp32 model (eager PyTorch), accuracy, size, which ops run at int16 and which still
compute in float, and p50
latency (one thread, one real row).

Usage:
    python -m benchmarks.scripts.litert_full_int --model runs/demo/student/model --data dev.tsv \
        [--seq-len 64] [--rows 600] [--calibration 128] [--recipes a8w8,a16w8] \
        [--out benchmarks/results/litert_full_int]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from datetime import date
from pathlib import Path

import numpy as np
import torch

# Which ops get which activation width: "a8" / "a16" is the static recipe for every op the
# quantizer takes; the "+ffn16" kinds lift only the FFN output linears (input: the GELU output,
# the one tensor static int8 cannot hold; see int8_sensitivity) and "+gelu16" the GELU as well.
RECIPES = {
    "dyn8": "dynamic int8: int8 weights, float activations (the recipe the kit ships)",
    "a8w8": "static int8 activations, int8 weights, every op the quantizer takes",
    "a8w8+ffn16": "static int8, but the FFN output linears at int16 activations",
    "a8w8+gelu16": "static int8, but GELU and the FFN output linears at int16 activations",
    "a16w8": "static int16 activations, int8 weights (16x8), every op the quantizer takes",
}


def ffn_output_scopes(model: bytes) -> tuple[list[str], list[str]]:
    """ai-edge-quantizer scope names (output tensor name + ';') of the FFN output linears and of
    the GELUs that feed them: the FULLY_CONNECTED ops whose input is a GELU's output.

    Raises:
        tinybert_edge.errors.ConfigError: the graph has no GELU -> FULLY_CONNECTED pair.
    """
    from ai_edge_litert.interpreter import Interpreter

    from tinybert_edge.errors import ConfigError

    interp = Interpreter(model_content=model)
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # the only API that lists ops with their tensors
    made_by = {o["outputs"][0]: o for o in ops if len(o["outputs"])}
    ffn, gelu = [], []
    for o in ops:
        if o["op_name"] == "FULLY_CONNECTED" and made_by.get(o["inputs"][0], {}).get("op_name") == "GELU":
            ffn.append(names[o["outputs"][0]] + ";")
            gelu.append(names[o["inputs"][0]] + ";")
    if not ffn:
        raise ConfigError("no FULLY_CONNECTED op takes a GELU output in this .tflite: not a BERT-family FFN")
    return ffn, gelu


def make_recipe(kind: str, ffn: list[str], gelu: list[str]):
    """An ai-edge-quantizer Quantizer's recipe for one of RECIPES (the embedding tables: int8
    weights with float output in every kind; the gathers feed a QUANTIZE in the static kinds)."""
    from ai_edge_quantizer import qtyping, recipe_manager

    op = qtyping.TFLOperationName
    rm = recipe_manager.RecipeManager()
    if kind == "dyn8":
        rm.add_dynamic_config(regex=".*", operation_name=op.ALL_SUPPORTED, num_bits=8)
        return rm.get_quantization_recipe()
    bits = 16 if kind == "a16w8" else 8
    rm.add_static_config(regex=".*", operation_name=op.ALL_SUPPORTED, activation_num_bits=bits, weight_num_bits=8)
    lifted = ffn if kind == "a8w8+ffn16" else ffn + gelu if kind == "a8w8+gelu16" else []
    if lifted:  # later configs win where their regex matches
        rm.add_static_config(regex="^(" + "|".join(lifted) + ")$", operation_name=op.ALL_SUPPORTED,
                             activation_num_bits=16, weight_num_bits=8)
    rm.add_dynamic_config(regex=".*", operation_name=op.EMBEDDING_LOOKUP, num_bits=8)
    return rm.get_quantization_recipe()


def op_dtypes(model: bytes) -> dict[str, dict[str, int]]:
    """{output dtype: {op name: count}} of the model's only signature (float32 = computes in float,
    DEQUANTIZE included; int8 / int16 = the activation width it runs at)."""
    from tinybert_edge.converters.litert_static import op_dtypes_by_signature

    (kinds,) = op_dtypes_by_signature(model).values()
    return kinds


# The keep-mask form divides the kept softmax weights by their sum. A static range for that sum
# rounds a short row's kept mass to zero when padding holds most of the softmax, and TFLite's int8
# DIV refuses a zero divisor (div.cc "data[i] != zero_point"). Flooring the sum at one int8 step of
# [0, 1] keeps the divisor non-zero; in fp32 it changes a row only where the kept mass is below
# 1/256, and the scores are held against the unmodified eager model anyway.
KEPT_MASS_FLOOR = 1.0 / 256


@contextmanager
def _probe_attention(mask: str, bias: float):
    """Patch the exporter's keep-mask attention, for this probe's conversion only.

    mask "keep": the renormalising divisor becomes max(sum of kept weights, KEPT_MASS_FLOOR).
    mask "bias": no renormalisation; padding gets a bounded additive bias of -`bias` on the
    scores (exp(-bias) of the mass it would have had), so one static range holds the scores and
    the bias together (the exporter's -3.4e38 bias cannot share a range with anything).
    """
    from tinybert_edge.converters import export as ex

    plain = ex._bmm_attention

    def patched(query, key, value, attention_mask, scaling, mask_after_softmax):
        if not mask_after_softmax or attention_mask is None:
            return plain(query, key, value, attention_mask, scaling, mask_after_softmax)
        b, h, t, d = query.shape
        q, k, v = (x.reshape(b * h, t, d) for x in (query, key, value))
        scores = torch.bmm(q, k.transpose(1, 2)).view(b, h, t, t) * (scaling if scaling is not None else d ** -0.5)
        if mask == "bias":
            weights = torch.nn.functional.softmax(scores + (attention_mask - 1.0) * bias, dim=-1)
        else:
            weights = torch.nn.functional.softmax(scores, dim=-1) * attention_mask
            weights = weights / weights.sum(dim=-1, keepdim=True).clamp_min(KEPT_MASS_FLOOR)
        return torch.bmm(weights.view(b * h, t, t), v).view(b, h, t, d).transpose(1, 2).contiguous(), None

    ex._bmm_attention = patched
    try:
        yield
    finally:
        ex._bmm_attention = plain


class _Runner:
    """One signature of a .tflite, inputs int32, the output dequantized to float."""

    def __init__(self, model: bytes, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(model_content=model, num_threads=threads)
        self.run_sig = self.interp.get_signature_runner()
        out = self.run_sig.get_output_details()
        self.out_name, detail = next(iter(out.items()))
        self.scale, self.zero = (detail["quantization"] if detail["dtype"] != np.float32 else (1.0, 0))

    def __call__(self, feed: dict) -> np.ndarray:
        out = self.run_sig(**feed)[self.out_name][0].astype(np.float64)
        return (out - self.zero) * self.scale if self.scale else out


def measure(model: Path, data: Path, seq_len: int, rows: int, calibration: int, kinds: list[str],
            timing_runs: int = 30, work: Path | None = None, mask: str = "keep", bias: float = 20.0,
            ranges: str = "ema", reference_model: Path | None = None) -> dict:
    """Quantize the student's fp32 .tflite with each recipe kind and score it against fp32.

    Args:
        model: sequence-classifier directory.
        data: labelled file; its first `rows` rows are scored, the next `calibration` calibrate.
        seq_len: the fixed length of the .tflite (rows are cut and padded to it).
        kinds: keys of RECIPES.
        timing_runs: runs per latency figure (one thread, the first scored row).
        work: where the .tflite files go (default: a temporary directory, removed).
        mask: "keep": padding masked after the softmax (keep_mask_attention, what static ranges
            need); "add": the -3.4e38 bias added to the scores (the graph the kit ships for
            dynamic int8), which then shares one static range with them; "bias": a bounded
            bias of -`bias` (see _probe_attention).
        ranges: how the calibration rows' ranges combine. "ema": ai-edge-quantizer's default, a
            moving average (0.95 old + 0.05 new per row), so the last ~20 rows weigh most and a
            rare extreme is clipped; "minmax": the min and max over every calibration row.
        reference_model: the fp32 model the labels are held against (default: `model`), e.g. the
            original student when `model` is its GPTQ-rounded copy (benchmarks/scripts/gptq_weights).

    Returns:
        The report dict (schema tinybert-edge/litert-full-int).

    Raises:
        tinybert_edge.errors.ConfigError: an unknown recipe kind.
        tinybert_edge.errors.DataError: fewer than rows + calibration examples in `data`.
    """
    from ai_edge_quantizer import quantizer

    from tinybert_edge.benchmarks.harness import machine_info
    from tinybert_edge.converters.export import load_for_export, read_validation_data
    from tinybert_edge.converters.litert import export_tflite
    from tinybert_edge.converters.runtime import pad_row, quiet_native_output, tokenize
    from tinybert_edge.errors import ConfigError, DataError

    unknown = [k for k in kinds if k not in RECIPES]
    if unknown or not kinds:
        raise ConfigError(f"--recipes {','.join(unknown) or '(none)'}: use some of {', '.join(RECIPES)}")
    _, tok, config = load_for_export(model)
    texts, pairs, gold = read_validation_data(data, config)
    if len(texts) < rows + calibration:
        raise DataError(f"{data} has {len(texts)} examples; --rows {rows} + --calibration {calibration} need more "
                        "(lower them)")
    encoded = tokenize(tok, texts[:rows + calibration], pairs[:rows + calibration] if pairs else None, seq_len)
    feeds = [{f"args_{i}": np.asarray(a, dtype=np.int32) for i, a in enumerate(pad_row(ids, types, seq_len,
                                                                                        tok.pad_token_id))}
             for ids, types in encoded]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        fp32_path = work / "fp32.tflite"
        print(f"converting {model} to an fp32 .tflite at {seq_len} tokens ...", flush=True)
        with _probe_attention(mask, bias) if mask != "add" else nullcontext():
            export_tflite(model, fp32_path, seq_len=seq_len, texts=texts[:3], keep_mask=mask != "add")
        float_model = fp32_path.read_bytes()
        ffn, gelu = ffn_output_scopes(float_model)
        fp32 = _Runner(float_model)
        # the reference is the unmodified model in eager PyTorch (additive mask), on the same rows
        wrapper, _, _ = load_for_export(reference_model or model, probabilities=True)
        with torch.no_grad():
            reference = np.stack([wrapper(*(torch.from_numpy(a.astype(np.int64)) for a in f.values()))[0].numpy()
                                  for f in feeds[:rows]])
        fp32_scores = np.stack([fp32(f) for f in feeds[:rows]])

        def p50(run) -> float:
            run(feeds[0])
            times = []
            for _ in range(timing_runs):
                t0 = time.perf_counter()
                run(feeds[0])
                times.append(time.perf_counter() - t0)
            return float(np.median(times) * 1e3)

        results = [{"recipe": "fp32", "label": "fp32 .tflite (this graph, unquantized)",
                    "label_agreement": float((fp32_scores.argmax(1) == reference.argmax(1)).mean()),
                    "max_abs_prob_diff": float(np.abs(fp32_scores - reference).max()),
                    "accuracy": _accuracy(fp32_scores, gold), "size_mb": len(float_model) / 1e6,
                    "op_dtypes": op_dtypes(float_model), "p50_ms": p50(fp32)}]
        print(f"{'fp32':12s} size {len(float_model) / 1e6:5.1f} MB, p50 {results[0]['p50_ms']:.2f} ms", flush=True)
        for kind in kinds:
            t0 = time.perf_counter()
            q = quantizer.Quantizer(float_model, make_recipe(kind, ffn, gelu))
            with quiet_native_output("quantization"):
                qsvs = _calibrate(q, float_model, feeds[rows:rows + calibration], ranges) \
                    if q.need_calibration else None
                quantized = bytes(q.quantize(qsvs, enable_progress_report=False).quantized_model)
            (work / f"{kind}.tflite").write_bytes(quantized)
            run = _Runner(quantized)
            scores = np.stack([run(f) for f in feeds[:rows]])
            top2 = np.sort(scores, axis=1)[:, -2:] if scores.shape[1] > 1 else np.zeros((rows, 2))
            r = {"recipe": kind, "label": RECIPES[kind],
                 "label_agreement": float((scores.argmax(1) == reference.argmax(1)).mean()),
                 "accuracy": _accuracy(scores, gold), "tied_rows": int((top2[:, 0] == top2[:, 1]).sum()),
                 "max_abs_prob_diff": float(np.abs(scores - reference).max()),
                 "size_mb": len(quantized) / 1e6, "op_dtypes": op_dtypes(quantized), "p50_ms": p50(run),
                 "quantize_s": round(time.perf_counter() - t0, 1)}
            results.append(r)
            print(f"{kind:12s} agreement {100 * r['label_agreement']:6.2f} %, size {r['size_mb']:5.1f} MB, "
                  f"p50 {r['p50_ms']:.2f} ms, ops {r['op_dtypes']}", flush=True)
    import ai_edge_litert
    import ai_edge_quantizer

    return {"schema": "tinybert-edge/litert-full-int", "date": date.today().isoformat(),
            "machine": machine_info()["cpu"], "model": str(model), "data": str(data), "reference_model": str(reference_model or model), "seq_len": seq_len, "mask": mask, "mask_bias": bias if mask == "bias" else None,
            "rows": rows, "calibration_rows": calibration, "calibration_ranges": ranges, "timing": f"p50 of {timing_runs} runs, 1 thread, 1 row",
            "ai_edge_quantizer": getattr(ai_edge_quantizer, "__version__", "0.10.0"),
            "ai_edge_litert": getattr(ai_edge_litert, "__version__", "?"), "results": results}


def _calibrate(q, float_model: bytes, feeds: list[dict], ranges: str) -> dict:
    """Activation ranges of the quantizer `q` from `feeds` (see measure's `ranges`), the way the
    exporter's int16x8 computes them."""
    from tinybert_edge.converters.litert_static import calibrate_ranges

    return calibrate_ranges(float_model, q._recipe_manager, {"serving_default": feeds}, ranges)  # noqa: SLF001


def _accuracy(scores: np.ndarray, gold) -> float | None:
    if not gold:
        return None
    return float((scores.argmax(1) == np.asarray(gold[:len(scores)])).mean())


_MASKS = {"keep": "after the softmax", "add": "by the exporter's -3.4e38 bias", "bias": "by a bias of -{:g}"}


def to_markdown(report: dict) -> str:
    lines = [f"Full-integer LiteRT (ai-edge-quantizer), {report['rows']} rows of {Path(report['data']).name} scored, "
             f"{report['calibration_rows']} others calibrate ({report.get('calibration_ranges', 'ema')} ranges), seq {report['seq_len']}, padding masked "
             f"{_MASKS[report.get('mask', 'add')].format(report.get('mask_bias'))}, {report['date']}, "
             f"{report['machine']}, {report['timing']}"
             + (f"; labels held against the fp32 model {report['reference_model']} (the fp32 row: this model's "
                f".tflite against it)" if report.get("reference_model", report["model"]) != report["model"] else ""),
             "",
             "| recipe | label agreement with fp32 | accuracy | size | p50 | ops at int16 | ops still in float |",
             "|---|---:|---:|---:|---:|---|---|"]
    for r in report["results"]:
        acc = f"{100 * r['accuracy']:.2f} %" if r.get("accuracy") is not None else "-"
        def listed(dtype):
            return ", ".join(f"{k} x{v}" for k, v in sorted(r["op_dtypes"].get(dtype, {}).items())) or "none"
        ops = "all" if r["recipe"] == "fp32" else listed("float32")
        lines.append(f"| {r['label']} (`{r['recipe']}`) | {100 * r['label_agreement']:.2f} % | {acc} | "
                     f"{r['size_mb']:.1f} MB | {r['p50_ms']:.2f} ms | {listed('int16')} | {ops} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from tinybert_edge.errors import KitError
    from tinybert_edge.files import write_bytes_atomically, write_json_atomically

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="sequence-classifier directory")
    p.add_argument("--data", required=True, help="labelled file (e.g. the dev split)")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--rows", type=int, default=600, help="rows scored")
    p.add_argument("--calibration", type=int, default=128, help="other rows that calibrate the ranges")
    p.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated, of: {', '.join(RECIPES)}")
    p.add_argument("--mask", choices=("keep", "add", "bias"), default="keep",
                   help="keep: mask padding after the softmax (default); add: the -3.4e38 bias the kit ships; "
                        "bias: a bounded bias of -(--mask-bias)")
    p.add_argument("--mask-bias", type=float, default=20.0)
    p.add_argument("--ranges", choices=("ema", "minmax"), default="ema",
                   help="ema: ai-edge-quantizer's moving average of each row's range (its default); "
                        "minmax: min and max over all calibration rows")
    p.add_argument("--reference", help="fp32 model the labels are held against (default: --model), e.g. the "
                                        "original student when --model is its GPTQ-rounded copy")
    p.add_argument("--timing-runs", type=int, default=30)
    p.add_argument("--work", help="keep the .tflite files here (default: a temporary directory)")
    p.add_argument("--out", default="benchmarks/results/litert_full_int")
    a = p.parse_args(argv)
    try:
        report = measure(Path(a.model), Path(a.data), a.seq_len, a.rows, a.calibration,
                         [k.strip() for k in a.recipes.split(",") if k.strip()], a.timing_runs,
                         Path(a.work) if a.work else None, a.mask, a.mask_bias, a.ranges,
                         Path(a.reference) if a.reference else None)
    except KitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomically(out / "litert_full_int.json", report)
    write_bytes_atomically(out / "litert_full_int.md", to_markdown(report).encode())
    print(f"wrote {out}/litert_full_int.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
