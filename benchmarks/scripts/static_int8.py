"""Static int8 bundles (ExecuTorch, LiteRT) against dynamic int8: label agreement, accuracy, size and speed.

Issue #14 asks, for full-integer int8, "agreement, accuracy change, size, p50 vs dynamic int8",
for both formats. `tinybert-edge bench` refuses bundles that failed validation (as an app
should), so this script reads each bundle's own validation from its metadata.json and times its
artifact directly through its own runtime (ExecuTorch's Python runtime, ai-edge-litert): batch 1,
one thread, a max-length input and the real lengths of the first --rows texts of --data (each
padded as its bundle pads it: a dynamic .pte not at all, a bucketed file to its bucket), medians
after warm-up runs, all bundles in one process, interleaved (input i of every bundle, then input
i + 1). Ratios are against dynamic int8 of the same format when it is timed.

Usage:
    python -m benchmarks.scripts.static_int8 --bundle DIR [--bundle DIR ...] --data dev.tsv \
        [--rows 200] [--runs 60] [--out benchmarks/results/static_int8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import date
from pathlib import Path


def measure(bundles: list[Path], data: Path, rows: int, runs: int, warmup: int = 5) -> dict:
    """Time every bundle on the same inputs and collect its recorded validation.

    Raises:
        tinybert_edge.errors.KitError: a fixed-length bundle (its real lengths would all be the
            maximum), or unreadable data.
    """
    import torch

    from tinybert_edge.benchmarks.harness import machine_info
    from tinybert_edge.converters.bundle import load_bundle
    from tinybert_edge.converters.export import read_validation_data
    from tinybert_edge.converters.runtime import ExportError, pad_row, tokenize
    from tinybert_edge.models import load_config, load_tokenizer

    torch.set_num_threads(1)
    loaded = []
    for path in bundles:  # every bundle is checked and loaded before the first timing
        meta = json.loads((path / "metadata.json").read_text())
        source = Path(meta["source_model"]["path"])
        tok, config = load_tokenizer(source), load_config(source)
        texts, pairs, _ = read_validation_data(data, config)
        # the first `rows` texts, as the recorded figures timed (export's --max-examples samples instead)
        texts, pairs = texts[:rows], (pairs[:rows] if pairs else None)
        real = tokenize(tok, texts, pairs, meta["max_seq_len"])
        n = meta["max_seq_len"]
        long = (real[0][0][:-1] + [tok.unk_token_id] * n)[:n - 1] + [tok.sep_token_id], [0] * n
        runner = load_bundle(path, allow_failed=True).runner(threads=1)
        if runner.policy.kind == "fixed":
            raise ExportError(f"{path} has a fixed length; export with --dynamic (ExecuTorch) or --buckets to compare "
                              "schemes on real lengths")

        def feed(row, runner=runner, pad_id=tok.pad_token_id):
            length = runner.policy.pad_length(len(row[0]))
            return runner.signature_for(length), pad_row(*row, length, pad_id)

        loaded.append((path, meta, runner, {"fixed": [feed(long)] * runs, "real": [feed(r) for r in real]}, real))
    # Round-robin: input i of every bundle, then input i + 1. Timing one bundle after another
    # gave the first bundle up to 1.7x its time in the next run (the machine settling), which
    # moved every ratio; interleaved, drift falls on every bundle alike.
    ms = {(k, w): [] for k in range(len(loaded)) for w in ("fixed", "real")}
    for workload in ("fixed", "real"):
        count = len(loaded[0][3][workload])
        for i in [0] * warmup + list(range(count)):
            for k, (_, _, runner, feeds, _) in enumerate(loaded):
                signature, arrays = feeds[workload][min(i, len(feeds[workload]) - 1)]
                t = time.perf_counter()
                runner.run(signature, *arrays)
                ms[k, workload].append((time.perf_counter() - t) * 1e3)
    results = []
    for k, (path, meta, runner, _, real) in enumerate(loaded):
        p50 = {w: statistics.median(ms[k, w][warmup:]) for w in ("fixed", "real")}
        v = meta["validation"]
        results.append({"bundle": path.name, "format": meta["format"], "policy": runner.policy.tag,
                        "quantization": meta["quantization"]["name"],
                        "recipe": meta["quantization"]["recipe"], "status": meta["status"],
                        "label_agreement": v["label_agreement"], "fp32_accuracy": v.get("fp32_accuracy"),
                        "accuracy": v.get("artifact_accuracy"), "examples": v["examples"],
                        "size_bytes": meta["files"][meta["artifact"]]["bytes"],
                        "p50_ms_fixed": p50["fixed"], "p50_ms_real": p50["real"],
                        "mean_real_tokens": sum(len(r[0]) for r in real) / len(real)})
        print(f"{path.name}: agreement {100 * v['label_agreement']:.2f} %, p50 {p50['fixed']:.2f} ms at "
              f"{meta['max_seq_len']} tokens, {p50['real']:.2f} ms real", flush=True)
    return {"schema": "tinybert-edge/static-int8", "date": date.today().isoformat(), "machine": machine_info()["cpu"],
            "threads": 1, "order": "interleaved", "runs": runs, "rows": rows, "data": str(data), "results": results}


def _baseline(report: dict, row: dict) -> dict:
    """Dynamic int8 of `row`'s format when timed, else that format's first bundle (the ratio column
    says which). Rows of reports written before the format was recorded are ExecuTorch's."""
    same = [r for r in report["results"] if r.get("format", "executorch") == row.get("format", "executorch")]
    return next((r for r in same if r["quantization"] == "int8"), same[0])


