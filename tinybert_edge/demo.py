"""`tinybert-edge demo`: the whole pipeline on the embedded default, with result tables.

fetch -> fine-tune the MiniLM teacher on Rotten Tomatoes -> the student cut out of the
fine-tuned teacher (sliced init) -> [general distillation] -> [augmentation] -> task
distillation (step 1 intermediate layers, step 2 prediction layer) -> evaluation of teacher and
student on dev and test -> int8 ExecuTorch and LiteRT bundles (length-aware) and a MediaPipe
bundle, validated on dev -> benchmark.

The demo owns its steps; it sits at the top of the dependency graph with the CLI. Each profile's
recipe is what the reproduction grid (benchmarks/scripts/reproduce.py, BENCHMARKS.md) measured
best within its time budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from .augment import AugmentSettings, Augmenter, augment_file, teacher_embedding_neighbours
from .benchmarks.harness import run_and_report, targets_from_paths, to_markdown
from .converters.export import export_bundles, first_text, results_table
from .errors import ConfigError
from .fetch import fetch_default
from .files import write_bytes_atomically, write_json_atomically
from .pipeline import TaskSteps, distill_general, distill_task, evaluate, finetune
from .training import TrainConfig, check_run_dir, init_run_dir, native_bf16


@dataclass(frozen=True)
class Profile:
    """A demo recipe.

    Attributes:
        name: "quick" or "full".
        finetune: the teacher's fine-tuning.
        general: general distillation on the corpus (None: none; the sliced init stands in).
        augment: data augmentation settings (None: none).
        intermediate, prediction: task-distillation steps 1 and 2 (step budgets in epochs of
            the original training set; with augmentation, max_steps keeps the same compute).
        note: what the profile is, printed first.
    """

    name: str
    finetune: TrainConfig
    general: TrainConfig | None
    augment: AugmentSettings | None
    intermediate: TrainConfig
    prediction: TrainConfig
    note: str


def get_profile(name: str, seed: int = 42, precision: str = "fp32") -> Profile:
    """The named recipe with task-distillation seed `seed`.

    Args:
        precision: "fp32", or "bf16" (autocast in every training step; see resolve_precision).

    Raises:
        ConfigError: unknown profile name or precision.
    """
    if precision not in ("fp32", "bf16"):
        raise ConfigError(f"unknown precision {precision!r}; use fp32 or bf16")
    prof = _recipe(name, seed)
    if precision == "fp32":
        return prof
    bf16 = {k: replace(getattr(prof, k), mixed_precision="bf16") for k in ("finetune", "intermediate", "prediction")}
    if prof.general is not None:
        bf16["general"] = replace(prof.general, mixed_precision="bf16")
    return replace(prof, **bf16)


def resolve_precision(precision: str) -> tuple[str, str]:
    """The demo's training precision: "auto" is bf16 where the hardware does bf16 natively.

    Returns:
        (precision, why), precision "fp32" or "bf16".

    Raises:
        ConfigError: unknown value.
    """
    if precision == "auto":
        why = native_bf16()
        return ("bf16", f"auto: native bf16 ({why})") if why else ("fp32", "auto: no native bf16 on this machine")
    if precision not in ("fp32", "bf16"):
        raise ConfigError(f"unknown precision {precision!r}; use auto, fp32 or bf16")
    return precision, "asked for"


def _recipe(name: str, seed: int) -> Profile:
    if name == "quick":
        return Profile(
            "quick",
            finetune=TrainConfig(epochs=1, batch_size=32, learning_rate=1e-4, max_seq_len=64),
            general=None,
            augment=None,
            intermediate=TrainConfig(epochs=1, batch_size=32, learning_rate=2e-4, max_seq_len=64, seed=seed),
            prediction=TrainConfig(epochs=2, batch_size=32, learning_rate=1e-4, max_seq_len=64, seed=seed),
            note=("QUICK profile: ~15 minutes on 2 CPU cores with native bf16 (~18 in fp32). Teacher 1 epoch; "
                  "the student is cut out of the "
                  "fine-tuned teacher (sliced init, no general distillation); task distillation 1 + 2 epochs "
                  "without augmentation. --profile full runs the grid's best recipe at a larger budget."),
        )
    if name == "full":
        # The grid's candidate full-sliced-ft-td-x4: augmentation lowered retention for both inits on
        # RT at the quick budget (ours-sliced-da-td 97.9/98.1 % vs 98.8/98.6 % without; paper-full vs
        # paper-no-da the same way), so the larger budget goes to more task-distillation steps instead.
        return Profile(
            "full",
            finetune=TrainConfig(epochs=3, batch_size=32, learning_rate=5e-5, max_seq_len=64),
            general=None,
            augment=None,
            intermediate=TrainConfig(epochs=4, batch_size=32, learning_rate=2e-4, max_seq_len=64, seed=seed),
            prediction=TrainConfig(epochs=8, batch_size=32, learning_rate=1e-4, max_seq_len=64, seed=seed),
            note=("FULL profile: ~45 minutes on 2 CPU cores with native bf16. Teacher 3 epochs; the student is cut "
                  "out of the fine-tuned teacher (sliced init); task distillation 4 + 8 epochs (4x the quick "
                  "profile) without augmentation, which lowered retention on Rotten Tomatoes (BENCHMARKS.md)."),
        )
    raise ConfigError(f"unknown profile {name!r}; use quick or full")


def _size_mb(model_dir: Path) -> float:
    return sum(p.stat().st_size for p in model_dir.glob("*.safetensors")) / 1e6


def run_demo(out: Path, *, profile: str = "quick", cache: Path | None = None, source: Path | None = None,
             resume: bool = False, overwrite: bool = False, export: bool = True, seed: int = 42,
             precision: str = "auto") -> dict:
    """Run the demo and print the teacher-vs-student table.

    Args:
        out: run directory.
        profile: "quick" or "full".
        cache, source: where the embedded default is fetched to / from.
        resume, overwrite: as every run directory.
        export: export, validate and benchmark int8 bundles after evaluation.
        seed: task-distillation seed.
        precision: training precision, "auto" (bf16 autocast where the hardware does bf16
            natively, about 1.8x faster steps on AVX512-BF16; fp32 elsewhere), "fp32" or "bf16".
            Evaluation, export and the bench are fp32 either way.

    Returns:
        The report (also written to OUT/demo_report.json and .md).

    Raises:
        ConfigError, DataError, ModelError, CheckpointError: see their messages.
    """
    chosen, why = resolve_precision(precision)
    prof = get_profile(profile, seed, chosen)
    # the chosen precision, not "auto": resuming on a machine that would choose otherwise is refused
    spec = {"kind": "demo", "profile": prof.name, "seed": seed, "precision": chosen}
    resuming = check_run_dir(out, spec, resume=resume, overwrite=overwrite)
    if not resuming:
        init_run_dir(out, spec)
    print("=" * 78)
    print(prof.note)
    print(f"training precision: {chosen} ({why})")
    print("=" * 78, flush=True)
    times: dict[str, float] = {}
    t = time.perf_counter()
    paths = fetch_default(cache, source)
    times["fetch"] = time.perf_counter() - t
    sub = {"resume": resuming, "overwrite": overwrite or not resuming}

    t = time.perf_counter()
    finetune(paths.teacher, paths.train, out / "teacher", prof.finetune, **sub)
    times["fine-tune teacher"] = time.perf_counter() - t

    # the fine-tuned teacher's own encoder, cut to the student's shape (measured best: BENCHMARKS.md)
    init = {"init": "sliced", "slice_from": out / "teacher" / "model"}
    if prof.general is not None:
        t = time.perf_counter()
        g = distill_general(paths.teacher, paths.corpus, out / "general", prof.general, init="sliced", **sub)
        init = {"student_init": g.model_dir}
        times["general distillation"] = time.perf_counter() - t

    train = paths.train
    if prof.augment is not None:
        t = time.perf_counter()
        train = _augmented(paths, out / "augmented", prof.augment, resuming)
        times["augmentation"] = time.perf_counter() - t

    t = time.perf_counter()
    student = distill_task(out / "teacher", train, out / "student", TaskSteps(prof.intermediate, prof.prediction),
                           dev_file=paths.dev, **init, **sub)
    times["task distillation"] = time.perf_counter() - t

    t = time.perf_counter()
    rows = {}
    for name, d in (("teacher (MiniLM-L6-H384, fine-tuned)", out / "teacher" / "model"),
                    ("student (TinyBERT 4L-312D)", student)):
        dev = evaluate(d, paths.dev, max_seq_len=64)
        test = evaluate(d, paths.test, max_seq_len=64)
        rows[name] = {"params": dev["params"], "size_mb": _size_mb(d), "dev_accuracy": dev["accuracy"],
                      "test_accuracy": test["accuracy"], "dev_macro_f1": dev["macro_f1"],
                      "test_macro_f1": test["macro_f1"], "dev_majority": dev["majority"], "dir": str(d)}
    times["evaluation"] = time.perf_counter() - t
    (_, trow), (_, srow) = rows.items()
    report = {"profile": prof.name, "seed": seed, "precision": chosen, "precision_reason": why,
              "note": prof.note, "rows": rows, "seconds": times,
              "student_vs_teacher": {
                  "params": trow["params"] / srow["params"], "size": trow["size_mb"] / srow["size_mb"],
                  **{f"{split}_{k}_kept": srow[f"{split}_{k}"] / trow[f"{split}_{k}"]
                     for split in ("dev", "test") for k in ("accuracy", "macro_f1")}}}
    report["total_seconds"] = sum(times.values())
    md = _table(report)
    print()
    print(md, flush=True)
    if export:
        t = time.perf_counter()
        bundles, export_md = export_step(student, paths, out)
        times["export"] = time.perf_counter() - t
        report["artifacts"] = {"rows": bundles}
        md += f"\n\n{export_md}"
        t = time.perf_counter()
        passed = [r for r in bundles if r["status"] == "passed"]
        bench = bench_step(student, out / "teacher" / "model", passed, paths, out)
        times["bench"] = time.perf_counter() - t
        report["bench"] = {"report": str(out / "bench" / "bench.json")}
        md += f"\n\n{to_markdown(bench)}"
        report["total_seconds"] = sum(times.values())
        md += f"\n\ntime in all: {report['total_seconds'] / 60:.1f} min"
    write_json_atomically(out / "demo_report.json", report)
    write_bytes_atomically(out / "demo_report.md", (md + "\n").encode())
    print(f"\nstudent: {student}\nnext: tinybert-edge evaluate --model {student} --data {paths.test}")
    return report


def _augmented(paths, d: Path, settings: AugmentSettings, resuming: bool) -> Path:
    """The augmented training file (TinyBERT Algorithm 1, teacher-embedding neighbours: no MLM head
    and no GloVe file exist offline), made once per demo directory."""
    out = d / "train_aug.tsv"
    if out.is_file() and resuming:
        return out
    print(f"augmenting {paths.train} (N={settings.n}, p={settings.p}, K={settings.k}) ...", flush=True)
    partial = out.with_name(out.name + ".progress").is_file()
    augment_file(paths.train, out, Augmenter(settings, teacher_embedding_neighbours(paths.teacher), None),
                 resume=resuming and partial, overwrite=True)
    return out


def export_step(student: Path, paths, out: Path) -> tuple[list[dict], str]:
    """int8 bundles of the student in both formats, each format's length-aware default, validated
    on dev. Returns (rows, markdown)."""
    print("\nexporting the student to int8 bundles (ExecuTorch and LiteRT length-aware, MediaPipe), validated on "
          "the dev split ...", flush=True)
    results = export_bundles(student, out / "bundles", formats=["executorch", "tflite", "mediapipe"],
                             quantizations=["int8"],
                             data=paths.dev, on_result=lambda b: print(b.line(), flush=True))
    rows = [{"format": b.result.format, "quantization": b.result.quantization, "policy": b.result.policy.tag,
             "size_mb": b.result.size_bytes / 1e6, "label_agreement": b.validation.label_agreement,
             "fp32_accuracy": b.validation.fp32_accuracy, "artifact_accuracy": b.validation.artifact_accuracy,
             "max_abs_logit_error": b.result.parity.max_abs, "export_seconds": b.result.seconds,
             "validation_examples": b.validation.examples,
             "status": "passed" if b.validation.passed else "failed", "bundle": str(b.path)} for b in results]
    md = "On-device artifacts of the student (dev split, batch 1)\n\n" + results_table(results)
    md += f"\n\nnext: tinybert-edge predict --bundle {results[-1].path} '{first_text(paths.dev)[0][:70]}'"
    return rows, md


def bench_step(student: Path, teacher: Path, bundles: list[dict], paths, out: Path) -> dict:
    """BERT-base-shaped and MiniLM teachers vs the student, eager and its bundles, at batch 1, 1 thread.

    The bundles' and the eager student's dev accuracy come from the export's validation (the same
    dev rows through the same runtime and length policy), so their timing processes do not
    classify the dev split a second time; the teacher's is measured in its row.
    """
    print("\nbenchmarking teacher vs student at batch 1, 1 thread (one process per row) ...", flush=True)
    known = {str(Path(r["bundle"]).resolve()): (r["artifact_accuracy"], r["validation_examples"]) for r in bundles
             if r["artifact_accuracy"] is not None}
    if bundles and bundles[0]["fp32_accuracy"] is not None:
        known[str(Path(student).resolve())] = (bundles[0]["fp32_accuracy"], bundles[0]["validation_examples"])
    targets = [replace(t, known_accuracy=known.get(str(Path(t.path).resolve())) if t.path else None)
               for t in targets_from_paths(teacher, [str(student), *(r["bundle"] for r in bundles)])]
    return run_and_report(targets, out=out / "bench", threads=[1], workloads=["fixed", "real"], seq_len=128,
                          # 30 timed runs: the demo's table, within its 15 minutes; BENCHMARKS.md's
                          # figures come from `tinybert-edge bench` with 50
                          data=str(paths.dev), max_examples=None, runs=30, warmup=3, tokenizer=str(teacher))


def _table(r: dict) -> str:
    lines = [f"Rotten Tomatoes (dev/test split by movie), {r['profile']} profile, seed {r['seed']}, "
             f"{r['total_seconds'] / 60:.1f} min to here",
             "",
             "| model | params | size (MB) | dev acc | test acc | dev macro-F1 | test macro-F1 |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, row in r["rows"].items():
        lines.append(f"| {name} | {row['params'] / 1e6:.1f}M | {row['size_mb']:.1f} | {row['dev_accuracy']:.4f} | "
                     f"{row['test_accuracy']:.4f} | {row['dev_macro_f1']:.4f} | {row['test_macro_f1']:.4f} |")
    k = r["student_vs_teacher"]
    first = next(iter(r["rows"].values()))
    lines += ["",
              f"student: {k['params']:.2f}x fewer parameters, {k['size']:.2f}x smaller on disk, keeps "
              f"{100 * k['dev_accuracy_kept']:.1f}% of the teacher's dev accuracy ({100 * k['test_accuracy_kept']:.1f}% "
              f"on test) and {100 * k['dev_macro_f1_kept']:.1f}% / {100 * k['test_macro_f1_kept']:.1f}% of its "
              f"macro-F1; majority class on dev: {first['dev_majority']:.4f}",
              "time: " + ", ".join(f"{k2} {v / 60:.1f} min" for k2, v in r["seconds"].items())]
    return "\n".join(lines)
