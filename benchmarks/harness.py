"""Benchmark harness: teacher vs student, every runtime, one report.

Each row is measured by `benchmarks.worker` in a fresh process (threads set explicitly,
OMP_WAIT_POLICY=PASSIVE), at batch 1, after warm-up. Rows: the BERT-base-shaped teacher
(BertConfig(), random weights: size and speed only, never accuracy), the fine-tuned teacher
in eager PyTorch, the student in eager PyTorch, and each student bundle through its runtime.
Two workloads: "fixed" (every input padded to seq-len, comparable to other reports) and "real"
(the eval texts at their own lengths; length-aware bundles shrink, fixed ones cannot).

A row that fails (missing runtime, unloadable artifact, unknown labels) is kept with status
"failed" and its reason, as yolo benchmark does; the rest of the table is still produced.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata as _md
from pathlib import Path

from tqdm import tqdm

from tinybert_edge.errors import ConfigError
from tinybert_edge.files import write_bytes_atomically, write_json_atomically
from tinybert_edge.schema import validate

SCHEMA = "tinybert-edge/bench"
SCHEMA_VERSION = 1
ISA_FLAGS = ("neon", "asimd", "asimddp", "sve", "i8mm", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16",
             "avx_vnni", "amx_int8")


@dataclass(frozen=True)
class Target:
    """One thing to measure.

    Attributes:
        name: row label.
        kind: "bert-base" (BertConfig(), random weights), "eager" (HF model dir) or "bundle".
        path: model directory or bundle (None for bert-base).
        role: "teacher" or "student".
        accuracy: measure accuracy on the eval data (False for random-weight models).
        known_accuracy: (accuracy, examples) already measured on the same eval data (the demo's
            evaluation and bundle validation); the row takes it instead of classifying the eval
            data again in its timing process.
    """

    name: str
    kind: str
    path: str | None
    role: str
    accuracy: bool = True
    known_accuracy: tuple[float, int] | None = None


def machine_info() -> dict:
    """CPU model, cores, ISA flags, OS, Python and runtime versions."""
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "hardware", "cpu part") and cpu in ("", platform.machine(), platform.processor()):
                cpu = value.strip()
            if key in ("flags", "features"):
                flags.update(value.split())
    except OSError:
        pass
    versions = {}
    for pkg in ("torch", "transformers", "executorch", "ai-edge-litert", "litert-torch", "numpy"):
        try:
            versions[pkg] = _md.version(pkg)
        except _md.PackageNotFoundError:
            versions[pkg] = None
    return {"cpu": cpu, "arch": platform.machine(), "cores": os.cpu_count(),
            "isa": sorted(f for f in ISA_FLAGS if f in flags), "os": platform.platform(),
            "python": platform.python_version(), "versions": versions}


def _measure(target: Target, threads: int, workload: str, cfg: dict, timeout: float) -> dict:
    spec = {"kind": target.kind, "path": target.path, "threads": threads, "workload": workload,
            "seq_len": cfg["seq_len"], "data": cfg["data"], "warmup": cfg["warmup"], "runs": cfg["runs"],
            "max_examples": cfg["max_examples"], "tokenizer": cfg["tokenizer"],
            "allow_failed": cfg.get("allow_failed", False),
            # accuracy once per target (real workload, first thread count): it does not depend on either
            "accuracy": cfg["data"] is not None and target.accuracy and target.known_accuracy is None
            and workload == cfg["workloads"][-1] and threads == cfg["threads"][0]}
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps(spec))
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(threads)}
        try:
            proc = subprocess.run([sys.executable, "-m", "tinybert_edge.benchmarks.worker", str(spec_path), str(out_path)],
                                  env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"status": "failed", "reason": f"timed out after {timeout:.0f} s"}
        if not out_path.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            return {"status": "failed", "reason": f"worker exited {proc.returncode}: {tail[0]}"}
        return json.loads(out_path.read_text())


def run_bench(targets: list[Target], *, threads: list[int], workloads: list[str], seq_len: int = 128,
              data: str | None = None, max_examples: int | None = None, warmup: int = 10, runs: int = 100,
              tokenizer: str | None = None, timeout: float = 1800, progress=None,
              allow_failed: bool = False) -> dict:
    """Measure every target x threads x workload and return the report (schema SCHEMA).

    Args:
        targets: rows to measure.
        threads: thread counts, each >= 1.
        workloads: "fixed" and/or "real".
        seq_len: fixed length, and the truncation length of the real workload.
        data: labelled eval file (real texts and accuracy); None: synthetic ids, no accuracy.
        max_examples: use the first N eval rows.
        warmup, runs: untimed and timed inferences per row.
        tokenizer: model directory whose tokenizer feeds the BERT-base-shaped teacher.
        timeout: seconds per row before it is marked failed.
        progress: called with (done, total, row) after each row.
        allow_failed: time bundles whose validation failed too (each such row gets a note);
            otherwise such a row fails with the bundle's error.

    Returns:
        The report dict: schema, date, machine, settings, rows (with ratios vs each teacher).

    Raises:
        ValueError: threads < 1, unknown workload, no targets.
    """
    if not targets:
        raise ValueError("nothing to benchmark: give --teacher and/or --student")
    if any(t < 1 for t in threads):
        raise ValueError(f"--threads {','.join(map(str, threads))}: every count must be at least 1")
    bad = [w for w in workloads if w not in ("fixed", "real")]
    if bad:
        raise ValueError(f"unknown workload {bad[0]!r}; use fixed and/or real")
    cfg = {"seq_len": seq_len, "data": data, "warmup": warmup, "runs": runs, "max_examples": max_examples,
           "tokenizer": tokenizer, "workloads": workloads, "threads": threads, "allow_failed": allow_failed}
    rows = []
    plan = [(t, n, w) for w in workloads for n in threads for t in targets]
    for i, (t, n, w) in enumerate(plan):
        res = _measure(t, n, w, cfg, timeout)
        row = {"name": t.name, "kind": t.kind, "role": t.role, "path": t.path, "threads": n, "workload": w, **res}
        if not t.accuracy:
            row["note"] = "BertConfig() with random weights: size and speed only, never accuracy"
        elif t.known_accuracy is not None and data is not None and row.get("status") == "ok":
            row["accuracy"], row["accuracy_examples"] = t.known_accuracy
            row["accuracy_source"] = "measured before the benchmark on the same eval data"
        rows.append(row)
        if progress:
            progress(i + 1, len(plan), row)
    _add_accuracy_to_all_rows(rows)
    add_ratios(rows, targets)
    roofline = measure_roofline(timeout)
    add_roofline(rows, roofline)
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine_info(),
            "settings": {k: v for k, v in cfg.items()}, "roofline": roofline, "rows": rows}


def transformer_flops(layers: int, hidden: int, ffn: int, tokens: float) -> float:
    """Matmul FLOPs of one batch-1 forward at `tokens` tokens: Q, K, V, O and the FFN, plus the
    two attention matmuls (embeddings, LayerNorm and softmax are not counted)."""
    return layers * (2 * tokens * (4 * hidden * hidden + 2 * hidden * ffn) + 4 * tokens * tokens * hidden)


def measure_roofline(timeout: float = 600) -> dict:
    """This machine's fp32 and int8 matmul peak on one core (benchmarks/roofline.py, own process)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "roofline.json"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        try:
            subprocess.run([sys.executable, "-m", "tinybert_edge.benchmarks.roofline", str(out)], env=env,
                           capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"status": "failed", "reason": f"timed out after {timeout:.0f} s"}
        return {"status": "ok", **json.loads(out.read_text())} if out.is_file() else \
            {"status": "failed", "reason": "the roofline measurement wrote nothing"}


