"""The export side (torch): the exportable wrapper, eager reference outputs, and bundles.

A bundle is built in a temporary directory and renamed into place; a failed validation keeps
the bundle with "status": "failed" so the user can inspect it, and `load_bundle` refuses it
unless asked to allow failed bundles. The metadata is validated against its JSON Schema before
it is written. Reading and running bundles (numpy only) is in bundle.py and runtime.py.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import random
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from importlib import metadata as _md
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

from tinybert_edge import __version__
from tinybert_edge.data import Columns, iter_task_examples
from tinybert_edge.taskfiles import missing_pair_error
from tinybert_edge.evaluate import agreement_interval, classification_metrics, label_space_of, near_chance
from tinybert_edge.files import publish_dir, sha256_file, write_bytes_atomically, write_json_atomically
from tinybert_edge.models import check_classifier, load_classifier, load_config, load_tokenizer, resolve_model_dir

from . import FORMATS, get_format
from .bundle import (METADATA, SCHEMA, SCHEMA_VERSION, SELF_TEST, SELF_TEST_ATOL, SELF_TEST_SCHEMA, BundleError,
                     check_metadata)
from .gptq import NonFiniteHessian, gptq_round_model
from .outliers import RESIDUAL_OUTLIER_RATIO, no_outlier_dimension, residual_outlier_scores, unpadded_inputs
from .runtime import ExportError, ParityReport, SeqLenPolicy, count_truncated, pad_row, tokenize

DEFAULT_TEXTS = ["a gripping, beautifully made film", "dull and far too long", "it was fine, i guess"]
# self-test inputs besides the first validation texts: what tokenizers get wrong, and a text
# longer than every bucket
SELF_TEST_EXTRA = ["Café déjà vu, naïve ÉCOLE", "電影很好看 great 😀 film", " ".join(["brilliant"] * 300)]


@dataclass(frozen=True)
class QadSettings:
    """How quantization-aware distillation trains.

    Attributes:
        steps: optimizer steps (each one batch of same-length rows).
        learning_rate: AdamW learning rate (constant). From int8-static's ranges, 1e-6 and 3e-6
            lower the demo student's error by 15-20 % and 3e-6 the teacher's by 26-35 %, while at
            1e-5 and 2e-5 the student's ends at or above where it starts, and at 1e-5 the
            teacher's only 12-19 % lower (BENCHMARKS.md, "int8-qat from int8-static's ranges");
            1e-4 diverges on a tiny model.
        batch_size: rows per batch (a length group smaller than this is one smaller batch).
        freeze_observers_after: steps after which the weights' per-channel ranges stop following
            the trained weights, so the last steps train against the ranges the artifact will have
            (None: a third of the steps). Activation ranges are int8-static's from the first step
            and do not move (qat.start_from_static_ranges).
        seed: batch order.
    """

    steps: int = 300
    learning_rate: float = 3e-6
    batch_size: int = 16
    freeze_observers_after: int | None = None
    seed: int = 0

    @property
    def freeze_step(self) -> int:
        """The step whose start freezes the ranges: the setting, or a third of the steps (at least 1)."""
        return self.freeze_observers_after if self.freeze_observers_after is not None else max(1, self.steps // 3)

    def check(self) -> None:
        """Raises ExportError on a setting that cannot train."""
        if self.steps < 1:
            raise ExportError(f"quantization-aware distillation needs at least 1 step, got {self.steps} (--qad-steps)")
        if self.freeze_observers_after is not None and not 1 <= self.freeze_observers_after < self.steps:
            raise ExportError(f"freeze_observers_after {self.freeze_observers_after} must be within 1..{self.steps - 1}: "
                              "the ranges need one step of observation, and freezing after the last step does nothing")
        if self.batch_size < 1 or self.learning_rate <= 0:
            raise ExportError(f"batch size {self.batch_size} and learning rate {self.learning_rate} must be positive")


def check_quantization_request(quantization: str, n_texts: int, calibration_size: int, has_qad_texts: bool,
                               qad: QadSettings | None = None) -> None:
    """Refuse a static-int8 request that cannot work, before anything is exported.

    Args:
        quantization: the scheme asked for ("int8-static" and "int8-qat" are checked).
        n_texts: how many texts int8-static can calibrate on (--calibration-data's, or the
            check texts when a Python caller gives none).
        calibration_size: how many of them int8-static calibrates on.
        has_qad_texts: whether int8-qat has training texts.
        qad: int8-qat's settings.

    Raises:
        ExportError: naming the problem and the flag that fixes it.
    """
    if quantization == "int8-static":
        if calibration_size < 1:
            raise ExportError(f"--calibration-size {calibration_size} must be at least 1")
        if n_texts < calibration_size:
            raise ExportError(f"int8-static calibrates on {calibration_size} texts but only {n_texts} were given; pass "
                              "a larger --calibration-data file (the training split) or a smaller --calibration-size")
    if quantization == "int8-qat":
        # any length policy: QAD trains on unpadded rows and every method is traced from the one
        # converted graph, as int8-static's ranges are (executorch._static_on_unpadded_rows)
        if not has_qad_texts:
            raise ExportError("int8-qat trains the student through int8 fake quantization on texts: pass the task's "
                              "training file with --qad-data TRAIN (labels are not needed)")
        (qad or QadSettings()).check()


WEIGHT_ROUNDINGS = ("nearest", "gptq")
# the label agreement's interval recorded with each validation (Validation.interval)
INTERVAL_CONFIDENCE = 0.95


def _check_rounding_name(weight_rounding: str) -> None:
    if weight_rounding not in WEIGHT_ROUNDINGS:
        raise ExportError(f"unknown --weight-rounding {weight_rounding!r}; use one of {', '.join(WEIGHT_ROUNDINGS)}")


def check_weight_rounding(weight_rounding: str, quantization: str, rounds_weights: tuple[str, ...]) -> None:
    """Refuse a weight rounding the request cannot use.

    Args:
        weight_rounding: "nearest" or "gptq".
        quantization: the scheme asked for.
        rounds_weights: the format's schemes whose linear weights are per-channel int8 (what
            GPTQ rounds onto).

    Raises:
        ExportError: an unknown rounding, or gptq for a scheme without per-channel int8 weights.
    """
    _check_rounding_name(weight_rounding)
    if weight_rounding == "gptq" and quantization not in rounds_weights:
        raise ExportError(f"--weight-rounding gptq rounds per-channel int8 weights, which --quantize {quantization} "
                          f"does not have here; use it with {' or '.join(rounds_weights)}")


def calibration_sample(texts: list[str] | None, pairs: list[str] | None, size: int, what: str):
    """`size` of the calibration texts (a seeded sample when there are more: files come sorted by
    label or source as often as not), with their pairs.

    Args:
        texts, pairs: the calibration file's texts and second segments (None: no pairs).
        size: how many to use (--calibration-size).
        what: what they calibrate, for the error message.

    Returns:
        (texts, pairs or None), `size` of each, in file order.

    Raises:
        ExportError: no texts, or fewer than `size`.
    """
    if size < 1:
        raise ExportError(f"--calibration-size {size} must be at least 1")
    n = len(texts or [])
    if n < size:
        raise ExportError(f"{what} calibrate on {size} real texts but --calibration-data has {n}; pass the task's "
                          "training file (not the validation file) with --calibration-data, or a smaller "
                          "--calibration-size")
    pick = sorted(random.Random(0).sample(range(n), size))
    return [texts[i] for i in pick], ([pairs[i] for i in pick] if pairs else None)


def gptq_round_rows(model: nn.Module, rows: list[tuple[list[int], list[int]]], pad_id: int,
                    batch_size: int = 32, min_scale: float = 0.0) -> dict:
    """GPTQ-round `model`'s linear weights in place, calibrated on tokenized real rows.

    Args:
        model: the export wrapper (ExportableClassifier, eval mode), not the HF classifier inside
            it: the wrapper turns the 0/1 mask into what the model's attention takes (a keep mask
            for int8-static's keep-mask attention, on which HF's own additive mask gives NaN).
        rows: (ids, token types) of the calibration texts, not the validation texts.
        pad_id: the tokenizer's padding id.
        batch_size: rows per calibration batch (each padded to its longest row).
        min_scale: the format's floor on a weight row's int8 scale (ExecuTorch's XNNPACK quantizer:
            2^-12; gptq.per_channel_scale), so that the rounding lands on the grid it stores.

    Returns:
        What goes into the artifact's details: the method, rows, tokens, linears and how many
        weight rows a per-channel quantizer stores exactly as GPTQ rounded them.

    Raises:
        ExportError: no calibration rows, or calibration activations that are not finite.
    """
    if not rows:
        raise ExportError("GPTQ needs calibration texts; pass --calibration-data TRAIN")
    if not any(isinstance(m, nn.Linear) for m in model.modules()):
        raise ExportError(f"GPTQ rounds nn.Linear weights and {type(model).__name__} has none; use "
                          "--weight-rounding nearest")
    batches = []
    for s in range(0, len(rows), batch_size):
        chunk = rows[s : s + batch_size]
        length = max(len(ids) for ids, _ in chunk)
        parts = [pad_row(ids, types, length, pad_id) for ids, types in chunk]
        ids, mask, types = (torch.from_numpy(np.concatenate([p[j] for p in parts])) for j in range(3))
        batches.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    try:
        report = gptq_round_model(model, batches, min_scale=min_scale)
    except NonFiniteHessian as e:
        raise ExportError(f"GPTQ cannot round {e}; export with --weight-rounding nearest, and check that the "
                          "fp32 model's outputs are finite on the calibration texts") from None
    return {"method": "gptq", "calibration_rows": len(rows), "tokens": report.tokens, "linears": len(report.linears),
            "exact_rows": report.exact_rows, "rows": report.rows, "damp": 0.01, "act_order": True,
            **({"min_scale": min_scale} if min_scale else {})}


def _write_self_test(tmp: Path, spec, r, tok, labels, texts, text_pairs) -> dict:
    """selftest.json: a few inputs with their ids and the artifact's outputs on this host."""
    n = min(len(texts), 5)
    st_texts = list(texts[:n]) + SELF_TEST_EXTRA
    st_pairs = (list(text_pairs[:n]) + [None] * len(SELF_TEST_EXTRA)) if text_pairs else None
    runner = spec.runner(r.path, r.policy, pad_id=tok.pad_token_id, threads=1)
    cases = []
    for i, text in enumerate(st_texts):
        pair = st_pairs[i] if st_pairs else None
        ids, types = tokenize(tok, [text], [pair] if pair else None, r.policy.max_len)[0]
        out = runner.run_row(ids, types)
        cases.append({"text": text, "text_pair": pair, "input_ids": ids, "token_type_ids": types,
                      "padded_length": r.policy.pad_length(len(ids)), "expected": [float(x) for x in out],
                      "label": labels[int(np.argmax(out))]})
    kind = r.details.get("outputs", "logits")
    write_json_atomically(tmp / SELF_TEST, {"schema": SELF_TEST_SCHEMA, "schema_version": 1, "outputs_kind": kind,
                                            "atol": SELF_TEST_ATOL[kind], "cases": cases})
    return {"file": SELF_TEST, "cases": len(cases), "atol": SELF_TEST_ATOL[kind]}


