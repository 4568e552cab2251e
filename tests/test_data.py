"""Readers, label encoding, truncation counts and deterministic, resumable batching."""

import json

import pytest

from tinybert_edge.data import Columns, LabelSpace, TextBatches, collect_labels, iter_corpus_texts, iter_task_examples
from tinybert_edge.errors import DataError
from conftest import make_tokenizer

SPACE = LabelSpace("classification", {"neg": 0, "pos": 1})


def test_tsv_csv_jsonl_read_the_same_rows(tmp_path):
    rows = [("a good film", "pos", "it is"), ('bad "quoted', "neg", "")]
    (tmp_path / "d.tsv").write_text("text\ttext_pair\tlabel\n" + "".join(f"{a}\t{c}\t{b}\n" for a, b, c in rows))
    (tmp_path / "d.csv").write_text('text,text_pair,label\na good film,it is,pos\n"bad ""quoted",,neg\n')
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": a, "text_pair": c, "label": b}) + "\n"
                                              for a, b, c in rows))
    for name in ("d.tsv", "d.csv", "d.jsonl"):
        got = [(e.text, e.label, e.text_pair) for e in iter_task_examples(tmp_path / name)]
        assert got == [("a good film", "pos", "it is"), ('bad "quoted', "neg", None)], name


def test_custom_column_names(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_text("sentence\ty\nfun film\t1\n")
    ex = next(iter_task_examples(p, Columns(text="sentence", label="y")))
    assert (ex.text, ex.label) == ("fun film", "1")


@pytest.mark.parametrize("content, match", [
    (b"", "empty"),
    (b"text\tlabel\n", "no rows"),
    (b"sentence\tlabel\nx\tpos\n", "no text column 'text'"),
    (b"text\tlabel\ngood\t\n", "line 2 has no label"),
    (b"text\tlabel\n\tpos\n", "line 2 has no text"),
    (b"text\tlabel\nok\tpos\nbad \xff\xfe bytes\tneg\n", "line 3 is not valid UTF-8"),
    (b"text\tlabel\na\tb\tc\n", "line 2 has 3 fields"),
])
def test_bad_task_files(tmp_path, content, match):
    p = tmp_path / "bad.tsv"
    p.write_bytes(content)
    with pytest.raises(DataError, match=match):
        list(iter_task_examples(p))


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        list(iter_task_examples(tmp_path / "nope.tsv"))
    (tmp_path / "x.parquet").write_text("x")
    with pytest.raises(DataError, match="format"):
        list(iter_task_examples(tmp_path / "x.parquet"))


def test_unknown_label_is_reported_with_line(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_text("text\tlabel\ngood\tpos\nmeh\tneutral\n")
    tok = make_tokenizer(tmp_path / "tok")
    with pytest.raises(DataError, match=r"line 3 has label 'neutral'.*known: \['neg', 'pos'\]"):
        TextBatches(p, tok, 16, 2, labels=SPACE).scan()


def test_corpus_txt_and_jsonl(tmp_path):
    (tmp_path / "c.txt").write_text("one line\n\nanother line\n")
    assert [e.text for e in iter_corpus_texts(tmp_path / "c.txt")] == ["one line", "another line"]
    (tmp_path / "c.jsonl").write_text('{"text": "x"}\n{"nope": 1}\n')
    with pytest.raises(DataError, match="line 2 has no string field 'text'"):
        list(iter_corpus_texts(tmp_path / "c.jsonl"))
    (tmp_path / "e.txt").write_text("\n\n")
    with pytest.raises(DataError, match="no texts"):
        list(iter_corpus_texts(tmp_path / "e.txt"))


def test_collect_labels_sorted():
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "d.tsv"
        p.write_text("text\tlabel\na\t10\nb\t2\nc\t2\n")
        assert collect_labels(p) == ["2", "10"]


def _data(tmp_path, n=23, **kw):
    p = tmp_path / "d.tsv"
    p.write_text("text\tlabel\n" + "".join(f"film {'good' if i % 2 else 'bad'} {i}\t{'pos' if i % 2 else 'neg'}\n"
                                           for i in range(n)))
    return TextBatches(p, make_tokenizer(tmp_path / "tok"), 16, 4, seed=7, labels=SPACE, **kw)


def test_truncation_is_counted(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_text("text\tlabel\n" + "good " * 30 + "\tpos\nbad film\tneg\n")
    data = TextBatches(p, make_tokenizer(tmp_path / "tok"), 8, 2, labels=SPACE)
    rep = data.scan()
    assert (rep.rows, rep.truncated, rep.max_tokens) == (2, 1, 32)
    batch = next(data.batches(0))
    assert batch["input_ids"].shape[1] == 8


def test_batches_keep_the_last_partial_batch_and_cover_every_row(tmp_path):
    for grouped in (False, True):
        data = _data(tmp_path, group_by_length=grouped, length_window=2)
        assert data.steps_per_epoch() == 6  # ceil(23 / 4)
        batches = list(data.batches(0))
        assert sorted(b["labels"].shape[0] for b in batches) == [3, 4, 4, 4, 4, 4]
        assert sum(int(b["labels"].sum()) for b in batches) == 11  # every row once: 11 odd (pos) rows


def test_length_grouping_reduces_padding(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_text("text\tlabel\n" + "".join(f"{'good ' * (1 + (i * 7) % 20)}\tpos\n" for i in range(64)))
    tok = make_tokenizer(tmp_path / "tok")
    cells = {}
    for grouped in (False, True):
        data = TextBatches(p, tok, 32, 8, seed=3, labels=SPACE, group_by_length=grouped)
        cells[grouped] = sum(b["input_ids"].numel() for b in data.batches(0))
    assert cells[True] < 0.75 * cells[False]


def test_order_is_deterministic_per_epoch_and_skip_resumes_exactly(tmp_path):
    data = _data(tmp_path, shuffle_buffer=5)
    e0 = [b["input_ids"].tolist() for b in data.batches(0)]
    assert e0 == [b["input_ids"].tolist() for b in data.batches(0)]
    assert e0 != [b["input_ids"].tolist() for b in data.batches(1)]
    assert [b["input_ids"].tolist() for b in data.batches(0, skip=2)] == e0[2:]


def test_two_processes_split_each_global_batch(tmp_path):
    data = _data(tmp_path)
    whole = [b["labels"].tolist() for b in data.batches(0)]
    r0 = [b["labels"].tolist() for b in data.batches(0, rank=0, world_size=2)]
    r1 = [b["labels"].tolist() for b in data.batches(0, rank=1, world_size=2)]
    assert len(r0) == len(r1) == len(whole)
    for w, a, b in zip(whole, r0, r1):
        assert sorted(a + b) == sorted(w)
    with pytest.raises(DataError, match="does not split evenly"):
        next(data.batches(0, world_size=3))
