"""Files users bring that the demo data never showed (a fresh-eyes sweep of the CLI, twenty-second
sitting): a UTF-8 byte-order mark, a duplicated column name, sentence pairs at predict time, texts
longer than the artifact, and inputs that fail before anything should be written."""

import io
import itertools
import json
import random

import numpy as np
import pytest
from transformers import AutoTokenizer

from tinybert_edge.cli import main
from tinybert_edge.converters.bundle import load_bundle
from tinybert_edge.errors import DataError
from tinybert_edge.data import LabelSpace, TextBatches
from tinybert_edge.taskfiles import TaskFileRows, iter_task_examples, read_texts
from conftest import WORDS, make_tiny_model_dir, sentences, write_tsv

BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize("name,body", [
    ("bom.tsv", b"text\tlabel\ngood film\tpos\nbad plot\tneg\n"),
    ("bom.csv", b"text,label\r\ngood film,pos\r\nbad plot,neg\r\n"),
    ("bom.jsonl", b'{"text": "good film", "label": "pos"}\n{"text": "bad plot", "label": "neg"}\n'),
])
def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path, name, body):
    # Excel's and Notepad's "UTF-8" files start with one; it made the header's first name '\ufefftext'
    p = tmp_path / name
    p.write_bytes(BOM + body)
    rows = list(iter_task_examples(p))
    assert [(r.text, r.label) for r in rows] == [("good film", "pos"), ("bad plot", "neg")]


def test_a_byte_order_mark_on_standard_input_is_not_part_of_the_first_text():
    texts, pairs = read_texts(io.BytesIO(BOM + b"great film\nawful plot\n"), "standard input")
    assert texts == ["great film", "awful plot"] and pairs is None


def test_a_duplicated_column_name_that_the_kit_reads_is_refused(tmp_path):
    dup = tmp_path / "dup.csv"
    dup.write_text("text,label,label\ngood film,pos,neg\n")
    with pytest.raises(DataError, match="the header has the column 'label' 2 times; rename the extra ones"):
        list(iter_task_examples(dup))
    # a duplicated column the kit does not read is harmless
    other = tmp_path / "other.tsv"
    other.write_text("text\tnote\tnote\tlabel\ngood film\ta\tb\tpos\n")
    assert [(r.text, r.label) for r in iter_task_examples(other)] == [("good film", "pos")]


def test_duplicated_text_column_fails_the_cli_with_one_error(tiny_assets, tmp_path, capsys):
    dup = tmp_path / "dup.tsv"
    dup.write_text("text\ttext\tlabel\n" + "".join(f"{t}\tother words\t{lab}\n" for t, lab in sentences(8)))
    assert main(["finetune", "--model", str(tiny_assets["teacher_base"]), "--train", str(dup), "--out",
                 str(tmp_path / "t"), "--max-steps", "1", "--batch-size", "4", "--max-seq-len", "16"]) == 2
    err = capsys.readouterr().err
    assert "column 'text' 2 times" in err
    assert not (tmp_path / "t").exists()


def test_read_texts_returns_the_pairs_of_a_pair_file_and_refuses_a_row_without_one(tmp_path):
    p = tmp_path / "nli.jsonl"
    p.write_text('{"text": "a film", "text_pair": "a movie"}\n{"text": "good plot", "text_pair": "bad plot"}\n')
    assert read_texts(p, str(p)) == (["a film", "good plot"], ["a movie", "bad plot"])
    p.write_text('{"text": "a film", "text_pair": "a movie"}\n{"text": "good plot"}\n')
    with pytest.raises(DataError, match="line 2 has no text in column 'text_pair', which other rows have"):
        read_texts(p, str(p))


def _pair_rows(n, seed, long_every=0):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7)))
        b = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7)))
        if long_every and i % long_every == 0:
            a = " ".join(rng.choice(WORDS) for _ in range(40))  # longer than the artifact's 32 tokens
        rows.append((a, b, ("entail", "neutral", "contra")[i % 3]))
    return rows


def _write_pairs(path, rows):
    path.write_text("text\ttext_pair\tlabel\n" + "".join(f"{a}\t{b}\t{lab}\n" for a, b, lab in rows))
    return path