def _version(package: str) -> str | None:
    try:
        return _md.version(package)
    except _md.PackageNotFoundError:
        return None


class ExportableClassifier(nn.Module):
    """(input_ids, attention_mask, token_type_ids) -> logits (B, C), with the mask made here.

    The 0/1 attention mask becomes an additive float bias of shape (B, 1, 1, S) before the HF
    model sees it, so the exported graph holds no integer mask arithmetic. Why: HF's own mask
    builder does integer/boolean index arithmetic that ExecuTorch's XNNPACK quantizer turns into
    float constants during calibration (IndexError: tensors used as indices must be long...),
    and a float bias lowers the same way on every backend. HF passes a 4-D float mask through
    unchanged to eager attention, where it is added to the scores.
    """

    def __init__(self, model: nn.Module, probabilities: bool = False, mask_bias: float | None = None):
        super().__init__()
        self.model = model
        self.probabilities = probabilities  # softmax inside the graph (MediaPipe expects probabilities)
        # None: the most negative float32 (padding gets exactly zero weight); a number b: a
        # bias of -b, which static activation ranges can share with the scores (litert_static.py)
        self.mask_bias = mask_bias

    def forward(self, input_ids, attention_mask, token_type_ids):
        if getattr(self.model.config, "_attn_implementation", None) == KEEP_MASK_ATTENTION:
            mask = attention_mask.to(torch.float32)[:, None, None, :]  # 0/1, applied after the softmax
        else:
            bias = torch.finfo(torch.float32).min if self.mask_bias is None else -self.mask_bias
            mask = (1.0 - attention_mask.to(torch.float32))[:, None, None, :] * bias
        logits = self.model(input_ids=input_ids, attention_mask=mask, token_type_ids=token_type_ids).logits
        return torch.softmax(logits, dim=-1) if self.probabilities else logits


XNNPACK_ATTENTION = "tinybert_edge_xnnpack"


