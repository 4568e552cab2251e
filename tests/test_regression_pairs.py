"""Regression tasks on sentence pairs, end to end: the teacher is fine-tuned with MSE, step 2
fits the teacher's outputs (not gold labels, unlike the public code's STS-B path), and
evaluate reports Pearson/Spearman."""

import json
import random

import torch
from safetensors.torch import load_file

from tinybert_edge.cli import main
from conftest import WORDS


def _pairs(path, n, seed):
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n):
            a = [rng.choice(WORDS) for _ in range(rng.randint(3, 8))]
            b = a[: rng.randint(1, len(a))] + [rng.choice(WORDS) for _ in range(rng.randint(0, 4))]
            score = round(5.0 * len(set(a) & set(b)) / len(set(a) | set(b)), 3)
            f.write(json.dumps({"text": " ".join(a), "text_pair": " ".join(b), "label": score}) + "\n")
    return path


def test_regression_on_pairs_end_to_end(tiny_assets, tmp_path, capsys):
    train = _pairs(tmp_path / "train.jsonl", 48, 1)
    dev = _pairs(tmp_path / "dev.jsonl", 16, 2)
    common = ["--batch-size", "8", "--max-seq-len", "32", "--checkpoint-every", "0"]
    assert main(["finetune", "--model", str(tiny_assets["teacher_base"]), "--train", str(train), "--task-type",
                 "regression", "--out", str(tmp_path / "teacher"), "--epochs", "3", "--lr", "1e-3", *common]) == 0
    cfg = json.loads((tmp_path / "teacher" / "model" / "config.json").read_text())
    assert len(cfg["id2label"]) == 1 and cfg["problem_type"] == "regression"
    assert main(["distill", "task", "--teacher", str(tmp_path / "teacher"), "--train", str(train), "--dev", str(dev),
                 "--out", str(tmp_path / "student"), "--intermediate-epochs", "1", "--prediction-epochs", "1",
                 "--init", "random", *common]) == 0
    step2 = [json.loads(x) for x in (tmp_path / "student" / "step2-prediction" / "metrics.jsonl").read_text().splitlines()]
    assert "prediction" in step2[-1]
    out_json = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(tmp_path / "student"), "--data", str(dev), "--json", str(out_json)]) == 0
    m = json.loads(out_json.read_text())
    assert m["task_type"] == "regression" and {"pearson", "spearman", "mse"} <= set(m)
    assert -1.0 <= m["spearman"] <= 1.0
    w = load_file(str(tmp_path / "student" / "model" / "model.safetensors"))
    assert w["classifier.weight"].shape == torch.Size([1, 312])


def test_bf16_mixed_precision_runs(tiny_assets, tmp_path):
    assert main(["distill", "general", "--teacher", str(tiny_assets["teacher_base"]), "--corpus",
                 str(tiny_assets["corpus"]), "--out", str(tmp_path / "g"), "--batch-size", "8", "--max-seq-len", "16",
                 "--max-steps", "2", "--checkpoint-every", "0", "--mixed-precision", "bf16", "--init", "random"]) == 0
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert summary["steps"] == 2 and all(v == v for v in summary["final_losses"].values())  # no NaN
