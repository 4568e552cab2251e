"""The kit's jobs as functions: fine-tune a teacher, general and task distillation, evaluation.

The CLI and the demo call these; so can users' scripts. Each job owns one run directory
(see training.py) and is resumable. Works in one process or several (torchrun / accelerate
launch): only the main process writes and prints.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoModel, AutoModelForSequenceClassification

from . import gd_cache
from .data import Columns, LabelSpace, TextBatches, collect_labels, iter_task_examples
from .errors import ConfigError, ModelError
from .evaluate import evaluate_model, label_space_of, near_chance
from .mapping import LayerMap
from .files import copy_dir_atomically, write_json_atomically
from .models import (RUN_MARKER, check_classifier, count_parameters, get_preset, load_classifier, load_config,
                     load_encoder, load_tokenizer, max_positions, resolve_model_dir, student_config)
from .objectives import DistillObjective, DistillSettings, FinetuneObjective, TeacherLogitCache
from .slicing import check_fits, load_sliced, measure_importance, plan_slice, sample_texts
from .training import (TrainConfig, TrainResult, check_run_dir, init_run_dir, load_extra_state, make_accelerator,
                       run_completed, seed_everything, train)


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
    """(accelerator, resuming, reporter) after checking that the run may use `run_dir`; writes nothing
    (_start_run does, once every input has been read, so a bad file leaves no run directory that
    would then refuse the corrected command)."""
    acc = make_accelerator(cfg)
    resuming = check_run_dir(run_dir, spec, resume=resume, overwrite=overwrite)
    return acc, resuming, Reporter(acc.is_main_process)


def _start_run(acc, run_dir: Path, spec: dict, resuming: bool) -> None:
    """Create the run directory and its marker (main process), after every process has checked it."""
    acc.wait_for_everyone()
    if acc.is_main_process and not resuming:
        init_run_dir(run_dir, spec)
    acc.wait_for_everyone()


def _check_labelled_file(path: str | Path, space: LabelSpace, columns: Columns) -> None:
    """Read a labelled file in full and encode every label, so an unknown label or a bad row fails
    before training instead of after it."""
    for ex in iter_task_examples(path, columns):
        space.encode(ex.label, Path(path), ex.line)


def _scan(data: TextBatches, say: Reporter, what: str) -> None:
    rep = data.scan()
    say(f"{what}: {rep.rows:,} rows from {data.path}")
    if rep.truncated:
        say(f"note: {rep.truncated:,} of {rep.rows:,} texts in {data.path.name} are longer than {data.max_seq_len} "
            f"tokens (longest {rep.max_tokens}) and are truncated; raise --max-seq-len to keep them")
    if data.full_shuffle:
        say(f"note: {data.path.name}'s rows come in order (sorted by label or target) and outnumber the "
            f"{data.shuffle_buffer:,}-row shuffle buffer, so each epoch reads them in a full shuffle by row offset "
            "(one seek a row)")


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
    check_seq_len(load_config(src), cfg.max_seq_len, src)
    if task_type not in ("classification", "regression"):
        raise ConfigError(f"task type must be classification or regression, got {task_type!r}")
    if task_type == "classification":
        explicit_labels = bool(labels)
        labels = labels or collect_labels(train_file, columns)
        if len(labels) < 2:
            raise ConfigError(f"{train_file} has a single label {labels}; a classifier needs at least two")
        space = LabelSpace("classification", {lab: i for i, lab in enumerate(labels)},
                           unknown_fix="add it to --labels, or leave --labels out to take every label of --train"
                           if explicit_labels else "add rows with this label to --train, or drop it from this file")
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
    if dev_file:  # read in full now: a typo in its path or an unknown label must not cost the training run
        _check_labelled_file(dev_file, space, columns)
    _start_run(acc, out, spec, resuming)
    seed_everything(cfg.seed)
    model = load_classifier(src, **head)
    # finetune_config.json names the pre-trained model: `distill task` slices it for the student
    result = train(FinetuneObjective(model), data, cfg, out, tok, resume=resuming, description="finetune",
                   accelerator=acc, model_files={"finetune_config.json": spec})
    if dev_file and acc.is_main_process:
        m = evaluate(out / "model", dev_file, max_seq_len=cfg.max_seq_len, columns=columns)
        say(f"teacher dev: {format_metrics(m)}")
    return result


INITS = ("auto", "sliced", "random")


@dataclass(frozen=True)
class StudentInit:
    """Where a student's first weights come from.

    Attributes:
        kind: "sliced" (cut out of `source`, see slicing.py), "random" (the paper's init) or
            "dir" (an existing student, e.g. a general-distillation output).
        source: the model sliced ("sliced") or loaded ("dir"); None for "random".
        texts: file whose texts rank the units to keep ("sliced").
        corpus: True when `texts` is a raw-text corpus, False for a task file.
        note: how the choice was made, for the log line.
    """

    kind: str
    source: Path | None = None
    texts: Path | None = None
    corpus: bool = False
    note: str = ""

    def to_dict(self) -> dict:
        return {"kind": self.kind, "source": str(self.source) if self.source else None,
                "texts": str(self.texts) if self.texts else None}

    def describe(self) -> str:
        what = {"sliced": f"sliced from {self.source}", "random": "random (the paper's init)",
                "dir": f"from {self.source}"}[self.kind]
        return what + (f" ({self.note})" if self.note else "")


def _build_student(init: StudentInit, t_cfg, shape, layer_map: LayerMap, seed: int, head: dict | None):
    """A student encoder (head None) or classifier, from `init`, with the seed set first so every
    process builds equal weights (the head of a classifier, random layers)."""
    seed_everything(seed)
    if init.kind == "dir":
        return load_classifier(init.source, **head) if head is not None else load_encoder(init.source)
    cfg = student_config(t_cfg, shape, **(head or {}))
    cls = AutoModelForSequenceClassification if head is not None else AutoModel
    student = cls.from_config(cfg, attn_implementation="sdpa")
    if init.kind == "sliced":
        src = load_encoder(init.source)
        src_lm = LayerMap(layer_map.kind, layer_map.student_layers, src.config.num_hidden_layers,
                          layer_map.teacher_for_student)
        importance = measure_importance(src, load_tokenizer(init.source),
                                        sample_texts(init.texts, corpus=init.corpus))
        plan = plan_slice(src, src_lm, hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
                          importance=importance)
        load_sliced(student, src, plan)
        seed_everything(seed)
    return student


def _check_slice_source(source: Path, t_cfg, shape) -> None:
    s_cfg = load_config(source)
    if s_cfg.vocab_size != t_cfg.vocab_size or s_cfg.num_hidden_layers != t_cfg.num_hidden_layers:
        raise ConfigError(f"--slice-from {source} has {s_cfg.num_hidden_layers} layers and vocabulary "
                          f"{s_cfg.vocab_size}, the teacher {t_cfg.num_hidden_layers} and {t_cfg.vocab_size}; "
                          "slice the teacher's own pre-trained encoder")
    check_fits(s_cfg, shape.num_layers, shape.hidden_size, shape.intermediate_size, shape.num_heads)


def check_seq_len(config, max_seq_len: int, where) -> None:
    """Refuse a --max-seq-len the model has no position embeddings for, before any data or weights load.

    Raises:
        ConfigError: max_seq_len is larger than the model's positions.
    """
    limit = max_positions(config)
    if max_seq_len > limit:
        raise ConfigError(f"--max-seq-len {max_seq_len} is longer than the {limit} positions of {where}; "
                          f"use --max-seq-len {limit} or less (longer texts are truncated and counted)")


def distill_general(teacher_dir: str | Path, corpus: str | Path, out: str | Path, cfg: TrainConfig, *,
                    preset: str = "tinybert-4l-312d", preset_overrides: dict | None = None,
                    layer_map: str = "uniform", projection: str = "per-layer", init: str = "sliced",
                    use_cache: bool = True, cache_root: Path | None = None, snapshot_steps: tuple[int, ...] = (),
                    resume: bool = False, overwrite: bool = False) -> TrainResult:
    """General distillation: a pre-trained teacher teaches a student on raw text.

    Intermediate-layer losses only (embeddings, attention scores, hidden states); no
    prediction layer. The student lands in out/model as an encoder without a task head, and
    in the kit's GD cache (see gd_cache.py), from which a later run with the same settings
    takes it instead of training again.

    Args:
        init: "sliced" (the student starts cut out of the teacher, ranked on the corpus) or
            "random" (the paper's init).
        use_cache: look up and fill the GD cache.
        snapshot_steps: also save the student at these steps (GD-minutes curves).

    Raises:
        ModelError, ConfigError, DataError, CheckpointError: including a corrupted cache entry.
    """
    out = Path(out)
    t_dir = resolve_model_dir(teacher_dir)
    t_cfg = load_config(t_dir)
    check_seq_len(t_cfg, cfg.max_seq_len, t_dir)
    if init not in ("sliced", "random"):
        raise ConfigError(f"general distillation init must be sliced or random, got {init!r}")
    shape = get_preset(preset, **(preset_overrides or {}))
    s_cfg = student_config(t_cfg, shape)
    lm = LayerMap.parse(layer_map, shape.num_layers, t_cfg.num_hidden_layers)
    if init == "sliced":
        check_fits(t_cfg, shape.num_layers, shape.hidden_size, shape.intermediate_size, shape.num_heads)
    settings = DistillSettings("general", lm, projection)
    spec = {"kind": "distill-general", "teacher": str(t_dir), "corpus": str(Path(corpus).resolve()),
            "student": shape.__dict__, "init": init, "distill": settings.to_dict(), "train": cfg.to_dict()}
    acc, resuming, say = _setup(cfg, out, spec, resume, overwrite)
    if resuming and run_completed(out):
        say(f"{out} is already complete")
        return TrainResult(out, out / "model", 0, 0.0, 0, {})
    tok = load_tokenizer(t_dir)
    data = TextBatches(corpus, tok, cfg.max_seq_len, cfg.batch_size, cfg.seed, corpus=True)
    _scan(data, say, "corpus")
    _start_run(acc, out, spec, resuming)
    key = cached = None
    if use_cache:
        key = gd_cache.gd_key(t_dir, corpus, shape.__dict__, init, settings.to_dict(), cfg.to_dict())
        cached = gd_cache.lookup(key, cache_root)
    if cached is not None and not snapshot_steps:
        say(f"general distillation: reusing the {cached.describe()}")
        if acc.is_main_process:
            copy_dir_atomically(cached.path, out / "model")
            write_json_atomically(out / "summary.json", {"steps": 0, "from_cache": str(cached.path),
                                                         "cached_info": cached.info})
        acc.wait_for_everyone()
        return TrainResult(out, out / "model", 0, 0.0, 0, {})
    teacher = load_encoder(t_dir)
    s_init = StudentInit(init, t_dir if init == "sliced" else None, Path(corpus) if init == "sliced" else None,
                         corpus=True)
    student = _build_student(s_init, t_cfg, shape, lm, cfg.seed, head=None)
    say(f"general distillation: teacher {count_parameters(teacher) / 1e6:.1f}M params -> student "
        f"{shape.name} {count_parameters(student) / 1e6:.1f}M, init {s_init.describe()}; layer map {lm.kind} "
        f"{list(lm.teacher_for_student)}")
    result = train(DistillObjective(student, teacher, settings), data, cfg, out, tok, resume=resuming,
                   description="distill general", accelerator=acc, model_files={"distillation_config.json": spec},
                   snapshot_steps=snapshot_steps)
    if key is not None and acc.is_main_process:
        summary = json.loads((out / "summary.json").read_text())
        entry = gd_cache.store(out / "model", key, {"steps": summary["steps"],
                                                    "minutes": summary.get("seconds_total", 0) / 60,
                                                    "run": str(out.resolve())}, cache_root)
        say(f"general-distillation student kept in the cache: {entry}")
    acc.wait_for_everyone()
    return result


@dataclass(frozen=True)
class TaskSteps:
    """Settings of the two steps of task distillation.

    Attributes:
        intermediate: step 1 (embedding, attention and hidden-state losses); None skips it.
        prediction: step 2; None skips it.
        temperature, scale_by_t2: of the prediction loss.
        prediction_target: "teacher" (the paper: soft cross-entropy with the teacher's logits)
            or "labels" (step 2 fits the gold labels: the no-prediction-loss ablation, or
            plain fine-tuning of the student when step 1 is skipped).
        weight_embedding, weight_attention, weight_hidden: lambda of each step-1 loss (0
            removes it: the paper's loss ablations).
    """

    intermediate: TrainConfig | None = None
    prediction: TrainConfig | None = None
    temperature: float = 1.0
    scale_by_t2: bool = False
    prediction_target: str = "teacher"
    weight_embedding: float = 1.0
    weight_attention: float = 1.0
    weight_hidden: float = 1.0

    def __post_init__(self) -> None:
        if self.prediction_target not in ("teacher", "labels"):
            raise ConfigError(f"prediction target must be teacher or labels, got {self.prediction_target!r}")
        weights = (self.weight_embedding, self.weight_attention, self.weight_hidden)
        if min(weights) < 0 or (self.intermediate is not None and max(weights) == 0):
            raise ConfigError(f"step-1 loss weights must be >= 0 and not all 0, got {weights}")


def resolve_student_init(init: str, *, teacher_dir: Path, train_file: str | Path, shape, t_cfg,
                         student_init: str | Path | None = None, slice_from: str | Path | None = None,
                         cache_root: Path | None = None) -> StudentInit:
    """Decide the student's first weights for task distillation.

    Args:
        init: "auto" (a cached general-distillation student of the pre-trained teacher and this
            shape when there is one, else "sliced"), "sliced" or "random".
        teacher_dir: the fine-tuned teacher.
        train_file: its texts rank the units to keep when slicing.
        student_init: an explicit student directory; overrides `init`.
        slice_from: the encoder to slice (default: the fine-tuned teacher itself, which the
            reproduction grid and the demo measured best; pass the pre-trained model to slice
            that instead).

    Raises:
        ConfigError: unknown init, a student that does not fit in the slice source.
        ModelError: a corrupted cached student.
    """
    if student_init is not None:
        return StudentInit("dir", resolve_model_dir(student_init), note="--student-init")
    if init not in INITS:
        raise ConfigError(f"unknown --init {init!r}; use one of {', '.join(INITS)}")
    if init == "random":
        return StudentInit("random")
    if slice_from is not None:
        source, why = resolve_model_dir(slice_from), "--slice-from"
    else:
        # the fine-tuned teacher's own encoder: its units are already the task's (BENCHMARKS.md,
        # reproduction grid, 3 seeds: 99.2 % / 98.4 % of the teacher's dev / test accuracy,
        # against 98.6 % / 97.4 % when slicing the pre-trained model)
        source, why = teacher_dir, "the fine-tuned teacher itself"
    if init == "auto":
        # general distillation runs on the pre-trained model; its cached students are keyed by it
        pretrained = pretrained_source(teacher_dir) if slice_from is None else source
        cached = gd_cache.newest_for(pretrained, shape.__dict__, cache_root) if pretrained is not None else None
        if cached is not None:
            return StudentInit("dir", cached.path, note=f"--init auto: the {cached.describe()}")
        why = f"--init auto, no cached general-distillation student; {why}"
    _check_slice_source(source, t_cfg, shape)
    return StudentInit("sliced", source, Path(train_file), corpus=False, note=why)


def pretrained_source(teacher_dir: Path) -> Path | None:
    """The pre-trained model a `finetune` output started from, if it recorded one that still exists."""
    rec = Path(teacher_dir) / "finetune_config.json"
    try:
        src = Path(json.loads(rec.read_text())["model"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return None
    return src if (src / "config.json").is_file() else None


def distill_task(teacher_dir: str | Path, train_file: str | Path, out: str | Path, steps: TaskSteps, *,
                 student_init: str | Path | None = None, init: str = "auto", slice_from: str | Path | None = None,
                 preset: str = "tinybert-4l-312d", preset_overrides: dict | None = None, layer_map: str = "uniform",
                 projection: str = "per-layer", prediction_file: str | Path | None = None,
                 dev_file: str | Path | None = None, columns: Columns = Columns(),
                 strict_teacher_check: bool = False, strict_student_check: bool = False,
                 reuse_teacher_logits: bool = True,
                 cache_root: Path | None = None, resume: bool = False, overwrite: bool = False) -> Path:
    """Task distillation: step 1 intermediate layers, then step 2 prediction layer.

    Args:
        teacher_dir: fine-tuned teacher (sequence classifier).
        train_file: task data for step 1 (e.g. the augmented file).
        out: directory; steps run in out/step1-intermediate and out/step2-prediction and the
            final student is copied to out/model.
        steps: which steps to run and their settings (None skips a step).
        student_init, init, slice_from: the student's first weights (see resolve_student_init).
        prediction_file: task data for step 2 (default: train_file).
        reuse_teacher_logits: step 2 reads the teacher logits step 1 recorded instead of running
            the teacher: about a third less step-2 time; the student equals the one from running
            the teacher within float rounding (1e-5). False runs the teacher every step 2 batch.
            Each process records its own shard, so with several processes step 2 hits the cache
            only for batches whose rows that process saw in step 1 (correct, less gain). A run
            directory resumes only with the setting it was started with.
        dev_file: the teacher is checked on it before distilling and the student after.
        strict_teacher_check: fail (instead of warn) when the teacher is near chance on dev.
        strict_student_check: fail (instead of warn) when the student is near chance on dev;
            out/model is then not written.

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
    any_cfg = steps.intermediate or steps.prediction
    for c in (steps.intermediate, steps.prediction):
        if c is not None:
            check_seq_len(t_cfg, c.max_seq_len, t_dir)
    space = label_space_of(t_cfg)
    head = ({"num_labels": 1, "problem_type": "regression"} if space.task_type == "regression" else
            {"num_labels": t_cfg.num_labels, "id2label": dict(t_cfg.id2label), "label2id": dict(t_cfg.label2id)})
    shape = get_preset(preset, **(preset_overrides or {}))
    s_init = resolve_student_init(init, teacher_dir=t_dir, train_file=train_file, shape=shape, t_cfg=t_cfg,
                                  student_init=student_init, slice_from=slice_from, cache_root=cache_root)
    if s_init.kind == "dir":
        i_cfg = load_config(s_init.source)
        if i_cfg.vocab_size != t_cfg.vocab_size:
            raise ConfigError(f"student init {s_init.source} has vocabulary {i_cfg.vocab_size}, teacher "
                              f"{t_cfg.vocab_size}; the student must share the teacher's tokenizer")
        n_student = i_cfg.num_hidden_layers
    else:
        n_student = shape.num_layers
    lm = LayerMap.parse(layer_map, n_student, t_cfg.num_hidden_layers)
    main_spec = {"kind": "distill-task", "teacher": str(t_dir), "train_file": str(Path(train_file).resolve()),
                 "prediction_file": str(Path(prediction_file or train_file).resolve()),
                 "init": s_init.to_dict(), "student": shape.__dict__, "layer_map": lm.to_dict(),
                 "projection": projection, "temperature": steps.temperature, "scale_by_t2": steps.scale_by_t2,
                 "prediction_target": steps.prediction_target,
                 "loss_weights": {"embedding": steps.weight_embedding, "attention": steps.weight_attention,
                                  "hidden": steps.weight_hidden},
                 "intermediate": steps.intermediate.to_dict() if steps.intermediate else None,
                 "prediction": steps.prediction.to_dict() if steps.prediction else None}
    if reuse_teacher_logits:
        # Only when on, so run directories made without the cache (older ones too) keep their spec:
        # a resume with the other setting is refused instead of mixing cached and live logits.
        main_spec["reuse_teacher_logits"] = True
    acc, resuming, say = _setup(any_cfg, out, main_spec, resume, overwrite)
    tok = load_tokenizer(t_dir)
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
        _check_chance(m, space, say, strict_teacher_check, "--strict-teacher-check",
                      f"the teacher {t_dir} is near chance on {dev_file} ({format_metrics(m)}); a student cannot "
                      "learn more than its teacher knows: check the label order (id2label in its config.json) and "
                      "that it was fine-tuned on this task")
    else:
        say.warn("warning: no --dev file: the teacher is not checked before distillation (the public TinyBERT "
                 "code's label-order bug would go unnoticed)")
    say(f"student init: {s_init.describe()}")
    _start_run(acc, out, main_spec, resuming)

    # Step 2 reading step 1's teacher logits skips its teacher forward. The cache is saved with
    # step 1's checkpoints and finished run, so a run resumed inside or between the steps equals
    # an uninterrupted one bit for bit.
    run = _StepRunner(acc, say, teacher, tok, t_cfg, shape, head, lm, resuming,
                      {"teacher": str(t_dir), "student": shape.__dict__},
                      logit_cache=TeacherLogitCache() if reuse_teacher_logits else None)
    current = s_init
    if steps.intermediate is not None:  # step 1: intermediate-layer distillation
        settings = DistillSettings("task-intermediate", lm, projection, weight_embedding=steps.weight_embedding,
                                   weight_attention=steps.weight_attention, weight_hidden=steps.weight_hidden)
        current = run(out / "step1-intermediate", "distill task (step 1: intermediate)", current, settings,
                      data1, steps.intermediate, main_spec["train_file"])
    if steps.prediction is not None:  # step 2: prediction-layer distillation (or hard labels)
        settings = (DistillSettings("task-prediction", lm, projection, steps.temperature, steps.scale_by_t2)
                    if steps.prediction_target == "teacher" else None)
        current = run(out / "step2-prediction", "distill task (step 2: prediction)", current, settings, data2,
                      steps.prediction, main_spec["prediction_file"])
    final = out / "model"
    problem = None
    if dev_file:
        m = evaluate(current.source, dev_file, max_seq_len=any_cfg.max_seq_len, columns=columns)
        say(f"student dev: {format_metrics(m)}")
        problem = _check_chance(m, space, say, strict_student_check, f"--strict-student-check: {final} not written",
                                f"the student is near chance on {dev_file} ({format_metrics(m)}): it learned little "
                                f"from its teacher. {_student_advice(s_init)}")
    if acc.is_main_process:
        copy_dir_atomically(current.source, final)
        if problem:
            write_json_atomically(final / "student_check.json", {"near_chance": True, "dev": str(dev_file),
                                                                 "message": problem})
    acc.wait_for_everyone()
    return final


def _student_advice(s_init: StudentInit) -> str:
    """What to try for a student near chance: a better start only when it did not have one."""
    longer = "train longer (--intermediate-epochs, --prediction-epochs), or check the data"
    if s_init.kind == "sliced":  # it started from the teacher's own weights already
        return longer[0].upper() + longer[1:]
    return f"Start from a sliced teacher (--init sliced) or a general-distillation student, {longer}"


def _check_chance(metrics: dict, space, say: Reporter, strict: bool, flag: str, problem: str) -> str | None:
    """One check for teacher and student: near chance on dev is a loud warning, or with `strict`
    an error. Returns the problem when there is one."""
    if not near_chance(metrics, space.num_labels):
        return None
    if strict:
        raise ModelError(f"{problem} ({flag})")
    say.warn(f"\n{'!' * 78}\nWARNING: {problem}\n{'!' * 78}\n")
    return problem


class _StepRunner:
    """Runs one step of task distillation in its own run directory: the paper's two steps are
    two calls. Returns the next StudentInit (the step's model directory)."""

    def __init__(self, acc, say, teacher, tok, t_cfg, shape, head, lm, resume, common_spec,
                 logit_cache: TeacherLogitCache | None = None):
        self.acc, self.say, self.teacher, self.tok = acc, say, teacher, tok
        self.t_cfg, self.shape, self.head, self.lm = t_cfg, shape, head, lm
        self.resume, self.common = resume, common_spec
        self.logit_cache = logit_cache  # step 1 records the teacher's logits, step 2 reads them

    def __call__(self, run_dir: Path, description: str, init: StudentInit, settings: DistillSettings | None,
                 data: TextBatches, cfg: TrainConfig, data_path: str) -> StudentInit:
        acc = self.acc
        kind = settings.stage if settings is not None else "task-labels"
        spec = {"kind": f"distill-{kind}", **self.common, "data": data_path, "init": init.to_dict(),
                "distill": settings.to_dict() if settings else None, "train": cfg.to_dict()}
        # A step resumes only when its whole task run resumes; otherwise it starts afresh.
        resuming = self.resume and (run_dir / RUN_MARKER).exists() and check_run_dir(run_dir, spec, resume=True,
                                                                                     overwrite=False)
        acc.wait_for_everyone()
        if acc.is_main_process and not resuming:
            init_run_dir(run_dir, spec)
        acc.wait_for_everyone()
        if resuming and run_completed(run_dir):
            self.say(f"{description}: already complete in {run_dir}")
            if self.logit_cache is not None and settings is not None and settings.intermediate:
                # The logits step 1 recorded, saved with it: step 2 then equals an uninterrupted run's.
                saved = load_extra_state(run_dir, acc.process_index, acc.num_processes)
                if saved is not None:
                    self.logit_cache.load_state_dict(saved)
        else:
            student = _build_student(init, self.t_cfg, self.shape, self.lm, cfg.seed, head=self.head)
            objective = (DistillObjective(student, self.teacher, settings, logit_cache=self.logit_cache)
                         if settings is not None else FinetuneObjective(student))
            train(objective, data, cfg, run_dir, self.tok, resume=resuming, description=description,
                  accelerator=acc, model_files={"distillation_config.json": spec})
            cache = self.logit_cache
            if cache is not None and settings is not None and not settings.intermediate and cache.hits:
                self.say(f"{description}: the teacher's logits recorded in step 1 served {cache.hits} of "
                         f"{cache.hits + cache.misses} batches (the teacher ran for the rest)")
        return StudentInit("dir", run_dir / "model")


def evaluate(model_dir: str | Path, data_file: str | Path, *, max_seq_len: int | None = None, batch_size: int = 64,
             columns: Columns = Columns()) -> dict:
    """Metrics of a fine-tuned classifier (teacher or student) on a labelled file.

    Args:
        max_seq_len: tokens per text (None: 128, or the model's positions if fewer).

    Raises:
        ModelError: not a sequence classifier. DataError: bad file or unknown labels.
        ConfigError: max_seq_len longer than the model's positions.
    """
    d = resolve_model_dir(model_dir)
    cfg = load_config(d)
    if max_seq_len is None:
        max_seq_len = min(128, max_positions(cfg))
    check_seq_len(cfg, max_seq_len, d)
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
