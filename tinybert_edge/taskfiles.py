"""Task files and corpora: reading and checking rows, with no torch (the runtime side uses it too).

Task files: TSV (GLUE-style, no quoting), CSV (standard quoting) or JSON lines, with a text
column, an optional text-pair column and a label column (names configurable). Corpora: plain
text (one sentence or document per line) or JSON lines with a text field. Batching for training
(torch) is in data.py.
"""

from __future__ import annotations

import csv
import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

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
            if i == 1:
                raw = _strip_bom(raw)
            try:
                yield i, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path}: line {i} is not valid UTF-8 (byte {e.start}: {raw[e.start:e.start + 4]!r}); "
                    "re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8"
                ) from None


def _strip_bom(first_line: bytes) -> bytes:
    """The first line without a UTF-8 byte-order mark: Excel's and Notepad's "UTF-8" files start with
    one, and it would otherwise become part of the first column's name (or of the first text)."""
    return first_line[3:] if first_line.startswith(b"\xef\xbb\xbf") else first_line


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
        used = [c for c in (columns.text, columns.text_pair, columns.label) if header.count(c) > 1]
        if used:
            # a dict of the header would silently keep the last of them, so a model could train on the
            # wrong column (or on inverted labels) without a word
            raise DataError(f"{path}: the header has the column {used[0]!r} {header.count(used[0])} times; "
                            "rename the extra ones so each column name is used once")
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
        unknown_fix: the fix an unknown label's error suggests.
    """

    task_type: str
    label2id: dict[str, int] = field(default_factory=dict)
    # how to fix a label the model does not know (fine-tuning a teacher fixes it differently)
    unknown_fix: str = "fix the data or fine-tune a teacher with this label"

    def encode(self, label: str, path: Path, line: int) -> float | int:
        if self.task_type == "regression":
            try:
                return float(label)
            except ValueError:
                raise DataError(f"{path}: line {line} label {label!r} is not a number (regression task)") from None
        if label not in self.label2id:
            raise DataError(
                f"{path}: line {line} has label {label!r}, which the model does not know "
                f"(known: {sorted(self.label2id)}); {self.unknown_fix}"
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


def read_texts(source, name: str, columns: Columns = Columns()) -> tuple[list[str], list[str] | None]:
    """Texts to classify, with their second segments: a task file's text and text-pair columns
    (.tsv/.csv/.jsonl), or plain UTF-8 lines (no pairs).

    Args:
        source: a path, or a binary stream (standard input) read as plain lines.
        name: how the source is called in messages.
        columns: column names of a task file.

    Returns:
        (texts, pairs): the texts in order; pairs is None when the file has no text pairs.

    Raises:
        DataError: missing file, invalid UTF-8, an empty line (each names the line), or a pair file
            with a row that has no second segment.
    """
    if not hasattr(source, "read"):
        path = Path(source)
        if not path.is_file():
            raise DataError(f"--file {path} does not exist; check the path")
        if path.suffix.lower() in TASK_SUFFIXES:
            examples = list(iter_task_examples(path, columns, require_label=False))
            if all(ex.text_pair is None for ex in examples):
                return [ex.text for ex in examples], None
            missing = next((ex for ex in examples if ex.text_pair is None), None)
            if missing is not None:
                raise DataError(f"{path}: line {missing.line} has no text in column {columns.text_pair!r}, which "
                                "other rows have; a pair model needs both segments on every row: fill it or drop the row")
            return [ex.text for ex in examples], [ex.text_pair for ex in examples]
        with open(path, "rb") as f:
            return _plain_lines(f, name), None
    return _plain_lines(source, name), None


def _plain_lines(stream, name: str) -> list[str]:
    texts = []
    for i, raw in enumerate(stream, start=1):
        if i == 1:
            raw = _strip_bom(raw)
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as e:
            raise DataError(f"{name}: line {i} is not valid UTF-8 (byte {e.start}: {raw[e.start:e.start + 4]!r}); "
                            "re-encode it as UTF-8, e.g. iconv -f latin1 -t utf-8") from None
        if not line.strip():
            raise DataError(f"{name}: line {i} is empty; give one text per line, without blank lines")
        texts.append(line)
    return texts
