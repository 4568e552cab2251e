"""Reproduction of TinyBERT's ablations (paper Tables 6 and 7) on the embedded Rotten Tomatoes split.

    python -m benchmarks.scripts.reproduce --runs RUNS_DIR --out benchmarks/results/reproduce [--arms a,b] [--list]

Every arm is its own run directory under RUNS_DIR/arms/<arm>[@seed]; shared inputs (the task
teacher, general-distillation students, augmented data, the 1,000-row subset) live under
RUNS_DIR/shared and are made once. A finished arm leaves result.json and is skipped on the next
call; an interrupted one resumes from its checkpoints (the kit's --resume), so the grid can be
run over several sittings. After each arm the table is rewritten (JSON + Markdown + PNG).

A run directory can be lost with its machine; the committed report is the durable record.
`--carry benchmarks/results/reproduce/reproduce.json` takes every arm instance that report holds
and RUNS_DIR does not, counts it as finished (it is not run again) and keeps it in the new table,
marked with its own date, machine and code; an instance finished in RUNS_DIR wins over a carried
one. Only a report made with the same grid budgets can be carried.

Every arm gets the same task-distillation budget in optimizer steps (step 1 and step 2 each a
fixed number of steps, counted on the original training set), so augmentation (DA) is compared
at equal compute: with DA the same steps draw from the augmented file, in a shuffled copy.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import random
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tinybert_edge.errors import ConfigError, KitError
from tinybert_edge.files import write_bytes_atomically, write_json_atomically
from tinybert_edge.training import TrainConfig

SCHEMA = "tinybert-edge/reproduce"


@dataclass(frozen=True)
class Arm:
    """One row of the ablation table.

    Attributes:
        name: arm id (also its run directory).
        group: table section.
        label: what the row is, in the paper's words.
        init: "random" (paper), "sliced" (cut from the pre-trained teacher), "sliced-finetuned"
            (cut from the fine-tuned teacher); None for the teacher row.
        gd: general distillation first: None, "random" or "sliced" (its init).
        gd_step: start from this GD snapshot instead of the final GD student.
        da: step 1 and step 2 on the augmented data (as the public code does).
        step1: run task-distillation step 1 (intermediate layers).
        step2: "teacher" (prediction-layer distillation), "labels" (hard labels) or None.
        weights: lambda of the embedding, attention and hidden-state losses in step 1.
        layer_map: map of step 1.
        small: RT train cut to `small_rows` rows (teacher fine-tuned on them too).
        seeds: how many seeds (headline arms: 3).
        paper: the paper's figure for this row, when it reports one.
        budget: multiplies both steps' step counts (candidates for the full profile).
        average_last: step 2 saves the average of its weights over this last fraction of its
            steps (TrainConfig.average_last); the row also reports the last step's weights
            (`raw_dev`, `raw_test`), so the two compare on the same run.
    """

    name: str
    group: str
    label: str
    init: str | None = "random"
    gd: str | None = None
    gd_step: int | None = None
    da: bool = False
    step1: bool = True
    step2: str | None = "teacher"
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    layer_map: str = "uniform"
    small: bool = False
    seeds: int = 1
    paper: str = ""
    budget: float = 1.0
    average_last: float = 0.0


def default_arms(gd_snapshots: tuple[int, ...]) -> list[Arm]:
    """The grid, cheapest and most telling first (the order a sitting runs them in)."""
    arms = [
        Arm("teacher", "reference", "teacher (MiniLM-L6-H384, fine-tuned)", init=None, step1=False, step2=None),
        Arm("ours-sliced-td", "ours", "sliced init + TD", init="sliced", seeds=3),
        Arm("ours-sliced-da-td", "ours", "sliced init + DA + TD", init="sliced", da=True, seeds=3),
        Arm("student-finetune", "reference", "student fine-tuned on labels only (sliced init)", init="sliced",
            step1=False, step2="labels"),
        Arm("student-pred-kd", "reference", "prediction-layer KD only (sliced init)", init="sliced", step1=False),
        Arm("ours-sliced-finetuned-td", "ours", "init sliced from the fine-tuned teacher + TD",
            init="sliced-finetuned", seeds=3),
        Arm("paper-full", "paper", "TinyBERT: GD + DA + TD (random init)", gd="random", da=True, seeds=3,
            paper="dev avg 100 % (the reference row of Table 6)"),
        Arm("paper-no-gd", "paper", "w/o GD", da=True, paper="Table 6: -3.0 avg (SST-2 -2.7 of 92.7)"),
        Arm("paper-no-td", "paper", "w/o TD (GD, then fine-tuned on labels)", gd="random", step1=False,
            step2="labels", paper="Table 6: -7.6 avg"),
        Arm("paper-no-da", "paper", "w/o DA", gd="random", paper="Table 6: -4.8 avg"),
        Arm("paper-no-emb", "loss ablation", "w/o embedding loss", gd="random", da=True, weights=(0.0, 1.0, 1.0),
            paper="Table 7: -0.4 avg"),
        Arm("paper-no-att", "loss ablation", "w/o attention loss", gd="random", da=True, weights=(1.0, 0.0, 1.0),
            paper="Table 7: -1.7 avg"),
        Arm("paper-no-hid", "loss ablation", "w/o hidden-state loss", gd="random", da=True, weights=(1.0, 1.0, 0.0),
            paper="Table 7: -2.3 avg"),
        Arm("paper-no-pred", "loss ablation", "w/o prediction loss (step 2 on hard labels)", gd="random", da=True,
            step2="labels", paper="Table 7: -2.8 avg"),
        Arm("paper-map-top", "layer map", "top map (TD)", gd="random", da=True, layer_map="top",
            paper="Table 8: -4.7 avg vs uniform"),
        Arm("paper-map-bottom", "layer map", "bottom map (TD)", gd="random", da=True, layer_map="bottom",
            paper="Table 8: -2.4 avg vs uniform"),
        Arm("ours-sliced-gd-da-td", "ours", "sliced init + GD + DA + TD", init="sliced", gd="sliced", da=True),
        Arm("ours-sliced-gd-td", "ours", "sliced init + GD + TD", init="sliced", gd="sliced"),
        # the full profile's candidates: the best init at 4x the task-distillation steps, with and without DA
        Arm("full-sliced-ft-td-x4", "full profile", "init sliced from the fine-tuned teacher + TD, 4x steps",
            init="sliced-finetuned", budget=4.0),
        Arm("full-sliced-ft-da-td-x4", "full profile", "init sliced from the fine-tuned teacher + DA + TD, 4x steps",
            init="sliced-finetuned", da=True, budget=4.0),
        # weight averaging in step 2 (the full profile misses 99 % of the teacher on test by 0.07
        # points): the same run as ours-sliced-finetuned-td, plus the average of the last 30 % of
        # step 2's weights, so raw and averaged weights compare seed by seed
        Arm("ours-sliced-finetuned-td-avg", "ours", "init sliced from the fine-tuned teacher + TD, step 2 weights "
            "averaged over its last 30 %", init="sliced-finetuned", seeds=3, average_last=0.3),
        Arm("small-teacher", "small data", "teacher fine-tuned on 1,000 rows", init=None, step1=False, step2=None,
            small=True),
        Arm("small-paper-full", "small data", "TinyBERT (GD + DA + TD), 1,000 rows", gd="random", da=True, small=True),
        Arm("small-ours", "small data", "sliced init + DA + TD, 1,000 rows", init="sliced", da=True, small=True),
    ]
    # GD-minutes curve: TD (no DA) after 0 GD steps, each snapshot, and the full GD (the 0 and full
    # points of sliced init are ours-sliced-td and ours-sliced-gd-td, of random init paper-no-da)
    arms.append(Arm("gd-curve-random-0", "GD curve", "random init, no GD, + TD (w/o GD, w/o DA)", init="random"))
    for init in ("random", "sliced"):
        for s in gd_snapshots:
            arms.append(Arm(f"gd-curve-{init}-{s}", "GD curve", f"{init} init, GD {s} steps, + TD", init=init, gd=init,
                            gd_step=s))
    return arms


@dataclass(frozen=True)
class GridConfig:
    """Budgets of the grid (one 2-core CPU machine; see BENCHMARKS.md for what each costs).

    Attributes:
        seq_len, batch_size: of every task run.
        teacher_epochs, teacher_lr: fine-tuning the teacher (trained to convergence on dev).
        step1_epochs, step1_lr: task step 1 budget, in epochs of the original training set.
        step2_epochs, step2_lr: task step 2 budget, same unit.
        gd_steps, gd_lr, gd_seq_len, gd_batch_size, gd_snapshots: general distillation.
        aug_n, aug_p, aug_k: augmentation (paper: 20, 0.4, 15).
        small_rows, small_teacher_epochs: the small-data setting.
        small_min_data_epochs: each task step of a small-data arm runs at least this many passes
            over the data it trains on (the augmented rows with DA). Counted in epochs of the
            original rows, 1,000 rows give 32 steps a step, too few to judge a method by.
        seeds: seeds of the headline arms.
        student: preset overrides (tests use a tiny student).
    """

    seq_len: int = 64
    batch_size: int = 32
    teacher_epochs: int = 3
    teacher_lr: float = 5e-5
    step1_epochs: int = 1
    step1_lr: float = 2e-4
    step2_epochs: int = 2
    step2_lr: float = 1e-4
    gd_steps: int = 3000
    gd_lr: float = 2e-4
    gd_seq_len: int = 64
    gd_batch_size: int = 32
    gd_snapshots: tuple[int, ...] = (300, 1000)
    aug_n: int = 20
    aug_p: float = 0.4
    aug_k: int = 15
    small_rows: int = 1000
    small_teacher_epochs: int = 8
    small_min_data_epochs: float = 1.0
    seeds: tuple[int, ...] = (42, 43, 44)
    student: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path | None) -> "GridConfig":
        """Defaults, overridden by a JSON file's keys.

        Raises:
            ConfigError: unreadable file or unknown keys.
        """
        if path is None:
            return cls()
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read the grid config {path}: {e}") from None
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"grid config {path} has unknown keys {sorted(unknown)}; known: "
                              f"{', '.join(cls.__dataclass_fields__)}")
        for k in ("gd_snapshots", "seeds"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


@dataclass(frozen=True)
class Inputs:
    """Data and pre-trained teacher of the grid."""

    pretrained: Path
    train: Path
    dev: Path
    test: Path
    corpus: Path


class Grid:
    """Runs arms and their shared inputs under one runs directory (see module docstring)."""

    def __init__(self, runs: Path, cfg: GridConfig, inputs: Inputs, log=print):
        self.runs, self.cfg, self.inp, self.log = Path(runs), cfg, inputs, log
        self.shared = self.runs / "shared"
        self.arms = {a.name: a for a in default_arms(cfg.gd_snapshots)}

    # ---- shared inputs, each made once ----------------------------------------------------
    def _train_file(self, small: bool) -> Path:
        if not small:
            return self.inp.train
        out = self.shared / "data" / f"train_{self.cfg.small_rows}.tsv"
        if not out.is_file():
            lines = self.inp.train.read_text(encoding="utf-8").splitlines(keepends=True)
            header, rows = lines[0], lines[1:]
            if len(rows) < self.cfg.small_rows:
                raise ConfigError(f"{self.inp.train} has {len(rows)} rows, fewer than small_rows {self.cfg.small_rows}")
            picked = sorted(random.Random(0).sample(range(len(rows)), self.cfg.small_rows))
            write_bytes_atomically(out, (header + "".join(rows[i] for i in picked)).encode("utf-8"))
        return out

    def _rows(self, path: Path) -> int:
        with open(path, "rb") as f:
            return sum(1 for _ in f) - 1

    def teacher(self, small: bool = False) -> Path:
        from tinybert_edge.pipeline import finetune

        d = self.shared / ("teacher-small" if small else "teacher")
        c = self.cfg
        cfg = TrainConfig(epochs=c.small_teacher_epochs if small else c.teacher_epochs, batch_size=c.batch_size,
                          learning_rate=c.teacher_lr, max_seq_len=c.seq_len, seed=42)
        finetune(self.inp.pretrained, self._train_file(small), d, cfg, resume=True)
        return d / "model"

    def general(self, init: str) -> Path:
        from tinybert_edge.pipeline import distill_general

        d = self.shared / f"gd-{init}"
        c = self.cfg
        cfg = TrainConfig(epochs=max(1, math.ceil(c.gd_steps * c.gd_batch_size / max(1, self._rows(self.inp.corpus)))),
                          max_steps=c.gd_steps, batch_size=c.gd_batch_size, learning_rate=c.gd_lr,
                          max_seq_len=c.gd_seq_len, seed=42)
        distill_general(self.inp.pretrained, self.inp.corpus, d, cfg, preset_overrides=self._overrides(),
                        init=init, use_cache=False, snapshot_steps=c.gd_snapshots, resume=True)
        return d

    def augmented(self, small: bool) -> Path:
        """The augmented training file, rows shuffled once on disk (seeded) so a step budget
        shorter than an epoch still sees every original sentence's variants."""
        from tinybert_edge.augment import AugmentSettings, Augmenter, augment_file, teacher_embedding_neighbours

        src = self._train_file(small)
        d = self.shared / ("aug-small" if small else "aug")
        raw, shuffled = d / "train_aug.tsv", d / "train_aug_shuffled.tsv"
        if shuffled.is_file():
            return shuffled
        if not raw.is_file():
            c = self.cfg
            settings = AugmentSettings(n=c.aug_n, p=c.aug_p, k=c.aug_k, seed=42)
            aug = Augmenter(settings, teacher_embedding_neighbours(self.inp.pretrained), None)
            self.log(f"augmenting {src} (N={c.aug_n}, p={c.aug_p}, K={c.aug_k}, teacher-embedding neighbours) ...")
            augment_file(src, raw, aug, resume=raw.with_name(raw.name + ".progress").is_file())
        lines = raw.read_text(encoding="utf-8").splitlines(keepends=True)
        body = lines[1:]
        random.Random(0).shuffle(body)
        write_bytes_atomically(shuffled, (lines[0] + "".join(body)).encode("utf-8"))
        return shuffled

    def _overrides(self) -> dict:
        return dict(self.cfg.student)

    # ---- arms ------------------------------------------------------------------------------
    def names(self, selection: list[str] | None) -> list[str]:
        """Arm instances (name or name@seed) to run, in the order given (default: grid order).

        An arm name stands for all its seeds; `name@seed` for one of them, so a sitting can run
        the first seed of many arms before the other seeds of any.

        Raises:
            ConfigError: an unknown arm name, or a seed the arm does not run.
        """
        chosen = list(self.arms) if not selection else selection
        unknown = [a for a in chosen if a.split("@")[0] not in self.arms]
        if unknown:
            raise ConfigError(f"unknown arm(s) {', '.join(unknown)}; known arms: {', '.join(self.arms)}")
        # every "% of the teacher" needs its teacher's row: run it first when not asked for
        bare = [a.split("@")[0] for a in chosen]
        refs = ["small-teacher"] if any(self.arms[a].small for a in bare) else []
        chosen = [r for r in ["teacher", *refs] if r not in bare] + chosen
        out = []
        for item in chosen:
            name, _, seed = item.partition("@")
            arm = self.arms[name]
            seeds = self.cfg.seeds[:arm.seeds]
            if seed:
                if not seed.isdigit() or int(seed) not in seeds:
                    raise ConfigError(f"{item}: arm {name} runs seeds {', '.join(map(str, seeds))}; "
                                      f"use one of {', '.join(f'{name}@{s}' for s in seeds)}")
                inst = [name if int(seed) == seeds[0] else item]
            else:
                inst = [name] + [f"{name}@{s}" for s in seeds[1:]]
            out += [i for i in inst if i not in out]
        return out

    def arm_dir(self, instance: str) -> Path:
        return self.runs / "arms" / instance

    def run(self, instance: str) -> dict:
        """Run one arm instance (or read its finished result)."""
        from tinybert_edge.pipeline import TaskSteps, distill_task, evaluate

        d = self.arm_dir(instance)
        done = d / "result.json"
        if done.is_file():
            return json.loads(done.read_text())
        name, _, seed_s = instance.partition("@")
        arm = self.arms[name]
        seed = int(seed_s) if seed_s else self.cfg.seeds[0]
        c = self.cfg
        t0 = time.perf_counter()
        teacher = self.teacher(arm.small)
        steps_total = 0
        if arm.init is None:  # the teacher row
            model = teacher
            seconds = json.loads((teacher.parent / "summary.json").read_text()).get("seconds_total", 0.0)
            steps_total = json.loads((teacher.parent / "summary.json").read_text())["steps"]
        else:
            train = self._train_file(arm.small)
            data = self.augmented(arm.small) if arm.da else train
            per_epoch = math.ceil(self._rows(train) / c.batch_size)
            s1_steps = int(c.step1_epochs * per_epoch * arm.budget)
            s2_steps = int(c.step2_epochs * per_epoch * arm.budget)
            data_epochs = lambda n: max(1, math.ceil(n / math.ceil(self._rows(data) / c.batch_size)))  # noqa: E731
            if arm.small:
                floor = int(c.small_min_data_epochs * math.ceil(self._rows(data) / c.batch_size))
                s1_steps, s2_steps = max(s1_steps, floor), max(s2_steps, floor)
            step1 = TrainConfig(epochs=data_epochs(s1_steps), max_steps=s1_steps, batch_size=c.batch_size,
                                learning_rate=c.step1_lr, max_seq_len=c.seq_len, seed=seed) if arm.step1 else None
            step2 = None
            if arm.step2 is not None:
                n2 = s2_steps + (0 if arm.step1 else s1_steps)  # every arm: the same steps in all
                step2 = TrainConfig(epochs=data_epochs(n2), max_steps=n2, batch_size=c.batch_size,
                                    learning_rate=c.step2_lr, max_seq_len=c.seq_len, seed=seed,
                                    average_last=arm.average_last)
            init_kw: dict = {}
            if arm.gd is not None:
                g = self.general(arm.gd)
                init_kw["student_init"] = (g / "snapshots" / f"step-{arm.gd_step:08d}" if arm.gd_step
                                           else g / "model")
            elif arm.init == "sliced":
                init_kw.update(init="sliced", slice_from=self.inp.pretrained)
            elif arm.init == "sliced-finetuned":
                init_kw.update(init="sliced", slice_from=teacher)
            else:
                init_kw["init"] = "random"
            steps = TaskSteps(step1, step2, prediction_target=arm.step2 or "teacher",
                              weight_embedding=arm.weights[0], weight_attention=arm.weights[1],
                              weight_hidden=arm.weights[2])
            self.log(f"== arm {instance}: {arm.label}")
            model = distill_task(teacher, data, d / "student", steps, layer_map=arm.layer_map,
                                 preset_overrides=self._overrides(), dev_file=self.inp.dev,
                                 cache_root=self.shared / "gd-cache", resume=True,
                                 # every arm ran the teacher in step 2 before the logit cache existed;
                                 # the same code path keeps arms (and their wall times) comparable
                                 reuse_teacher_logits=False, **init_kw)
            seconds = 0.0
            for sub in ("step1-intermediate", "step2-prediction"):
                s = d / "student" / sub / "summary.json"
                if s.is_file():
                    info = json.loads(s.read_text())
                    seconds += info.get("seconds_total", info.get("seconds_this_process", 0.0))
                    steps_total += info["steps"]
        dev = evaluate(model, self.inp.dev, max_seq_len=c.seq_len)
        test = evaluate(model, self.inp.test, max_seq_len=c.seq_len)
        from tinybert_edge.models import load_config

        labels = [load_config(model).id2label[i] for i in range(len(dev["per_class_recall"]))]
        result = {"arm": name, "instance": instance, "seed": seed, "code": code_version(), "group": arm.group,
                  "label": arm.label,
                  "paper": arm.paper, "spec": asdict(arm), "labels": labels, "steps": steps_total,
                  "train_seconds": round(seconds, 1), "wall_seconds_this_call": round(time.perf_counter() - t0, 1),
                  "prerequisites": self._prerequisites(arm), "model": str(model),
                  "dev": _metrics(dev), "test": _metrics(test)}
        raw = d / "student" / "step2-prediction" / "model-raw"
        if arm.average_last and raw.is_dir():  # the same run's last-step weights, for the paired comparison
            result["raw_dev"] = _metrics(evaluate(raw, self.inp.dev, max_seq_len=c.seq_len))
            result["raw_test"] = _metrics(evaluate(raw, self.inp.test, max_seq_len=c.seq_len))
        write_json_atomically(done, result)
        return result

    def _prerequisites(self, arm: Arm) -> dict:
        """Steps and minutes of the shared inputs an arm stands on (GD, DA)."""
        out = {}
        if arm.gd:
            gd = self.shared / f"gd-{arm.gd}"
            s = json.loads((gd / "summary.json").read_text())
            # (steps, seconds) of every timing this GD run recorded: its snapshots and its end
            timings = [(snap["step"], snap["training_seconds"]) for snap in
                       (json.loads(f.read_text()) for f in sorted(gd.glob("snapshots/step-*/snapshot.json")))]
            timings.append((s["steps"], s.get("seconds_total", 0.0)))
            steps, wall = next(((n, sec) for n, sec in timings if n == arm.gd_step), timings[-1]) \
                if arm.gd_step else timings[-1]
            out["gd"] = {"steps": steps, "minutes": _unpaused_seconds(timings, steps) / 60, "wall_minutes": wall / 60}
        if arm.da:
            side = json.loads((self.shared / ("aug-small" if arm.small else "aug") / "train_aug.tsv.json").read_text())
            out["da"] = {"rows_in": side.get("rows"), "rows_out": side.get("output_rows")}
        return out