def to_markdown(report: dict) -> str:
    lines = [f"int8 schemes, {report['machine']}, 1 thread, batch 1, {report['date']}; p50 of "
             f"{report['runs']} runs at the bundle's maximum length and over {report['rows']} real texts; agreement "
             "and accuracy from each bundle's validation (metadata.json); ratios against dynamic int8 of the same "
             "format (else the format's first bundle, named)", "",
             "| bundle | quantization | status | agreement with fp32 | accuracy (fp32) | size MB | p50 ms, max length "
             "| p50 ms, real lengths | p50 vs dynamic int8 (max / real) |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["results"]:
        base = _baseline(report, r)
        against = "" if base["quantization"] == "int8" else f" (vs {base['bundle']})"
        acc = f"{100 * r['accuracy']:.2f} % ({100 * r['fp32_accuracy']:.2f} %)" if r["accuracy"] is not None else "-"
        lines.append(f"| {r['bundle']} | {r['quantization']} | {r['status']} | {100 * r['label_agreement']:.2f} % | "
                     f"{acc} | {r['size_bytes'] / 1e6:.1f} | {r['p50_ms_fixed']:.2f} | {r['p50_ms_real']:.2f} | "
                     f"{r['p50_ms_fixed'] / base['p50_ms_fixed']:.2f}x / {r['p50_ms_real'] / base['p50_ms_real']:.2f}x"
                     f"{against} |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, title in ((axes[0], "p50_ms_fixed", "max length"), (axes[1], "p50_ms_real", "real lengths")):
        # each marker carries its number, the legend names it: with several schemes at one
        # agreement, full names beside the markers ran into each other
        # two bundles of one scheme (another model, another export option) differ only in their
        # directory name, so the legend shows it whenever the scheme's name alone is ambiguous
        schemes = [(r.get("format", "executorch"), r["quantization"], r.get("policy", "dyn")) for r in report["results"]]
        for i, r in enumerate(report["results"], 1):
            ok = r["status"] == "passed"
            name = f"{r.get('format', 'executorch')} {r['quantization']}, {r.get('policy', 'dyn')}"
            if schemes.count(schemes[i - 1]) > 1:
                name = f"{Path(r['bundle']).name} ({name})"
            ax.scatter(r[key], 100 * r["label_agreement"], s=r["size_bytes"] / 1e5, alpha=0.7,
                       marker="o" if ok else "X", label=f"{i}: {name} ({r['status']})")
            ax.annotate(str(i), (r[key], 100 * r["label_agreement"]), textcoords="offset points", xytext=(7, 5),
                        fontsize=9, fontweight="bold")
        ax.set_xlabel(f"p50 latency, ms ({title}, 1 thread)")
        ax.set_ylabel("label agreement with fp32, %")
        ax.set_title(f"int8 schemes, {title}")
        ax.grid(alpha=0.3)
        lo = min(100 * r["label_agreement"] for r in report["results"])
        ax.set_ylim(min(lo - 1.5, 97.5), 100.5)
        xs = [r[key] for r in report["results"]]
        ax.set_xlim(min(xs) * 0.85, max(xs) * 1.25)
        ax.axhline(99, color="grey", ls="--", lw=1)
        ax.text(max(xs) * 1.23, 99.1, "99 %: pass", fontsize=8, color="grey", ha="right")
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Static vs dynamic int8 on {report['machine']} (marker area = size; X = failed validation)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from tinybert_edge.errors import KitError
    from tinybert_edge.files import write_bytes_atomically, write_json_atomically

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", action="append", required=True,
                   help="bundle directory, ExecuTorch (dynamic or bucketed) or LiteRT (bucketed); repeat")
    p.add_argument("--data", required=True, help="labelled file whose texts give the real lengths")
    p.add_argument("--rows", type=int, default=200)
    p.add_argument("--runs", type=int, default=60)
    p.add_argument("--out", default="benchmarks/results/static_int8")
    a = p.parse_args(argv)
    try:
        import matplotlib  # noqa: F401  (the PNG is part of the report: fail before measuring)
    except ImportError:
        print('error: matplotlib is not installed; pip install -e ".[bench]"', file=sys.stderr)
        return 2
    try:
        report = measure([Path(b) for b in a.bundle], Path(a.data), a.rows, a.runs)
    except (KitError, OSError, KeyError, ValueError) as e:  # ValueError: a malformed metadata.json
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    staged = out / ".static_int8.tmp.png"
    plot(report, staged)  # drawn before anything is written, then every file lands whole
    write_json_atomically(out / "static_int8.json", report)
    write_bytes_atomically(out / "static_int8.md", to_markdown(report).encode())
    staged.replace(out / "static_int8.png")
    print(f"wrote {out}/static_int8.json, .md and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
