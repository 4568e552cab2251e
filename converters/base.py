"""What every converter shares: the exportable wrapper, the sequence-length policy, the runner
interface, the parity report and the export result. Converters import the core; the core never
imports converters.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinybert_edge.errors import KitError

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class ExportError(KitError, RuntimeError):
    """An export or an artifact failed; the message names the problem and the fix."""


def require(module: str, package: str):
    """Import a runtime or converter lazily.

    Raises:
        ExportError: not installed; the message names the pip package.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(f"{module} is not installed; pip install {package} "
                          "(or pip install -e \".[export]\")") from None


@contextlib.contextmanager
def converter_output(what: str = "conversion"):
    """Keep the converters' own chatter (progress trees, C++ log lines, deprecation warnings) off
    the terminal, so the user sees one line per artifact; a failure re-raises as ExportError
    with the tail of what they printed. TINYBERT_EDGE_VERBOSE=1 shows everything instead.
    """
    if os.environ.get("TINYBERT_EDGE_VERBOSE") == "1":
        yield
        return
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    logging.getLogger("torchao").setLevel(logging.ERROR)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    with tempfile.TemporaryFile(mode="w+b") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        except ExportError:
            raise
        except Exception as e:
            sys.stdout.flush()
            sys.stderr.flush()
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()[-15:]
            raise ExportError(f"{what} failed: {type(e).__name__}: {e}" +
                              ("\nconverter output (tail):\n  " + "\n  ".join(tail) if tail else "")) from None
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


