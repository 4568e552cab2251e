"""One training loop for fine-tuning and every distillation stage, resumable and multi-process.

Runs under HF Accelerate: one process as is, several under `torchrun` or `accelerate launch`
(gloo on CPU, NCCL on GPU). AdamW, linear warmup then linear decay, global grad-norm clipping.

A run directory holds:
    tinybert_edge_run.json   what the run is (kind and every option); resume refuses a mismatch
    checkpoints/step-N/      trainable weights (safetensors), optimizer (torch, loaded with
                             weights_only), scheduler + data position + Python RNG (JSON), torch
                             RNG per process (safetensors), the objective's extra state per
                             process if it has one (safetensors), manifest.json with sha256 of
                             each file
    checkpoints/latest       name of the newest complete checkpoint
                             (with --average-last, each checkpoint also holds the running
                             average of the weights so far, average.safetensors)
    metrics.jsonl            per-loss values every `log_every` steps
    objective-state-rankR.safetensors  the objective's extra state at the end, if any (e.g. the
                             teacher logits task step 1 recorded for step 2)
    model/                   the final HF model directory, written atomically at the end
                             (with average_last: the averaged weights)
    model-raw/               with average_last only: the last step's weights, for comparison
    summary.json             written last; its presence means the run completed
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs
from safetensors.torch import load_file, load_model, save as save_safetensors, save_file, save_model
from tqdm.auto import tqdm

from .errors import CheckpointError, ConfigError
from .files import sha256_file, write_bytes_atomically, write_json_atomically
from .models import RUN_MARKER, save_model_atomically

CHECKPOINT_FORMAT = 1
EXTRA_STATE = "objective-state-rank{rank}.safetensors"


@dataclass(frozen=True)
class TrainConfig:
    """Optimization settings shared by every stage.

    Attributes:
        epochs: passes over the data.
        max_steps: stop after this many optimizer steps (None: all epochs). The LR schedule
            spans min(max_steps, epochs * steps_per_epoch).
        batch_size: global batch size, split evenly over processes.
        learning_rate: peak AdamW learning rate.
        weight_decay: AdamW weight decay (not applied to biases and LayerNorm).
        warmup_ratio: fraction of steps with linear warmup.
        max_grad_norm: global gradient-norm clip (0 disables).
        max_seq_len: tokens per sequence; longer texts are truncated and counted.
        seed: seed for initialization, dropout and data order.
        checkpoint_every: save a checkpoint every N steps (0 disables).
        keep_checkpoints: how many checkpoints to keep.
        mixed_precision: "no" or "bf16" (autocast; where the hardware supports it).
        log_every: write per-loss metrics every N steps.
        threads: torch intra-op threads per process (None: cores / processes).
        average_last: the saved model is the uniform average of the weights after each of the
            last `average_last` fraction of steps (tail / Polyak averaging, as SWA does with one
            sample per step); 0 saves the last step's weights. The last step's weights are then
            kept in model-raw/ beside it. The average lies in a flatter region than any one step,
            which is why it tends to generalize a little better.
    """

    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 32
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    max_seq_len: int = 64
    seed: int = 42
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    mixed_precision: str = "no"
    log_every: int = 10
    threads: int | None = None
    average_last: float = 0.0

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.max_steps is None or self.max_steps >= 1, f"max steps must be >= 1, got {self.max_steps}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.learning_rate > 0, f"learning rate must be > 0, got {self.learning_rate}"),
            (0 <= self.warmup_ratio < 1, f"warmup ratio must be in [0, 1), got {self.warmup_ratio}"),
            (self.max_grad_norm >= 0, f"max grad norm must be >= 0, got {self.max_grad_norm}"),
            (self.max_seq_len >= 3, f"max sequence length must be >= 3, got {self.max_seq_len}"),
            (self.checkpoint_every >= 0, f"checkpoint interval must be >= 0, got {self.checkpoint_every}"),
            (self.keep_checkpoints >= 1, f"keep checkpoints must be >= 1, got {self.keep_checkpoints}"),
            (self.mixed_precision in ("no", "bf16"), f"mixed precision must be no or bf16, got {self.mixed_precision!r}"),
            (self.log_every >= 1, f"log interval must be >= 1, got {self.log_every}"),
            (self.threads is None or self.threads >= 1, f"threads must be >= 1, got {self.threads}"),
            (0 <= self.average_last <= 1, f"average-last must be a fraction of the steps in [0, 1], got "
                                          f"{self.average_last}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.average_last:
            # absent when off, so specs and GD-cache keys of runs made before it existed still match
            d.pop("average_last")
        return d


# Options that may change between a run and its resumption without changing its result.
RESUME_FREE_KEYS = {"checkpoint_every", "keep_checkpoints", "log_every", "threads"}


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    model_dir: Path
    steps: int
    seconds: float
    resumed_from: int
    final_losses: dict[str, float]


def _strip_free(d: dict) -> dict:
    d = json.loads(json.dumps(d))
    train = d.get("train", {})
    for k in RESUME_FREE_KEYS:
        train.pop(k, None)
    return d


def check_run_dir(run_dir: Path, run_spec: dict, *, resume: bool, overwrite: bool) -> bool:
    """Decide whether a run may write into `run_dir` (read-only; every process may call it).

    Args:
        run_dir: where the run writes.
        run_spec: JSON-able description of the run (kind, inputs, options).
        resume: continue an existing run of the same spec.
        overwrite: allow replacing a run, or writing into a directory that holds something else.

    Returns:
        True when an existing run will be resumed.

    Raises:
        ConfigError: the directory exists and is not ours, or holds a run, and neither
            --resume nor --overwrite was given.
        CheckpointError: --resume on a run with different options, or on a foreign directory.
    """
    marker = run_dir / RUN_MARKER
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"output path {run_dir} is a file; choose a directory for --out")
    if marker.is_file():
        try:
            old = json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{marker} is unreadable ({e}); pass --overwrite to start the run again") from None
        if resume:
            a, b = _strip_free(old.get("spec", {})), _strip_free(run_spec)
            if a != b:
                raise CheckpointError(
                    f"cannot resume {run_dir}: the run was started with different options "
                    f"({_first_difference(a, b)}); resume with the same options, or use a new --out"
                )
            return True
        if not overwrite:
            raise ConfigError(
                f"{run_dir} already holds a tinybert-edge run; pass --resume to continue it, --overwrite to "
                "replace it, or choose another --out"
            )
        return False
    if run_dir.exists() and any(run_dir.iterdir()):
        if resume:
            raise CheckpointError(f"cannot resume {run_dir}: it holds no tinybert-edge run ({RUN_MARKER} missing)")
        if not overwrite:
            raise ConfigError(
                f"output directory {run_dir} exists and is not a tinybert-edge run; choose another --out or "
                "pass --overwrite"
            )
    return False


def init_run_dir(run_dir: Path, run_spec: dict) -> None:
    """Create a fresh run directory (main process only): drop our stale outputs, write the marker."""
    run_dir.mkdir(parents=True, exist_ok=True)
    # model-raw/: a run replaced by one without weight averaging must not keep the old last-step model
    for stale in ("checkpoints", "summary.json", "metrics.jsonl", "model-raw"):
        p = run_dir / stale
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    write_json_atomically(run_dir / RUN_MARKER, {"tool": "tinybert-edge", "spec": run_spec})


def _first_difference(a, b, path="") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else k)
    return f"{path}: was {a!r}, now {b!r}"


def _lr_lambda(total_steps: int, warmup_steps: int):
    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return f


def _param_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _make_optimizer(module: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = _param_groups(module, cfg.weight_decay)
    try:
        # The fused kernel makes the embedding table's update ~5x cheaper on CPU.
        return torch.optim.AdamW(groups, lr=cfg.learning_rate, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=cfg.learning_rate)


class WeightAverage:
    """Uniform running average of a model's parameters over the last steps of a run.

    Args:
        module: the model whose parameters are averaged (the trained model, not the objective).
        total_steps: the run's steps.
        fraction: the share of the last steps to average (TrainConfig.average_last).
    """

    FILE = "average.safetensors"

    def __init__(self, module: torch.nn.Module, total_steps: int, fraction: float):
        self.module = module
        # at least one step: a tiny fraction of a short run still averages the last step only
        self.start = total_steps - max(1, round(fraction * total_steps))
        self.count = 0
        self.mean: dict[str, torch.Tensor] = {}

    def update(self, step: int) -> None:
        """Fold the weights after optimizer step `step` (1-based) into the mean when it is in the tail."""
        if step <= self.start:
            return
        self.count += 1
        with torch.no_grad():
            for name, p in self.module.named_parameters():
                if name not in self.mean:
                    self.mean[name] = p.detach().float().clone()
                else:
                    self.mean[name].add_(p.detach().float() - self.mean[name], alpha=1.0 / self.count)

    def state(self) -> dict[str, torch.Tensor] | None:
        if not self.count:
            return None
        return {**{f"mean.{k}": v.contiguous() for k, v in self.mean.items()},
                "count": torch.tensor(self.count, dtype=torch.int64)}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self.count = int(state["count"])
        self.mean = {k[len("mean."):]: v.clone() for k, v in state.items() if k.startswith("mean.")}

    def apply(self) -> None:
        """Write the averaged weights into the module."""
        with torch.no_grad():
            for name, p in self.module.named_parameters():
                p.copy_(self.mean[name].to(p.dtype))


class Checkpointer:
    """Atomic, verifiable checkpoints of a run (see module docstring for the layout)."""

    def __init__(self, run_dir: Path, keep: int):
        self.dir = run_dir / "checkpoints"
        self.keep = keep

    def latest(self) -> Path | None:
        pointer = self.dir / "latest"
        if pointer.is_file():
            p = self.dir / pointer.read_text().strip()
            if p.is_dir():
                return p
        found = sorted(p for p in self.dir.glob("step-*") if p.is_dir())
        return found[-1] if found else None

    def save(self, accelerator, objective, optimizer, scheduler, state: dict,
             extra: dict[str, torch.Tensor] | None = None, average: dict[str, torch.Tensor] | None = None) -> Path:
        name = f"step-{state['step']:08d}"
        tmp = self.dir / f".{name}.tmp"
        if accelerator.is_main_process:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        rank = accelerator.process_index
        rng = {"torch_cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["torch_cuda"] = torch.cuda.get_rng_state()
        save_file(rng, str(tmp / f"rng-rank{rank}.safetensors"))
        (tmp / f"python-random-rank{rank}.json").write_text(json.dumps(random.getstate()))
        if extra is not None:  # per process: each records the rows of its own shard
            save_file(extra, str(tmp / EXTRA_STATE.format(rank=rank)))
        if accelerator.is_main_process:
            save_model(accelerator.unwrap_model(objective), str(tmp / "trainable.safetensors"))
            if average is not None:  # in the manifest like the weights: a resume averages on exactly
                save_file(average, str(tmp / WeightAverage.FILE))
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            (tmp / "state.json").write_text(json.dumps({**state, "scheduler": scheduler.state_dict()}, indent=2))
        accelerator.wait_for_everyone()
        final = self.dir / name
        if accelerator.is_main_process:
            files = sorted(p.name for p in tmp.iterdir())
            manifest = {"format": CHECKPOINT_FORMAT, "files": {f: sha256_file(tmp / f) for f in files}}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            pointer_tmp = self.dir / ".latest.tmp"
            pointer_tmp.write_text(name)
            os.replace(pointer_tmp, self.dir / "latest")
            for old in sorted(p for p in self.dir.glob("step-*") if p.is_dir())[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()
        return final

    def verify(self, ckpt: Path) -> dict:
        """Check a checkpoint's files against its manifest.

        Returns:
            The parsed state.json.

        Raises:
            CheckpointError: missing or corrupted files.
        """
        hint = "delete it to resume from an earlier checkpoint, or pass --overwrite to start again"
        try:
            manifest = json.loads((ckpt / "manifest.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"checkpoint {ckpt} has no readable manifest.json ({e}); {hint}") from None
        if manifest.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"checkpoint {ckpt} has format {manifest.get('format')}, expected {CHECKPOINT_FORMAT}")
        for fname, digest in manifest["files"].items():
            f = ckpt / fname
            if not f.is_file():
                raise CheckpointError(f"checkpoint {ckpt} is missing {fname}; {hint}")
            if sha256_file(f) != digest:
                raise CheckpointError(f"checkpoint {ckpt}: {fname} is corrupted (sha256 mismatch); {hint}")
        return json.loads((ckpt / "state.json").read_text())

    def load(self, ckpt: Path, accelerator, objective, optimizer, scheduler,
             average: "WeightAverage | None" = None) -> dict:
        state = self.verify(ckpt)
        rank = accelerator.process_index
        if state.get("world_size") != accelerator.num_processes:
            raise CheckpointError(
                f"checkpoint {ckpt} was written by {state.get('world_size')} processes, this run has "
                f"{accelerator.num_processes}; resume with the same number of processes"
            )
        try:
            missing, unexpected = load_model(objective, str(ckpt / "trainable.safetensors"), strict=False)
            if missing or unexpected:
                raise CheckpointError(
                    f"checkpoint {ckpt} does not fit this model (missing {sorted(missing)[:3]}, unexpected "
                    f"{sorted(unexpected)[:3]}); resume with the same options"
                )
            optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
        except CheckpointError:
            raise
        except Exception as e:
            raise CheckpointError(f"checkpoint {ckpt} cannot be loaded into this model: {e}") from None
        scheduler.load_state_dict(state["scheduler"])
        rng = load_file(str(ckpt / f"rng-rank{rank}.safetensors"))
        torch.set_rng_state(rng["torch_cpu"])
        if "torch_cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["torch_cuda"])
        py = json.loads((ckpt / f"python-random-rank{rank}.json").read_text())
        random.setstate((py[0], tuple(py[1]), py[2]))
        extra = ckpt / EXTRA_STATE.format(rank=rank)
        if extra.is_file() and hasattr(objective, "load_extra_state"):
            objective.load_extra_state(load_file(str(extra)))
        if average is not None and (ckpt / WeightAverage.FILE).is_file():
            average.load(load_file(str(ckpt / WeightAverage.FILE)))
        return state


def native_bf16() -> str | None:
    """Why this machine runs bf16 matmuls natively (a CPU flag or the CUDA device), else None.

    bf16 autocast pays only where the hardware has bf16 dot products (x86 AVX512-BF16 or AMX,
    Arm's BF16 extension, a CUDA GPU); elsewhere it emulates them and is slower than fp32.
    """
    if torch.cuda.is_available():  # training runs there: the CPU's flags do not matter
        try:
            native = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # older torch: no emulation argument
            native = torch.cuda.get_device_capability(0)[0] >= 8
        return f"CUDA {torch.cuda.get_device_name(0)}" if native else None
    try:
        with open("/proc/cpuinfo") as f:
            flags = set()
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags.update(line.split(":", 1)[1].split())
    except OSError:
        return None
    found = [f for f in ("amx_bf16", "avx512_bf16", "bf16") if f in flags]
    return f"CPU flag {found[0]}" if found else None


def make_accelerator(cfg: TrainConfig):
    """An Accelerator for this process: CPU unless CUDA is present; DDP tolerates unused params
    (the pooler and head are unused in intermediate-layer distillation).

    Mixed precision is not handed to Accelerate: its state is process-wide and refuses a
    second job with another setting (the demo runs several jobs in one process). `train`
    applies bf16 autocast itself.
    """
    return Accelerator(
        cpu=not torch.cuda.is_available(),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )


def train(objective, data, cfg: TrainConfig, run_dir: Path, tokenizer, *, resume: bool = False,
          description: str = "train", model_files: dict[str, dict] | None = None, accelerator=None,
          snapshot_steps: tuple[int, ...] = ()) -> TrainResult:
    """Run the optimization loop of `objective` over `data`, with checkpoints and resume.

    Args:
        objective: a module whose forward(batch) returns {"loss": scalar, <part>: scalar...}
            and whose trained_model() is the HF model to save.
        data: a TextBatches (already scanned or not).
        cfg: TrainConfig.
        run_dir: prepared run directory (see check_run_dir, init_run_dir).
        tokenizer: saved beside the final model.
        resume: continue from the newest checkpoint in run_dir.
        description: progress-bar label.
        model_files: extra JSON files written into the final model directory.
        accelerator: reuse an Accelerator (one is made otherwise).
        snapshot_steps: also save the trained model at these steps, as HF directories in
            run_dir/snapshots/step-N with snapshot.json (steps, training seconds so far); for
            curves of quality against training time from one run.

    Returns:
        TrainResult.

    Raises:
        CheckpointError: the checkpoint to resume from is corrupted or does not fit.
    """
    accelerator = accelerator or make_accelerator(cfg)
    world, rank = accelerator.num_processes, accelerator.process_index
    torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // world))

    steps_per_epoch = data.steps_per_epoch()
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    warmup = int(cfg.warmup_ratio * total)

    # On the device before the optimizer exists: resumed optimizer state lands beside its params.
    objective.to(accelerator.device)
    optimizer = _make_optimizer(objective, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total, warmup))
    ckpt = Checkpointer(run_dir, cfg.keep_checkpoints)
    average = WeightAverage(objective.trained_model(), total, cfg.average_last) if cfg.average_last else None

    step = 0
    elapsed_before = 0.0  # training seconds of earlier sessions of this run (resume)
    latest = ckpt.latest() if resume else None
    if latest is not None:
        state = ckpt.load(latest, accelerator, objective, optimizer, scheduler, average)  # restores RNG too
        order = getattr(data, "order", None)
        # checkpoints made before the order was recorded streamed every file through the buffer
        if order is not None and state.get("data_order", "buffer-shuffle") != order:
            raise CheckpointError(
                f"checkpoint {latest} read the data in {state.get('data_order', 'buffer-shuffle')} order, this run "
                f"reads it in {order} order (earlier tinybert-edge versions streamed every file through the "
                "shuffle buffer): resuming would repeat or skip rows; finish it with the version that started it, or "
                "start again with --overwrite"
            )
        if state["steps_per_epoch"] != steps_per_epoch or state["total_steps"] != total:
            raise CheckpointError(
                f"checkpoint {latest} was made for {state['total_steps']} steps of {state['steps_per_epoch']} "
                f"per epoch, this run has {total} of {steps_per_epoch}: the data changed; use a new --out"
            )
        step = state["step"]
        elapsed_before = float(state.get("elapsed_seconds", 0.0))
        if accelerator.is_main_process:
            _truncate_metrics(run_dir / "metrics.jsonl", step)
            accelerator.print(f"resuming {run_dir} from {latest.name} (step {step}/{total})")
    else:
        # Weights were initialized by the caller (seed_everything); dropout streams differ per process.
        torch.manual_seed(cfg.seed + 1000 * rank)
        random.seed(cfg.seed + 1000 * rank)
    resumed_from = step

    model = accelerator.prepare_model(objective)
    model.train()
    objective.trained_model().train()
    teacher = getattr(objective, "teacher", None)
    if teacher is not None:
        teacher.to(accelerator.device)
        teacher.eval()

    bar = tqdm(total=total, initial=step, desc=description, disable=not accelerator.is_local_main_process,
               dynamic_ncols=True)
    t0 = time.perf_counter()
    last: dict[str, float] = {}
    metrics_path = run_dir / "metrics.jsonl"
    params = [p for p in objective.parameters() if p.requires_grad]
    while step < total:
        epoch, skip = divmod(step, steps_per_epoch)
        for batch in data.batches(epoch, rank, world, skip=skip):
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            with torch.autocast(accelerator.device.type, dtype=torch.bfloat16,
                                enabled=cfg.mixed_precision == "bf16"):
                losses = model(batch)
            accelerator.backward(losses["loss"])
            if cfg.max_grad_norm > 0:
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            else:
                grad_norm = torch.zeros(())
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if average is not None:
                average.update(step)
            bar.update(1)
            if step % cfg.log_every == 0 or step == total:
                parts = torch.stack([losses[k].detach().float() for k in sorted(losses)])
                parts = accelerator.reduce(parts, reduction="mean")
                last = {k: float(v) for k, v in zip(sorted(losses), parts)}
                bar.set_postfix({k: f"{v:.4g}" for k, v in last.items()})
                if accelerator.is_main_process:
                    rec = {"step": step, "epoch": epoch, "lr": scheduler.get_last_lr()[0],
                           "grad_norm": float(grad_norm), **last}
                    with open(metrics_path, "a") as f:
                        f.write(json.dumps(rec) + "\n")
            if step in snapshot_steps:
                accelerator.wait_for_everyone()
                if accelerator.is_main_process:
                    snap = run_dir / "snapshots" / f"step-{step:08d}"
                    seconds_so_far = elapsed_before + time.perf_counter() - t0
                    save_model_atomically(accelerator.unwrap_model(model).trained_model(), tokenizer, snap,
                                          extra_files={**(model_files or {}), "snapshot.json": {
                                              "step": step, "training_seconds": round(seconds_so_far, 2)}})
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total:
                ckpt.save(accelerator, model, optimizer, scheduler,
                          {"step": step, "steps_per_epoch": steps_per_epoch, "total_steps": total,
                           "world_size": world, "format": CHECKPOINT_FORMAT,
                           **({"data_order": data.order} if hasattr(data, "order") else {}),
                           "elapsed_seconds": elapsed_before + time.perf_counter() - t0},
                          extra=_extra_state(objective), average=average.state() if average is not None else None)
            if step >= total:
                break
    bar.close()
    seconds = time.perf_counter() - t0
    model_dir = run_dir / "model"
    extra = _extra_state(objective)
    if extra is not None:  # before model/ and summary.json: a finished run always has it
        write_bytes_atomically(run_dir / EXTRA_STATE.format(rank=rank), save_safetensors(extra))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        trained = accelerator.unwrap_model(model).trained_model()
        if average is not None:  # last step's weights first, then the average into the model itself
            save_model_atomically(trained, tokenizer, run_dir / "model-raw", extra_files=model_files)
            average.apply()
        save_model_atomically(trained, tokenizer, model_dir, extra_files=model_files)
        summary = {
            "steps": step, "total_steps": total, "steps_per_epoch": steps_per_epoch, "resumed_from": resumed_from,
            "seconds_this_process": round(seconds, 2), "seconds_total": round(elapsed_before + seconds, 2),
            "processes": world, "final_losses": last,
        }
        if average is not None:
            summary["averaged_steps"] = average.count
        if extra is not None:  # load_extra_state checks these: the files are not in a checkpoint manifest
            summary["objective_state_sha256"] = {
                str(r): sha256_file(run_dir / EXTRA_STATE.format(rank=r)) for r in range(world)}
        write_json_atomically(run_dir / "summary.json", summary)
    accelerator.wait_for_everyone()
    return TrainResult(run_dir, model_dir, step, seconds, resumed_from, last)


def _extra_state(objective) -> dict[str, torch.Tensor] | None:
    """The objective's state beyond its parameters (e.g. recorded teacher logits), or None."""
    get = getattr(objective, "extra_state", None)
    return get() if get is not None else None


def load_extra_state(run_dir: Path, rank: int = 0, processes: int = 1) -> dict[str, torch.Tensor] | None:
    """The objective state a finished run saved beside its model (see train), or None when the run
    saved none.

    Args:
        rank, processes: this process and how many this run has (a state is per process).

    Raises:
        CheckpointError: the run saved a state but the file is missing, corrupted (sha256 in
            summary.json) or unreadable, or the run had another number of processes.
    """
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    digests = summary.get("objective_state_sha256")
    if digests is None:
        return None
    hint = f"pass --overwrite to run {run_dir} again"
    if summary.get("processes") != processes:
        raise CheckpointError(f"{run_dir} finished with {summary.get('processes')} processes and this run has "
                              f"{processes}; resume with the same number of processes, or {hint}")
    f = run_dir / EXTRA_STATE.format(rank=rank)
    if not f.is_file():
        raise CheckpointError(f"{f} is missing; {hint}")
    if sha256_file(f) != digests.get(str(rank)):
        raise CheckpointError(f"{f} is corrupted (sha256 differs from summary.json); {hint}")
    try:
        return load_file(str(f))
    except Exception as e:
        raise CheckpointError(f"{f} is unreadable ({e}); {hint}") from None


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines logged after the checkpoint we resume from (they will be redone)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (json.JSONDecodeError, KeyError):
            continue  # a line cut by the kill
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(x + "\n" for x in keep))
    os.replace(tmp, path)


def run_completed(run_dir: Path) -> bool:
    """True when `run_dir` holds a finished run (summary.json and model/)."""
    return (run_dir / "summary.json").is_file() and (run_dir / "model" / "config.json").is_file()


def seed_everything(seed: int) -> None:
    """Seed Python and torch before building models, so every process starts from equal weights."""
    random.seed(seed)
    torch.manual_seed(seed)
