"""A tiny end-to-end CLI run: fine-tune -> general distillation -> task distillation -> evaluate.

Real HF models (tiny configs built here), real files, the real CLI entry point.
"""

import json

import pytest
from safetensors import safe_open

from tinybert_edge.cli import main
from conftest import sentences, write_tsv


STUDENT = ["--layers", "4", "--hidden", "36", "--ffn", "48"]  # fits inside the tiny teacher (6L, 48, FFN 64)


@pytest.fixture(scope="module")
def pipeline_run(tiny_assets, tmp_path_factory):
    a = tiny_assets
    out = tmp_path_factory.mktemp("e2e")
    # enough toy rows for the tiny teacher to learn the task well above chance (0.5 on this dev split)
    train = write_tsv(out / "train.tsv", sentences(240, seed=1))
    dev = write_tsv(out / "dev.tsv", sentences(40, seed=2))
    common = ["--batch-size", "8", "--max-seq-len", "32", "--checkpoint-every", "0"]
    assert main(["finetune", "--model", str(a["teacher_base"]), "--train", str(train), "--dev", str(dev),
                 "--out", str(out / "teacher"), "--epochs", "4", "--lr", "1e-3", *common]) == 0
    assert main(["distill", "general", "--teacher", str(a["teacher_base"]), "--corpus", str(a["corpus"]),
                 "--out", str(out / "general"), "--max-steps", "3", *STUDENT, *common]) == 0
    assert main(["distill", "task", "--teacher", str(out / "teacher"), "--student-init", str(out / "general"),
                 "--train", str(train), "--dev", str(dev), "--out", str(out / "student"),
                 "--intermediate-epochs", "1", "--prediction-epochs", "3", "--intermediate-lr", "1e-3",
                 "--prediction-lr", "1e-3", *STUDENT, *common]) == 0
    return out


def test_student_is_a_plain_hf_classifier_with_the_asked_shape(pipeline_run):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    d = pipeline_run / "student" / "model"
    model = AutoModelForSequenceClassification.from_pretrained(d)  # no code of ours involved
    AutoTokenizer.from_pretrained(d)
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads) == (4, 36, 48, 12)
    assert cfg.id2label == {0: "neg", 1: "pos"}  # labels come from the teacher, in the teacher's order
    with safe_open(str(d / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert not [k for k in keys if "proj" in k], "projections W_e/W_h must not ship in the student"
    assert any(k.startswith("classifier.") for k in keys)


def test_student_learns_the_task_from_its_teacher(pipeline_run):
    # The toy labels hang on one sentiment word per sentence: a student that learned nothing sits at the
    # majority class (0.5 on this dev split; 26 of 40 by luck has p < 0.05); one that learned from its
    # teacher (0.775 here) is well above it.
    from tinybert_edge.pipeline import evaluate

    m = evaluate(pipeline_run / "student", pipeline_run / "dev.tsv")
    assert m["majority"] == 0.5
    assert m["accuracy"] >= 0.65 and m["mcc"] > 0.3, m


def test_non_divisible_layer_map_is_written_into_the_run_config(pipeline_run):
    spec = json.loads((pipeline_run / "student" / "tinybert_edge_run.json").read_text())["spec"]
    assert spec["layer_map"] == {"kind": "uniform", "student_layers": 4, "teacher_layers": 6,
                                 "teacher_for_student": [1, 3, 4, 6]}
    provenance = json.loads((pipeline_run / "student" / "model" / "distillation_config.json").read_text())
    assert provenance["distill"]["stage"] == "task-prediction"


def test_general_student_is_an_encoder_and_losses_are_logged(pipeline_run):
    cfg = json.loads((pipeline_run / "general" / "model" / "config.json").read_text())
    assert cfg["architectures"] == ["BertModel"] and cfg["num_hidden_layers"] == 4
    lines = [json.loads(x) for x in (pipeline_run / "general" / "metrics.jsonl").read_text().splitlines()]
    assert {"attention", "hidden", "embedding", "loss", "lr", "grad_norm"} <= set(lines[-1])
    step1 = [json.loads(x) for x in
             (pipeline_run / "student" / "step1-intermediate" / "metrics.jsonl").read_text().splitlines()]
    step2 = [json.loads(x) for x in
             (pipeline_run / "student" / "step2-prediction" / "metrics.jsonl").read_text().splitlines()]
    assert "attention" in step1[-1] and "prediction" in step2[-1] and "attention" not in step2[-1]


def test_evaluate_command_prints_and_writes_metrics(pipeline_run, tiny_assets, capsys):
    out_json = pipeline_run / "eval.json"
    assert main(["evaluate", "--model", str(pipeline_run / "student"), "--data", str(pipeline_run / "dev.tsv"),
                 "--json", str(out_json)]) == 0
    m = json.loads(out_json.read_text())
    from tinybert_edge.pipeline import evaluate

    direct = evaluate(pipeline_run / "student", pipeline_run / "dev.tsv")
    assert m["examples"] == 40 and m["accuracy"] == direct["accuracy"] and m["macro_f1"] == direct["macro_f1"]
    assert "accuracy" in capsys.readouterr().out


def test_teacher_fine_tuning_learns_the_toy_task(pipeline_run, tiny_assets):
    from tinybert_edge.pipeline import evaluate

    m = evaluate(pipeline_run / "teacher", pipeline_run / "train.tsv")
    assert m["accuracy"] > 0.7  # the toy labels are keyed by one sentiment word per sentence


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("fetch", "finetune", "distill", "evaluate", "demo"):
        assert cmd in out