def int8_peak(roofline: dict) -> tuple[float, str]:
    """The peak the int8 rows are held against, in GOP/s, and which measurement it is.

    Where PyTorch has no fast int8 GEMM for this CPU (oneDNN's `_int_mm` on an avx2-only EPYC
    without VNNI: 1 GOP/s against 33 GFLOP/s fp32, 2026-12-04), its int8 figure is not a peak:
    XNNPACK's int8 kernels beat it 20-fold there. The fp32 peak is then the floor of the int8 one
    (int8 kernels are never slower than fp32 ones on the same core), so it is used instead, and
    such rows say "% fp32" in the report.

    Returns:
        (peak, "int8" or "fp32").
    """
    if roofline["int8_gops"] >= roofline["fp32_gflops"]:
        return roofline["int8_gops"], "int8"
    return roofline["fp32_gflops"], "fp32"


def add_roofline(rows: list[dict], roofline: dict) -> None:
    """Per row: matmul GFLOP per inference and the share of the one-core peak it reaches (int8
    rows against the int8 peak, others against fp32), single-thread rows only."""
    for r in rows:
        if r.get("status") != "ok" or not r.get("shape"):
            continue
        s = r["shape"]
        r["gflop"] = transformer_flops(s["layers"], s["hidden"], s["ffn"], r["mean_input_tokens"]) / 1e9
        if roofline.get("status") == "ok" and r["threads"] == 1:
            int8 = r["quantization"].startswith("int8")
            peak, r["roofline_peak"] = int8_peak(roofline) if int8 else (roofline["fp32_gflops"], "fp32")
            r["achieved_fraction"] = r["gflop"] / (r["p50_ms"] / 1000) / peak


