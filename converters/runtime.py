"""The runtime side of an artifact: what an app does around the model, in numpy only.

Tokenize (HF `tokenizers`, the Rust WordPiece that the Android core is tested against), pad
(the one pad rule of the Python side), softmax, the sequence-length policy, latency statistics,
the runner interface and the parity report. Nothing here imports torch or transformers: a
benchmark row of a .tflite bundle, `predict` on one, and the ARM runner load only this, their
runtime and numpy, which is what a phone or board pays.
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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer
from tokenizers import models as tk_models
from tokenizers import normalizers, pre_tokenizers, processors

from tinybert_edge.errors import KitError

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class ExportError(KitError, RuntimeError):
    """An export or an artifact failed; the message names the problem and the fix."""


def require(module: str, package: str):
    """Import an optional runtime or converter (the kit's one way to reach them).

    Raises:
        ExportError: not installed; the message names the pip package.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(f"{module} is not installed; pip install {package} "
                          "(or pip install -e \".[export]\")") from None


@contextlib.contextmanager
def quiet_native_output(what: str = "conversion"):
    """Keep converters' and runtimes' own chatter (progress trees, C++ log lines, deprecation
    warnings) off the terminal, so the user sees one line per artifact; a failure re-raises as
    ExportError with the tail of what they printed. TINYBERT_EDGE_VERBOSE=1 shows everything.
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
        """How long an input of `n_tokens` (already truncated to max_len) is made before it runs.

        The pad rule of the Python side (the Java core has its twin, checked by the golden tests).
        """
        if self.kind == "fixed":
            return self.max_len
        if self.kind == "dynamic":
            return max(n_tokens, 2)  # the exported dynamic dimension starts at 2
        return next(b for b in self.buckets if b >= n_tokens)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "max_len": self.max_len, "buckets": list(self.buckets)}

    @classmethod
    def from_dict(cls, d: dict) -> "SeqLenPolicy":
        return cls(d["kind"], int(d["max_len"]), tuple(int(x) for x in d.get("buckets", ())))


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


class WordPieceTokenizer:
    """A bundle's BERT WordPiece tokenizer, rebuilt from vocab.txt and the metadata's settings with
    HF `tokenizers` alone (what an app must rebuild too; no transformers, no torch).

    Args:
        vocab_file: vocab.txt, one token per line, line number = id.
        settings: the metadata's "tokenizer" object.
    """

    def __init__(self, vocab_file: str | Path, settings: dict):
        lines = Path(vocab_file).read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # the newline that ends the last token
        vocab = {tok: i for i, tok in enumerate(lines)}
        tk = Tokenizer(tk_models.WordPiece(vocab, unk_token=settings["unk_token"],
                                           continuing_subword_prefix=settings["continuing_subword_prefix"],
                                           max_input_chars_per_word=settings["max_input_chars_per_word"]))
        tk.normalizer = normalizers.BertNormalizer(clean_text=settings["clean_text"],
                                                   handle_chinese_chars=settings["tokenize_chinese_chars"],
                                                   strip_accents=settings["strip_accents"],
                                                   lowercase=settings["do_lower_case"])
        tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        cls, sep = settings["cls_token"], settings["sep_token"]
        tk.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
            special_tokens=[(cls, settings["cls_id"]), (sep, settings["sep_id"])])
        self._tk = tk
        self.pad_token_id = settings["pad_id"]
        self.cls_token_id, self.sep_token_id = settings["cls_id"], settings["sep_id"]
        self.vocab_size = len(vocab)

    def encode(self, texts: list[str], text_pairs: list[str] | None, max_len: int) -> list[tuple[list[int], list[int]]]:
        """(input_ids, token_type_ids) per text, truncated to max_len (longest first), unpadded."""
        self._tk.enable_truncation(max_len, strategy="longest_first")
        encs = self._tk.encode_batch(list(zip(texts, text_pairs)) if text_pairs else list(texts))
        return [(e.ids, e.type_ids) for e in encs]

    def count_truncated(self, texts: list[str], text_pairs: list[str] | None, max_len: int) -> int:
        """How many inputs encode to more than max_len tokens (with the special tokens)."""
        self._tk.no_truncation()
        try:
            encs = self._tk.encode_batch(list(zip(texts, text_pairs)) if text_pairs else list(texts))
        finally:
            self._tk.enable_truncation(max_len, strategy="longest_first")
        return sum(len(e.ids) > max_len for e in encs)

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        return [self._tk.id_to_token(i) for i in ids]


def tokenize(tokenizer, texts: list[str], text_pairs: list[str] | None, max_len: int) -> list[tuple[list[int], list[int]]]:
    """(input_ids, token_type_ids) per text, truncated to max_len, unpadded.

    Args:
        tokenizer: a WordPieceTokenizer (runtime side) or a transformers tokenizer (export side).
    """
    if isinstance(tokenizer, WordPieceTokenizer):
        return tokenizer.encode(texts, text_pairs, max_len)
    enc = tokenizer(texts, text_pairs, truncation=True, max_length=max_len) if text_pairs else \
        tokenizer(texts, truncation=True, max_length=max_len)
    types = enc.get("token_type_ids") or [[0] * len(ids) for ids in enc["input_ids"]]
    return list(zip(enc["input_ids"], types))


def count_truncated(tokenizer, texts: list[str], text_pairs: list[str] | None, max_len: int) -> int:
    """How many inputs are longer than `max_len` tokens (with [CLS] and [SEP]), so that an artifact
    sees only their first tokens, as an app does.

    Args:
        tokenizer: a WordPieceTokenizer (runtime side) or a transformers tokenizer (export side).
        texts, text_pairs: the inputs (pairs None: single texts).
        max_len: the artifact's longest input.

    Returns:
        The number of inputs that are cut.
    """
    if isinstance(tokenizer, WordPieceTokenizer):
        return tokenizer.count_truncated(texts, text_pairs, max_len)
    # verbose=False: transformers warns about every text over the model's 512 positions, which is what we count
    enc = tokenizer(texts, text_pairs, verbose=False) if text_pairs else tokenizer(texts, verbose=False)
    return sum(len(ids) > max_len for ids in enc["input_ids"])


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax of one row of logits, in float64 (what the app's core computes)."""
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def latency_stats(ms: list[float]) -> dict:
    """p50/p90/p99, mean, std and 10 %-trimmed mean of per-inference latencies (ms).

    The trimmed mean drops the fastest and slowest 10 % (as ExecuTorch's Android benchmark app
    reports); percentiles use linear interpolation (numpy's default). The app's core computes the
    same (golden tests).
    """
    a = np.sort(np.asarray(ms, dtype=np.float64))
    k = int(len(a) * 0.1)
    trimmed = a[k : len(a) - k] if len(a) - 2 * k > 0 else a
    return {"p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean()), "std_ms": float(a.std()),
            "trimmed_mean_ms": float(trimmed.mean()), "runs": int(len(a))}


class ArtifactRunner:
    """Runs one exported classifier with its real runtime, one example at a time (batch 1).

    Subclasses implement `run(signature, ids, mask, types) -> (C,) scores`, where the inputs
    are (1, L) int64 arrays and `signature` is the name of the traced length to use; the scores
    are what the artifact outputs (logits, or probabilities for a MediaPipe-ready .tflite).
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

    def run_row(self, ids: list[int], types: list[int]) -> np.ndarray:
        """Scores of one tokenized row, padded as the policy says."""
        length = self.policy.pad_length(len(ids))
        return self.run(self.signature_for(length), *pad_row(ids, types, length, self.pad_id))

    def warm_up(self, row: tuple[list[int], list[int]]) -> None:
        """Run one untimed inference, once per runner, with the runtime's lazy-setup logs hidden."""
        if getattr(self, "_warm", False):
            return
        with quiet_native_output("first inference"):
            self.run_row(*row)
        self._warm = True

    def scores(self, rows: list[tuple[list[int], list[int]]], progress=None) -> np.ndarray:
        """(n, C) outputs for tokenized rows, each padded as the policy says.

        Args:
            progress: called with the number of rows done (long validations show progress).
        """
        out = []
        if rows:
            self.warm_up(rows[0])
        for i, row in enumerate(rows, 1):
            out.append(self.run_row(*row))
            if progress is not None and (i % 100 == 0 or i == len(rows)):
                progress(i)
        return np.stack(out)


@dataclass(frozen=True)
class ParityReport:
    """How closely an artifact's outputs follow eager PyTorch on identical inputs.

    Attributes:
        examples: number of inputs compared.
        max_abs: largest absolute output difference.
        mean_abs: mean absolute output difference.
        sqnr_db: signal-to-quantization-noise ratio of the outputs, in dB (inf when exact).
        label_agreement: share of inputs whose argmax label is the same.
    """

    examples: int
    max_abs: float
    mean_abs: float
    sqnr_db: float
    label_agreement: float

    @classmethod
    def compare(cls, reference: np.ndarray, candidate: np.ndarray) -> "ParityReport":
        """Compare (n, C) reference outputs with (n, C) artifact outputs.

        Raises:
            ExportError: the shapes differ (the artifact returned the wrong number of labels).
        """
        reference = np.asarray(reference, dtype=np.float64)
        candidate = np.asarray(candidate, dtype=np.float64)
        if reference.shape != candidate.shape:
            raise ExportError(f"artifact returned outputs of shape {candidate.shape}, expected {reference.shape}")
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
