"""Training objectives: one nn.Module per kind of run, returning named losses.

Each objective owns exactly the trainable parameters of its run (the student, plus the
projections W_e/W_h when intermediate layers are distilled). The teacher is held outside
the module's parameters, frozen, and run under inference_mode: it is neither trained,
checkpointed, nor synchronized by DDP.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import AttentionScoreRecorder
from .errors import CheckpointError, ConfigError
from .losses import attention_loss, hidden_loss, prediction_loss, regression_loss
from .mapping import LayerMap

STAGES = ("general", "task-intermediate", "task-prediction")
PROJECTIONS = ("shared", "per-layer")


@dataclass(frozen=True)
class DistillSettings:
    """What a distillation run matches and how.

    Attributes:
        stage: "general" (GD, intermediate layers, pre-trained teacher), "task-intermediate"
            (TD step 1) or "task-prediction" (TD step 2).
        layer_map: student -> teacher layer map.
        projection: "shared" (one W_h for all layers, as the public code v1) or "per-layer"
            (one W_h per student layer, as the released v2 checkpoints). W_e is always its own.
        temperature: t of the prediction loss.
        scale_by_t2: multiply the prediction loss by t^2.
        weight_attention, weight_hidden, weight_embedding, weight_prediction: lambda per term.
    """

    stage: str
    layer_map: LayerMap
    projection: str = "per-layer"
    temperature: float = 1.0
    scale_by_t2: bool = False
    weight_attention: float = 1.0
    weight_hidden: float = 1.0
    weight_embedding: float = 1.0
    weight_prediction: float = 1.0

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"unknown distillation stage {self.stage!r}; use one of {', '.join(STAGES)}")
        if self.projection not in PROJECTIONS:
            raise ConfigError(f"unknown projection {self.projection!r}; use shared or per-layer")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")

    @property
    def intermediate(self) -> bool:
        return self.stage in ("general", "task-intermediate")

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["layer_map"] = self.layer_map.to_dict()
        return d


class FinetuneObjective(nn.Module):
    """Plain supervised fine-tuning of a sequence classifier (the teacher).

    Returns {"loss", "cross_entropy"} for classification or {"loss", "mse"} for regression.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
        )
        logits = out.logits  # (B, C)
        if logits.shape[-1] == 1:
            loss = F.mse_loss(logits.squeeze(-1).float(), batch["labels"].float())
            return {"loss": loss, "mse": loss.detach()}
        loss = F.cross_entropy(logits.float(), batch["labels"])
        return {"loss": loss, "cross_entropy": loss.detach()}

    def trained_model(self) -> nn.Module:
        return self.model


