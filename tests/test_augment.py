"""Data augmentation (TinyBERT Algorithm 1, issue #5): each rule of the algorithm, determinism,
resume, pair tasks and every bad input, on tiny real models (a random-weight masked LM and a
tiny teacher's input embeddings, both with a real WordPiece tokenizer)."""

import json

import numpy as np
import pytest

from tinybert_edge.augment import (STOP_WORDS, AugmentSettings, Augmenter, MaskedLMCandidates, VectorNeighbours,
                                   augment_file, draw, eligible, load_word_vectors, split_words,
                                   teacher_embedding_neighbours, word_spans)
from tinybert_edge.cli import main
from tinybert_edge.data import Example
from tinybert_edge.errors import ConfigError, DataError, ModelError
from conftest import make_tiny_model_dir, make_tokenizer, sentences, tiny_config, write_tsv


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("aug") / "teacher", classifier=False, layers=2, seed=4)


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory):
    import torch
    from transformers import BertForMaskedLM

    d = tmp_path_factory.mktemp("aug") / "mlm"
    torch.manual_seed(3)
    BertForMaskedLM(tiny_config(2)).save_pretrained(d)
    make_tokenizer(d).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def vectors(teacher):
    return teacher_embedding_neighbours(teacher)


def test_stop_words_and_non_alphabetic_words_are_not_eligible():
    assert not any(eligible(w) for w in ("the", "The", "is", "not", "and"))
    assert not any(eligible(w) for w in ("3", "10x", "-", "!", "'", "don't"))
    assert all(eligible(w) for w in ("film", "Brilliant", "café"))
    assert {"the", "a", "is", "not"} <= STOP_WORDS
    assert split_words("A three-hour film, isn't it?") == ["A", "three", "-", "hour", "film", ",", "isn", "'", "t",
                                                          "it", "?"]


def test_with_p_one_every_eligible_word_changes_and_nothing_else(vectors):
    aug = Augmenter(AugmentSettings(n=10, p=1.0, k=3, seed=0), vectors)
    text = "The film is 10 times too boring !"
    variants = aug.augment_rows([(0, Example(text, None, "neg", 1))])[0][1:]
    assert variants
    for v, _, label in variants:
        w = split_words(v)
        assert label == "neg"
        assert [w[0], w[2], w[3], w[5], w[7]] == ["The", "is", "10", "too", "!"]  # stop words, numbers, punctuation
        assert w[1] != "film" and w[4] != "times" and w[6] != "boring"  # every eligible word replaced


def test_replacement_probability_is_respected():
    text = " ".join(f"w{i}" for i in range(10))
    spans = word_spans(text)
    cands = {i: ["x"] for i in range(10)}
    rng = np.random.default_rng(0)
    replaced = sum(draw(text, spans, cands, 0.3, rng).split().count("x") for _ in range(4000))
    assert replaced / 40000 == pytest.approx(0.3, abs=0.01)  # 4 sigma is about 0.009
    assert draw(text, spans, cands, 0.0, rng) == text


def test_single_pieces_go_to_the_mlm_multi_pieces_to_vectors(mlm_dir, vectors, monkeypatch):
    mlm = MaskedLMCandidates(mlm_dir, batch_size=4)
    asked_mlm, asked_vec = [], []
    real_mlm, real_vec = mlm.candidates, vectors.neighbours
    monkeypatch.setattr(mlm, "candidates", lambda q, k: asked_mlm.extend(w[p] for w, p in q) or real_mlm(q, k))
    monkeypatch.setattr(vectors, "neighbours", lambda w, k: asked_vec.append(w) or real_vec(w, k))
    # "film"/"boring" are vocabulary words (one piece); "filmy"/"xyz" need several pieces
    Augmenter(AugmentSettings(n=3, p=0.5, k=4), vectors, mlm).augment_rows(
        [(0, Example("the filmy film was boring xyz", None, "pos", 1))])
    assert sorted(asked_mlm) == ["boring", "film"] and sorted(asked_vec) == ["filmy", "xyz"]


def test_the_mlm_never_sees_the_word_it_predicts(mlm_dir):
    mlm = MaskedLMCandidates(mlm_dir)
    words = "the brilliant film was brilliant".split()
    ids = mlm._masked_input(words, 1)
    brilliant = mlm.tok.convert_tokens_to_ids("brilliant")
    assert ids.count(mlm.tok.mask_token_id) == 1 and ids.count(brilliant) == 1  # only the other occurrence
    assert ids.count(mlm.tok.sep_token_id) == 1  # no "masked [SEP] original" pair
    cands = mlm.candidates([(words, 2)], k=5)[0]
    assert len(cands) == 5 and "film" not in cands and all(c.isalpha() and not c.startswith("##") for c in cands)