def _bmm_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: torch.Tensor | None,
                   scaling: float | None, mask_after_softmax: bool):
    """Attention as 3-D batch matmuls over (batch x heads); the mask is an additive bias on the
    scores, or (mask_after_softmax) a 0/1 keep mask applied to the softmax weights."""
    b, h, t, d = query.shape
    if scaling is None:
        scaling = d ** -0.5
    q = query.reshape(b * h, t, d)
    k = key.reshape(b * h, t, d)
    v = value.reshape(b * h, t, d)
    scores = torch.bmm(q, k.transpose(1, 2)).view(b, h, t, t) * scaling
    if attention_mask is not None and not mask_after_softmax:
        scores = scores + attention_mask
    weights = nn.functional.softmax(scores, dim=-1)
    if attention_mask is not None and mask_after_softmax:
        weights = weights * attention_mask
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return torch.bmm(weights.view(b * h, t, t), v).view(b, h, t, d).transpose(1, 2).contiguous(), None


def xnnpack_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                      **kwargs):
    """Eager attention written as 3-D batch matmuls over (batch x heads).

    torch.matmul on 4-D tensors exports as expand_copy + view + bmm; the expand copies (16 for the
    4-layer student) run as portable kernels outside the XNNPACK delegate and split it into many
    partitions (benchmarks/results/op_profile: 0.72 ms of 7.6 ms). Same arithmetic, in eval mode.
    Shapes: query/key/value (B, h, T, d); returns ((B, T, h, d), None) like HF's eager attention.
    """
    return _bmm_attention(query, key, value, attention_mask, scaling, mask_after_softmax=False)


AttentionInterface.register(XNNPACK_ATTENTION, xnnpack_attention)
AttentionMaskInterface.register(XNNPACK_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["eager"])

KEEP_MASK_ATTENTION = "tinybert_edge_keep_mask"


def keep_mask_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                        **kwargs):
    """xnnpack_attention with the padding mask applied after the softmax, for static int8.

    `attention_mask` is the 0/1 keep mask (B, 1, 1, T). softmax(s) * keep / sum(softmax(s) * keep)
    equals softmax over the kept positions exactly, and no tensor ever holds the additive bias:
    with static int8 the scores and a -3.4e38 bias would share one quantized range (every score
    of a padded row rounds alike; int8-static at fixed length lost 5 points of agreement to it),
    while here the scores keep their own range and the masked weights lie in [0, 1].
    """
    return _bmm_attention(query, key, value, attention_mask, scaling, mask_after_softmax=True)


AttentionInterface.register(KEEP_MASK_ATTENTION, keep_mask_attention)
AttentionMaskInterface.register(KEEP_MASK_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["eager"])


class LayerNorm4d(nn.Module):
    """LayerNorm over the last dimension computed as mean/sub/mul/rsqrt on a (B, T, 1, H) view.

    ExecuTorch's XNNPACK partitioner takes neither native_layer_norm nor a mean over one dim of a
    3-D tensor, but it takes mean over the two innermost dims of a 4-D tensor, so this form runs
    inside the delegate (LiteRT decomposes LayerNorm the same way on its own).

    Two rewrites for full-integer graphs, both the same function in float
    (litert_static.prepare_layer_norms):
    - split_variance(channels) sums the squares of a few outlier channels apart from the rest's,
      so the one channel that reaches 195 in some token (BERT's outlier dimensions) no longer sets
      the int16 rounding step of every other channel's square;
    - split_rsqrt(cuts) computes rsqrt(v) as a product of rsqrts over narrow pieces of v's range,
      because TFLite's int16 RSQRT is accurate over a narrow input range only (15 % off near 0.2
      when its range reaches 351, BENCHMARKS.md).
    """

    def __init__(self, ln: nn.LayerNorm):
        super().__init__()
        self.weight, self.bias, self.eps = ln.weight, ln.bias, ln.eps
        self.outlier_channels: list[int] = []
        self.rsqrt_cuts: list[float] = []

    def split_variance(self, channels: list[int]) -> None:
        """Compute the variance as mean(rest^2) + mean(outliers^2), the outliers being `channels`.

        Args:
            channels: hidden-dimension indices; an empty list restores the single sum.

        Raises:
            ValueError: an index outside the hidden size.
        """
        size = self.weight.shape[0]
        if any(not 0 <= c < size for c in channels):
            raise ValueError(f"outlier channels {channels} outside the hidden size {size}")
        self.outlier_channels = sorted(set(int(c) for c in channels))
        mask = torch.zeros(size, dtype=self.weight.dtype, device=self.weight.device)
        mask[self.outlier_channels] = 1.0
        # buffers, not attributes: torch.export keeps them as the graph's constants
        self.register_buffer("outlier_mask", mask, persistent=False)
        self.register_buffer("rest_mask", 1.0 - mask, persistent=False)

    def split_rsqrt(self, cuts: list[float]) -> None:
        """Compute rsqrt(v) as a product of rsqrts over narrow pieces of v's range.

        For cuts c_0 < c_1 < ... < c_k: rsqrt(v) = c_0^-1/2 * prod_i rsqrt(clamp(v / c_i, 1,
        c_i+1 / c_i)), the first piece without the lower clamp and the last without the upper one.
        Exact for every v > 0: the pieces below v's give sqrt(c_i / c_i+1), v's own gives
        sqrt(c_j / v), those above give 1, and the product telescopes to sqrt(c_0 / v). Every
        RSQRT then sees an input within [1, c_i+1 / c_i], where TFLite's int16 kernel is accurate,
        and the pieces meet through MULs, whose int16 form takes any scales (a sum of pieces less
        a constant would need an int16 ADD or SUB whose output range is narrower than its input's,
        which TFLite refuses: "input1_shift <= 0").

        Args:
            cuts: positive, increasing (c_0 is the smallest variance expected); an empty list
                restores the single rsqrt.

        Raises:
            ValueError: cuts that are not positive and increasing.
        """
        cuts = [float(c) for c in cuts]
        if any(not (0 < c < math.inf) for c in cuts) or any(b <= a for a, b in zip(cuts, cuts[1:])):
            raise ValueError(f"rsqrt cuts {cuts} must be positive, finite and increasing")
        self.rsqrt_cuts = cuts

    def _rsqrt(self, v: torch.Tensor) -> torch.Tensor:
        cuts = self.rsqrt_cuts
        if not cuts:
            return torch.rsqrt(v)
        out = None
        for i, c in enumerate(cuts):
            x = v * (1.0 / c)  # a MUL by a constant: int16 MUL takes any scales (see the docstring)
            if i > 0:
                x = torch.clamp(x, min=1.0)
            if i + 1 < len(cuts):
                x = torch.clamp(x, max=cuts[i + 1] / c)
            out = torch.rsqrt(x) if out is None else out * torch.rsqrt(x)
        return out * cuts[0] ** -0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x4 = x.reshape(shape[0], shape[1], 1, shape[2])
        centred = x4 - x4.mean(dim=(2, 3), keepdim=True)
        if self.outlier_channels:
            rest, outliers = centred * self.rest_mask, centred * self.outlier_mask
            var = (rest * rest).mean(dim=(2, 3), keepdim=True) + (outliers * outliers).mean(dim=(2, 3), keepdim=True)
        else:
            var = (centred * centred).mean(dim=(2, 3), keepdim=True)
        y = (centred * self._rsqrt(var + self.eps)).reshape(shape)
        return y * self.weight + self.bias