def _add_accuracy_to_all_rows(rows: list[dict]) -> None:
    """Accuracy is measured once per target; copy it to that target's other rows."""
    acc = {r["name"]: (r["accuracy"], r.get("accuracy_examples")) for r in rows if r.get("accuracy") is not None}
    for r in rows:
        if r["name"] in acc and r.get("status") == "ok":
            r["accuracy"], r["accuracy_examples"] = acc[r["name"]]


def add_ratios(rows: list[dict], targets: list[Target]) -> None:
    """speedup_vs[<teacher>] = teacher p50 / row p50 (same threads and workload); size likewise."""
    teachers = [t.name for t in targets if t.role == "teacher"]
    for r in rows:
        if r.get("status") != "ok":
            continue
        r["speedup_vs"], r["smaller_vs"] = {}, {}
        for name in teachers:
            ref = next((x for x in rows if x["name"] == name and x["threads"] == r["threads"]
                        and x["workload"] == r["workload"] and x.get("status") == "ok"), None)
            if ref:
                r["speedup_vs"][name] = ref["p50_ms"] / r["p50_ms"]
                r["smaller_vs"][name] = ref["size_bytes"] / r["size_bytes"]


def to_markdown(report: dict) -> str:
    """The report as a Markdown table with machine info."""
    m = report["machine"]
    teachers = sorted({k for r in report["rows"] for k in r.get("speedup_vs", {})})
    head = ["model", "runtime", "quant", "threads", "workload", "tokens", "size MB", "p50 ms", "p90 ms", "p99 ms",
            "trimmed ms", "first ms", "load s", "RSS MB", "accuracy", "GFLOP", "% of peak"] + \
        [f"speedup vs {t}" for t in teachers] + ["status"]
    lines = [f"Benchmark {report['date']} on {m['cpu']} ({m['arch']}, {m['cores']} cores, ISA {' '.join(m['isa'])}), "
             f"{m['os']}, batch 1, {report['settings']['runs']} timed runs after {report['settings']['warmup']} "
             "warm-up runs per row, one process per row.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in report["rows"]:
        if r.get("status") != "ok":
            lines.append(f"| {r['name']} | | | {r['threads']} | {r['workload']} |" + " |" * (len(head) - 6) +
                         f" failed: {r.get('reason', '')} |")
            continue
        acc = "n/a" if r.get("accuracy") is None else f"{100 * r['accuracy']:.2f} %"
        cells = [r["name"], r["backend"], r["quantization"], str(r["threads"]), r["workload"],
                 f"{r['mean_input_tokens']:.0f}", f"{r['size_bytes'] / 1e6:.1f}", f"{r['p50_ms']:.2f}",
                 f"{r['p90_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['trimmed_mean_ms']:.2f}",
                 f"{r['first_inference_ms']:.1f}", f"{r['load_s']:.2f}", f"{r['peak_rss_mb']:.0f}", acc,
                 f"{r['gflop']:.2f}" if "gflop" in r else "",
                 f"{100 * r['achieved_fraction']:.1f} % {r['roofline_peak']}" if "achieved_fraction" in r else ""]
        cells += [f"{r['speedup_vs'][t]:.1f}x" if t in r.get("speedup_vs", {}) else "" for t in teachers]
        cells.append("ok, validation failed" if r.get("validation_failed") else "ok")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "BERT-base-shaped teacher: BertConfig() with random weights, for size and speed only.",
              "speedup = teacher p50 / row p50 at the same threads and workload."]
    rl = report.get("roofline", {})
    if rl.get("status") == "ok":
        slow_int8 = int8_peak(rl)[1] == "fp32"
        lines.append(f"Roofline (one core, {rl['kernels']}, {rl['gemm']}x{rl['gemm']} GEMM): fp32 "
                     f"{rl['fp32_gflops']:.0f} GFLOP/s, int8 {rl['int8_gops']:.0f} GOP/s"
                     + (" (below fp32: PyTorch has no fast int8 GEMM on this CPU, so int8 rows are held against the "
                        "fp32 peak, a floor of the int8 one)" if slow_int8 else "")
                     + ". % of peak = matmul GFLOP at the row's mean length / p50 / that peak (1-thread rows).")
    return "\n".join(lines)