def test_pair_tasks_augment_each_side_on_its_own_words(vectors):
    a, b = "good film with great music", "boring plot and awful actor"
    group = Augmenter(AugmentSettings(n=8, p=0.6, k=3, seed=1), vectors).augment_rows(
        [(0, Example(a, b, "entailment", 1))])[0]
    assert group[0] == (a, b, "entailment")
    changed_a = [g for g in group[1:] if g[0] != a]
    changed_b = [g for g in group[1:] if g[1] != b]
    assert changed_a and changed_b
    assert all(g[1] == b for g in changed_a) and all(g[0] == a for g in changed_b)  # one side at a time
    assert all(len(split_words(g[0])) == len(split_words(a)) for g in changed_a)
    assert all(len(split_words(g[1])) == len(split_words(b)) for g in changed_b)


def _run(inp, out, vectors, mlm=None, **kw):
    return augment_file(inp, out, Augmenter(AugmentSettings(n=6, p=0.4, k=4, seed=7), vectors, mlm), **kw)


def test_output_keeps_originals_drops_duplicates_and_writes_a_sidecar(tmp_path, vectors):
    inp = write_tsv(tmp_path / "train.tsv", sentences(30, seed=8))
    side = _run(inp, tmp_path / "aug.tsv", vectors)
    lines = (tmp_path / "aug.tsv").read_text().splitlines()
    assert lines[0] == "text\tlabel"
    originals = [tuple(r.split("\t")) for r in (tmp_path / "train.tsv").read_text().splitlines()[1:]]
    rows = [tuple(r.split("\t")) for r in lines[1:]]
    assert set(originals) <= set(rows) and len(rows) > len(originals)
    # every variant follows its original, carries its label and differs from it; no duplicates
    groups = []
    for text, label in rows:
        if (text, label) in originals:
            groups.append([(text, label)])
            continue
        assert text != groups[-1][0][0] and label == groups[-1][0][1]
        groups[-1].append((text, label))
    assert all(len(g) == len(set(g)) for g in groups) and len(groups) == len(originals)
    assert side["settings"] == {"n": 6, "p": 0.4, "k": 4, "seed": 7} and "teacher input embeddings" in side["source"]
    assert json.loads((tmp_path / "aug.tsv.json").read_text())["output_rows"] == len(rows)


def test_same_bytes_for_any_batch_chunk_and_worker_count(tmp_path, vectors, mlm_dir, teacher):
    vectors_dir = teacher
    inp = write_tsv(tmp_path / "train.tsv", sentences(25, seed=9))
    outs = []
    for i, (batch, chunk) in enumerate([(64, 256), (1, 3), (5, 7)]):
        _run(inp, tmp_path / f"a{i}.tsv", vectors, MaskedLMCandidates(mlm_dir, batch_size=batch), chunk_rows=chunk)
        outs.append((tmp_path / f"a{i}.tsv").read_bytes())
    assert outs[0] == outs[1] == outs[2]
    # two forked workers, in a fresh process: this test process may hold JAX's threads (other tests
    # import litert-torch), and forking a multithreaded process can deadlock
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "tinybert_edge", "augment", "--input", str(inp), "--out",
                           str(tmp_path / "two.tsv"), "--teacher", str(vectors_dir), "--mlm", str(mlm_dir),
                           "--n", "6", "--p", "0.4", "--k", "4", "--seed", "7", "--chunk-rows", "7", "--workers", "2"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "two.tsv").read_bytes() == outs[0]  # two processes, same bytes


def test_interrupted_run_resumes_without_lost_or_duplicated_rows(tmp_path, vectors):
    inp = write_tsv(tmp_path / "train.tsv", sentences(20, seed=10))
    _run(inp, tmp_path / "full.tsv", vectors, chunk_rows=4)
    res = _run(inp, tmp_path / "cut.tsv", vectors, chunk_rows=4, stop_after_chunks=2)
    assert res == {"interrupted": True, "rows_done": 8} and not (tmp_path / "cut.tsv").exists()
    with open(tmp_path / "cut.tsv.partial", "ab") as f:
        f.write(b"half a row that was being written when the power went")  # a torn write
    _run(inp, tmp_path / "cut.tsv", vectors, chunk_rows=4, resume=True)
    assert (tmp_path / "cut.tsv").read_bytes() == (tmp_path / "full.tsv").read_bytes()
    assert not (tmp_path / "cut.tsv.partial").exists() and not (tmp_path / "cut.tsv.progress").exists()


def test_resume_with_other_settings_is_refused(tmp_path, vectors):
    inp = write_tsv(tmp_path / "train.tsv", sentences(12, seed=11))
    _run(inp, tmp_path / "cut.tsv", vectors, chunk_rows=4, stop_after_chunks=1)
    with pytest.raises(DataError, match="other settings"):
        augment_file(inp, tmp_path / "cut.tsv", Augmenter(AugmentSettings(n=2), vectors), chunk_rows=4, resume=True)
    with pytest.raises(DataError, match="nothing to resume"):
        _run(inp, tmp_path / "new.tsv", vectors, resume=True)


