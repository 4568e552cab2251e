"""A tiny end-to-end CLI run: fine-tune -> general distillation -> task distillation -> evaluate.

Real HF models (tiny configs built here), real files, the real CLI entry point.
"""

import json

import pytest
from safetensors import safe_open

from tinybert_edge.cli import main


@pytest.fixture(scope="module")
def pipeline_run(tiny_assets, tmp_path_factory):
    a = tiny_assets
    out = tmp_path_factory.mktemp("e2e")
    common = ["--batch-size", "8", "--max-seq-len", "32", "--checkpoint-every", "0"]
    assert main(["finetune", "--model", str(a["teacher_base"]), "--train", str(a["train"]), "--dev", str(a["dev"]),
                 "--out", str(out / "teacher"), "--epochs", "10", "--lr", "3e-3", *common]) == 0
    assert main(["distill", "general", "--teacher", str(a["teacher_base"]), "--corpus", str(a["corpus"]),
                 "--out", str(out / "general"), "--max-steps", "3", *common]) == 0
    assert main(["distill", "task", "--teacher", str(out / "teacher"), "--student-init", str(out / "general"),
                 "--train", str(a["train"]), "--dev", str(a["dev"]), "--out", str(out / "student"),
                 "--intermediate-epochs", "1", "--prediction-epochs", "1", *common]) == 0
    return out


def test_student_is_a_plain_hf_classifier_with_the_default_preset_shape(pipeline_run):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    d = pipeline_run / "student" / "model"
    model = AutoModelForSequenceClassification.from_pretrained(d)  # no code of ours involved
    AutoTokenizer.from_pretrained(d)
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads) == (4, 312, 1200, 12)
    assert cfg.id2label == {0: "neg", 1: "pos"}  # labels come from the teacher, in the teacher's order
    with safe_open(str(d / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert not [k for k in keys if "proj" in k], "projections W_e/W_h must not ship in the student"
    assert any(k.startswith("classifier.") for k in keys)


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
    assert main(["evaluate", "--model", str(pipeline_run / "student"), "--data", str(tiny_assets["dev"]),
                 "--json", str(out_json)]) == 0
    m = json.loads(out_json.read_text())
    assert m["examples"] == 20 and 0.0 <= m["accuracy"] <= 1.0
    assert "accuracy" in capsys.readouterr().out


def test_teacher_fine_tuning_learns_the_toy_task(pipeline_run, tiny_assets):
    from tinybert_edge.pipeline import evaluate

    m = evaluate(pipeline_run / "teacher", tiny_assets["train"])
    assert m["accuracy"] > 0.7  # the toy labels are keyed by one sentiment word per sentence


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("fetch", "finetune", "distill", "evaluate", "demo"):
        assert cmd in out