def _short(name: str, width: int = 34) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def plot(report: dict, path: Path) -> None:
    """The report at a glance: latency per row (fixed and real lengths), accuracy against latency
    with size as marker area and the Pareto front, and thread scaling."""
    import matplotlib  # the bench extra's plotting library, reached only here

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    rows = [r for r in report["rows"] if r.get("status") == "ok"]
    colours = {"pytorch-eager": "#7f7f7f", "executorch": "#d62728", "tflite": "#1f77b4", "mediapipe": "#2ca02c"}
    t1 = min((r["threads"] for r in rows), default=1)
    names = list(dict.fromkeys(r["name"] for r in rows))
    fig = plt.figure(figsize=(17, max(8.5, 0.5 * len(names) + 4)))
    grid = fig.add_gridspec(2, 2, width_ratios=[1.25, 1], height_ratios=[1.3, 1])
    ms_fmt = FuncFormatter(lambda v, _: f"{v:g}")

    ax = fig.add_subplot(grid[:, 0])  # latency per row, fixed and real side by side
    workloads = sorted({r["workload"] for r in rows})
    h = 0.8 / max(len(workloads), 1)
    for k, w in enumerate(workloads):
        for i, name in enumerate(names):
            r = next((x for x in rows if x["name"] == name and x["workload"] == w and x["threads"] == t1), None)
            if r is None:
                continue
            y = i + (k - (len(workloads) - 1) / 2) * h
            ax.barh(y, r["p50_ms"], height=h * 0.9, color=colours.get(r["backend"], "#9467bd"),
                    alpha=1.0 if w == "real" else 0.55, hatch=None if w == "real" else "//", edgecolor="white")
            ax.text(r["p50_ms"] * 1.08, y, f"{r['p50_ms']:.2f} ms ({w})", va="center", fontsize=7)
    failed_validation = {r["name"] for r in rows if r.get("validation_failed")}
    ax.set_yticks(range(len(names)), [_short(n) + ("\n(validation failed)" if n in failed_validation else "")
                                      for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    # 1-2-5 ticks: a span under one decade (every student at 10-60 ms) still gets labels
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ms_fmt)
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlapped
    lo = min(r["p50_ms"] for r in rows) if rows else 1
    hi = max(r["p50_ms"] for r in rows) if rows else 10
    ax.set_xlim(lo / 2, hi * 8)  # room for the value labels
    ax.set_xlabel(f"p50 latency, ms (log scale), batch 1, {t1} thread(s); hatched: fixed length, solid: real lengths")
    ax.set_title("Latency per row")
    used = {r["backend"] for r in rows}
    ax.legend(handles=[Patch(color=c, label=b) for b, c in colours.items() if b in used], loc="lower right", fontsize=8)

    ax2 = fig.add_subplot(grid[0, 1])  # accuracy vs latency, size as area, Pareto front
    pts = [r for r in rows if r.get("accuracy") is not None and r["workload"] == workloads[-1] and r["threads"] == t1]
    for j, r in enumerate(sorted(pts, key=lambda r: r["p50_ms"])):
        ax2.scatter(r["p50_ms"], 100 * r["accuracy"], s=max(20.0, 4 * r["size_bytes"] / 1e6), alpha=0.6,
                    color=colours.get(r["backend"], "#9467bd"), edgecolors="black", linewidths=0.5)
        ax2.annotate(f"{_short(r['name'], 36)} ({r['size_bytes'] / 1e6:.0f} MB"
                     + (", validation failed)" if r.get("validation_failed") else ")"), (r["p50_ms"], 100 * r["accuracy"]),
                     # four heights in turn: students of equal accuracy and near latency stack legibly
                     fontsize=7, xytext=(5, (6, -11, 18, -23)[j % 4]), textcoords="offset points")
    front, best = [], -1.0
    # a bundle under its validation threshold is shown but is no choice for the front
    for r in sorted((r for r in pts if not r.get("validation_failed")), key=lambda r: r["p50_ms"]):
        if r["accuracy"] > best:
            front.append(r)
            best = r["accuracy"]
    if front:
        ax2.plot([r["p50_ms"] for r in front], [100 * r["accuracy"] for r in front], "k--", linewidth=1,
                 label="Pareto front (faster and as accurate)")
        ax2.legend(loc="lower right", fontsize=7)
    ax2.set_xscale("log")
    ax2.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax2.xaxis.set_major_formatter(ms_fmt)
    ax2.xaxis.set_minor_formatter(NullFormatter())
    ax2.set_xlabel(f"p50 latency, ms ({workloads[-1] if workloads else ''} workload, log scale)")
    ax2.set_ylabel("accuracy on the eval data, %")
    ax2.set_title("Accuracy vs latency (marker area = size on disk)")
    ax2.grid(alpha=0.3)

    ax3 = fig.add_subplot(grid[1, 1])  # thread scaling
    threads = sorted({r["threads"] for r in rows})
    if len(threads) > 1:
        for name in names:
            sel = sorted((r for r in rows if r["name"] == name and r["workload"] == workloads[0]),
                         key=lambda r: r["threads"])
            if len(sel) > 1:
                ax3.plot([r["threads"] for r in sel], [sel[0]["p50_ms"] / r["p50_ms"] for r in sel], "o-",
                         color=colours.get(sel[0]["backend"], "#9467bd"), label=_short(name, 28))
        ax3.plot(threads, [t / threads[0] for t in threads], ":", color="gray", label="linear")
        ax3.set_xticks(threads)
        ax3.set_xlabel("threads")
        ax3.set_ylabel(f"speedup over {threads[0]} thread ({workloads[0]} workload)")
        ax3.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
        ax3.grid(alpha=0.3)
    else:
        ax3.axis("off")
        ax3.text(0.5, 0.5, f"one thread count measured ({threads[0] if threads else '-'});\n"
                 "run with --threads 1,2 for thread scaling", ha="center", va="center", fontsize=9)
    ax3.set_title("Thread scaling")
    m = report["machine"]
    isa = ", ".join(f for f in ("amx_int8", "avx512_vnni", "avx512f", "avx2", "i8mm", "asimddp") if f in m.get("isa", []))
    fig.suptitle(f"{m['cpu']} ({m['arch']}{', ' + isa if isa else ''}, {m['cores']} cores), {report['date'][:10]}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(report: dict, out_dir: Path) -> dict[str, Path]:
    """bench.json, bench.md and bench.png in out_dir, each written atomically."""
    validate("bench", report, str(Path(out_dir) / "bench.json"))  # never write a report its readers would refuse
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "bench.json", "md": out_dir / "bench.md", "png": out_dir / "bench.png"}
    write_json_atomically(paths["json"], report)
    write_bytes_atomically(paths["md"], (to_markdown(report) + "\n").encode())
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "bench.png"
        plot(report, staged)
        write_bytes_atomically(paths["png"], staged.read_bytes())
    return paths


def targets_from_paths(teacher: str | None, students: list[str] | None, bert_base: bool = True) -> list[Target]:
    """Harness targets from command-line paths: model directories run eager, bundles run on their runtime.

    Raises:
        ConfigError: a path that is neither a model directory nor a bundle.
    """
    targets = [Target("BERT-base-shaped teacher", "bert-base", None, "teacher", accuracy=False)] if bert_base else []
    if teacher:
        targets.append(Target("teacher", "eager", str(teacher), "teacher"))
    for s in students or []:
        p = Path(s)
        if (p / "metadata.json").is_file() or (p.is_file() and p.suffix == ".zip"):
            targets.append(Target(p.stem if p.suffix == ".zip" else p.name, "bundle", str(p), "student"))
        elif (p / "config.json").is_file() or (p / "model" / "config.json").is_file():
            targets.append(Target("student (eager)", "eager", str(p), "student"))
        else:
            raise ConfigError(f"--student {p}: neither a model directory nor a bundle (directory with metadata.json "
                              "or .zip); export one with tinybert-edge export")
    return targets


def run_and_report(targets: list[Target], *, out: str | Path, **settings) -> dict:
    """Measure every row with a progress bar, write bench.json/.md/.png into `out`, print the table.

    Args:
        targets: rows to measure.
        out: report directory.
        **settings: run_bench's keyword arguments (threads, workloads, seq_len, data, ...).

    Returns:
        The report.

    Raises:
        ConfigError: bad settings (no targets, threads < 1, unknown workload).
    """
    plan = len(targets) * len(settings["threads"]) * len(settings["workloads"])
    with tqdm(total=plan, desc="bench", unit="row") as bar:
        def progress(done, total, row):
            bar.update(1)
            bar.set_postfix_str(f"{row['name']} {row['workload']} {row['threads']}t: "
                                + (f"{row['p50_ms']:.1f} ms" if row.get("status") == "ok" else "failed"))

        try:
            report = run_bench(targets, progress=progress, **settings)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    show_report(report, out)
    return report


def show_report(report: dict, out: str | Path) -> None:
    """Write bench.json/.md/.png and print the table."""
    paths = write_report(report, Path(out))
    print(to_markdown(report))
    print(f"\nreport: {paths['json']}  {paths['md']}  {paths['png']}")


def exit_status(report: dict) -> int:
    """Exit status of a bench run: 3 when a row failed (the table is still written), else 0."""
    return 0 if all(r.get("status") == "ok" for r in report["rows"]) else 3