def _replace_layer_norms(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.LayerNorm) and len(child.normalized_shape) == 1:
            setattr(module, name, LayerNorm4d(child))
        else:
            _replace_layer_norms(child)


def _xnnpack_friendly(model: nn.Module, keep_mask: bool = False) -> nn.Module:
    _replace_layer_norms(model)
    model.config._attn_implementation = KEEP_MASK_ATTENTION if keep_mask else XNNPACK_ATTENTION
    return model


def load_for_export(model_dir: str | Path, probabilities: bool = False, xnnpack: bool = False,
                    keep_mask: bool = False, mask_bias: float | None = None):
    """Load a student (or any BERT-family classifier) with eager attention, in eval mode.

    Args:
        probabilities: the wrapper ends in softmax.
        xnnpack: write attention as 3-D batch matmuls and LayerNorm as 4-D means, the forms
            ExecuTorch's XNNPACK partitioner delegates (same outputs; see LayerNorm4d).
        keep_mask: attention masks padding after the softmax (keep_mask_attention), the form
            static int8 needs; implies xnnpack's rewrites.
        mask_bias: padding gets an additive bias of -mask_bias instead of -3.4e38 (see
            ExportableClassifier; not with keep_mask).

    Returns:
        (wrapper, tokenizer, config), the wrapper an ExportableClassifier.

    Raises:
        tinybert_edge.errors.ModelError: not a BERT-family sequence classifier.
    """
    model = load_classifier(model_dir, attn_implementation="eager").eval()
    if xnnpack or keep_mask:
        _xnnpack_friendly(model, keep_mask)
    return ExportableClassifier(model, probabilities, mask_bias).eval(), load_tokenizer(model_dir), model.config


def sample_row(rows: list[tuple[list[int], list[int]]], length: int, sep_id: int) -> tuple[list[int], list[int]]:
    """A tokenized row that fits in `length` tokens, for tracing a signature of that length: the
    first row that is short enough, else the first row cut to `length` (ending in [SEP]).
    (Every bucket was once traced with rows[0], which broke when the first text was long.)"""
    for ids, types in rows:
        if len(ids) <= length:
            return ids, types
    ids, types = rows[0]
    return ids[: length - 1] + [sep_id], types[:length]


def eager_logits(wrapper: nn.Module, rows, policy: SeqLenPolicy, pad_id: int, batch_size: int = 64) -> np.ndarray:
    """(n, C) logits of eager PyTorch on exactly the padded inputs the artifact sees."""
    by_len: dict[int, list[int]] = {}
    for i, (ids, _) in enumerate(rows):
        by_len.setdefault(policy.pad_length(len(ids)), []).append(i)
    out: list[np.ndarray | None] = [None] * len(rows)
    with torch.inference_mode():
        for length, idx in by_len.items():
            for s in range(0, len(idx), batch_size):
                chunk = idx[s : s + batch_size]
                parts = [pad_row(*rows[i], length, pad_id) for i in chunk]
                tensors = [torch.from_numpy(np.concatenate([p[j] for p in parts])) for j in range(3)]
                logits = wrapper(*tensors).float().numpy()
                for i, row in zip(chunk, logits):
                    out[i] = row
    return np.stack(out)


@dataclass(frozen=True)
class ExportResult:
    """One exported artifact.

    Attributes:
        format: registry name ("executorch", "tflite").
        quantization: "none", "int8", "int8-static" or "int8-qat".
        path: the artifact file.
        size_bytes: its size on disk.
        seconds: conversion time.
        policy: its sequence-length policy.
        parity: logits vs eager PyTorch on the same inputs, through the real runtime.
        details: format specifics (recipe, ops outside the delegate, signatures, input dtype).
        reference_logits: eager PyTorch logits on the check inputs (n, C).
        artifact_logits: the artifact's logits on the same inputs (n, C).
    """

    format: str
    quantization: str
    path: Path
    size_bytes: int
    seconds: float
    policy: SeqLenPolicy
    parity: ParityReport
    details: dict = field(default_factory=dict)
    reference_logits: np.ndarray | None = field(default=None, repr=False)
    artifact_logits: np.ndarray | None = field(default=None, repr=False)

    @property
    def seq_len(self) -> int:
        return self.policy.max_len

    def line(self) -> str:
        """The one-line summary printed per artifact."""
        p = self.parity
        return (f"{self.format:<10} {self.quantization:<11} {self.policy.tag:<12} {self.size_bytes / 1e6:6.1f} MB  "
                f"agreement {100 * p.label_agreement:6.2f} %  max|dlogit| {p.max_abs:.1e}  {self.seconds:5.1f} s")


def tokenizer_settings(tokenizer) -> dict:
    """The WordPiece settings an app needs to reproduce `tokenizer` exactly.

    Raises:
        BundleError: the tokenizer is not BERT WordPiece (bundles carry vocab.txt only).
    """
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    model, norm = state.get("model") or {}, state.get("normalizer") or {}
    if model.get("type") != "WordPiece" or norm.get("type") != "BertNormalizer":
        raise BundleError(f"bundles support BERT WordPiece tokenizers only; this model's tokenizer is "
                          f"{model.get('type')} with {norm.get('type')} normalization")
    specials = {}
    for name in ("cls", "sep", "pad", "unk", "mask"):
        tok = getattr(tokenizer, f"{name}_token")
        specials[f"{name}_token"] = tok
        specials[f"{name}_id"] = tokenizer.convert_tokens_to_ids(tok)
    return {
        "type": "bert-wordpiece",
        "vocab_file": "vocab.txt",
        "vocab_size": len(tokenizer.get_vocab()),
        "do_lower_case": bool(norm.get("lowercase", True)),
        # None means "follow do_lower_case", as in BERT's BasicTokenizer
        "strip_accents": norm.get("strip_accents"),
        "tokenize_chinese_chars": bool(norm.get("handle_chinese_chars", True)),
        "clean_text": bool(norm.get("clean_text", True)),
        "continuing_subword_prefix": model.get("continuing_subword_prefix", "##"),
        "max_input_chars_per_word": int(model.get("max_input_chars_per_word", 100)),
        **specials,
    }


def vocab_text(tokenizer) -> str:
    """vocab.txt content: tokens ordered by id, which must be dense from 0."""
    vocab = tokenizer.get_vocab()
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise BundleError("the tokenizer's vocabulary ids are not 0..N-1; it cannot be written as vocab.txt")
    return "".join(tok + "\n" for tok, _ in by_id)


