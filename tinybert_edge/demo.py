"""`tinybert-edge demo`: the whole pipeline on the embedded default, with a result table.

fetch -> fine-tune the MiniLM teacher on Rotten Tomatoes -> general distillation on the
nlp-corpus sentences -> task distillation (step 1 intermediate, step 2 prediction) ->
evaluation of teacher and student on dev and test.

The quick profile is sized to finish in about 15 minutes on 2 CPU cores, which is far less
training than the paper's (GD: 3 epochs of Wikipedia on 8 GPUs; TD: 20 + 3 epochs on
augmented data). Its student is a smoke-tested, useful model, not a paper reproduction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .training import TrainConfig, check_run_dir, init_run_dir


@dataclass(frozen=True)
class Profile:
    name: str
    finetune: TrainConfig
    general: TrainConfig
    intermediate: TrainConfig
    prediction: TrainConfig
    note: str


def _profile(name: str) -> Profile:
    if name == "quick":
        return Profile(
            "quick",
            finetune=TrainConfig(epochs=1, batch_size=32, learning_rate=1e-4, max_seq_len=64),
            general=TrainConfig(epochs=1, max_steps=200, batch_size=32, learning_rate=2e-4, max_seq_len=64),
            intermediate=TrainConfig(epochs=1, batch_size=32, learning_rate=2e-4, max_seq_len=64),
            prediction=TrainConfig(epochs=2, batch_size=32, learning_rate=1e-4, max_seq_len=64),
            note=("QUICK profile: ~15 minutes on 2 CPU cores. Teacher 1 epoch; general distillation 200 steps "
                  "of 32 sentences (the paper: 3 epochs of Wikipedia); task distillation 1 + 2 epochs without "
                  "augmentation (the paper: 20 + 3 on augmented data). Use --profile full for the paper's epochs."),
        )
    if name == "full":
        return Profile(
            "full",
            finetune=TrainConfig(epochs=3, batch_size=32, learning_rate=5e-5, max_seq_len=64),
            general=TrainConfig(epochs=3, batch_size=256, learning_rate=5e-5, max_seq_len=128),
            intermediate=TrainConfig(epochs=20, batch_size=32, learning_rate=5e-5, max_seq_len=64),
            prediction=TrainConfig(epochs=3, batch_size=32, learning_rate=3e-5, max_seq_len=64),
            note="FULL profile: the paper's epochs and batch sizes on the embedded data (hours on CPU).",
        )
    raise ValueError(f"unknown profile {name!r}")


def _size_mb(model_dir: Path) -> float:
    return sum(p.stat().st_size for p in model_dir.glob("*.safetensors")) / 1e6


def run_demo(out: Path, *, profile: str = "quick", cache: Path | None = None, source: Path | None = None,
             resume: bool = False, overwrite: bool = False, extensions=()) -> dict:
    """Run the demo and print the teacher-vs-student table.

    Args:
        extensions: steps run after evaluation, each `step(student_dir, teacher_dir, paths, out) ->
            (title, report dict, markdown)`; the CLI passes the export step this way so the core
            never imports the converters.

    Returns:
        The report (also written to OUT/demo_report.json and .md).
    """
    from .fetch import fetch_default
    from .models import write_bytes_atomically, write_json_atomically
    from .pipeline import TaskSteps, distill_general, distill_task, evaluate, finetune

    prof = _profile(profile)
    spec = {"kind": "demo", "profile": prof.name}
    resuming = check_run_dir(out, spec, resume=resume, overwrite=overwrite)
    if not resuming:
        init_run_dir(out, spec)
    print("=" * 78)
    print(prof.note)
    print("=" * 78, flush=True)
    times: dict[str, float] = {}
    t = time.perf_counter()
    paths = fetch_default(cache, source)
    times["fetch"] = time.perf_counter() - t

    sub = {"resume": resuming, "overwrite": overwrite or not resuming}
    t = time.perf_counter()
    finetune(paths.teacher, paths.train, out / "teacher", prof.finetune, **sub)
    times["fine-tune teacher"] = time.perf_counter() - t

    t = time.perf_counter()
    distill_general(paths.teacher, paths.corpus, out / "general", prof.general, **sub)
    times["general distillation"] = time.perf_counter() - t

    t = time.perf_counter()
    student = distill_task(out / "teacher", paths.train, out / "student",
                           TaskSteps(prof.intermediate, prof.prediction),
                           student_init=out / "general", dev_file=paths.dev, **sub)
    times["task distillation"] = time.perf_counter() - t

    t = time.perf_counter()
    rows = {}
    for name, d in (("teacher (MiniLM-L6-H384, fine-tuned)", out / "teacher" / "model"),
                    ("student (TinyBERT 4L-312D)", student)):
        dev = evaluate(d, paths.dev, max_seq_len=64)
        test = evaluate(d, paths.test, max_seq_len=64)
        rows[name] = {"params": dev["params"], "size_mb": _size_mb(d), "dev_accuracy": dev["accuracy"],
                      "test_accuracy": test["accuracy"], "dev_majority": dev["majority"], "dir": str(d)}
    times["evaluation"] = time.perf_counter() - t
    (tname, trow), (sname, srow) = rows.items()
    report = {"profile": prof.name, "note": prof.note, "rows": rows, "seconds": times,
              "total_seconds": sum(times.values()),
              "student_vs_teacher": {"params": trow["params"] / srow["params"], "size": trow["size_mb"] / srow["size_mb"],
                                     "dev_accuracy_kept": srow["dev_accuracy"] / trow["dev_accuracy"],
                                     "test_accuracy_kept": srow["test_accuracy"] / trow["test_accuracy"]}}
    md = _table(report)
    print()
    print(md, flush=True)
    for step in extensions:
        t = time.perf_counter()
        title, ext_report, ext_md = step(student, out / "teacher" / "model", paths, out)
        times[title] = time.perf_counter() - t
        report[title] = ext_report
        report["total_seconds"] = sum(times.values())
        md += f"\n\n{ext_md}"
        print(f"\n{ext_md}", flush=True)
    write_json_atomically(out / "demo_report.json", report)
    write_bytes_atomically((md + "\n").encode(), out / "demo_report.md")
    print(f"\nstudent: {student}\nnext: tinybert-edge evaluate --model {student} --data {paths.test}")
    return report


def _table(r: dict) -> str:
    lines = [f"Rotten Tomatoes (dev/test split by movie), {r['profile']} profile, "
             f"{r['total_seconds'] / 60:.1f} min in all",
             "",
             "| model | params | size (MB) | dev acc | test acc |",
             "|---|---:|---:|---:|---:|"]
    for name, row in r["rows"].items():
        lines.append(f"| {name} | {row['params'] / 1e6:.1f}M | {row['size_mb']:.1f} | {row['dev_accuracy']:.4f} | "
                     f"{row['test_accuracy']:.4f} |")
    k = r["student_vs_teacher"]
    first = next(iter(r["rows"].values()))
    lines += ["",
              f"student: {k['params']:.2f}x fewer parameters, {k['size']:.2f}x smaller on disk, keeps "
              f"{100 * k['dev_accuracy_kept']:.1f}% of the teacher's dev accuracy ({100 * k['test_accuracy_kept']:.1f}% "
              f"on test); majority class on dev: {first['dev_majority']:.4f}",
              "time: " + ", ".join(f"{k2} {v / 60:.1f} min" for k2, v in r["seconds"].items())]
    return "\n".join(lines)