def _unpaused_seconds(timings: list[tuple[int, float]], steps: int) -> float:
    """Seconds a GD run took to reach `steps`, without the time it sat paused.

    Wall time counts the minutes a run was stopped (SIGSTOP while another job had the cores).
    Between two recorded timings (snapshots, the end) the run took some seconds per step; a
    segment slower than twice the fastest segment was paused, and its steps are counted at the
    median rate of the other segments instead (every GD step costs the same compute). Clean segments keep their
    measured time, so a run that was never paused shows its wall time.

    Args:
        timings: (step, training seconds so far) pairs of one GD run.
        steps: the step to report (one of the timings' steps).

    Returns:
        seconds.
    """
    points = sorted({(0, 0.0), *((n, sec) for n, sec in timings if n > 0)})
    segments = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(points, points[1:]) if b[0] <= steps and b[0] > a[0]]
    if not segments:
        return 0.0
    fastest = min(sec / n for n, sec in segments)
    clean = statistics.median(sec / n for n, sec in segments if sec / n <= 2 * fastest)
    return sum(sec if sec / n <= 2 * fastest else n * clean for n, sec in segments)


def code_version() -> str:
    """The git commit of the code that ran an arm (arms of one grid may span several sittings)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def _metrics(m: dict) -> dict:
    return {k: m[k] for k in ("accuracy", "macro_f1", "f1", "mcc", "majority", "per_class_recall", "examples")}


# ---- the table ---------------------------------------------------------------------------------
def summarize(results: list[dict]) -> dict:
    """Aggregate arm instances into rows (mean and std over seeds), with % of the teacher.

    Returns:
        {"rows": [...], "teacher": {...}, "small_teacher": {...}}
    """
    by_arm: dict[str, list[dict]] = {}
    for r in results:
        by_arm.setdefault(r["arm"], []).append(r)
    ref = {"teacher": by_arm.get("teacher", [None])[0], "small-teacher": by_arm.get("small-teacher", [None])[0]}
    rows = []
    for name, rs in by_arm.items():
        first = rs[0]
        teacher = ref["small-teacher"] if first["spec"]["small"] else ref["teacher"]
        row = {"arm": name, "group": first["group"], "label": first["label"], "paper": first["paper"],
               "seeds": [r["seed"] for r in rs], "labels": first["labels"],
               "steps": first["steps"], "train_minutes": statistics.mean(r["train_seconds"] for r in rs) / 60,
               "prerequisites": first["prerequisites"]}
        for split in ("dev", "test"):
            for k in ("accuracy", "macro_f1"):
                vals = [r[split][k] for r in rs]
                row[f"{split}_{k}"] = statistics.mean(vals)
                row[f"{split}_{k}_std"] = statistics.stdev(vals) if len(vals) > 1 else None
                if teacher is not None:
                    row[f"{split}_{k}_kept"] = row[f"{split}_{k}"] / teacher[split][k]
            recalls = list(zip(*[r[split]["per_class_recall"] for r in rs]))
            row[f"{split}_per_class_recall"] = [statistics.mean(x) for x in recalls]
        if all(f"raw_{split}" in r for r in rs for split in ("dev", "test")):
            # weight-averaging arms: the same runs' last-step weights, and the paired difference
            raw = {}
            for split in ("dev", "test"):
                last = [r[f"raw_{split}"]["accuracy"] for r in rs]
                diff = [r[split]["accuracy"] - x for r, x in zip(rs, last)]
                raw[f"{split}_accuracy"] = statistics.mean(last)
                raw[f"{split}_accuracy_kept"] = statistics.mean(last) / teacher[split]["accuracy"] if teacher else None
                raw[f"{split}_averaged_minus_last"] = diff
            row["last_step_weights"] = raw
        rows.append(row)
    return {"rows": rows, "teacher": ref["teacher"], "small_teacher": ref["small-teacher"]}


def to_markdown(summary: dict, cfg: GridConfig, machine: str) -> str:
    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}"

    def acc(row, split):
        std = row[f"{split}_accuracy_std"]
        return f"{100 * row[f'{split}_accuracy']:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")

    lines = [f"TinyBERT ablations on Rotten Tomatoes (dev {summary['rows'][0]['labels'] if summary['rows'] else ''}), "
             f"{machine}. Budget per arm: step 1 {cfg.step1_epochs} and step 2 {cfg.step2_epochs} epochs of the "
             f"original training set in optimizer steps (batch {cfg.batch_size}, seq {cfg.seq_len}); GD "
             f"{cfg.gd_steps} steps of {cfg.gd_batch_size} x {cfg.gd_seq_len} tokens; DA N={cfg.aug_n}, "
             f"p={cfg.aug_p}, K={cfg.aug_k} (teacher-embedding neighbours). GD minutes leave out the minutes a "
             "GD run sat paused (a segment between its snapshots slower than twice the fastest counts at the "
             "median rate of the others).", "",
             "| group | arm | seeds | dev acc % | test acc % | % of teacher acc (dev / test) | macro-F1 dev / test | "
             "% of teacher macro-F1 (dev / test) | recall per class (test) | steps | train min | GD / DA | paper |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---|"]
    for r in summary["rows"]:
        pre = r["prerequisites"]
        pre_s = "; ".join(filter(None, [f"GD {pre['gd']['steps']} steps ({pre['gd']['minutes']:.0f} min)"
                                        if "gd" in pre else "",
                                        f"DA {pre['da']['rows_in']:,} -> {pre['da']['rows_out']:,} rows"
                                        if "da" in pre and pre["da"].get("rows_out") else ""])) or "-"
        recall = ", ".join(f"{lab} {100 * x:.0f}" for lab, x in zip(r["labels"], r["test_per_class_recall"]))
        lines.append(
            f"| {r['group']} | {r['label']} (`{r['arm']}`) | {len(r['seeds'])} | {acc(r, 'dev')} | {acc(r, 'test')} | "
            f"{pct(r.get('dev_accuracy_kept'))} / {pct(r.get('test_accuracy_kept'))} | "
            f"{100 * r['dev_macro_f1']:.1f} / {100 * r['test_macro_f1']:.1f} | "
            f"{pct(r.get('dev_macro_f1_kept'))} / {pct(r.get('test_macro_f1_kept'))} | {recall} | {r['steps']:,} | "
            f"{r['train_minutes']:.1f} | {pre_s} | {r['paper'] or '-'} |")
    for r in summary["rows"]:
        raw = r.get("last_step_weights")
        if raw:
            def diffs(split):
                d = raw[f"{split}_averaged_minus_last"]
                return f"{', '.join(f'{100 * x:+.2f}' for x in d)} (mean {100 * statistics.mean(d):+.2f})"
            lines += ["", f"`{r['arm']}`, the same runs' last-step weights (not averaged): dev "
                          f"{100 * raw['dev_accuracy']:.2f} / test {100 * raw['test_accuracy']:.2f} % "
                          f"({pct(raw['dev_accuracy_kept'])} / {pct(raw['test_accuracy_kept'])} % of the teacher); "
                          f"averaged minus last, points per seed: dev {diffs('dev')}, test {diffs('test')}."]
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    """Two panels: % of the teacher's accuracy per arm (dev and test, seed std as error bars), and
    the GD-minutes curve for random and sliced init."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summary["rows"] if r["group"] != "GD curve" and r.get("dev_accuracy_kept") is not None]
    curve = [r for r in summary["rows"] if r["group"] == "GD curve"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(15, max(5.0, 0.38 * len(rows) + 1.5)),
                                  gridspec_kw={"width_ratios": [1.6, 1]})
    y = list(range(len(rows)))[::-1]
    for off, split, color in ((0.18, "dev", "#4c72b0"), (-0.18, "test", "#dd8452")):
        vals = [100 * r[f"{split}_accuracy_kept"] for r in rows]
        errs = [0 if r[f"{split}_accuracy_std"] is None else 100 * r[f"{split}_accuracy_std"] /
                (r[f"{split}_accuracy"] / r[f"{split}_accuracy_kept"]) for r in rows]
        ax.barh([v + off for v in y], vals, height=0.36, xerr=errs, color=color, label=split, capsize=2)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r['label']} [{r['group']}]" for r in rows], fontsize=8)
    lo = min([100 * r[f"{s}_accuracy_kept"] for r in rows for s in ("dev", "test")] + [80])
    ax.set_xlim(max(0, lo - 3), 103)
    # in the legend, not as text at the lines: 96.8, 98 and 99 are too close to label in place
    for x, style, what in ((96.8, ":", "96.8 %: the paper's TinyBERT-4"), (98, "--", "98 %: quick-profile goal"),
                           (99, "-", "99 %: full-profile goal")):
        ax.axvline(x, color="gray", linestyle=style, linewidth=0.8, label=what)
    ax.set_xlabel("% of the teacher's accuracy (96.8 % = the paper's TinyBERT-4 claim)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=5, fontsize=8)  # below the axes: never over a bar
    ax.set_title("Student accuracy as % of its teacher's, per arm")
    ends = {"random": ("gd-curve-random-0", "paper-no-da"), "sliced": ("ours-sliced-td", "ours-sliced-gd-td")}
    by_name = {r["arm"]: r for r in summary["rows"]}
    for init, color in (("random", "#c44e52"), ("sliced", "#55a868")):
        pts = []
        start, end = (by_name.get(n) for n in ends[init])
        if start is not None and start.get("dev_accuracy_kept") is not None:
            pts.append((0.0, 100 * start["dev_accuracy_kept"]))
        for r in curve + ([end] if end is not None else []):
            if (r["arm"].startswith(f"gd-curve-{init}-") or r is end) and "gd" in r["prerequisites"] \
                    and r.get("dev_accuracy_kept") is not None:
                pts.append((r["prerequisites"]["gd"]["minutes"], 100 * r["dev_accuracy_kept"]))
        pts.sort()
        if pts:
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=color, label=f"{init} init")
    ax2.set_xlabel("general-distillation minutes\n(2-core CPU, paused minutes left out)")
    ax2.set_ylabel("student dev accuracy, % of teacher (TD after GD, no DA)")
    ax2.set_title("What GD buys, per init")
    ax2.grid(alpha=0.3)
    if ax2.lines:
        ax2.legend(fontsize=8)
    else:
        ax2.text(0.5, 0.5, "no general-distillation arms finished yet\n(gd-curve-*, paper-no-da, ours-sliced-gd-td)",
                 transform=ax2.transAxes, ha="center", va="center", fontsize=10, color="gray")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def machine() -> str:
    from tinybert_edge.benchmarks.harness import machine_info

    info = machine_info()
    # the widest vector ISA names the machine: two "AMD EPYC" machines (avx512_bf16 vs avx2 only)
    # train the same arm at 2.4x different speeds, and their kernels round differently
    widest = [f for f in ("amx_int8", "avx512_bf16", "avx512f", "avx2", "sve", "asimd") if f in info["isa"]][:1]
    return f"{info['cpu']}{f' ({widest[0]})' if widest else ''}, {info['cores']} cores"