@dataclass
class Validation:
    """The artifact checked on labelled real data (or on unlabelled texts when gold is None)."""

    data: str | None
    examples: int
    threshold: float
    label_agreement: float
    fp32_accuracy: float | None = None
    artifact_accuracy: float | None = None
    truncated: int = 0  # rows longer than the artifact's max_seq_len, validated on their first tokens

    @property
    def passed(self) -> bool:
        # counted in rows, so the verdict and the error's "N rows differ; it allows M" never disagree
        # (98.4 / 100 is 0.9840000000000001 as a float: 1,230 of 1,250 rows would fail a >= test)
        differ, allowed = self.rows()
        return differ <= allowed

    def rows(self) -> tuple[int, int]:
        """How far a result is from its threshold, in rows a person can count.

        Returns:
            (rows whose label differs from fp32, rows the threshold lets differ) on `examples` rows.
        """
        # agreement is a float of a row count; round back to the count, and let the threshold's
        # allowance err toward the user (99 % of 1,250 rows allows 12 rows, not 12.5 -> 13)
        differ = round((1.0 - self.label_agreement) * self.examples)
        allowed = math.floor((1.0 - self.threshold) * self.examples + 1e-9)
        return differ, allowed

    def interval(self, confidence: float = INTERVAL_CONFIDENCE) -> tuple[float, float]:
        """The label agreement's Wilson interval on these rows (evaluate.agreement_interval says why).

        Args:
            confidence: two-sided coverage (default INTERVAL_CONFIDENCE, what metadata.json records).

        Returns:
            (low, high) label agreement.
        """
        differ, _ = self.rows()
        return agreement_interval(self.examples - differ, self.examples, confidence)

    @property
    def near_threshold(self) -> bool:
        """Whether the threshold lies inside the interval: these rows do not decide the verdict, and
        another sample of texts of this size could land on the other side of it.

        Returns:
            True when interval()'s low < threshold <= its high (the verdict itself is still `passed`).
        """
        low, high = self.interval()
        return low < self.threshold <= high

    @property
    def shows_near_threshold(self) -> bool:
        """Whether export's output marks this verdict near the bar: near_threshold on real data only
        (on the 3 built-in sentences every bundle would be, and export's warning already says to
        pass --data; metadata.json still records near_threshold as it is).

        Returns:
            near_threshold, and the rows came from a data file.
        """
        return self.near_threshold and self.data is not None

    def to_dict(self) -> dict:
        low, high = self.interval()
        return {"data": self.data, "examples": self.examples, "threshold": self.threshold,
                "label_agreement": self.label_agreement, "fp32_accuracy": self.fp32_accuracy,
                "artifact_accuracy": self.artifact_accuracy, "passed": self.passed,
                "label_agreement_interval": {"method": "wilson", "confidence": INTERVAL_CONFIDENCE,
                                             "low": low, "high": high},
                "near_threshold": self.near_threshold, "truncated_texts": self.truncated}


@dataclass
class BundleResult:
    """What `export_bundle` made."""

    path: Path
    zip_path: Path | None
    result: ExportResult
    validation: Validation
    metadata: dict = field(repr=False)
    near_chance: bool = False  # the source model itself is near chance on the validation data

    def line(self) -> str:
        v = self.validation
        acc = "" if v.artifact_accuracy is None else \
            f"  acc {100 * v.artifact_accuracy:5.2f} % (fp32 {100 * v.fp32_accuracy:5.2f} %)"
        near = ""
        if v.shows_near_threshold:
            low, high = v.interval()
            near = f"near the bar: {100 * INTERVAL_CONFIDENCE:g} % interval {100 * low:.2f}-{100 * high:.2f} %"
        if v.passed:
            status = f"ok ({near})" if near else "ok"
        else:
            status = f"FAILED (agreement < {100 * v.threshold:g} %{'; ' + near if near else ''})"
        return f"{self.result.line()}{acc}  {status}  {self.path}"


def _check_out_dir(model_dir, out_dir) -> tuple[Path, Path]:
    """(model_dir, out_dir) resolved; BundleError when the output would land inside the model."""
    model_dir = resolve_model_dir(model_dir).resolve()
    out_dir = Path(out_dir).resolve()
    if out_dir == model_dir or model_dir in out_dir.parents:
        raise BundleError(f"output {out_dir} is inside the model directory {model_dir}; choose another --out")
    return model_dir, out_dir


def source_sha256(model_dir: Path) -> str:
    """sha256 of a model directory's weights file: the fingerprint a bundle records of its source.

    Raises:
        BundleError: no weights file in `model_dir`.
    """
    weights = [p for p in ("model.safetensors", "pytorch_model.bin") if (model_dir / p).is_file()]
    if not weights:
        raise BundleError(f"{model_dir} has no model.safetensors to fingerprint")
    return sha256_file(model_dir / weights[0])


def _inputs_spec(result: ExportResult, dtype: str) -> list[dict]:
    seq = "seq" if result.policy.kind != "fixed" else result.policy.max_len
    return [{"name": n, "dtype": dtype, "shape": [1, seq]} for n in ("input_ids", "attention_mask", "token_type_ids")]


