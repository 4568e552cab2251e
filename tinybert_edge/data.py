"""Task data and general-distillation corpora, streamed from disk.

Task files: TSV (GLUE-style, no quoting), CSV (standard quoting) or JSON lines, with a text
column, an optional text-pair column and a label column (names configurable). Corpora: plain
text (one sentence or document per line) or JSON lines with a text field.

Nothing is held in memory beyond a shuffle buffer: every epoch re-reads the file. A labelled task
file longer than the buffer whose rows come in order (sorted by label or target) is instead read in
a full permutation, by each row's byte offset (16 bytes a row in memory): a buffer mixes only
nearby rows, so it would be seen one label at a time. Order is a pure function of (seed, epoch),
so a resumed run can skip exactly the batches it already consumed and see the same data as an
uninterrupted run.
"""

from __future__ import annotations

import random
from array import array
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from tqdm.auto import tqdm

from .errors import DataError
from .taskfiles import (Columns, Example, LabelSpace, TaskFileRows, collect_labels, iter_corpus_texts,
                        iter_task_examples)

__all__ = ["Columns", "Example", "LabelSpace", "ScanReport", "TextBatches", "collect_labels", "iter_corpus_texts",
           "iter_task_examples"]


@dataclass
class ScanReport:
    """What a validation pass over a file found."""

    rows: int
    truncated: int
    max_tokens: int
    longest_label_run: int = 0  # most consecutive rows with one label (task files)
    # how far the label mix of the most lopsided stretch of half a shuffle buffer is from the file's
    # (total variation distance, 0: the same mix, 1: disjoint labels; classification), or the
    # share of rows whose numeric label is >= the previous row's (regression: ~0.5 unsorted)
    worst_window_distance: float = 0.0
    ascending_share: float = 0.0


# A stretch of half a buffer whose label mix is this far (total variation) from the file's, or a
# regression file this often ascending, marks a file in order. Random order on 5,000-row stretches
# stays under ~0.05 and ~0.5; a sorted binary file gives 0.5 and 1.0, five sorted labels 0.8.
SORTED_DISTANCE = 0.25
SORTED_ASCENDING = 0.9


def _worst_window_distance(windows: list[Counter], size: int) -> float:
    """The largest total variation distance between a full window's label mix and the whole file's."""
    total = sum(windows, Counter())
    n = sum(total.values())
    full = [w for w in windows if sum(w.values()) == size]
    if not n or not full:
        return 0.0
    return max(0.5 * sum(abs(w[k] / size - total[k] / n) for k in total) for w in full)


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
        # set by scan() for a task file in order and longer than the shuffle buffer: each row's byte
        # offset and line, so every epoch reads the rows in a full permutation instead of a stream
        self._row_index: tuple[array, array] | None = None

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

        run = longest_run = 0
        previous = None
        offsets, lines = array("q"), array("q")
        window = max(1, self.shuffle_buffer // 2)
        windows: list[Counter] = [Counter()]
        ascending = 0
        it = self._examples()
        if progress:
            it = tqdm(it, desc=f"scan {self.path.name}", unit=" rows", leave=False)
        for ex in it:
            if self.labels is not None:
                self.labels.encode(ex.label, self.path, ex.line)
                if self.labels.task_type == "regression":
                    ascending += previous is not None and float(ex.label) >= float(previous)
                run = run + 1 if ex.label == previous else 1
                previous, longest_run = ex.label, max(longest_run, run)
                if rows and rows % window == 0:  # every labelled row is counted in `rows`
                    windows.append(Counter())
                windows[-1][ex.label] += 1
                offsets.append(ex.offset)
                lines.append(ex.line)
            chunk.append(ex)
            rows += 1
            if len(chunk) >= 512:
                flush()
        flush()
        self._rows = rows
        report = ScanReport(rows=rows, truncated=truncated, max_tokens=longest, longest_label_run=longest_run,
                            worst_window_distance=_worst_window_distance(windows, window),
                            ascending_share=ascending / max(1, rows - 1))
        # A labelled file longer than the buffer whose rows come in order (sorted by label, by
        # target, or many labels in runs) is read in a full permutation: the buffer mixes only
        # nearby rows. A file already in mixed order keeps the stream (and its recorded results).
        ordered = report.worst_window_distance > SORTED_DISTANCE or report.ascending_share > SORTED_ASCENDING
        full = (self.shuffle and self.labels is not None and not self.corpus and rows > self.shuffle_buffer
                and ordered)
        self._row_index = (offsets, lines) if full else None
        return report

    @property
    def full_shuffle(self) -> bool:
        """Whether epochs read the rows in a full permutation (scan found a labelled file in order and
        longer than the shuffle buffer) rather than streamed through the buffer."""
        return self._row_index is not None

    @property
    def order(self) -> str:
        """How epochs are ordered, recorded with checkpoints: a run resumes only in the same order."""
        return "full-shuffle" if self.full_shuffle else ("buffer-shuffle" if self.shuffle else "file")

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
        if self._row_index is not None:
            # 16 bytes a row in memory, one seek a row: the buffer cannot mix a file in order
            offsets, lines = self._row_index
            order = list(range(len(offsets)))
            rng.shuffle(order)
            rows = TaskFileRows(self.path, self.columns, require_label=self.labels is not None)
            for i in order:
                yield rows.at(offsets[i], lines[i])
            return
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