class ExportableClassifier(nn.Module):
    """(input_ids, attention_mask, token_type_ids) -> logits (B, C), with the mask made here.

    The 0/1 attention mask becomes an additive float bias of shape (B, 1, 1, S) before the HF
    model sees it, so the exported graph holds no integer mask arithmetic. Why: HF's own mask
    builder does integer/boolean index arithmetic that ExecuTorch's XNNPACK quantizer turns into
    float constants during calibration (IndexError: tensors used as indices must be long...),
    and a float bias lowers the same way on every backend. HF passes a 4-D float mask through
    unchanged to eager attention, where it is added to the scores.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        bias = (1.0 - attention_mask.to(torch.float32))[:, None, None, :] * torch.finfo(torch.float32).min
        return self.model(input_ids=input_ids, attention_mask=bias, token_type_ids=token_type_ids).logits


def load_for_export(model_dir: str | Path):
    """Load a student (or any BERT-family classifier) with eager attention, in eval mode.

    Returns:
        (wrapper, tokenizer, config), the wrapper an ExportableClassifier.

    Raises:
        tinybert_edge.errors.ModelError: not a BERT-family sequence classifier.
    """
    from tinybert_edge.models import load_classifier, load_tokenizer

    model = load_classifier(model_dir, attn_implementation="eager").eval()
    return ExportableClassifier(model).eval(), load_tokenizer(model_dir), model.config


@dataclass(frozen=True)
class SeqLenPolicy:
    """How an artifact takes sequences of different lengths.

    Attributes:
        kind: "fixed" (every input padded to max_len), "dynamic" (the sequence dimension is
            symbolic, 2..max_len) or "buckets" (one signature per length; an input is padded to
            the smallest bucket that holds it).
        max_len: the longest input; longer texts are truncated to it, as in training.
        buckets: the bucket lengths, ascending, the last equal to max_len (kind "buckets" only).
    """

    kind: str = "fixed"
    max_len: int = 128
    buckets: tuple[int, ...] = ()

    @classmethod
    def make(cls, seq_len: int = 128, *, dynamic: bool = False, buckets=None) -> "SeqLenPolicy":
        """Build and check a policy from command-line style values.

        Raises:
            ExportError: both dynamic and buckets, a bucket under 3 tokens, or unsorted buckets.
        """
        if dynamic and buckets:
            raise ExportError("choose --dynamic or --buckets, not both")
        if buckets:
            b = tuple(int(x) for x in buckets)
            if any(x < 3 for x in b) or list(b) != sorted(set(b)):
                raise ExportError(f"buckets {','.join(map(str, b))} must be ascending lengths of at least 3 tokens")
            if b[-1] > seq_len:
                raise ExportError(f"largest bucket {b[-1]} exceeds --seq-len {seq_len}; raise --seq-len or drop it")
            if b[-1] < seq_len:
                b = b + (seq_len,)
            return cls("buckets", seq_len, b)
        return cls("dynamic" if dynamic else "fixed", seq_len, ())

    def check(self, max_position_embeddings: int) -> None:
        """Raises ExportError when the policy does not fit the model."""
        if not 3 <= self.max_len <= max_position_embeddings:
            raise ExportError(f"seq-len {self.max_len} is outside 3..{max_position_embeddings} (the model's "
                              "max_position_embeddings)")

    @property
    def tag(self) -> str:
        """Short name used in artifact names: "seq128", "dyn128", "b32-64-128"."""
        if self.kind == "buckets":
            return "b" + "-".join(map(str, self.buckets))
        return ("dyn" if self.kind == "dynamic" else "seq") + str(self.max_len)

    def lengths(self) -> tuple[int, ...]:
        """The lengths the artifact is traced at (one per signature)."""
        return self.buckets if self.kind == "buckets" else (self.max_len,)

    def pad_length(self, n_tokens: int) -> int:
        """How long an input of `n_tokens` (already truncated to max_len) is made before it runs."""
        if self.kind == "fixed":
            return self.max_len
        if self.kind == "dynamic":
            return max(n_tokens, 2)
        return next(b for b in self.buckets if b >= n_tokens)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "max_len": self.max_len, "buckets": list(self.buckets)}

    @classmethod
    def from_dict(cls, d: dict) -> "SeqLenPolicy":
        return cls(d["kind"], int(d["max_len"]), tuple(int(x) for x in d.get("buckets", ())))


def tokenize(tokenizer, texts: list[str], text_pairs: list[str] | None, max_len: int) -> list[tuple[list[int], list[int]]]:
    """(input_ids, token_type_ids) per text, truncated to max_len, unpadded."""
    enc = tokenizer(texts, text_pairs, truncation=True, max_length=max_len) if text_pairs else \
        tokenizer(texts, truncation=True, max_length=max_len)
    types = enc.get("token_type_ids") or [[0] * len(ids) for ids in enc["input_ids"]]
    return list(zip(enc["input_ids"], types))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax of one row of logits, in float64 (what the app's core computes)."""
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def pad_row(ids: list[int], types: list[int], length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(1, length) int64 ids, mask and type ids for one example."""
    n = len(ids)
    out_ids = np.full((1, length), pad_id, dtype=np.int64)
    out_ids[0, :n] = ids
    mask = np.zeros((1, length), dtype=np.int64)
    mask[0, :n] = 1
    out_types = np.zeros((1, length), dtype=np.int64)
    out_types[0, :n] = types
    return out_ids, mask, out_types


class ArtifactRunner:
    """Runs one exported classifier with its real runtime, one example at a time (batch 1).

    Subclasses implement `run(signature, ids, mask, types) -> (C,) logits`, where the inputs
    are (1, L) int64 arrays and `signature` is the name of the traced length to use.
    """

    policy: SeqLenPolicy
    pad_id: int = 0

    def _open(self, path, policy: SeqLenPolicy | None, pad_id: int, fmt: str) -> None:
        """Common setup: remember the file and policy; refuse a missing file."""
        self.path = Path(path)
        self.policy = policy or SeqLenPolicy()
        self.pad_id = pad_id
        if not self.path.is_file():
            raise ExportError(f"{self.path} does not exist; export it with tinybert-edge export --format {fmt}")

    def signature_for(self, length: int) -> str:
        raise NotImplementedError

    def run(self, signature: str, ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def warm_up(self, row: tuple[list[int], list[int]]) -> None:
        """Run one untimed inference, once per runner, with the runtime's lazy-setup logs hidden."""
        if getattr(self, "_warm", False):
            return
        with converter_output("first inference"):
            ids, types = row
            length = self.policy.pad_length(len(ids))
            self.run(self.signature_for(length), *pad_row(ids, types, length, self.pad_id))
        self._warm = True

    def logits(self, rows: list[tuple[list[int], list[int]]]) -> np.ndarray:
        """(n, C) logits for tokenized rows, each padded as the policy says."""
        from tqdm import tqdm

        out = []
        if rows:
            self.warm_up(rows[0])
        for ids, types in tqdm(rows, desc=f"validating {Path(getattr(self, 'path', '')).name}", unit="text",
                               leave=False, disable=len(rows) < 200):
            length = self.policy.pad_length(len(ids))
            out.append(self.run(self.signature_for(length), *pad_row(ids, types, length, self.pad_id)))
        return np.stack(out)


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
        """Compare (n, C) reference logits with (n, C) artifact logits.

        Raises:
            ExportError: the shapes differ (the artifact returned the wrong number of labels).
        """
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
        d["sqnr_db"] = None if math.isinf(self.sqnr_db) else round(self.sqnr_db, 2)
        return d


@dataclass(frozen=True)
class ExportResult:
    """One exported artifact.

    Attributes:
        format: registry name ("executorch", "tflite").
        quantization: "none", "int8" or "int8-static".
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