def export_bundle(fmt: str, model_dir: str | Path, out_dir: str | Path, *, quantization: str = "none",
                  policy: SeqLenPolicy | None = None, texts: list[str] | None = None,
                  text_pairs: list[str] | None = None, gold: list[int] | None = None, data_name: str | None = None,
                  threshold: float = 0.99, make_zip: bool = False,
                  export_options: dict | None = None, calibration_name: str | None = None) -> BundleResult:
    """Export one artifact into a bundle directory, validated through its real runtime.

    Args:
        fmt: registry name ("executorch" or "tflite").
        model_dir: HF sequence-classifier directory.
        out_dir: the bundle directory to create (replaced atomically if it exists).
        quantization: as the format accepts.
        policy: sequence-length policy.
        texts, text_pairs: the validation inputs (e.g. the task's dev split).
        gold: gold label ids aligned with texts, for accuracy (optional).
        data_name: where the texts came from, recorded in metadata.
        threshold: minimum label agreement with eager fp32 PyTorch for status "passed".
        make_zip: also write <out_dir>.zip (atomically).
        export_options: extra keyword arguments of the format's export function (e.g.
            int8-qat's training texts for ExecuTorch, int16x8's calibration texts).
        calibration_name: where the calibration texts came from, recorded in metadata.

    Returns:
        BundleResult; check `.validation.passed`.

    Raises:
        ExportError/BundleError: bad request, failed export, unsupported tokenizer.
        tinybert_edge.errors.ModelError: not a sequence classifier.
    """
    spec = get_format(fmt)
    model_dir, out_dir = _check_out_dir(model_dir, out_dir)
    if not 0.0 <= threshold <= 1.0:
        raise BundleError(f"threshold {threshold} must be within 0..1 (0.99 means 99 %)")
    config = load_config(model_dir)
    tok = load_tokenizer(model_dir)
    settings = tokenizer_settings(tok)
    vocab = vocab_text(tok)
    labels = [config.id2label[i] for i in range(len(config.id2label))]
    holder: dict = {}

    def build(tmp: Path) -> None:
        artifact = tmp / f"model{spec.suffix}"
        r = spec.export(model_dir, artifact, quantization=quantization, policy=policy, texts=texts,
                        text_pairs=text_pairs, **(export_options or {}))
        (tmp / "vocab.txt").write_text(vocab, encoding="utf-8")
        (tmp / "labels.txt").write_text("".join(f"{lab}\n" for lab in labels), encoding="utf-8")
        fp32_acc = art_acc = None
        chance = None
        if gold is not None and getattr(config, "problem_type", None) != "regression":
            g = np.asarray(gold)
            fp32 = classification_metrics(r.reference_logits.argmax(-1), g, len(labels))
            fp32_acc = fp32["accuracy"]
            art_acc = float((r.artifact_logits.argmax(-1) == g).mean())
            chance = near_chance({**fp32, "task_type": "classification"}, len(labels))
        v = Validation(data_name, r.parity.examples, threshold, r.parity.label_agreement, fp32_acc, art_acc,
                       count_truncated(tok, texts or DEFAULT_TEXTS, text_pairs, r.policy.max_len))
        outputs_kind = r.details.get("outputs", "logits")
        self_test = _write_self_test(tmp, spec, r, tok, labels, texts or DEFAULT_TEXTS, text_pairs)
        meta = {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
            "status": "passed" if v.passed else "failed",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "format": fmt, "artifact": artifact.name,
            "runtime": {"name": r.details["runtime"], "pip": spec.runtime_package,
                        "version": _version(spec.runtime_package)},
            "task": {"problem_type": getattr(config, "problem_type", None) or "single_label_classification",
                     "num_labels": len(labels), "labels": labels, "labels_file": "labels.txt"},
            "max_seq_len": r.policy.max_len,
            "seq_len_policy": r.policy.to_dict(),
            "signatures": r.details["signatures"],
            "inputs": _inputs_spec(r, r.details["input_dtype"]),
            "outputs": [{"name": outputs_kind, "dtype": "float32", "shape": [1, len(labels)], "kind": outputs_kind}],
            "tokenizer": settings,
            "quantization": {"name": quantization, "recipe": r.details["recipe"],
                             **({"distillation": r.details["quantization_aware_distillation"]}
                                if "quantization_aware_distillation" in r.details else {}),
                             **({"weight_rounding": {**r.details["weight_rounding"], "data": calibration_name}}
                                if "weight_rounding" in r.details else {}),
                             **({"calibration": {"data": calibration_name, **r.details["calibration"]}}
                                if "calibration" in r.details else {}),
                             **({"ffn_outlier_split": r.details["ffn_outlier_split"]}
                                if "ffn_outlier_split" in r.details else {}),
                             **({"residual_outlier_split": r.details["residual_outlier_split"]}
                                if "residual_outlier_split" in r.details else {})},
            "source_model": {"path": str(model_dir), "sha256": source_sha256(model_dir),
                             "model_type": config.model_type, "num_hidden_layers": config.num_hidden_layers,
                             "hidden_size": config.hidden_size, "intermediate_size": config.intermediate_size,
                             "params": r.details.get("params"),
                             **({"near_chance": chance} if chance is not None else {})},
            "tools": {"tinybert_edge": __version__, "torch": _version("torch"),
                      "transformers": _version("transformers"), "executorch": _version("executorch"),
                      "litert_torch": _version("litert-torch"), "ai_edge_litert": _version("ai-edge-litert")},
            "export": {"seconds": round(r.seconds, 2),
                       **{k: r.details[k] for k in ("delegate", "ops_outside_delegate", "ops_outside_delegate_total")
                          if k in r.details}},
            "parity": r.parity.to_dict(),
            "validation": v.to_dict(),
            "self_test": self_test,
            **({"mediapipe": r.details["mediapipe"]} if "mediapipe" in r.details else {}),
            "files": {name: {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size}
                      for name in (artifact.name, "vocab.txt", "labels.txt", SELF_TEST)},
        }
        check_metadata(meta, tmp / METADATA)  # never write a manifest the readers would refuse
        write_json_atomically(tmp / METADATA, meta)
        holder.update(result=r, validation=v, metadata=meta, near_chance=chance)

    path = publish_dir(build, out_dir)
    zip_path = write_zip(path) if make_zip else None
    r = holder["result"]
    return BundleResult(path, zip_path, dataclasses.replace(r, path=path / r.path.name), holder["validation"],
                        holder["metadata"], bool(holder["near_chance"]))