@pytest.fixture(scope="module")
def pair_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    model = make_tiny_model_dir(root / "nli", classifier=True, labels=("contra", "entail", "neutral"), layers=2,
                                seed=4)
    dev = _write_pairs(root / "dev.tsv", _pair_rows(30, 1, long_every=10))
    out = root / "bundles"
    assert main(["export", "--model", str(model), "--format", "tflite", "--quantize", "int8", "--seq-len", "32",
                 "--fixed", "--data", str(dev), "--out", str(out), "--threshold", "50"]) == 0
    return {"root": root, "model": model, "dev": dev, "bundle": out / "nli-tflite-int8-seq32"}


def test_predict_classifies_the_pairs_of_a_pair_file(pair_bundle, tmp_path, capsys):
    # predict read only the first segment before: the bundle validated on pairs, then predicted wrongly
    b = load_bundle(pair_bundle["bundle"])
    assert b.expects_pairs
    out = tmp_path / "pred.json"
    assert main(["predict", "--bundle", str(b.path), "--file", str(pair_bundle["dev"]), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    data = list(iter_task_examples(pair_bundle["dev"]))
    assert [r["text_pair"] for r in rows] == [ex.text_pair for ex in data]
    want, _ = b.classify([ex.text for ex in data], [ex.text_pair for ex in data])
    single, _ = b.classify([ex.text for ex in data])
    got = np.array([[r["probabilities"][lab] for lab in b.labels] for r in rows])
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.abs(got - single).max() > 1e-4  # the second segment changes what the model says
    assert "3 of 30 input(s) are longer than the bundle's 32 tokens" in capsys.readouterr().err


def test_predict_takes_a_pair_on_the_command_line_and_refuses_a_pair_model_without_one(pair_bundle, tmp_path,
                                                                                        capsys):
    b = load_bundle(pair_bundle["bundle"])
    out = tmp_path / "one.json"
    assert main(["predict", "--bundle", str(b.path), "good film", "--pair", "bad plot", "--json", str(out)]) == 0
    row = json.loads(out.read_text())[0]
    want, _ = b.classify(["good film"], ["bad plot"])
    assert row["text_pair"] == "bad plot"
    np.testing.assert_allclose([row["probabilities"][lab] for lab in b.labels], want[0], atol=1e-6)
    capsys.readouterr()
    assert main(["predict", "--bundle", str(b.path), "good film"]) == 2
    assert "classifies sentence pairs" in capsys.readouterr().err
    assert main(["predict", "--bundle", str(b.path), "good film", "bad plot", "--pair", "x"]) == 2
    assert "1 --pair for 2 text(s)" in capsys.readouterr().err


def test_export_records_and_says_how_many_validation_texts_it_cut(pair_bundle):
    meta = json.loads((pair_bundle["bundle"] / "metadata.json").read_text())
    assert meta["validation"]["truncated_texts"] == 3  # rows 0, 10 and 20 have a 40-word first segment


def test_a_pair_model_is_not_exported_for_mediapipe(pair_bundle, tmp_path, capsys):
    out = tmp_path / "mp"
    assert main(["export", "--model", str(pair_bundle["model"]), "--format", "mediapipe", "--quantize", "int8",
                 "--seq-len", "32", "--data", str(pair_bundle["dev"]), "--out", str(out)]) == 2
    assert "takes one text per input: export --format tflite" in capsys.readouterr().err
    assert not out.exists()


def test_export_of_a_corrupted_model_leaves_no_output_directory(tmp_path, capsys):
    model = make_tiny_model_dir(tmp_path / "m", classifier=True, layers=1)
    w = model / "model.safetensors"
    w.write_bytes(w.read_bytes()[:200])
    out = tmp_path / "new" / "bundles"
    assert main(["export", "--model", str(model), "--format", "tflite", "--quantize", "int8", "--seq-len", "16",
                 "--fixed", "--out", str(out)]) == 2
    assert capsys.readouterr().err.count("error: ") == 1
    assert not (tmp_path / "new").exists()


def test_finetune_reads_dev_before_training(tiny_assets, tmp_path, capsys):
    train = write_tsv(tmp_path / "train.tsv", sentences(16))
    common = ["finetune", "--model", str(tiny_assets["teacher_base"]), "--train", str(train), "--max-steps", "1",
              "--batch-size", "4", "--max-seq-len", "16", "--checkpoint-every", "0"]
    assert main([*common, "--dev", str(tmp_path / "nope.tsv"), "--out", str(tmp_path / "a")]) == 2
    assert "nope.tsv does not exist" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()  # nothing trained, nothing written
    dev = write_tsv(tmp_path / "dev.tsv", [("good film", "pos"), ("so so", "meh")])
    assert main([*common, "--dev", str(dev), "--out", str(tmp_path / "b")]) == 2
    assert "label 'meh'" in (err := capsys.readouterr().err) and "add rows with this label to --train" in err
    assert not (tmp_path / "b").exists()


def test_a_failed_input_check_leaves_no_run_directory_to_block_the_corrected_command(tiny_assets, tmp_path,
                                                                                      capsys):
    out = tmp_path / "student"
    argv = ["distill", "task", "--teacher", str(tiny_assets["teacher_cls"]), "--out", str(out),
            "--intermediate-max-steps", "1", "--prediction-max-steps", "1", "--init", "random", "--batch-size", "8",
            "--max-seq-len", "16", "--checkpoint-every", "0"]
    assert main([*argv, "--train", str(tmp_path / "nope.tsv")]) == 2
    assert not out.exists()
    capsys.readouterr()
    assert main([*argv, "--train", str(tiny_assets["train"])]) == 0  # no --overwrite needed
    assert (out / "model" / "model.safetensors").is_file()


def test_an_empty_text_on_the_command_line_is_refused(pair_bundle, capsys):
    assert main(["predict", "--bundle", str(pair_bundle["bundle"]), "  ", "--pair", "x"]) == 2
    assert "empty text" in capsys.readouterr().err


def test_single_text_bundles_still_predict_from_a_file_without_pairs(tmp_path, capsys):
    model = make_tiny_model_dir(tmp_path / "m", classifier=True, layers=1, seed=2)
    dev = write_tsv(tmp_path / "dev.tsv", sentences(12, seed=5))
    assert main(["export", "--model", str(model), "--format", "tflite", "--quantize", "none", "--seq-len", "16",
                 "--fixed", "--data", str(dev), "--out", str(tmp_path / "b")]) == 0
    bundle = next(p for p in (tmp_path / "b").iterdir() if p.is_dir())
    assert not load_bundle(bundle).expects_pairs
    assert main(["predict", "--bundle", str(bundle), "--file", str(dev)]) == 0
    assert len([x for x in capsys.readouterr().out.splitlines() if "[neg 0." in x]) == 12


def _batches_of(path, tok, space, buffer, **kw):
    return TextBatches(path, tok, 16, 4, 0, labels=space, shuffle_buffer=buffer, **kw)


def test_a_labelled_file_longer_than_the_shuffle_buffer_is_read_in_a_full_shuffle(tiny_assets, tmp_path):
    # training streamed a file through a shuffle buffer; a sorted file longer than it was seen one
    # label at a time (the first steps of a 50k-row 5-class file saw 2 labels)
    tok = AutoTokenizer.from_pretrained(tiny_assets["teacher_cls"])
    space = LabelSpace("classification", {"neg": 0, "pos": 1})
    rows = sentences(40, seed=7)
    ordered = write_tsv(tmp_path / "sorted.tsv", sorted(rows, key=lambda r: r[1]))
    longest = max(sum(1 for _ in g) for _, g in itertools.groupby(sorted(r[1] for r in rows)))
    data = _batches_of(ordered, tok, space, 8)
    rep = data.scan()
    assert rep.longest_label_run == longest and data.full_shuffle and data.order == "full-shuffle"
    epoch0 = list(data._ordered(0))
    # every row once, read back by offset as the stream reads it
    stream = list(iter_task_examples(ordered))
    assert [(e.text, e.label) for e in sorted(epoch0, key=lambda e: e.line)] == [(e.text, e.label) for e in stream]
    assert {e.label for e in epoch0[:8]} == {"neg", "pos"}
    streamed = _batches_of(ordered, tok, space, 8)  # not scanned: streamed through the buffer, as before
    assert {e.label for e in list(streamed._ordered(0))[:8]} == {"neg"} and streamed.order == "buffer-shuffle"
    again = _batches_of(ordered, tok, space, 8)
    again.scan()
    assert list(again._ordered(0)) == epoch0 and list(again._ordered(1)) != epoch0  # a function of (seed, epoch)
    # a resumed epoch skips exactly the batches it consumed, and two processes split each batch
    full = [b["input_ids"].tolist() for b in data.batches(1)]
    assert [b["input_ids"].tolist() for b in again.batches(1, skip=3)] == full[3:]
    def unpadded(batch):
        return [tuple(t for t in row if t != tok.pad_token_id) for row in batch]

    halves = [[b["input_ids"].tolist() for b in again.batches(1, rank=r, world_size=2)] for r in (0, 1)]
    assert len(halves[0]) == len(halves[1]) == len(full)
    for k, batch in enumerate(full):  # the two processes split each global batch between them
        assert sorted(unpadded(halves[0][k]) + unpadded(halves[1][k])) == sorted(unpadded(batch))
    # a file the buffer holds whole is shuffled whole already
    w = _batches_of(ordered, tok, space, 64)
    w.scan()
    assert not w.full_shuffle
    # a file in mixed order keeps the stream (and the results recorded with it)
    mixed = write_tsv(tmp_path / "mixed.tsv", [(t, ("neg", "pos")[i % 2]) for i, (t, _) in enumerate(rows)])
    m = _batches_of(mixed, tok, space, 8)
    assert m.scan().worst_window_distance == 0.0 and not m.full_shuffle and m.order == "buffer-shuffle"


def test_a_regression_file_sorted_by_target_is_read_in_a_full_shuffle(tiny_assets, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_assets["teacher_cls"])
    rows = [(t, f"{i / 10:.1f}") for i, (t, _) in enumerate(sentences(40, seed=6))]
    data = _batches_of(write_tsv(tmp_path / "sts.tsv", rows), tok, LabelSpace("regression"), 8)
    assert data.scan().ascending_share == 1.0 and data.full_shuffle


def test_many_labels_in_runs_shorter_than_the_buffer_are_shuffled_in_full_too(tiny_assets, tmp_path):
    # 10 labels x 4 rows, sorted: no run fills half an 8-row buffer, yet the stream sees ~2 labels at a time
    tok = AutoTokenizer.from_pretrained(tiny_assets["teacher_cls"])
    labels = [f"c{i}" for i in range(10)]
    space = LabelSpace("classification", {lab: i for i, lab in enumerate(labels)})
    path = write_tsv(tmp_path / "many.tsv", [(t, labels[i // 4]) for i, (t, _) in enumerate(sentences(40, seed=2))])
    data = _batches_of(path, tok, space, 8)
    assert data.scan().longest_label_run == 4 and data.full_shuffle
    assert len({e.label for e in list(data._ordered(0))[:8]}) >= 4


def test_a_checkpoint_from_before_the_full_shuffle_does_not_resume_in_the_new_order(tiny_assets, tmp_path, capsys):
    # a checkpoint written by an earlier version (no data_order: it streamed every file) on a file
    # longer than the buffer must not resume in the full-shuffle order: rows would repeat or be skipped
    import hashlib

    rows = sorted(sentences(10_050, seed=4), key=lambda r: r[1])  # sorted by label: read in a full shuffle
    train = write_tsv(tmp_path / "train.tsv", rows)
    argv = ["finetune", "--model", str(tiny_assets["teacher_base"]), "--train", str(train), "--out",
            str(tmp_path / "t"), "--max-steps", "3", "--batch-size", "4", "--max-seq-len", "16",
            "--checkpoint-every", "1", "--threads", "1"]
    assert main(argv) == 0
    assert "rows come in order (sorted by label or target) and outnumber the 10,000-row shuffle buffer" in \
        capsys.readouterr().out
    ckpt = sorted((tmp_path / "t" / "checkpoints").glob("step-*"))[-1]
    state = json.loads((ckpt / "state.json").read_text())
    assert state["data_order"] == "full-shuffle"
    del state["data_order"]  # as an earlier version wrote it
    (ckpt / "state.json").write_text(json.dumps(state))
    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest["files"]["state.json"] = hashlib.sha256((ckpt / "state.json").read_bytes()).hexdigest()
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "t" / "summary.json").unlink()  # as if that run had stopped at its last checkpoint
    assert main([*argv, "--resume"]) == 2
    assert "read the data in buffer-shuffle order, this run reads it in full-shuffle order" in capsys.readouterr().err


def test_export_refuses_a_validation_file_where_only_some_rows_have_a_pair(tmp_path, capsys):
    model = make_tiny_model_dir(tmp_path / "m", classifier=True, layers=1)
    p = tmp_path / "mixed.jsonl"
    p.write_text('{"text": "good film", "text_pair": "fun", "label": "pos"}\n{"text": "bad plot", "label": "neg"}\n')
    assert main(["export", "--model", str(model), "--format", "tflite", "--quantize", "int8", "--seq-len", "16",
                 "--fixed", "--data", str(p), "--out", str(tmp_path / "b")]) == 2
    assert "line 2 has no text in column 'text_pair', which other rows have" in capsys.readouterr().err


def test_a_duplicated_json_key_the_kit_reads_is_refused(tmp_path):
    p = tmp_path / "dup.jsonl"
    p.write_text('{"text": "good film", "label": "pos", "label": "neg"}\n')
    with pytest.raises(DataError, match="line 1 has the key 'label' 2 times"):
        list(iter_task_examples(p))


@pytest.mark.parametrize("name,body", [
    ("rows.csv", 'text,text_pair,label\r\n"a film, with\na newline",x,pos\r\n\r\nbad plot,"y ""q""",neg\r\nok,z,pos\r\n'),
    ("rows.tsv", "text\ttext_pair\tlabel\ngood film\tx\tpos\n\nbad plot\ty\tneg\n"),
    ("rows.jsonl", '{"text": "good film", "label": "pos"}\n\n{"text": "bad \\u00e9 plot", "label": "neg"}\n'),
])
def test_task_file_rows_read_back_by_offset_equal_the_stream(tmp_path, name, body):
    p = tmp_path / name
    p.write_bytes(BOM + body.encode("utf-8"))
    stream = list(iter_task_examples(p))
    rows = TaskFileRows(p)
    back = [rows.at(e.offset, e.line) for e in reversed(stream)][::-1]
    assert [(e.text, e.text_pair, e.label) for e in back] == [(e.text, e.text_pair, e.label) for e in stream]
    p.write_bytes(b"x" * p.stat().st_size)  # the file changed under a run
    with pytest.raises(DataError, match="changed while training read it"):
        rows.at(stream[-1].offset, stream[-1].line)


def test_max_examples_validates_on_a_sample_spread_over_a_sorted_file(tmp_path):
    from tinybert_edge.converters.export import read_validation_data
    from tinybert_edge.models import load_config
    from conftest import FIVE_LABELS, five_class_rows

    model = make_tiny_model_dir(tmp_path / "m", classifier=True, labels=FIVE_LABELS, layers=1)
    rows = sorted(five_class_rows(100, seed=3), key=lambda r: r[1])
    path = write_tsv(tmp_path / "sorted.tsv", rows)
    texts, pairs, gold = read_validation_data(path, load_config(model), max_examples=20)
    assert len(texts) == 20 and pairs is None and len(set(gold)) == 5  # the first 20 rows hold one label
    order = [t for t, _ in rows]
    assert [order.index(t) for t in texts] == sorted(order.index(t) for t in texts)  # file order
    assert read_validation_data(path, load_config(model), max_examples=20)[0] == texts  # seeded


def test_a_student_near_chance_is_advised_to_start_from_the_teacher_only_when_it_did_not():
    from tinybert_edge.pipeline import StudentInit, _student_advice

    assert _student_advice(StudentInit("random", None)).startswith("Start from a sliced teacher (--init sliced)")
    sliced = _student_advice(StudentInit("sliced", None))
    assert sliced.startswith("Train longer") and "--init sliced" not in sliced
    # a general-distillation student or --student-init did not start from this teacher
    assert "--init sliced" in _student_advice(StudentInit("dir", None))


def test_a_failed_bundle_of_a_model_near_chance_is_told_to_train_it_not_to_requantize(tmp_path):
    # an untrained model's rows are near-ties that rounding flips; the hint said to try GPTQ
    import dataclasses

    from tinybert_edge.cli import failed_bundle_hint
    from tinybert_edge.converters.export import export_bundles

    model = make_tiny_model_dir(tmp_path / "m", classifier=True, layers=1, seed=3)
    dev = write_tsv(tmp_path / "dev.tsv", sentences(40, seed=8))
    (b,) = export_bundles(model, tmp_path / "b", formats=["tflite"], quantizations=["int8"], seq_len=16, data=dev)
    assert b.near_chance  # a random model: accuracy at the majority class
    assert "near-ties that any rounding flips" in failed_bundle_hint(b)
    assert "--weight-rounding gptq" not in failed_bundle_hint(b)
    assert "--weight-rounding gptq" in failed_bundle_hint(dataclasses.replace(b, near_chance=False))