def load_carried(paths: list[Path], cfg: GridConfig) -> dict[str, dict]:
    """Arm instances of earlier reports, to carry into this one (see `--carry`).

    Args:
        paths: reproduce.json files written by this driver; a later file wins for an instance
            that two of them hold.
        cfg: this grid's budgets; a carried report must have been made with the same ones.

    Returns:
        {instance: result}, each result with a "carried_from" entry (report, date, machine).

    Raises:
        ConfigError: a file that is missing, not JSON, not this driver's report, or made with
            other budgets (the rows would not be comparable).
    """
    out: dict[str, dict] = {}
    now = asdict(cfg)
    for path in paths:
        try:
            report = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"--carry {path}: no such file; give a reproduce.json this driver wrote "
                              "(e.g. benchmarks/results/reproduce/reproduce.json)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"--carry {path}: not a readable JSON report ({e}); restore it from git "
                              "(git checkout -- <file>) or leave --carry out") from None
        if not isinstance(report, dict) or report.get("schema") != SCHEMA or not isinstance(report.get("arms"), list):
            raise ConfigError(f"--carry {path}: not a report of this driver (schema {SCHEMA!r} with an 'arms' "
                              "list); carry only the reproduce.json it writes")
        old = report.get("config") or {}
        differ = sorted(k for k in now.keys() & old.keys() if json.dumps(now[k]) != json.dumps(old[k]))
        if differ:
            raise ConfigError(f"--carry {path}: made with other grid budgets ({', '.join(differ)} differ), so its "
                              "rows are not comparable; carry it only with the --config it was made with")
        for r in report["arms"]:
            if not (isinstance(r, dict) and {"arm", "instance", "seed", "dev", "test"} <= r.keys()):
                raise ConfigError(f"--carry {path}: an arm entry lacks arm/instance/seed/dev/test; the file is "
                                  "damaged: restore it from git or leave --carry out")
            carried = dict(r)
            carried["carried_from"] = r.get("carried_from") or {
                "report": str(path), "date": report.get("date"), "machine": report.get("machine")}
            out[r["instance"]] = carried
    return out


