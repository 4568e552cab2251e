"""GPTQ vs nearest rounding of int8 weights: how many dev labels does each move?

Issue #14 asks for full-integer artifacts that keep >= 99 % label agreement with fp32. The
a16w8 LiteRT recipe (int16 activations) stays at 98.2-98.7 %, level with dynamic int8 on the
same graph, and a weight-only probe put ~0.5 points of that on the rounding of the weights
alone. This probe measures, in eager PyTorch with weights fake-quantized per output channel
(symmetric int8, the exporters' grid) and activations left in fp32, the label agreement with the
fp32 student for: the linears rounded to nearest; the linears GPTQ-rounded
(tinybert_edge.converters.gptq, calibrated on rows of another split); each with the embedding
tables rounded per row too (as the bundles store them). `--save DIR` writes the GPTQ-rounded
student as a plain model directory, so that every exporter and probe can run on it (compare
against the original model, e.g. litert_full_int's `--reference`). It is rounded without a scale
floor (LiteRT's grid): ExecuTorch's XNNPACK quantizer floors scales at 2^-12 and re-rounds the rows
under that floor (most pooler rows); `export --weight-rounding gptq` rounds on each format's grid.

Usage:
    python -m benchmarks.scripts.gptq_weights --model runs/demo/student/model --data dev.tsv \
        --calibration-data train.tsv [--calibration 512] [--max-seq-len 64] [--save DIR] \
        [--out benchmarks/results/gptq_weights]
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import time
from datetime import date
from pathlib import Path

import torch
from torch import nn


def _batches(tok, texts, pairs, max_len: int, batch_size: int):
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i:i + batch_size], pairs[i:i + batch_size] if pairs else None, truncation=True,
                  max_length=max_len, padding=True, return_tensors="pt")
        yield {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}


@torch.no_grad()
def _logits(model, batches) -> torch.Tensor:
    return torch.cat([model(**b).logits.float() for b in batches])


@torch.no_grad()
def _round_nearest(model: nn.Module, kind: type[nn.Module]) -> None:
    """Round the weight of every `kind` module (nn.Linear, nn.Embedding) per row, to nearest."""
    from tinybert_edge.converters.gptq import round_nearest

    for m in model.modules():
        if isinstance(m, kind):
            m.weight.data.copy_(round_nearest(m.weight.data))


def measure(model_dir: Path, data: Path, calibration_data: Path, *, calibration: int = 512, rows: int | None = None,
            max_seq_len: int = 64, seed: int = 0, save: Path | None = None) -> dict:
    """Label agreement with the fp32 student for nearest and GPTQ weight rounding.

    Args:
        model_dir: the student (sequence classifier).
        data: the scored split (e.g. dev); its first `rows` rows (all by default).
        calibration_data: GPTQ's calibration split (e.g. train); `calibration` rows drawn with `seed`.
        max_seq_len: tokens per row.
        save: also write the GPTQ-rounded student here (a plain model directory, atomically).

    Returns:
        The report dict (schema tinybert-edge/gptq-weights).

    Raises:
        tinybert_edge.errors.DataError: a split with fewer rows than asked.
    """
    from tinybert_edge.benchmarks.harness import machine_info
    from tinybert_edge.converters.export import read_validation_data
    from tinybert_edge.converters.gptq import gptq_round_model
    from tinybert_edge.errors import DataError
    from tinybert_edge.files import publish_dir
    from tinybert_edge.models import load_classifier, load_tokenizer

    model = load_classifier(model_dir, attn_implementation="eager").eval()
    tok = load_tokenizer(model_dir)
    texts, pairs, gold = read_validation_data(data, model.config)
    rows = rows or len(texts)
    if len(texts) < rows:
        raise DataError(f"{data} has {len(texts)} examples; --rows {rows} needs more (lower it)")
    texts, pairs, gold = texts[:rows], pairs[:rows] if pairs else None, gold[:rows] if gold else None
    cal_texts, cal_pairs, _ = read_validation_data(calibration_data, model.config)
    if len(cal_texts) < calibration:
        raise DataError(f"{calibration_data} has {len(cal_texts)} examples; --calibration {calibration} needs "
                        "more (lower it)")
    pick = sorted(random.Random(seed).sample(range(len(cal_texts)), calibration))
    cal = list(_batches(tok, [cal_texts[i] for i in pick], [cal_pairs[i] for i in pick] if cal_pairs else None,
                        max_seq_len, 32))
    scored = list(_batches(tok, texts, pairs, max_seq_len, 64))
    reference = _logits(model, scored)

    def row(name, m):
        lg = _logits(m, scored)
        r = {"variant": name, "label_agreement": float((lg.argmax(1) == reference.argmax(1)).float().mean()),
             "mean_abs_logit_diff": float((lg - reference).abs().mean()),
             "max_abs_logit_diff": float((lg - reference).abs().max())}
        if gold:
            r["accuracy"] = float((lg.argmax(1) == torch.tensor(gold)).float().mean())
        print(f"{name:44s} agreement {100 * r['label_agreement']:6.2f} %  mean |dlogit| {r['mean_abs_logit_diff']:.4f}",
              flush=True)
        return r

    results = [row("fp32", model)]
    nearest = copy.deepcopy(model)
    _round_nearest(nearest, nn.Linear)
    results.append(row("linears int8, nearest", nearest))
    t0 = time.perf_counter()
    gptq = copy.deepcopy(model)
    report = gptq_round_model(gptq, cal)
    gptq_s = time.perf_counter() - t0
    results.append(row("linears int8, GPTQ", gptq))
    for name, m in (("linears nearest + embeddings per row", nearest), ("linears GPTQ + embeddings per row", gptq)):
        e = copy.deepcopy(m)
        _round_nearest(e, nn.Embedding)
        results.append(row(name, e))
    if save is not None:
        def build(tmp):
            gptq.save_pretrained(tmp)
            tok.save_pretrained(tmp)
        publish_dir(build, save)
        print(f"wrote the GPTQ-rounded student to {save}")
    errs = report.output_error
    return {"schema": "tinybert-edge/gptq-weights", "date": date.today().isoformat(),
            "machine": machine_info()["cpu"], "model": str(model_dir), "data": str(data), "rows": rows,
            "calibration_data": str(calibration_data), "calibration_rows": calibration,
            "calibration_tokens": report.tokens, "max_seq_len": max_seq_len, "seed": seed,
            "gptq_seconds": round(gptq_s, 1), "linears": len(report.linears),
            "exact_rows": report.exact_rows, "rows_rounded": report.rows,
            "regrid_unchanged": report.exact_rows == report.rows,
            "output_error_median": {k: float(torch.tensor([e[k] for e in errs.values()]).median())
                                    for k in ("nearest", "gptq")},
            "output_error": errs, "results": results}


def to_markdown(r: dict) -> str:
    lines = [f"Int8 weight rounding, weights only (activations fp32), {r['rows']} rows of {Path(r['data']).name}, "
             f"seq {r['max_seq_len']}; GPTQ calibrated on {r['calibration_rows']} rows of "
             f"{Path(r['calibration_data']).name} ({r['calibration_tokens']} tokens); {r['date']}, {r['machine']}", "",
             "| weights | label agreement with fp32 | accuracy | mean abs logit diff | max abs logit diff |",
             "|---|---:|---:|---:|---:|"]
    for x in r["results"]:
        acc = f"{100 * x['accuracy']:.2f} %" if "accuracy" in x else "-"
        lines.append(f"| {x['variant']} | {100 * x['label_agreement']:.2f} % | {acc} | {x['mean_abs_logit_diff']:.4f} | "
                     f"{x['max_abs_logit_diff']:.3f} |")
    m = r["output_error_median"]
    lines += ["", f"Median relative output error per linear on the calibration rows: nearest {m['nearest']:.4f}, "
              f"GPTQ {m['gptq']:.4f} ({r['linears']} linears, {r['gptq_seconds']} s). Rows whose integers a "
              f"per-channel min/max quantizer stores unchanged: {r['exact_rows']} of {r['rows_rounded']}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from tinybert_edge.errors import KitError
    from tinybert_edge.files import write_bytes_atomically, write_json_atomically

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="sequence-classifier directory")
    p.add_argument("--data", required=True, help="scored split (e.g. dev)")
    p.add_argument("--calibration-data", required=True, help="GPTQ's calibration split (e.g. train)")
    p.add_argument("--calibration", type=int, default=512, help="calibration rows")
    p.add_argument("--rows", type=int, help="scored rows (default: all)")
    p.add_argument("--max-seq-len", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument("--save", help="write the GPTQ-rounded student here")
    p.add_argument("--out", default="benchmarks/results/gptq_weights")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        report = measure(Path(a.model), Path(a.data), Path(a.calibration_data), calibration=a.calibration,
                         rows=a.rows, max_seq_len=a.max_seq_len, seed=a.seed, save=Path(a.save) if a.save else None)
    except KitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomically(out / "gptq_weights.json", report)
    write_bytes_atomically(out / "gptq_weights.md", to_markdown(report).encode())
    print(f"wrote {out}/gptq_weights.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
