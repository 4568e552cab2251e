"""What every converter shares: the traced wrapper, example inputs, the parity report and the
export result. Converters import the core; the core never imports converters.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class ExportError(RuntimeError):
    """An export or an artifact failed; the message names the problem and the fix."""


class SequenceClassifierWrapper(nn.Module):
    """Positional (input_ids, attention_mask, token_type_ids) -> logits (B, C), for tracing."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits


def load_for_export(model_dir: str | Path):
    """Load a student (or any BERT-family classifier) with eager attention, in eval mode.

    Returns:
        (wrapper, tokenizer, config).

    Raises:
        tinybert_edge.errors.ModelError: not a BERT-family sequence classifier.
    """
    from tinybert_edge.models import load_classifier, load_tokenizer

    model = load_classifier(model_dir, attn_implementation="eager").eval()
    return SequenceClassifierWrapper(model).eval(), load_tokenizer(model_dir), model.config


def encode_fixed(tokenizer, texts: list[str], seq_len: int) -> dict[str, torch.Tensor]:
    """Tokenize to exactly `seq_len` tokens (pad or truncate), int64, as the artifact expects."""
    enc = tokenizer(texts, truncation=True, max_length=seq_len, padding="max_length", return_tensors="pt")
    out = {k: enc[k].long() for k in INPUT_NAMES if k in enc}
    out.setdefault("token_type_ids", torch.zeros_like(out["input_ids"]))
    return out


@dataclass(frozen=True)
class ParityReport:
    """How closely an artifact's logits follow eager PyTorch on identical inputs.

    Attributes:
        examples: number of inputs compared.
        max_abs: largest absolute logit difference.
        mean_abs: mean absolute logit difference.
        sqnr_db: signal-to-quantization-noise ratio of the logits, in dB (inf when exact).
        label_agreement: share of inputs whose argmax label is the same.
    """

    examples: int
    max_abs: float
    mean_abs: float
    sqnr_db: float
    label_agreement: float

    @classmethod
    def compare(cls, reference: np.ndarray, candidate: np.ndarray) -> "ParityReport":
        """Compare (n, C) reference logits with (n, C) artifact logits."""
        reference = np.asarray(reference, dtype=np.float64)
        candidate = np.asarray(candidate, dtype=np.float64)
        if reference.shape != candidate.shape:
            raise ExportError(f"artifact returned logits of shape {candidate.shape}, expected {reference.shape}")
        diff = np.abs(reference - candidate)
        noise = float((diff**2).sum())
        signal = float((reference**2).sum())
        sqnr = math.inf if noise == 0 else 10.0 * math.log10(max(signal, 1e-30) / noise)
        agree = float((reference.argmax(-1) == candidate.argmax(-1)).mean())
        return cls(len(reference), float(diff.max()), float(diff.mean()), sqnr, agree)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sqnr_db"] = None if math.isinf(self.sqnr_db) else self.sqnr_db
        return d


@dataclass(frozen=True)
class ExportResult:
    """One exported artifact.

    Attributes:
        format: registry name ("tflite", ...).
        quantization: "none" or "int8".
        path: the artifact file.
        size_bytes: its size on disk.
        seconds: conversion time.
        seq_len: fixed sequence length of its inputs.
        parity: logits vs eager PyTorch on the same inputs.
    """

    format: str
    quantization: str
    path: Path
    size_bytes: int
    seconds: float
    seq_len: int
    parity: ParityReport

    def line(self) -> str:
        """The one-line summary printed per artifact."""
        p = self.parity
        return (f"{self.format:<10} {self.quantization:<5} {self.size_bytes / 1e6:7.1f} MB  agreement "
                f"{100 * p.label_agreement:5.1f} %  max|dlogit| {p.max_abs:.2e}  {self.seconds:5.1f} s  {self.path}")