def write_report(grid: Grid, out: Path, carried: dict[str, dict] | None = None) -> dict:
    """Write the table (JSON + Markdown + PNG) of every finished arm instance in the run
    directory, plus the carried instances it does not hold.

    Args:
        grid: the grid whose RUNS_DIR/arms is read.
        out: report directory (made if missing; each file is replaced atomically).
        carried: instances from earlier reports (load_carried); RUNS_DIR wins where both hold one.

    Returns:
        The report written to reproduce.json.
    """
    results = []
    here = set()
    for inst_dir in sorted((grid.runs / "arms").glob("*")):
        f = inst_dir / "result.json"
        if f.is_file():
            r = json.loads(f.read_text())
            if r["arm"] in grid.arms:  # GD minutes as computed now (older results stored wall minutes)
                r["prerequisites"] = grid._prerequisites(grid.arms[r["arm"]])
            results.append(r)
            here.add(r["instance"])
    # a carried result keeps the prerequisites it was measured with: its shared inputs are gone
    results += [r for inst, r in (carried or {}).items() if inst not in here]
    # instances measured again: does the re-run give the carried numbers (same code path, same seed)?
    again = [(r, carried[r["instance"]]) for r in results if "carried_from" not in r and r["instance"] in (carried or {})]
    order = {name: i for i, name in enumerate(grid.arms)}
    results.sort(key=lambda r: (order.get(r["arm"], 1 << 30), r["seed"]))
    summary = summarize(results)
    report = {"schema": SCHEMA, "date": _dt.date.today().isoformat(), "machine": machine(),
              "config": asdict(grid.cfg), "summary": summary, "arms": results}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomically(out / "reproduce.json", report)
    md = to_markdown(summary, grid.cfg, report["machine"])
    origins: dict[tuple, list[str]] = {}
    for r in results:
        if "carried_from" in r:
            c = r["carried_from"]
            origins.setdefault((c.get("date"), c.get("machine")), []).append(f"`{r['instance']}`")
    if again:
        same = [f"`{r['instance']}`" for r, c in again if (r["dev"]["accuracy"], r["test"]["accuracy"]) ==
                (c["dev"]["accuracy"], c["test"]["accuracy"])]
        other = [f"`{r['instance']}` (dev {100 * r['dev']['accuracy']:.2f} vs {100 * c['dev']['accuracy']:.2f}, "
                 f"test {100 * r['test']['accuracy']:.2f} vs {100 * c['test']['accuracy']:.2f})"
                 for r, c in again if (r["dev"]["accuracy"], r["test"]["accuracy"]) !=
                 (c["dev"]["accuracy"], c["test"]["accuracy"])]
        md += ("\n\nMeasured again and also in a carried report: " +
               "; ".join(filter(None, [f"same accuracies: {', '.join(same)}" if same else "",
                                       f"different (now vs carried): {', '.join(other)}" if other else ""])) + ".")
    if origins:
        md += "\n\nCarried from earlier reports (their run directories are gone; measured then, not now): " + \
              "; ".join(f"{', '.join(v)} ({d}, {m})" for (d, m), v in origins.items()) + "."
    write_bytes_atomically(out / "reproduce.md", (md + "\n").encode())
    if summary["rows"]:
        plot(summary, out / "reproduce.png")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scripts.reproduce", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", required=True, help="run directories (large: one student per arm); reused to resume")
    p.add_argument("--out", default="benchmarks/results/reproduce", help="report directory (JSON, Markdown, PNG)")
    p.add_argument("--arms", help="comma-separated arm names (default: all, in grid order)")
    p.add_argument("--config", help="JSON file overriding the grid budgets (GridConfig fields)")
    p.add_argument("--list", action="store_true", help="list the arms and exit")
    p.add_argument("--pretrained", help="pre-trained teacher (default: the embedded MiniLM)")
    p.add_argument("--train")
    p.add_argument("--dev")
    p.add_argument("--test")
    p.add_argument("--corpus")
    p.add_argument("--carry", action="append", default=[], metavar="REPORT_JSON",
                   help="an earlier reproduce.json: its arm instances that RUNS_DIR lacks count as finished "
                        "and stay in the table, marked as carried (repeatable)")
    a = p.parse_args(argv)
    from tinybert_edge.cli import _quiet_transformers

    _quiet_transformers()
    try:
        cfg = GridConfig.load(a.config)
        if a.list:
            for arm in default_arms(cfg.gd_snapshots):
                print(f"{arm.name:28s} {arm.group:14s} {arm.label}")
            return 0
        if a.pretrained and a.train and a.dev and a.test and a.corpus:
            inputs = Inputs(*(Path(x) for x in (a.pretrained, a.train, a.dev, a.test, a.corpus)))
        else:
            from tinybert_edge.fetch import fetch_default

            d = fetch_default()
            inputs = Inputs(Path(a.pretrained or d.teacher), Path(a.train or d.train), Path(a.dev or d.dev),
                            Path(a.test or d.test), Path(a.corpus or d.corpus))
        carried = load_carried([Path(x) for x in a.carry], cfg)
        grid = Grid(Path(a.runs), cfg, inputs)
        todo = grid.names([x.strip() for x in a.arms.split(",") if x.strip()] if a.arms else None)
        finished = lambda inst: (grid.arm_dir(inst) / "result.json").is_file()  # noqa: E731
        # The teacher an arm distils from is the one in RUNS_DIR/shared: when new arms run, their
        # teacher row runs too (a carried one would be a reference the new rows never saw).
        new_small = {grid.arms[i.partition("@")[0]].small for i in todo if not finished(i) and i not in carried}
        for i, inst in enumerate(todo, 1):
            fresh = not finished(inst)
            arm = grid.arms[inst.partition("@")[0]]
            if fresh and inst in carried and not (arm.init is None and arm.small in new_small):
                c = carried[inst]["carried_from"]
                print(f"[{i}/{len(todo)}] {inst}: carried from {c['report']} ({c['date']}, {c['machine']})",
                      flush=True)
                continue
            t0 = time.perf_counter()
            r = grid.run(inst)
            if fresh:
                print(f"[{i}/{len(todo)}] {inst}: dev {100 * r['dev']['accuracy']:.2f} %, test "
                      f"{100 * r['test']['accuracy']:.2f} % ({(time.perf_counter() - t0) / 60:.1f} min)", flush=True)
                write_report(grid, Path(a.out), carried)  # after each arm: a stopped grid loses no row
        write_report(grid, Path(a.out), carried)
        print(f"wrote {Path(a.out) / 'reproduce.md'} ({len(todo)} arm instances)")
        return 0
    except KitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
