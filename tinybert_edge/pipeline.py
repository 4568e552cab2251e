"""The kit's jobs as functions: fine-tune a teacher, general and task distillation, evaluation.

The CLI and the demo call these; so can users' scripts. Each job owns one run directory
(see training.py) and is resumable. Works in one process or several (torchrun / accelerate
launch): only the main process writes and prints.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from .data import Columns, LabelSpace, TextBatches, collect_labels
from .errors import ConfigError, ModelError
from .evaluate import evaluate_model, label_space_of, near_chance
from .mapping import LayerMap
from .models import (RUN_MARKER, check_classifier, copy_dir_atomically, count_parameters, get_preset, load_classifier, load_config, load_encoder, load_tokenizer,
                     resolve_model_dir, student_config)
from .objectives import DistillObjective, DistillSettings, FinetuneObjective
from .training import (TrainConfig, TrainResult, check_run_dir, init_run_dir, make_accelerator, run_completed,
                       seed_everything, train)


@dataclass
class Reporter:
    """Prints from the main process only."""

    is_main: bool = True
    quiet: bool = False

    def __call__(self, msg: str = "") -> None:
        if self.is_main and not self.quiet:
            print(msg, flush=True)

    def warn(self, msg: str) -> None:
        if self.is_main:
            print(msg, file=sys.stderr, flush=True)


def _setup(cfg: TrainConfig, run_dir: Path, spec: dict, resume: bool, overwrite: bool):
    acc = make_accelerator(cfg)
    resuming = check_run_dir(run_dir, spec, resume=resume, overwrite=overwrite)
    acc.wait_for_everyone()
    if acc.is_main_process and not resuming:
        init_run_dir(run_dir, spec)
    acc.wait_for_everyone()
    return acc, resuming, Reporter(acc.is_main_process)


def _scan(data: TextBatches, say: Reporter, what: str) -> None:
    rep = data.scan()
    say(f"{what}: {rep.rows:,} rows from {data.path}")
    if rep.truncated:
        say(f"note: {rep.truncated:,} of {rep.rows:,} texts in {data.path.name} are longer than {data.max_seq_len} "
            f"tokens (longest {rep.max_tokens}) and are truncated; raise --max-seq-len to keep them")


def finetune(model_dir: str | Path, train_file: str | Path, out: str | Path, cfg: TrainConfig, *,
             labels: list[str] | None = None, task_type: str = "classification", columns: Columns = Columns(),
             dev_file: str | Path | None = None, resume: bool = False, overwrite: bool = False) -> TrainResult:
    """Fine-tune a pre-trained encoder as a sequence classifier (the task teacher).

    Args:
        model_dir: pre-trained BERT-family encoder (HF directory).
        train_file: labelled task file.
        out: run directory; the classifier lands in out/model.
        cfg: optimization settings.
        labels: label names in id order (default: the sorted labels of train_file).
        task_type: "classification" or "regression".
        columns: column names.
        dev_file: evaluated at the end when given.
        resume, overwrite: see check_run_dir.

    Returns:
        TrainResult.

    Raises:
        DataError, ModelError, ConfigError, CheckpointError: see their messages.
    """
    out = Path(out)
    src = resolve_model_dir(model_dir)
    load_config(src)
    if task_type not in ("classification", "regression"):
        raise ConfigError(f"task type must be classification or regression, got {task_type!r}")
    if task_type == "classification":
        labels = labels or collect_labels(train_file, columns)
        if len(labels) < 2:
            raise ConfigError(f"{train_file} has a single label {labels}; a classifier needs at least two")
        space = LabelSpace("classification", {lab: i for i, lab in enumerate(labels)})
        head = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                "label2id": {lab: i for i, lab in enumerate(labels)}}
    else:
        space = LabelSpace("regression")
        head = {"num_labels": 1, "problem_type": "regression"}
    spec = {"kind": "finetune", "model": str(src), "train": cfg.to_dict(), "data": str(Path(train_file).resolve()),
            "labels": labels, "task_type": task_type, "columns": columns.__dict__}
    acc, resuming, say = _setup(cfg, out, spec, resume, overwrite)
    if resuming and run_completed(out):
        say(f"{out} is already complete")
        return TrainResult(out, out / "model", 0, 0.0, 0, {})
    tok = load_tokenizer(src)
    data = TextBatches(train_file, tok, cfg.max_seq_len, cfg.batch_size, cfg.seed, labels=space, columns=columns)
    _scan(data, say, "fine-tune data")
    seed_everything(cfg.seed)
    model = load_classifier(src, **head)
    result = train(FinetuneObjective(model), data, cfg, out, tok, resume=resuming, description="finetune",
                   accelerator=acc)
    if dev_file and acc.is_main_process:
        m = evaluate(out / "model", dev_file, max_seq_len=cfg.max_seq_len, columns=columns)
        say(f"teacher dev: {format_metrics(m)}")
    return result


def distill_general(teacher_dir: str | Path, corpus: str | Path, out: str | Path, cfg: TrainConfig, *,
                    preset: str = "tinybert-4l-312d", preset_overrides: dict | None = None,
                    layer_map: str = "uniform", projection: str = "per-layer", resume: bool = False,
                    overwrite: bool = False) -> TrainResult:
    """General distillation: a pre-trained teacher teaches a fresh student on raw text.

    Intermediate-layer losses only (embeddings, attention scores, hidden states); no
    prediction layer. The student lands in out/model as an encoder without a task head.

    Raises:
        ModelError, ConfigError, DataError, CheckpointError.
    """
    out = Path(out)
    t_dir = resolve_model_dir(teacher_dir)
    t_cfg = load_config(t_dir)
    shape = get_preset(preset, **(preset_overrides or {}))
    s_cfg = student_config(t_cfg, shape)
    lm = LayerMap.parse(layer_map, shape.num_layers, t_cfg.num_hidden_layers)
    settings = DistillSettings("general", lm, projection)
    spec = {"kind": "distill-general", "teacher": str(t_dir), "corpus": str(Path(corpus).resolve()),
            "student": shape.__dict__, "distill": settings.to_dict(), "train": cfg.to_dict()}
    acc, resuming, say = _setup(cfg, out, spec, resume, overwrite)
    if resuming and run_completed(out):
        say(f"{out} is already complete")
        return TrainResult(out, out / "model", 0, 0.0, 0, {})
    tok = load_tokenizer(t_dir)
    data = TextBatches(corpus, tok, cfg.max_seq_len, cfg.batch_size, cfg.seed, corpus=True)
    _scan(data, say, "corpus")
    teacher = load_encoder(t_dir)
    seed_everything(cfg.seed)
    from transformers import AutoModel

    student = AutoModel.from_config(s_cfg, attn_implementation="sdpa")
    say(f"general distillation: teacher {count_parameters(teacher) / 1e6:.1f}M params -> student "
        f"{shape.name} {count_parameters(student) / 1e6:.1f}M; layer map {lm.kind} {list(lm.teacher_for_student)}")
    return train(DistillObjective(student, teacher, settings), data, cfg, out, tok, resume=resuming,
                 description="distill general", accelerator=acc,
                 model_files={"distillation_config.json": spec})


@dataclass(frozen=True)
class TaskSteps:
    """Settings of the two steps of task distillation."""

    intermediate: TrainConfig | None = None
    prediction: TrainConfig | None = None
    temperature: float = 1.0
    scale_by_t2: bool = False


def distill_task(teacher_dir: str | Path, train_file: str | Path, out: str | Path, steps: TaskSteps, *,
                 student_init: str | Path | None = None, preset: str = "tinybert-4l-312d",
                 preset_overrides: dict | None = None, layer_map: str = "uniform", projection: str = "per-layer",
                 prediction_file: str | Path | None = None, dev_file: str | Path | None = None,
                 columns: Columns = Columns(), strict_teacher_check: bool = False, resume: bool = False,
                 overwrite: bool = False) -> Path:
    """Task distillation: step 1 intermediate layers, then step 2 prediction layer.

    Args:
        teacher_dir: fine-tuned teacher (sequence classifier).
        train_file: task data for step 1 (e.g. the augmented file).
        out: directory; steps run in out/step1-intermediate and out/step2-prediction and the
            final student is copied to out/model.
        steps: which steps to run and their settings (None skips a step).
        student_init: general-distillation student (or any BERT-family dir) to start from;
            None builds a fresh student from `preset`.
        prediction_file: task data for step 2 (default: train_file).
        dev_file: the teacher is checked on it before distilling and the student after.
        strict_teacher_check: fail (instead of warn) when the teacher is near chance on dev.

    Returns:
        The final student directory.

    Raises:
        ModelError, ConfigError, DataError, CheckpointError.
    """
    out = Path(out)
    t_dir = resolve_model_dir(teacher_dir)
    if steps.intermediate is None and steps.prediction is None:
        raise ConfigError("no task-distillation step selected; use --step intermediate, prediction or both")
    t_cfg = load_config(t_dir)
    check_classifier(t_cfg, t_dir)
    space = label_space_of(t_cfg)
    tok = load_tokenizer(t_dir)
    head = ({"num_labels": 1, "problem_type": "regression"} if space.task_type == "regression" else
            {"num_labels": t_cfg.num_labels, "id2label": dict(t_cfg.id2label), "label2id": dict(t_cfg.label2id)})
    shape = get_preset(preset, **(preset_overrides or {}))
    init_dir = resolve_model_dir(student_init) if student_init else None
    if init_dir is not None:
        i_cfg = load_config(init_dir)
        if i_cfg.vocab_size != t_cfg.vocab_size:
            raise ConfigError(f"student init {init_dir} has vocabulary {i_cfg.vocab_size}, teacher {t_cfg.vocab_size}; "
                              "the student must share the teacher's tokenizer")
        n_student = i_cfg.num_hidden_layers
    else:
        n_student = shape.num_layers
    lm = LayerMap.parse(layer_map, n_student, t_cfg.num_hidden_layers)
    main_spec = {"kind": "distill-task", "teacher": str(t_dir), "train_file": str(Path(train_file).resolve()),
                 "prediction_file": str(Path(prediction_file or train_file).resolve()),
                 "student_init": str(init_dir) if init_dir else None, "student": shape.__dict__,
                 "layer_map": lm.to_dict(), "projection": projection, "temperature": steps.temperature,
                 "scale_by_t2": steps.scale_by_t2,
                 "intermediate": steps.intermediate.to_dict() if steps.intermediate else None,
                 "prediction": steps.prediction.to_dict() if steps.prediction else None}
    any_cfg = steps.intermediate or steps.prediction
    acc, resuming, say = _setup(any_cfg, out, main_spec, resume, overwrite)
    # Read every input in full before any weights load: a bad row fails the run at once.
    data1 = data2 = None
    if steps.intermediate is not None:
        c = steps.intermediate
        data1 = TextBatches(train_file, tok, c.max_seq_len, c.batch_size, c.seed, labels=space, columns=columns)
        _scan(data1, say, "task data (step 1)")
    if steps.prediction is not None:
        c = steps.prediction
        same = data1 is not None and prediction_file in (None, train_file) and (
            c.max_seq_len, c.batch_size, c.seed) == (data1.max_seq_len, data1.batch_size, data1.seed)
        if same:
            data2 = data1  # same file, same batching: one scan serves both steps
        else:
            data2 = TextBatches(prediction_file or train_file, tok, c.max_seq_len, c.batch_size, c.seed,
                                labels=space, columns=columns)
            _scan(data2, say, "task data (step 2)")
    teacher = load_classifier(t_dir)

    if dev_file:  # on every process, so a strict failure stops them all alike
        m = evaluate_model(teacher, tok, dev_file, max_seq_len=any_cfg.max_seq_len, columns=columns)
        say(f"teacher check on {Path(dev_file).name}: {format_metrics(m)}")
        if near_chance(m, space.num_labels):
            problem = (f"the teacher {t_dir} is near chance on {dev_file} ({format_metrics(m)}); a student cannot "
                       "learn more than its teacher knows: check the label order (id2label in its config.json) and "
                       "that it was fine-tuned on this task")
            if strict_teacher_check:
                raise ModelError(problem + " (--strict-teacher-check)")
            say.warn(f"\n{'!' * 78}\nWARNING: {problem}\n{'!' * 78}\n")
    else:
        say.warn("warning: no --dev file: the teacher is not checked before distillation (the public TinyBERT "
                 "code's label-order bug would go unnoticed)")

    current = init_dir
    step_dirs = []
    if steps.intermediate is not None:
        cfg = steps.intermediate
        d = out / "step1-intermediate"
        settings = DistillSettings("task-intermediate", lm, projection)
        spec = {"kind": "distill-task-intermediate", "teacher": str(t_dir), "data": main_spec["train_file"],
                "student_init": str(current) if current else None, "student": shape.__dict__,
                "distill": settings.to_dict(), "train": cfg.to_dict()}
        _run_step(acc, d, spec, resuming, say, lambda: _task_student(current, t_cfg, shape, head, cfg.seed),
                  teacher, settings, data1, tok, cfg, "distill task (step 1: intermediate)")
        current = d / "model"
        step_dirs.append(d)
    if steps.prediction is not None:
        cfg = steps.prediction
        d = out / "step2-prediction"
        settings = DistillSettings("task-prediction", lm, projection, steps.temperature, steps.scale_by_t2)
        spec = {"kind": "distill-task-prediction", "teacher": str(t_dir), "data": main_spec["prediction_file"],
                "student_init": str(current) if current else None, "student": shape.__dict__,
                "distill": settings.to_dict(), "train": cfg.to_dict()}
        init = current
        _run_step(acc, d, spec, resuming, say, lambda: _task_student(init, t_cfg, shape, head, cfg.seed),
                  teacher, settings, data2, tok, cfg, "distill task (step 2: prediction)")
        step_dirs.append(d)
    final = out / "model"
    if acc.is_main_process:
        copy_dir_atomically(step_dirs[-1] / "model", final)
        if dev_file:
            m = evaluate(final, dev_file, max_seq_len=any_cfg.max_seq_len, columns=columns)
            say(f"student dev: {format_metrics(m)}")
    acc.wait_for_everyone()
    return final


def _task_student(init_dir: Path | None, t_cfg, shape, head: dict, seed: int):
    seed_everything(seed)
    if init_dir is not None:
        return load_classifier(init_dir, **head)
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_config(student_config(t_cfg, shape, **head),
                                                          attn_implementation="sdpa")


def _run_step(acc, run_dir: Path, spec: dict, resume: bool, say: Reporter, make_student, teacher, settings,
              data: TextBatches, tok, cfg: TrainConfig, description: str) -> None:
    # A step resumes only when its whole task run resumes; otherwise it starts afresh.
    resuming = resume and (run_dir / RUN_MARKER).exists() and check_run_dir(run_dir, spec, resume=True,
                                                                             overwrite=False)
    acc.wait_for_everyone()
    if acc.is_main_process and not resuming:
        init_run_dir(run_dir, spec)
    acc.wait_for_everyone()
    if resuming and run_completed(run_dir):
        say(f"{description}: already complete in {run_dir}")
        return
    student = make_student()
    train(DistillObjective(student, teacher, settings), data, cfg, run_dir, tok, resume=resuming,
          description=description, accelerator=acc, model_files={"distillation_config.json": spec})


def evaluate(model_dir: str | Path, data_file: str | Path, *, max_seq_len: int = 128, batch_size: int = 64,
             columns: Columns = Columns()) -> dict:
    """Metrics of a fine-tuned classifier (teacher or student) on a labelled file.

    Raises:
        ModelError: not a sequence classifier. DataError: bad file or unknown labels.
    """
    d = resolve_model_dir(model_dir)
    model = load_classifier(d)
    tok = load_tokenizer(d)
    m = evaluate_model(model, tok, data_file, max_seq_len=max_seq_len, batch_size=batch_size, columns=columns)
    m["params"] = count_parameters(model)
    return m


def format_metrics(m: dict) -> str:
    keys = ["accuracy", "f1", "mcc"] if m.get("task_type") != "regression" else ["pearson", "spearman"]
    s = ", ".join(f"{k} {m[k]:.4f}" for k in keys)
    if "majority" in m:
        s += f" (majority class {m['majority']:.3f})"
    return s + f", n={m.get('examples', '?')}"
