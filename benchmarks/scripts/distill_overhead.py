"""Distillation step time vs. its unavoidable parts, on the demo batch.

Issue #2's goal: a TinyBERT distillation step costs at most 10 % more than
(teacher forward + student forward/backward). Both sides run in one process on the same
real batch (Rotten Tomatoes train rows, batch 32, seq <= 64, length-grouped as in training):

  baseline  = teacher forward under inference_mode with hidden states
              + student forward with hidden states + backward of a trivial loss
  distill   = DistillObjective forward (teacher + student, score hooks, projections,
              attention/hidden/embedding losses) + backward

The optimizer step is excluded from both (it is identical). Warm-up first, then the median
of interleaved repetitions.

Usage:
    python -m benchmarks.scripts.distill_overhead [--reps 30] [--threads 2] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch


def _padded_cells(tok, train: Path, n: int, seq: int) -> dict:
    """Token cells (batch x padded length) in one epoch, with and without length grouping."""
    from tinybert_edge.data import LabelSpace, TextBatches

    space = LabelSpace("classification", {"fresh": 0, "rotten": 1})
    out = {}
    for grouped in (False, True):
        data = TextBatches(train, tok, seq, n, seed=0, labels=space, group_by_length=grouped)
        out["grouped" if grouped else "plain"] = sum(int(b["input_ids"].numel()) for b in data.batches(0))
    return out


def _batch(tok, train: Path, n: int, seq: int) -> dict:
    from tinybert_edge.data import LabelSpace, TextBatches

    data = TextBatches(train, tok, seq, n, seed=0, labels=LabelSpace("classification", {"fresh": 0, "rotten": 1}))
    batches = list(data.batches(0))
    # the median-sized batch of an epoch: representative of what training sees
    batches.sort(key=lambda b: b["input_ids"].shape[1])
    return batches[len(batches) // 2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)

    from transformers import AutoModel

    from tinybert_edge.fetch import fetch_default
    from tinybert_edge.mapping import LayerMap
    from tinybert_edge.models import get_preset, load_encoder, load_tokenizer, student_config
    from tinybert_edge.objectives import DistillObjective, DistillSettings

    paths = fetch_default()
    tok = load_tokenizer(paths.teacher)
    teacher = load_encoder(paths.teacher).eval()
    torch.manual_seed(0)
    student = AutoModel.from_config(student_config(teacher.config, get_preset("tinybert-4l-312d")),
                                    attn_implementation="sdpa").train()
    settings = DistillSettings("task-intermediate", LayerMap.uniform(4, 6))
    obj = DistillObjective(student, teacher, settings).train()
    # the earlier capture (hooks on Q/K, QK^T formed again), on the same weights, for comparison
    obj_hooks = DistillObjective(student, teacher, settings, score_capture="hooks").train()
    obj_hooks.load_state_dict(obj.state_dict())
    batch = _batch(tok, paths.train, a.batch_size, a.seq)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}

    def baseline():
        with torch.inference_mode():
            teacher(**inputs, output_hidden_states=True)
        out = student(**inputs, output_hidden_states=True)
        sum(h.float().mean() for h in out.hidden_states).backward()
        student.zero_grad(set_to_none=True)

    def baseline_with_projections():
        # what TinyBERT itself adds in matmuls: H_S W_e and H_S W_h (fwd + bwd) on every student layer
        with torch.inference_mode():
            teacher(**inputs, output_hidden_states=True)
        out = student(**inputs, output_hidden_states=True)
        projected = [obj.proj_embedding(out.hidden_states[0])] + [
            obj._w_h(m)(out.hidden_states[m]) for m in range(1, len(out.hidden_states))]
        sum(p.float().mean() for p in projected).backward()
        obj.zero_grad(set_to_none=True)

    def distill():
        obj(batch)["loss"].backward()
        obj.zero_grad(set_to_none=True)

    def distill_hooks():
        obj_hooks(batch)["loss"].backward()
        obj_hooks.zero_grad(set_to_none=True)

    fns = (("baseline", baseline), ("baseline_with_projections", baseline_with_projections), ("distill", distill),
           ("distill_hooks", distill_hooks))
    for _ in range(a.warmup):
        for _, fn in fns:
            fn()
    times = {name: [] for name, _ in fns}
    for rep in range(a.reps):  # interleaved, order rotated each round: drift and cache effects hit all alike
        for name, fn in fns[rep % len(fns):] + fns[: rep % len(fns)]:
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "benchmark": "distill_overhead", "date": date.today().isoformat(),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "threads": a.threads, "torch": torch.__version__},
        "batch": {"size": int(batch["input_ids"].shape[0]), "tokens": int(batch["input_ids"].shape[1]),
                  "source": "Rotten Tomatoes train (median-length length-grouped batch)"},
        "teacher": "all-MiniLM-L6-v2 (6L-384H)", "student": "tinybert-4l-312d (random init)",
        "layer_map": [1, 3, 4, 6], "reps": a.reps,
        "median_s": med, "p90_s": {k: sorted(v)[int(0.9 * (len(v) - 1))] for k, v in times.items()},
        "overhead": med["distill"] / med["baseline"] - 1.0,
        "overhead_of_projections": med["baseline_with_projections"] / med["baseline"] - 1.0,
        "overhead_beyond_projections": med["distill"] / med["baseline_with_projections"] - 1.0,
        "overhead_with_hooks": med["distill_hooks"] / med["baseline"] - 1.0,
        "epoch_token_cells": _padded_cells(tok, paths.train, a.batch_size, a.seq),
        "command": "python -m benchmarks.scripts.distill_overhead " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "distill_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    md = (f"| part | median (ms) | p90 (ms) |\n|---|---:|---:|\n"
          f"| teacher fwd + student fwd/bwd | {1e3 * med['baseline']:.1f} | {1e3 * result['p90_s']['baseline']:.1f} |\n"
          f"| ... + W_e/W_h projections fwd/bwd (the method's own matmuls) | "
          f"{1e3 * med['baseline_with_projections']:.1f} | {1e3 * result['p90_s']['baseline_with_projections']:.1f} |\n"
          f"| TinyBERT distillation step (fwd/bwd), scores kept inside the attention | {1e3 * med['distill']:.1f} | "
          f"{1e3 * result['p90_s']['distill']:.1f} |\n"
          f"| the same with the earlier capture (hooks, QK^T formed again) | {1e3 * med['distill_hooks']:.1f} | "
          f"{1e3 * result['p90_s']['distill_hooks']:.1f} |\n"
          f"\noverhead: {100 * result['overhead']:+.1f} % (goal <= 10 %), of which the projections "
          f"{100 * result['overhead_of_projections']:+.1f} % and score capture + losses "
          f"{100 * result['overhead_beyond_projections']:+.1f} % on top (with hooks: "
          f"{100 * result['overhead_with_hooks']:+.1f} %); batch {result['batch']['size']} x "
          f"{result['batch']['tokens']} tokens, {a.threads} threads, {result['date']}\n"
          f"\npadded token cells per epoch of Rotten Tomatoes train: plain "
          f"{result['epoch_token_cells']['plain']:,}, length-grouped {result['epoch_token_cells']['grouped']:,} "
          f"({100 * (1 - result['epoch_token_cells']['grouped'] / result['epoch_token_cells']['plain']):.0f} % fewer)\n")
    (out / "distill_overhead.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