def write_zip(bundle_dir: Path) -> Path:
    """<bundle_dir>.zip holding <name>/<file> entries, written atomically."""
    bundle_dir = Path(bundle_dir)
    out = bundle_dir.with_name(bundle_dir.name + ".zip")
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / out.name
        with zipfile.ZipFile(staged, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for p in sorted(bundle_dir.iterdir()):
                z.write(p, f"{bundle_dir.name}/{p.name}")
        write_bytes_atomically(out, staged.read_bytes())
    return out


def read_validation_data(path: str | Path, config, columns=None, max_examples: int | None = None):
    """(texts, text_pairs or None, gold ids or None) of a labelled task file, for validation.

    Args:
        path: the task file.
        config: the model's config (its labels).
        columns: the file's column names.
        max_examples: at most this many rows: a seeded sample in file order (memory for N rows only).

    Raises:
        tinybert_edge.errors.DataError: unreadable file, a label the model does not know, or a pair
            file with a row that has no second segment.
    """
    space = label_space_of(config)
    rng = random.Random(0)
    keep: list[tuple[int, str, str | None, float | int]] = []
    with_pair = without_pair = None
    for i, ex in enumerate(iter_task_examples(path, columns or Columns())):
        item = (i, ex.text, ex.text_pair, space.encode(ex.label, Path(path), ex.line))
        if ex.text_pair is None:
            without_pair = without_pair or ex
        else:
            with_pair = with_pair or ex
        if max_examples is None or len(keep) < max_examples:
            keep.append(item)
        else:
            # a seeded reservoir sample (kept in file order below), not the first rows: files come
            # sorted by label as often as not, and the first N of a sorted file are one class
            j = rng.randint(0, i)
            if j < max_examples:
                keep[j] = item
    if with_pair is not None and without_pair is not None:
        raise missing_pair_error(path, without_pair.line, columns or Columns())
    keep.sort(key=lambda item: item[0])
    texts, pairs, gold = [k[1] for k in keep], [k[2] for k in keep], [k[3] for k in keep]
    if space.task_type == "regression":
        gold = None
    return texts, (pairs if any(p is not None for p in pairs) else None), gold


def first_text(path: str | Path, columns: Columns | None = None) -> tuple[str, str | None]:
    """The first text of a task file and its second segment (None without one), for the "next:"
    hints: the user's own data, not a movie review."""
    ex = next(iter_task_examples(path, columns or Columns(), require_label=False))
    return ex.text, ex.text_pair


def export_bundles(model_dir: str | Path, out_dir: str | Path, *, formats: list[str], quantizations: list[str],
                   policy: SeqLenPolicy | None = None, seq_len: int = 128, data: str | Path | None = None,
                   columns=None, max_examples: int | None = None, threshold: float = 0.99, make_zip: bool = False,
                   on_result=None, calibration_size: int = 128, qad_data: str | Path | None = None,
                   qad_steps: int | None = None, calibration_data: str | Path | None = None,
                   weight_rounding: str = "nearest", outlier_dims: str = "auto") -> list[BundleResult]:
    """Export every (format, quantization) pair into OUT/<model>-<format>-<quant>-<policy>/.

    Args:
        model_dir: HF sequence-classifier directory.
        out_dir: parent directory of the bundles.
        formats: registry names.
        quantizations: each must be accepted by every format asked for.
        policy: sequence-length policy shared by all artifacts; None: each format's length-aware
            default up to `seq_len` (ExecuTorch dynamic, LiteRT buckets 32/64/128).
        seq_len: the longest input, when `policy` is None.
        data: labelled task file for validation (None: three built-in sentences).
        columns: tinybert_edge.data.Columns of the file.
        max_examples: validate on N rows only (a seeded sample in file order).
        threshold: minimum label agreement.
        make_zip: also zip each bundle.
        on_result: called with each BundleResult as soon as it exists (to print a line).
        calibration_size: texts of `calibration_data` that calibrate int8-static, int16x8 and GPTQ.
        qad_data: int8-qat's training file (its texts; labels are not read).
        qad_steps: int8-qat's training steps (default QadSettings' steps).
        calibration_data: a task file other than `data` (the training split) whose texts
            calibrate int8-static's and int16x8's activation ranges and GPTQ (labels are not read).
        weight_rounding: "nearest", or "gptq" for every (format, quantization) with per-channel
            int8 weights (FormatSpec.gptq); bundles so rounded are named ...-<quant>-gptq-...
        outlier_dims: int8-static's residual outlier split: "auto", "split" or "off"
            (executorch.export_pte); LiteRT's int8-static takes "split" only (litert.export_tflite).

    Returns:
        The bundles in export order, passed or failed.

    Raises:
        ExportError/BundleError: a request no format can satisfy (checked before any export).
    """
    model_dir, _ = _check_out_dir(model_dir, out_dir)
    specs = [get_format(f) for f in formats]
    policies = {spec.name: policy or spec.default_policy(seq_len) for spec in specs}
    for spec in specs:
        bad = [q for q in quantizations if q not in spec.quantizations]
        if bad:
            offering = [f.name for f in FORMATS.values() if bad[0] in f.quantizations]
            raise ExportError(f"{spec.name} does not offer quantization {bad[0]!r}; it offers "
                              f"{', '.join(spec.quantizations)}"
                              + (f"; pass --format {' or '.join(offering)}" if offering else ""))
        if policies[spec.name].kind not in spec.policies:
            raise ExportError(f"{spec.name} does not support a {policies[spec.name].kind} sequence length "
                              f"(it supports {', '.join(spec.policies)}); "
                              + ("use --buckets 32,64,128 instead" if policies[spec.name].kind == "dynamic" else ""))
    if outlier_dims not in ("auto", "split", "off"):
        raise ExportError(f"unknown --outlier-dims {outlier_dims!r}; use auto, split or off")
    residual_split = [s.name for s in specs if (s.name in ("executorch", "tflite") and "int8-static" in quantizations)
                      or (s.name == "executorch" and "int8-qat" in quantizations)]
    if outlier_dims == "split" and (not residual_split or weight_rounding != "nearest"):
        raise ExportError("--outlier-dims split applies to --format executorch or tflite --quantize int8-static, or "
                          "executorch int8-qat, with "
                          f"--weight-rounding nearest (here: --format {','.join(s.name for s in specs)} --quantize "
                          f"{','.join(quantizations)} --weight-rounding {weight_rounding}); change those, or leave "
                          "--outlier-dims at auto")
    config = load_config(model_dir)
    check_classifier(config, model_dir)
    for p in policies.values():
        p.check(config.max_position_embeddings)
    texts = pairs = gold = None
    if data is not None:
        texts, pairs, gold = read_validation_data(data, config, columns, max_examples)
        one_text = [s.name for s in specs if s.single_text]
        if pairs is not None and one_text:
            raise ExportError(f"{data} has sentence pairs, and --format {one_text[0]} makes a model for MediaPipe "
                              "Tasks' TextClassifier, which takes one text per input: export --format tflite or "
                              "executorch for a pair model (predict takes both segments)")
    options: dict[str, dict] = {"int8-static": {"calibration_size": calibration_size}}
    qad = QadSettings(steps=qad_steps) if qad_steps is not None else QadSettings()
    calibration = _calibration_request(specs, quantizations, weight_rounding, calibration_data, calibration_size,
                                       data, columns, texts, pairs)
    for spec in specs:  # every static-int8 request is checked before the first bundle is written
        for q in quantizations:
            n = len(calibration[0]) if q in spec.calibrated and calibration[0] else len(texts or DEFAULT_TEXTS)
            check_quantization_request(q, n, calibration_size, qad_data is not None, qad)
    if outlier_dims == "split" and calibration[0]:  # before any bundle is written, as the checks above (an
        # int8-qat-only request finds its dimensions on the --qad-data sample, inside its export)
        _check_outlier_dimensions(model_dir, calibration, calibration_size, policies[residual_split[0]].max_len)
    if "int8-qat" in quantizations:
        examples = list(iter_task_examples(qad_data, columns or Columns(), require_label=False))
        qad_pairs = [ex.text_pair for ex in examples]
        options["int8-qat"] = {"qad_texts": [ex.text for ex in examples],
                               "qad_text_pairs": qad_pairs if any(x is not None for x in qad_pairs) else None,
                               "qad": qad}
    name = model_dir.parent.name if model_dir.name == "model" else model_dir.name
    results = []
    for spec in specs:
        p = policies[spec.name]
        for q in quantizations:
            opts = dict(options.get(q) or {})
            gptq = weight_rounding == "gptq" and q in spec.gptq
            if gptq or q in spec.calibrated:
                opts.update(calibration_texts=calibration[0], calibration_text_pairs=calibration[1],
                            calibration_size=calibration_size, weight_rounding="gptq" if gptq else "nearest")
            if q == "int8-static" and spec.name == "executorch":
                opts["outlier_dims"] = outlier_dims
            elif q == "int8-qat" and spec.name == "executorch":
                opts["outlier_dims"] = "split" if outlier_dims == "split" else "off"
            elif q == "int8-static" and spec.name == "tflite":  # LiteRT has no auto (export_tflite)
                opts["outlier_dims"] = "split" if outlier_dims == "split" else "off"
            quant_tag = f"{q}-gptq" if gptq else q
            b = export_bundle(spec.name, model_dir, Path(out_dir) / f"{name}-{spec.name}-{quant_tag}-{p.tag}",
                              quantization=q, policy=p, texts=texts, text_pairs=pairs, gold=gold,
                              data_name=str(data) if data else None, threshold=threshold, make_zip=make_zip,
                              export_options=opts or None,
                              calibration_name=str(calibration_data) if calibration_data else None)
            results.append(b)
            if on_result:
                on_result(b)
    return results


def _check_outlier_dimensions(model_dir, calibration: tuple, size: int, max_len: int) -> None:
    """Refuse --outlier-dims split for a model whose residual stream has no outlier dimension on the
    calibration texts (executorch.export_pte would refuse it too, but only after earlier bundles of
    the same request were written).

    Raises:
        ExportError: no calibration texts, or no dimension over outliers.RESIDUAL_OUTLIER_RATIO.
    """
    if not calibration[0]:
        raise ExportError("--outlier-dims split finds the outlier dimensions on --calibration-data TRAIN; pass it")
    wrapper, tok, _ = load_for_export(model_dir, xnnpack=True, keep_mask=True)
    texts, pairs = calibration_sample(calibration[0], calibration[1], size, "--outlier-dims split")
    score = residual_outlier_scores(wrapper, unpadded_inputs(tokenize(tok, texts, pairs, max_len), tok.pad_token_id))
    if not bool((score > RESIDUAL_OUTLIER_RATIO).any()):
        record = {"next_score": round(float(score.max()), 2)}  # as order_residual_outliers records it
        raise ExportError(f"--outlier-dims split: {no_outlier_dimension(record)}; export with --outlier-dims auto or off")


def _calibration_request(specs, quantizations: list[str], weight_rounding: str, calibration_data, size: int,
                         data, columns, texts: list[str] | None = None,
                         pairs: list[str] | None = None) -> tuple[list[str] | None, list[str] | None]:
    """The calibration texts (and pairs) the request needs, read and checked before any export.

    Calibration texts that are also validation texts (same text and pair) are left out, so the
    validation figure is never measured on a text that set the artifact's ranges or rounding.

    Args:
        specs, quantizations, weight_rounding: the request.
        calibration_data: --calibration-data (None: not given).
        size: --calibration-size.
        data: --data (for the same-file check).
        columns: the files' tinybert_edge.data.Columns.
        texts, pairs: the validation texts and second segments (None: none read).

    Returns:
        (texts, pairs or None); (None, None) when nothing asked for calibrates on --calibration-data.

    Raises:
        ExportError: an unknown rounding, gptq with nothing to round, a calibration file given
            but used by nothing, a missing, empty or too small calibration file (after leaving
            out the validation texts), the validation file given again, or pairs on one side only.
        tinybert_edge.errors.DataError: an unreadable calibration file.
    """
    _check_rounding_name(weight_rounding)
    gptq = [(s.name, q) for s in specs for q in quantizations if weight_rounding == "gptq" and q in s.gptq]
    if weight_rounding == "gptq" and not gptq:
        offers = sorted({q for s in specs for q in s.gptq})
        raise ExportError(f"--weight-rounding gptq rounds per-channel int8 weights, which none of --quantize "
                          f"{','.join(quantizations)} has here; use it with --quantize {' or '.join(offers) or 'int8'}")
    users = [f"{s.name} {q}" for s in specs for q in quantizations if q in s.calibrated] + \
            [f"{f} {q} (gptq)" for f, q in gptq]
    if not users:
        if calibration_data is not None:
            raise ExportError("--calibration-data is read by --quantize int16x8 (LiteRT), int8-static (ExecuTorch, LiteRT) and "
                              "--weight-rounding gptq only, and none is asked for; drop --calibration-data or add "
                              "one of them")
        return None, None
    if size < 1:
        raise ExportError(f"--calibration-size {size} must be at least 1")
    if calibration_data is None:
        raise ExportError(f"{', '.join(users)} calibrate on real texts other than the ones they are validated on: "
                          "pass the task's training file with --calibration-data TRAIN (labels are not read)")
    if data is not None and Path(calibration_data).resolve() == Path(data).resolve():
        raise ExportError(f"--calibration-data and --data are the same file ({data}): the artifact would be "
                          "validated on the texts that set its ranges; pass the training split as --calibration-data")
    examples = list(iter_task_examples(calibration_data, columns or Columns(), require_label=False))
    has_pairs = any(ex.text_pair is not None for ex in examples)
    if texts is not None and has_pairs != (pairs is not None):
        raise ExportError(f"{'--calibration-data' if has_pairs else '--data'} has sentence pairs and "
                          f"{'--data' if has_pairs else '--calibration-data'} does not: calibrate on the same kind of "
                          "rows the model will see (both files from the same task)")
    validation = set(zip(texts or [], pairs or [None] * len(texts or [])))
    kept = [ex for ex in examples if (ex.text, ex.text_pair) not in validation]
    if len(kept) < len(examples):
        print(f"note: {len(examples) - len(kept):,} of {len(examples):,} texts of {calibration_data} are also in "
              f"{data}; they are left out of calibration", file=sys.stderr)
    if len(kept) < size:
        also = f" once the {len(examples) - len(kept):,} also in {data} are left out" if len(kept) < len(examples) else ""
        raise ExportError(f"{', '.join(users)} calibrate on {size} texts but {calibration_data} has {len(kept)}{also}; "
                          "pass a larger --calibration-data file (the training split) or a smaller --calibration-size")
    return [ex.text for ex in kept], ([ex.text_pair for ex in kept] if has_pairs else None)


def results_table(results: list[BundleResult]) -> str:
    """Markdown table of exported bundles: one row per artifact."""
    lines = ["| format | quantization | seq-len policy | size (MB) | label agreement | "
             f"its {100 * INTERVAL_CONFIDENCE:g} % interval | "
             "max abs diff | fp32 acc | artifact acc | export (s) | status |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for b in results:
        r, v = b.result, b.validation
        low, high = v.interval()
        acc = ("-", "-") if v.artifact_accuracy is None else (f"{100 * v.fp32_accuracy:.2f} %",
                                                               f"{100 * v.artifact_accuracy:.2f} %")
        lines.append(f"| {r.format} | {r.quantization} | {r.policy.tag} | {r.size_bytes / 1e6:.1f} | "
                     f"{100 * v.label_agreement:.2f} % | {100 * low:.2f}-{100 * high:.2f} % | {r.parity.max_abs:.1e} | "
                     f"{acc[0]} | {acc[1]} | {r.seconds:.1f} | {'passed' if v.passed else 'FAILED'}"
                     f"{', near the bar' if v.shows_near_threshold else ''} |")
    return "\n".join(lines)
