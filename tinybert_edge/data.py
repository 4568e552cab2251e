"""Task data and general-distillation corpora, streamed from disk.

Task files: TSV (GLUE-style, no quoting), CSV (standard quoting) or JSON lines, with a text
column, an optional text-pair column and a label column (names configurable). Corpora: plain
text (one sentence or document per line) or JSON lines with a text field.

Nothing is held in memory beyond a shuffle buffer: every epoch re-reads the file. Order is
a pure function of (seed, epoch), so a resumed run can skip exactly the batches it already
consumed and see the same data as an uninterrupted run.
"""

from __future__ import annotations

import csv
import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from .errors import DataError

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

TASK_SUFFIXES = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
CORPUS_SUFFIXES = {".txt": "text", ".jsonl": "jsonl", ".json": "jsonl"}


@dataclass(frozen=True)
class Columns:
    """Names of the columns (or JSON keys) of a task file."""

    text: str = "text"
    text_pair: str = "text_pair"
    label: str = "label"


@dataclass(frozen=True)
class Example:
    """One row of a task file (label is None in corpora)."""

    text: str
    text_pair: str | None
    label: str | None
    line: int


def _decoded_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, text) decoding UTF-8 strictly, one line at a time."""
    with open(path, "rb") as f:
        for i, raw in enumerate(f, start=1):
            try:
                yield i, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path}: line {i} is not valid UTF-8 (byte {e.start}: {raw[e.start:e.start + 4]!r}); "
                    "re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8"
                ) from None


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise DataError(f"{what} file {path} does not exist; check the path")
    if not path.is_file():
        raise DataError(f"{what} path {path} is not a file")
    if path.stat().st_size == 0:
        raise DataError(f"{what} file {path} is empty; it needs a header and at least one row")


def task_format(path: Path) -> str:
    fmt = TASK_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"cannot tell the format of {path}: use a .tsv, .csv or .jsonl file")
    return fmt


def iter_task_examples(path: str | Path, columns: Columns = Columns(), require_label: bool = True) -> Iterator[Example]:
    """Stream the rows of a task file.

    Args:
        path: .tsv, .csv or .jsonl file.
        columns: column names for text, optional text pair and label.
        require_label: raise on rows without a label (training and evaluation need one).

    Yields:
        Example per row, with the file's line number for error messages.

    Raises:
        DataError: missing/empty file, unknown format, missing columns, empty text, missing
            label, or non-UTF-8 bytes. The message names the file, the line and the fix.
    """
    path = Path(path)
    _check_file(path, "data")
    fmt = task_format(path)
    rows = 0
    if fmt == "jsonl":
        for line_no, line in _decoded_lines(path):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {line_no} is not valid JSON ({e.msg}); one JSON object per line") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}: line {line_no} is not a JSON object")
            rows += 1
            yield _make_example(path, line_no, obj, columns, require_label)
    else:
        lines = _decoded_lines(path)
        numbered = ((n, s) for n, s in lines)
        current = {"line": 0}

        def texts():
            for n, s in numbered:
                current["line"] = n
                yield s

        if fmt == "tsv":
            reader = csv.reader(texts(), delimiter="\t", quoting=csv.QUOTE_NONE)
        else:
            reader = csv.reader(texts())
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path} is empty; it needs a header and at least one row") from None
        header = [h.strip() for h in header]
        if columns.text not in header:
            raise DataError(
                f"{path}: header {header} has no text column {columns.text!r}; rename the column or pass --text-column"
            )
        if require_label and columns.label not in header:
            raise DataError(
                f"{path}: header {header} has no label column {columns.label!r}; rename the column or pass --label-column"
            )
        index = {name: i for i, name in enumerate(header)}
        try:
            for cells in reader:
                if not cells or all(not c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    raise DataError(
                        f"{path}: line {current['line']} has {len(cells)} fields, the header has {len(header)}; "
                        "fix the row (a stray tab or quote?)"
                    )
                rows += 1
                obj = {name: cells[i] for name, i in index.items()}
                yield _make_example(path, current["line"], obj, columns, require_label)
        except csv.Error as e:
            raise DataError(f"{path}: line {current['line']} is malformed CSV ({e})") from None
    if rows == 0:
        raise DataError(f"{path} has a header but no rows; add data")


def _make_example(path: Path, line: int, obj: dict, columns: Columns, require_label: bool) -> Example:
    text = obj.get(columns.text)
    if text is None or not str(text).strip():
        raise DataError(f"{path}: line {line} has no text in column {columns.text!r}; drop the row or fill it")
    pair = obj.get(columns.text_pair)
    pair = str(pair) if pair is not None and str(pair).strip() else None
    label = obj.get(columns.label)
    if label is not None:
        label = str(label).strip()
        if label == "":
            label = None
    if require_label and label is None:
        raise DataError(f"{path}: line {line} has no label in column {columns.label!r}; drop the row or label it")
    return Example(str(text), pair, label, line)


def iter_corpus_texts(path: str | Path, text_key: str = "text") -> Iterator[Example]:
    """Stream a general-distillation corpus: .txt (one text per line) or .jsonl.

    Raises:
        DataError: missing or empty file, non-UTF-8 bytes, bad JSON, no texts at all.
    """
    path = Path(path)
    _check_file(path, "corpus")
    fmt = CORPUS_SUFFIXES.get(path.suffix.lower(), "text")
    n = 0
    for line_no, line in _decoded_lines(path):
        if not line.strip():
            continue
        if fmt == "jsonl":
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {line_no} is not valid JSON ({e.msg})") from None
            text = obj.get(text_key) if isinstance(obj, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{path}: line {line_no} has no string field {text_key!r}")
        else:
            text = line.strip()
        n += 1
        yield Example(text, None, None, line_no)
    if n == 0:
        raise DataError(f"corpus {path} has no texts; one text per line is expected")


@dataclass
class LabelSpace:
    """Maps label strings of a data file to model label ids.

    Attributes:
        task_type: "classification" or "regression".
        label2id: for classification, the model's labels (strings) to ids.
    """

    task_type: str
    label2id: dict[str, int] = field(default_factory=dict)

    def encode(self, label: str, path: Path, line: int) -> float | int:
        if self.task_type == "regression":
            try:
                return float(label)
            except ValueError:
                raise DataError(f"{path}: line {line} label {label!r} is not a number (regression task)") from None
        if label not in self.label2id:
            raise DataError(
                f"{path}: line {line} has label {label!r}, which the model does not know "
                f"(known: {sorted(self.label2id)}); fix the data or fine-tune a teacher with this label"
            )
        return self.label2id[label]

    @property
    def num_labels(self) -> int:
        return 1 if self.task_type == "regression" else len(self.label2id)


def collect_labels(path: str | Path, columns: Columns = Columns()) -> list[str]:
    """All distinct labels of a task file, sorted (numbers numerically), for a new classifier."""
    labels = {ex.label for ex in iter_task_examples(path, columns)}

    def key(s: str):
        try:
            return (0, float(s), s)
        except ValueError:
            return (1, 0.0, s)

    return sorted(labels, key=key)


@dataclass
class ScanReport:
    """What a validation pass over a file found."""

    rows: int
    truncated: int
    max_tokens: int


class TextBatches:
    """Deterministic, streamed, tokenized batches over a task file or corpus.

    Args:
        path: the data file.
        tokenizer: a Hugging Face tokenizer (fast or slow).
        max_seq_len: tokens per sequence incl. [CLS]/[SEP]; longer texts are truncated and counted.
        batch_size: global batch size (split evenly over processes).
        seed: base seed; epoch e shuffles with (seed, e).
        labels: how to encode labels, or None for a corpus.
        columns: column names of a task file.
        corpus: treat `path` as a corpus (no labels).
        shuffle: shuffle within a buffer of `shuffle_buffer` examples.
        group_by_length: when shuffling, sort each window of `length_window` batches by text
            length before cutting it into batches (less padding, same examples per epoch),
            then shuffle the order of those batches.
    """

    def __init__(
        self,
        path: str | Path,
        tokenizer,
        max_seq_len: int,
        batch_size: int,
        seed: int = 0,
        labels: LabelSpace | None = None,
        columns: Columns = Columns(),
        corpus: bool = False,
        shuffle: bool = True,
        shuffle_buffer: int = 10_000,
        group_by_length: bool = True,
        length_window: int = 50,
    ):
        if batch_size < 1:
            raise DataError(f"batch size must be >= 1, got {batch_size}")
        if max_seq_len < 3:
            raise DataError(f"max sequence length must be >= 3 ([CLS] x [SEP]), got {max_seq_len}")
        self.path = Path(path)
        self.tokenizer = tokenizer
        self.max_seq_len = max_seq_len
        self.batch_size = batch_size
        self.seed = seed
        self.labels = labels
        self.columns = columns
        self.corpus = corpus
        self.shuffle = shuffle
        self.shuffle_buffer = max(1, shuffle_buffer)
        self.group_by_length = group_by_length
        self.length_window = max(1, length_window)
        self._rows: int | None = None

    def _examples(self) -> Iterator[Example]:
        if self.corpus:
            return iter_corpus_texts(self.path)
        return iter_task_examples(self.path, self.columns, require_label=self.labels is not None)

    def scan(self, progress: bool = False) -> ScanReport:
        """Read the whole file once: validate every row and label, count rows and truncations.

        Run before training so a bad row at the end of a file fails the run at start, not
        hours in, and so the number of steps per epoch is known for the LR schedule.

        Raises:
            DataError: any malformed row or unknown label.
        """
        rows = truncated = longest = 0
        chunk: list[Example] = []

        def flush():
            nonlocal truncated, longest
            if not chunk:
                return
            enc = self.tokenizer(
                [e.text for e in chunk],
                _pairs(chunk),
                truncation=False,
                add_special_tokens=True,
            )["input_ids"]
            for ids in enc:
                longest = max(longest, len(ids))
                truncated += len(ids) > self.max_seq_len
            chunk.clear()

        it = self._examples()
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc=f"scan {self.path.name}", unit=" rows", leave=False)
        for ex in it:
            if self.labels is not None:
                self.labels.encode(ex.label, self.path, ex.line)
            chunk.append(ex)
            rows += 1
            if len(chunk) >= 512:
                flush()
        flush()
        self._rows = rows
        return ScanReport(rows=rows, truncated=truncated, max_tokens=longest)

    @property
    def rows(self) -> int:
        if self._rows is None:
            self.scan()
        return self._rows  # type: ignore[return-value]

    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch; the last, partial batch is kept (not skipped)."""
        return -(-self.rows // self.batch_size)

    def _ordered(self, epoch: int) -> Iterator[Example]:
        if not self.shuffle:
            yield from self._examples()
            return
        rng = random.Random(f"{self.seed}:{epoch}")
        buf: list[Example] = []
        for ex in self._examples():
            buf.append(ex)
            if len(buf) >= self.shuffle_buffer:
                i = rng.randrange(len(buf))
                buf[i], buf[-1] = buf[-1], buf[i]
                yield buf.pop()
        rng.shuffle(buf)
        yield from buf

    def batches(self, epoch: int, rank: int = 0, world_size: int = 1, skip: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Tokenized batches of epoch `epoch` for process `rank` of `world_size`.

        Args:
            epoch: 0-based epoch; fixes the shuffle order.
            rank: this process's index.
            world_size: number of processes; the global batch is split evenly among them.
            skip: global batches already consumed (resume); skipped without tokenizing.

        Yields:
            dict with input_ids, attention_mask, token_type_ids (B, T) and labels (B,) when
            the data has labels.
        """
        if self.batch_size % world_size:
            raise DataError(
                f"batch size {self.batch_size} does not split evenly over {world_size} processes; "
                f"use a multiple of {world_size}"
            )
        first: list[Example] = []
        for index, group in enumerate(self._global_batches(epoch)):
            if not first:
                first = group[:world_size]
            if index < skip:
                continue
            # Every process must step: a final batch smaller than the process count borrows rows.
            while len(group) < world_size:
                group = group + [first[len(group) % len(first)]]
            yield self._encode(group[rank::world_size])

    def _global_batches(self, epoch: int) -> Iterator[list[Example]]:
        """Global batches of an epoch, the last one partial (the public code drops it)."""
        bs = self.batch_size
        if not (self.shuffle and self.group_by_length):
            group: list[Example] = []
            for ex in self._ordered(epoch):
                group.append(ex)
                if len(group) == bs:
                    yield group
                    group = []
            if group:
                yield group
            return
        rng = random.Random(f"{self.seed}:{epoch}:length-groups")
        window: list[Example] = []

        def cut(items: list[Example]) -> list[list[Example]]:
            items.sort(key=lambda e: len(e.text) + len(e.text_pair or ""))
            groups = [items[i : i + bs] for i in range(0, len(items), bs)]
            rng.shuffle(groups)
            return groups

        for ex in self._ordered(epoch):
            window.append(ex)
            if len(window) == bs * self.length_window:
                yield from cut(window)
                window = []
        if window:
            yield from cut(window)

    def _encode(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            [e.text for e in examples],
            _pairs(examples),
            truncation=True,
            max_length=self.max_seq_len,
            padding="longest",
            return_tensors="pt",
        )
        batch = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
        if "token_type_ids" not in batch:
            batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
        if self.labels is not None:
            vals = [self.labels.encode(e.label, self.path, e.line) for e in examples]
            dtype = torch.float32 if self.labels.task_type == "regression" else torch.long
            batch["labels"] = torch.tensor(vals, dtype=dtype)
        return batch


def _pairs(examples: list[Example]) -> list[str] | None:
    """Second segments for the tokenizer: None for single-sentence data, "" for rows without one."""
    if all(e.text_pair is None for e in examples):
        return None
    return [e.text_pair or "" for e in examples]