class TeacherLogitCache:
    """The teacher's logits per input, recorded in task step 1 and reused by step 2.

    Step 1 already runs the task teacher over every training example (its classifier head comes
    with the hidden states), and step 2 needs only those logits: the frozen teacher in eval mode
    gives the same logits for the same tokens, so step 2 can skip the teacher forward, about a
    third of its step time. Keys are a digest of the exact unpadded token ids and segment ids of a
    row, so a row tokenized differently (another max length, another file) is a miss and runs the
    teacher.

    Args:
        max_rows: stop recording beyond this many rows (memory bound; misses then run the teacher).
    """

    def __init__(self, max_rows: int = 2_000_000):
        self.max_rows = max_rows
        self._logits: dict[bytes, torch.Tensor] = {}
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._logits)

    KEY_BYTES = 16

    @staticmethod
    def _keys(inputs: dict[str, torch.Tensor]) -> list[bytes]:
        # A 128-bit BLAKE2b digest of the row's exact tokens: 16 bytes a row instead of 16 a
        # token, which keeps the cache saved with every checkpoint small on augmented data
        # (hundreds of thousands of rows); a collision is as likely as a 128-bit guess.
        ids, types = inputs["input_ids"].cpu(), inputs["token_type_ids"].cpu()
        mask = inputs["attention_mask"].cpu().bool()
        return [hashlib.blake2b(ids[i][mask[i]].numpy().tobytes() + b"|" + types[i][mask[i]].numpy().tobytes(),
                                digest_size=TeacherLogitCache.KEY_BYTES).digest() for i in range(ids.shape[0])]

    def put(self, inputs: dict[str, torch.Tensor], logits: torch.Tensor) -> None:
        """Record a batch's teacher logits (B, C)."""
        rows = logits.detach().float().cpu().clone().unbind(0)  # CPU: restored rows (safetensors) live there too
        for key, row in zip(self._keys(inputs), rows):
            if len(self._logits) >= self.max_rows and key not in self._logits:
                return
            self._logits[key] = row

    def get(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The batch's teacher logits (B, C) when every row was recorded, else None."""
        rows = [self._logits.get(k) for k in self._keys(inputs)]
        if any(r is None for r in rows):
            self.misses += 1
            return None
        self.hits += 1
        return torch.stack(rows).to(inputs["input_ids"].device)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The recorded rows as plain tensors (safetensors-ready, no pickle), in recording order:
        keys (N, 16) uint8 digests and logits (N, C).

        Saved with step 1's checkpoints and its finished run, so a run resumed inside or after
        step 1 gives step 2 the very logits an uninterrupted run would have: bit-identical.
        """
        if not self._logits:
            return {"keys": torch.zeros(0, self.KEY_BYTES, dtype=torch.uint8), "logits": torch.zeros(0, 0)}
        keys = torch.frombuffer(bytearray(b"".join(self._logits)), dtype=torch.uint8).view(-1, self.KEY_BYTES)
        return {"keys": keys, "logits": torch.stack(list(self._logits.values()))}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Replace the recorded rows with `state` (from state_dict).

        Raises:
            CheckpointError: the tensors do not describe a cache (missing, inconsistent sizes).
        """
        try:
            keys, logits = state["keys"], state["logits"]
            if keys.dim() != 2 or keys.shape[1] != self.KEY_BYTES or keys.shape[0] != logits.shape[0]:
                raise ValueError(f"keys {tuple(keys.shape)}, logits {tuple(logits.shape)}")
        except (KeyError, ValueError, IndexError) as e:
            raise CheckpointError(f"the saved teacher logits are not a logit cache ({e}); pass --overwrite to "
                                  "distill again") from None
        self._logits = {bytes(k): row.clone() for k, row in zip(keys.numpy(), logits.float().unbind(0))}


class DistillObjective(nn.Module):
    """TinyBERT Transformer distillation: L = sum of lambda-weighted layer losses.

    Intermediate stages: L_emb (layer 0, via W_e) + sum_m [L_att(m, g(m)) + L_hidn(m, g(m))].
    Prediction stage: soft cross-entropy on logits (MSE for regression).

    Args:
        student: HF student (encoder for GD, sequence classifier for TD).
        teacher: HF teacher, same family; frozen here.
        settings: DistillSettings.
        score_capture: how attention scores are taken ("inside" the attention, or by "hooks" that
            recompute QK^T; see attention.py). Same values; "inside" is cheaper.
        logit_cache: shared by step 1 (records the teacher's logits) and step 2 (reads them
            instead of running the teacher); None runs the teacher every step.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, settings: DistillSettings,
                 score_capture: str = "inside", logit_cache: TeacherLogitCache | None = None):
        super().__init__()
        self.student = student
        self.settings = settings
        self.logit_cache = logit_cache
        teacher.eval()
        teacher.requires_grad_(False)
        # Kept out of _modules so DDP, the optimizer and checkpoints never see it.
        object.__setattr__(self, "_teacher", teacher)
        lm = settings.layer_map
        s_cfg, t_cfg = student.config, teacher.config
        if lm.student_layers != s_cfg.num_hidden_layers or lm.teacher_layers != t_cfg.num_hidden_layers:
            raise ConfigError(
                f"layer map is for {lm.student_layers} student / {lm.teacher_layers} teacher layers, but the "
                f"models have {s_cfg.num_hidden_layers} / {t_cfg.num_hidden_layers}"
            )
        if settings.intermediate:
            if s_cfg.num_attention_heads != t_cfg.num_attention_heads:
                raise ConfigError(
                    f"student has {s_cfg.num_attention_heads} heads, teacher {t_cfg.num_attention_heads}: "
                    "attention distillation needs equal head counts"
                )
            d_s, d_t = s_cfg.hidden_size, t_cfg.hidden_size
            self.proj_embedding = nn.Linear(d_s, d_t)  # W_e
            n_proj = lm.student_layers if settings.projection == "per-layer" else 1
            self.proj_hidden = nn.ModuleList(nn.Linear(d_s, d_t) for _ in range(n_proj))  # W_h
            self._student_rec = AttentionScoreRecorder(student, list(range(1, lm.student_layers + 1)), score_capture)
            self._teacher_rec = AttentionScoreRecorder(teacher, list(lm.teacher_for_student), score_capture)
        else:
            if getattr(s_cfg, "num_labels", None) != getattr(t_cfg, "num_labels", None):
                raise ConfigError(
                    f"student has {s_cfg.num_labels} outputs, teacher {t_cfg.num_labels}; build the student "
                    "head from the teacher's labels"
                )

    @property
    def teacher(self) -> nn.Module:
        return self._teacher

    def trained_model(self) -> nn.Module:
        return self.student

    def extra_state(self) -> dict[str, torch.Tensor] | None:
        """State outside the parameters that a resumed run needs to equal an uninterrupted one:
        the teacher logits this step has recorded so far (only step 1 records). None: nothing."""
        if self.logit_cache is None or not self.settings.intermediate:
            return None
        return self.logit_cache.state_dict()

    def load_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what extra_state returned (on resume)."""
        if self.logit_cache is not None:
            self.logit_cache.load_state_dict(state)

    def _w_h(self, m: int) -> nn.Linear:
        return self.proj_hidden[m - 1] if len(self.proj_hidden) > 1 else self.proj_hidden[0]

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
        mask = batch["attention_mask"]  # (B, T)
        s = self.settings
        if not s.intermediate:
            t_logits = self.logit_cache.get(inputs) if self.logit_cache is not None else None
            if t_logits is None:
                with torch.inference_mode():
                    t_logits = self.teacher(**inputs).logits
                t_logits = t_logits.clone()  # softmax(t_logits) is saved for backward: leave inference mode
            s_logits = self.student(**inputs).logits  # (B, C)
            if s_logits.shape[-1] == 1:
                pred = regression_loss(s_logits, t_logits)
            else:
                pred = prediction_loss(s_logits.float(), t_logits.float(), s.temperature, s.scale_by_t2)
            return {"loss": s.weight_prediction * pred, "prediction": pred.detach()}

        lm = s.layer_map
        with torch.inference_mode(), self._teacher_rec as rec:
            t_out = self.teacher(**inputs, output_hidden_states=True)
            t_scores = {n: rec.scores(n) for n in set(lm.teacher_for_student)}
            t_hidden = {n: t_out.hidden_states[n] for n in {0, *lm.teacher_for_student}}
            if self.logit_cache is not None and getattr(t_out, "logits", None) is not None:
                self.logit_cache.put(inputs, t_out.logits)
        self._teacher_rec.clear()
        # Teacher tensors stay inference tensors (no copy): the losses only subtract them from
        # student tensors, and subtraction saves nothing for backward.

        with self._student_rec as rec:
            s_out = self.student(**inputs, output_hidden_states=True)
        s_hidden = s_out.hidden_states  # M+1 entries of (B, T, d_S)

        emb = hidden_loss(self.proj_embedding(s_hidden[0]).float(), t_hidden[0].float(), mask)
        att = s_hidden[0].new_zeros((), dtype=torch.float32)
        hid = s_hidden[0].new_zeros((), dtype=torch.float32)
        for m, n in zip(range(1, lm.student_layers + 1), lm.teacher_for_student):
            att = att + attention_loss(rec.scores(m).float(), t_scores[n].float(), mask)
            hid = hid + hidden_loss(self._w_h(m)(s_hidden[m]).float(), t_hidden[n].float(), mask)
        self._student_rec.clear()
        loss = s.weight_embedding * emb + s.weight_attention * att + s.weight_hidden * hid
        return {"loss": loss, "attention": att.detach(), "hidden": hid.detach(), "embedding": emb.detach()}
