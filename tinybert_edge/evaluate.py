"""Metrics per task type and batched prediction with a sequence classifier.

Classification: accuracy, F1 (binary: of the label with id 1; multi-class: macro) and
Matthews correlation (multi-class form). Regression: Pearson and Spearman correlation.
Implemented here on numpy, so the core needs no scikit-learn or scipy.
"""

from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import torch

from .data import Columns, LabelSpace, TextBatches


def classification_metrics(preds: np.ndarray, labels: np.ndarray, num_labels: int) -> dict[str, float]:
    """Accuracy, F1 and MCC.

    Args:
        preds: (n,) predicted ids.
        labels: (n,) gold ids.
        num_labels: C.

    Returns:
        {"accuracy", "f1", "macro_f1", "mcc", "majority", "per_class_recall"}: "f1" is the F1 of
        label 1 for two labels and the macro F1 otherwise; "majority" is the share of the most
        common gold label, the accuracy of always guessing it; "per_class_recall" is in label-id
        order.
    """
    preds = np.asarray(preds, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if n == 0:
        raise ValueError("no examples to score")
    cm = np.zeros((num_labels, num_labels), dtype=np.float64)  # rows gold, cols predicted
    np.add.at(cm, (labels, preds), 1)
    acc = float(np.trace(cm) / n)
    tp = np.diag(cm)
    prec = np.divide(tp, cm.sum(0), out=np.zeros_like(tp), where=cm.sum(0) > 0)
    rec = np.divide(tp, cm.sum(1), out=np.zeros_like(tp), where=cm.sum(1) > 0)
    f1s = np.divide(2 * prec * rec, prec + rec, out=np.zeros_like(tp), where=(prec + rec) > 0)
    macro_f1 = float(f1s.mean())
    f1 = float(f1s[1]) if num_labels == 2 else macro_f1
    t, p = cm.sum(1), cm.sum(0)
    cov_tp = np.trace(cm) * n - float(t @ p)
    denom = np.sqrt(n * n - float(p @ p)) * np.sqrt(n * n - float(t @ t))
    mcc = float(cov_tp / denom) if denom > 0 else 0.0
    majority = float(np.bincount(labels, minlength=num_labels).max() / n)
    return {"accuracy": acc, "f1": f1, "macro_f1": macro_f1, "mcc": mcc, "majority": majority,
            "per_class_recall": [float(r) for r in rec]}


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (as Spearman needs)."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    sx = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sx[j + 1] == sx[i]:
            j += 1
        if j > i:
            ranks[order[i : j + 1]] = (i + j) / 2.0
        i = j + 1
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    d = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / d) if d > 0 else 0.0


def regression_metrics(preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Pearson and Spearman correlation and MSE."""
    preds = np.asarray(preds, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    return {
        "pearson": _pearson(preds, labels),
        "spearman": _pearson(_ranks(preds), _ranks(labels)),
        "mse": float(((preds - labels) ** 2).mean()),
    }


def label_space_of(model_or_config) -> LabelSpace:
    """The label space a classifier was trained with (from its config)."""
    cfg = getattr(model_or_config, "config", model_or_config)
    if cfg.num_labels == 1 or getattr(cfg, "problem_type", None) == "regression":
        return LabelSpace("regression")
    return LabelSpace("classification", {str(v): int(k) for k, v in cfg.id2label.items()})


@torch.inference_mode()
def predict(model, batches) -> tuple[np.ndarray, np.ndarray]:
    """Logits and gold labels over every batch.

    Returns:
        (logits (n, C), labels (n,)).
    """
    model.eval()
    logits, labels = [], []
    for batch in batches:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    token_type_ids=batch["token_type_ids"])
        logits.append(out.logits.float().numpy())
        labels.append(batch["labels"].numpy())
    return np.concatenate(logits), np.concatenate(labels)


def evaluate_model(model, tokenizer, path: str | Path, *, max_seq_len: int = 128, batch_size: int = 64,
                   columns: Columns = Columns()) -> dict:
    """Score a classifier on a labelled file.

    Returns:
        metrics dict plus "examples", "truncated" and "task_type".

    Raises:
        DataError: malformed file or labels the model does not know.
    """
    space = label_space_of(model)
    data = TextBatches(path, tokenizer, max_seq_len, batch_size, labels=space, columns=columns, shuffle=False)
    report = data.scan()
    logits, labels = predict(model, data.batches(0))
    if space.task_type == "regression":
        metrics = regression_metrics(logits[:, 0], labels)
    else:
        metrics = classification_metrics(logits.argmax(-1), labels, space.num_labels)
    metrics.update(examples=report.rows, truncated=report.truncated, task_type=space.task_type)
    return metrics


def near_chance(metrics: dict, num_labels: int, margin: float = 0.05) -> bool:
    """True when a classifier does no better than guessing (the label-order bug's symptom, or
    a student that collapsed to one class).

    Near chance: accuracy within `margin` of max(majority share, 1/C), or macro-F1 within
    `margin` of 1/C (a model that ignores the minority classes of an imbalanced task).
    """
    if metrics.get("task_type") == "regression":
        return metrics["pearson"] < 0.1
    chance = 1.0 / num_labels
    if metrics["accuracy"] <= max(metrics["majority"], chance) + margin:
        return True
    return "macro_f1" in metrics and metrics["macro_f1"] <= chance + margin


def agreement_interval(agreeing: int, rows: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a rate counted on `rows` rows (e.g. label agreement with fp32).

    Why: `export` holds an artifact to a label-agreement bar (99 %) on the rows of one dev file,
    and a rate counted on ~1,000 rows moves by several rows from one sample of texts to the next
    (a retrained demo student's int8-static bundle passed dev at 99.44 % and held 98.32 % on the
    test split; BENCHMARKS.md). The interval says how far: a bar inside it is not decided by
    these rows. Wilson's interval, unlike the normal approximation, stays inside [0, 1] and is
    not zero-width at 100 %, which is where most artifacts land.

    Args:
        agreeing: rows that agree (0 <= agreeing <= rows).
        rows: rows counted.
        confidence: two-sided coverage, in (0, 1).

    Returns:
        (low, high) rates; (0.0, 1.0) when `rows` is 0.

    Raises:
        ValueError: counts or confidence out of range.
    """
    if not 0 <= agreeing <= rows:
        raise ValueError(f"agreeing rows {agreeing} must lie in [0, {rows}]")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence {confidence} must lie strictly between 0 and 1")
    if rows == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p, z2 = agreeing / rows, z * z
    denominator = 1.0 + z2 / rows
    centre = (p + z2 / (2.0 * rows)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / rows + z2 / (4.0 * rows * rows)) / denominator
    # at 0 % and 100 % one end is exactly the rate; float rounding would leave it 1 ulp inside
    low = 0.0 if agreeing == 0 else max(0.0, centre - half)
    high = 1.0 if agreeing == rows else min(1.0, centre + half)
    return low, high
