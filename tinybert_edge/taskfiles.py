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
    offset: int = -1  # byte offset of the row's first line in a task file (TaskFileRows reads it back)


def _decoded_lines(path: Path, start: int = 0, first_line: int = 1) -> Iterator[tuple[int, str, int]]:
    """Yield (1-based line number, text, byte offset of the line) decoding UTF-8 strictly, one line
    at a time, from byte `start` (numbered from `first_line`)."""
    with open(path, "rb") as f:
        f.seek(start)
        offset = start
        for i, raw in enumerate(f, start=first_line):
            at = offset
            offset += len(raw)
            if at == 0:
                raw = _strip_bom(raw)
            try:
                yield i, raw.decode("utf-8"), at
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
        for line_no, line, at in _decoded_lines(path):
            if not line.strip():
                continue
            rows += 1
            yield _json_example(path, line_no, line, at, columns, require_label)
    else:
        current = {"line": 0, "start": None}

        def texts():
            for n, s, at in _decoded_lines(path):
                current["line"] = n
                if current["start"] is None:  # the first line of the row the reader is reading
                    current["start"] = at
                yield s

        reader = _csv_reader(fmt, texts())
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path} is empty; it needs a header and at least one row") from None
        current["start"] = None
        header = _check_header(path, header, columns, require_label)
        index = {name: i for i, name in enumerate(header)}
        try:
            for cells in reader:
                start, current["start"] = current["start"], None
                if not cells or all(not c.strip() for c in cells):
                    continue
                rows += 1
                yield _cells_example(path, current["line"], cells, header, index, start, columns, require_label)
        except csv.Error as e:
            raise DataError(f"{path}: line {current['line']} is malformed CSV ({e})") from None
    if rows == 0:
        raise DataError(f"{path} has a header but no rows; add data")


def _csv_reader(fmt: str, lines):
    return csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE) if fmt == "tsv" else csv.reader(lines)


def _json_example(path: Path, line_no: int, line: str, at: int, columns: Columns, require_label: bool) -> Example:
    read = (columns.text, columns.text_pair, columns.label)

    def no_duplicate_keys(pairs):
        # json keeps the last of a duplicated key without a word, as a csv header dict would
        keys = [k for k, _ in pairs]
        twice = next((k for k in read if keys.count(k) > 1), None)
        if twice is not None:
            raise DataError(f"{path}: line {line_no} has the key {twice!r} {keys.count(twice)} times; keep one")
        return dict(pairs)

    try:
        obj = json.loads(line, object_pairs_hook=no_duplicate_keys)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: line {line_no} is not valid JSON ({e.msg}); one JSON object per line") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: line {line_no} is not a JSON object")
    return _make_example(path, line_no, obj, columns, require_label, at)


def _cells_example(path: Path, line_no: int, cells: list[str], header: list[str], index: dict, at: int,
                   columns: Columns, require_label: bool) -> Example:
    if len(cells) != len(header):
        raise DataError(
            f"{path}: line {line_no} has {len(cells)} fields, the header has {len(header)}; "
            "fix the row (a stray tab or quote?)"
        )
    return _make_example(path, line_no, {name: cells[i] for name, i in index.items()}, columns, require_label, at)


def _check_header(path: Path, header: list[str], columns: Columns, require_label: bool) -> list[str]:
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
    return header


class TaskFileRows:
    """Rows of a task file read back by the byte offset and line number iter_task_examples gave
    them, in any order: training's full shuffle of a file too long for the shuffle buffer.

    Args:
        path: the task file (already read in full once, so it is known to be well formed).
        columns, require_label: as for iter_task_examples.
    """

    def __init__(self, path: str | Path, columns: Columns = Columns(), require_label: bool = True):
        self.path, self.columns, self.require_label = Path(path), columns, require_label
        self.fmt = task_format(self.path)
        self.header: list[str] = []
        if self.fmt != "jsonl":
            lines = (s for _, s, _ in _decoded_lines(self.path))
            header = next(_csv_reader(self.fmt, lines), None)
            if header is None:
                raise DataError(f"{self.path} changed while training read it (it is empty now); leave the file alone "
                                "during a run, or start it again")
            self.header = _check_header(self.path, header, columns, require_label)
        self.index = {name: i for i, name in enumerate(self.header)}

    def at(self, offset: int, line: int) -> Example:
        """The row that starts at byte `offset` (line `line`).

        Raises:
            DataError: the file changed since it was read (the row is not there any more).
        """
        lines = _decoded_lines(self.path, offset, line)
        try:
            if self.fmt == "jsonl":
                n, text, at = next(lines)
                return _json_example(self.path, n, text, at, self.columns, self.require_label)
            current = {"line": line}

            def texts():
                for n, s, _ in lines:
                    current["line"] = n
                    yield s

            cells = next(_csv_reader(self.fmt, texts()))
            return _cells_example(self.path, line, cells, self.header, self.index, offset, self.columns,
                                  self.require_label)
        except (StopIteration, csv.Error, DataError):
            raise DataError(f"{self.path} changed while training read it (line {line} is not the row it was); "
                            "leave the file alone during a run, or start it again") from None


def _make_example(path: Path, line: int, obj: dict, columns: Columns, require_label: bool,
                  offset: int = -1) -> Example:
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
    return Example(str(text), pair, label, line, offset)


def iter_corpus_texts(path: str | Path, text_key: str = "text") -> Iterator[Example]:
    """Stream a general-distillation corpus: .txt (one text per line) or .jsonl.

    Raises:
        DataError: missing or empty file, non-UTF-8 bytes, bad JSON, no texts at all.
    """
    path = Path(path)
    _check_file(path, "corpus")
    fmt = CORPUS_SUFFIXES.get(path.suffix.lower(), "text")
    n = 0
    for line_no, line, _ in _decoded_lines(path):
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


def missing_pair_error(path: str | Path, line: int, columns: Columns = Columns()) -> DataError:
    """The error for a row without a second segment in a file whose other rows have one.

    Args:
        path: the file.
        line: the first such row's line.
        columns: the file's column names.

    Returns:
        The DataError to raise (a pair model needs both segments on every row).
    """
    return DataError(f"{path}: line {line} has no text in column {columns.text_pair!r}, which other rows have; "
                     "a pair model needs both segments on every row: fill it or drop the row")


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
                raise missing_pair_error(path, missing.line, columns)
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