def test_word_vectors_file_skips_and_counts_bad_lines(tmp_path):
    f = tmp_path / "vec.txt"
    f.write_text("5 3\nfilm 1 0 0\nmovie 0.9 0.1 0\nbad 0 1\nmusic x y z\nplot 0 0 1\nscore 0.1 0 0.9\n")
    nb, info = load_word_vectors(f)
    assert info == {"lines": 6, "used": 4, "skipped": 2, "dim": 3}
    assert nb.neighbours("film", 2) == ["movie", "score"]
    assert nb.neighbours("unknownword", 2) == []
    f.write_text("broken line\nalso broken\n")
    with pytest.raises(DataError, match="none of its 2 lines"):
        load_word_vectors(f)


def test_checkpoint_without_an_mlm_head_is_refused(teacher):
    with pytest.raises(ModelError, match="no masked-LM head"):
        MaskedLMCandidates(teacher)


def test_bad_settings_and_inputs_exit_2(tmp_path, teacher, capsys):
    inp = write_tsv(tmp_path / "train.tsv", sentences(5, seed=12))
    base = ["augment", "--input", str(inp), "--teacher", str(teacher)]
    assert main(base + ["--out", str(tmp_path / "o.tsv"), "--n", "0"]) == 2
    assert main(base + ["--out", str(tmp_path / "o.tsv"), "--p", "1.5"]) == 2
    assert main(base + ["--out", str(tmp_path / "o.tsv"), "--p", "-0.1"]) == 2
    (tmp_path / "empty.tsv").write_text("")
    assert main(["augment", "--input", str(tmp_path / "empty.tsv"), "--teacher", str(teacher),
                 "--out", str(tmp_path / "o.tsv")]) == 2
    (tmp_path / "notext.tsv").write_text("text\tlabel\ngood film\tpos\n\tneg\n")
    assert main(["augment", "--input", str(tmp_path / "notext.tsv"), "--teacher", str(teacher),
                 "--out", str(tmp_path / "o2.tsv")]) == 2
    err = capsys.readouterr().err
    assert "--n 0" in err and "--p 1.5" in err and "empty" in err and "line 3 has no text" in err
    assert not (tmp_path / "o.tsv").exists() and not (tmp_path / "o2.tsv").exists()
    with pytest.raises(ConfigError):
        AugmentSettings(k=0).check()


def test_existing_output_is_not_overwritten(tmp_path, teacher, capsys):
    inp = write_tsv(tmp_path / "train.tsv", sentences(5, seed=13))
    (tmp_path / "o.tsv").write_text("keep me")
    assert main(["augment", "--input", str(inp), "--teacher", str(teacher), "--out", str(tmp_path / "o.tsv")]) == 2
    assert (tmp_path / "o.tsv").read_text() == "keep me" and "--overwrite" in capsys.readouterr().err


def test_augmented_file_trains_step_one(tmp_path, tiny_assets, teacher, capsys):
    aug = tmp_path / "train_aug.tsv"
    assert main(["augment", "--input", str(tiny_assets["train"]), "--teacher", str(teacher), "--out", str(aug),
                 "--n", "3"]) == 0
    assert main(["distill", "task", "--teacher", str(tiny_assets["teacher_cls"]), "--train", str(aug),
                 "--prediction-data", str(tiny_assets["train"]), "--out", str(tmp_path / "student"),
                 "--intermediate-max-steps", "1", "--prediction-max-steps", "1", "--batch-size", "8",
                 "--max-seq-len", "16", "--checkpoint-every", "0", "--init", "random"]) == 0
    assert (tmp_path / "student" / "model" / "config.json").is_file()
    specs = " ".join(f.read_text() for f in (tmp_path / "student").rglob("*.json"))
    assert str(aug) in specs and str(tiny_assets["train"]) in specs  # step 1 on the augmented file, step 2 on the original


@pytest.mark.slow
def test_two_hundred_rotten_tomatoes_sentences_with_the_offline_default(tmp_path):
    from tinybert_edge.fetch import fetch_default

    paths = fetch_default()
    lines = paths.train.read_text(encoding="utf-8").splitlines()[:201]
    inp = tmp_path / "rt200.tsv"
    inp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    outs = []
    for i, (batch, chunk) in enumerate([(64, 256), (3, 9)]):
        out = tmp_path / f"aug{i}.tsv"
        assert main(["augment", "--input", str(inp), "--out", str(out), "--batch-size", str(batch),
                     "--chunk-rows", str(chunk), "--seed", "5"]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    head = lines[0].split("\t")
    t, lab = head.index("text"), head.index("label")
    originals = [(r.split("\t")[t], r.split("\t")[lab]) for r in lines[1:]]  # other columns are not carried
    assert outs[0].decode().splitlines()[0] == "text\tlabel"
    rows = [tuple(r.split("\t")) for r in outs[0].decode().splitlines()[1:]]
    assert len(rows) > 5 * len(originals)
    assert [r for r in rows if r in set(originals)] == originals  # every original, in order
    current = None
    for r in rows:
        if r in set(originals):
            current = r
        else:
            assert r[0] != current[0] and r[1] == current[1]  # a real variant, label preserved
