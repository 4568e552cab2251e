"""Every bad input named in issue #2: one clear error, exit status 2, nothing half-written."""

import pytest

from tinybert_edge.cli import main
from conftest import make_tiny_model_dir, write_tsv

COMMON = ["--batch-size", "8", "--max-seq-len", "16", "--checkpoint-every", "0", "--max-steps", "2"]


def _general(a, out, *extra):
    return ["distill", "general", "--teacher", str(a["teacher_base"]), "--corpus", str(a["corpus"]),
            "--out", str(out), "--init", "random", *COMMON, *extra]


def _task(a, out, train, *extra):
    return ["distill", "task", "--teacher", str(a["teacher_cls"]), "--train", str(train), "--out", str(out),
            "--intermediate-max-steps", "1", "--prediction-max-steps", "1", "--init", "random", *COMMON, *extra]


def _fails(argv, capsys, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    errors = [x for x in lines if x.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], f"expected one error line, last: {err}"
    err = errors[0]
    for n in needles:
        assert n in err, err
    return err


def test_missing_and_empty_data(tiny_assets, tmp_path, capsys):
    _fails(_task(tiny_assets, tmp_path / "o1", tmp_path / "nope.tsv"), capsys, "does not exist")
    (tmp_path / "empty.tsv").write_text("")
    _fails(_task(tiny_assets, tmp_path / "o2", tmp_path / "empty.tsv"), capsys, "is empty")
    (tmp_path / "empty.txt").write_text("")
    _fails(["distill", "general", "--teacher", str(tiny_assets["teacher_base"]), "--corpus",
            str(tmp_path / "empty.txt"), "--out", str(tmp_path / "o3"), "--init", "random", *COMMON], capsys, "corpus",
           "empty")


def test_missing_and_unknown_labels(tiny_assets, tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("text\tlabel\ngood film\tpos\nbad film\t\n")
    _fails(_task(tiny_assets, tmp_path / "o1", bad), capsys, "line 3 has no label")
    unk = write_tsv(tmp_path / "unk.tsv", [("good film", "pos"), ("so so", "neutral")])
    _fails(_task(tiny_assets, tmp_path / "o2", unk), capsys, "label 'neutral'", "does not know")
    assert not (tmp_path / "o2" / "model").exists()


def test_non_utf8(tiny_assets, tmp_path, capsys):
    p = tmp_path / "latin1.tsv"
    p.write_bytes("text\tlabel\ncaf\u00e9 film\tpos\n".encode("latin-1"))
    _fails(_task(tiny_assets, tmp_path / "o", p), capsys, "line 2 is not valid UTF-8", "iconv")


def test_long_texts_are_truncated_counted_and_reported(tiny_assets, tmp_path, capsys):
    p = write_tsv(tmp_path / "long.tsv", [("good " * 40, "pos"), ("bad film", "neg")] * 4)
    assert main(_task(tiny_assets, tmp_path / "o", p)) == 0
    assert "4 of 8 texts in long.tsv are longer than 16 tokens (longest 42) and are truncated" in capsys.readouterr().out


def test_teacher_not_bert_family_or_without_tokenizer(tiny_assets, tmp_path, capsys):
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=16, n_head=2).save_pretrained(tmp_path / "gpt2")
    _fails(["distill", "general", "--teacher", str(tmp_path / "gpt2"), "--corpus", str(tiny_assets["corpus"]),
            "--out", str(tmp_path / "o1"), *COMMON], capsys, "'gpt2' model", "BERT-family")
    notok = make_tiny_model_dir(tmp_path / "notok", classifier=False)
    for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (notok / f).unlink(missing_ok=True)
    _fails(["distill", "general", "--teacher", str(notok), "--corpus", str(tiny_assets["corpus"]),
            "--out", str(tmp_path / "o2"), "--init", "random", *COMMON], capsys, "has no tokenizer")


def test_preset_heads_must_divide_hidden(tiny_assets, tmp_path, capsys):
    _fails(_general(tiny_assets, tmp_path / "o", "--hidden", "310"), capsys, "not divisible by 12 heads")


def test_layer_map_out_of_range(tiny_assets, tmp_path, capsys):
    _fails(_general(tiny_assets, tmp_path / "o", "--layer-map", "1,2,3,9"), capsys, "[9] outside 1..6")
    assert not (tmp_path / "o").exists()


def test_foreign_output_dir_is_refused_and_left_alone(tiny_assets, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.txt").write_text("precious")
    _fails(_general(tiny_assets, out), capsys, "is not a tinybert-edge run", "--overwrite")
    assert [p.name for p in out.iterdir()] == ["thesis.txt"]
    assert (out / "thesis.txt").read_text() == "precious"
    assert main(_general(tiny_assets, out, "--overwrite")) == 0
    assert (out / "thesis.txt").read_text() == "precious" and (out / "model" / "config.json").is_file()


def test_existing_run_needs_resume_or_overwrite(tiny_assets, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_general(tiny_assets, out)) == 0
    before = (out / "model" / "model.safetensors").read_bytes()
    _fails(_general(tiny_assets, out), capsys, "already holds a tinybert-edge run", "--resume")
    assert (out / "model" / "model.safetensors").read_bytes() == before
    assert main(_general(tiny_assets, out, "--resume")) == 0  # already complete: nothing to do
    assert "already complete" in capsys.readouterr().out


def test_near_chance_teacher_is_flagged(tiny_assets, tmp_path, capsys):
    # the tiny random teacher has never been fine-tuned: it is at chance on dev
    argv = _task(tiny_assets, tmp_path / "o", tiny_assets["train"], "--dev", str(tiny_assets["dev"]))
    assert main(argv) == 0
    assert "WARNING: the teacher" in capsys.readouterr().err
    _fails(_task(tiny_assets, tmp_path / "o2", tiny_assets["train"], "--dev", str(tiny_assets["dev"]),
                 "--strict-teacher-check"), capsys, "near chance", "label order")


def test_teacher_that_is_not_fine_tuned_is_refused_for_task_distillation(tiny_assets, tmp_path, capsys):
    argv = _task(tiny_assets, tmp_path / "o", tiny_assets["train"])
    argv[argv.index("--teacher") + 1] = str(tiny_assets["teacher_base"])
    _fails(argv, capsys, "is not a sequence classifier", "finetune")


@pytest.mark.parametrize("flag, value, needle", [("--batch-size", "0", "batch size must be >= 1"),
                                                 ("--threads", "0", "threads must be >= 1"),
                                                 ("--max-seq-len", "2", "max sequence length must be >= 3")])
def test_invalid_option_values(tiny_assets, tmp_path, capsys, flag, value, needle):
    argv = _general(tiny_assets, tmp_path / "o")
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    _fails(argv, capsys, needle)
