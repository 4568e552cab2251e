"""Metrics against known values."""

import numpy as np
import pytest

from tinybert_edge.evaluate import classification_metrics, near_chance, regression_metrics


def test_binary_accuracy_f1_mcc():
    gold = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    pred = np.array([1, 1, 0, 0, 0, 1, 0, 1])
    m = classification_metrics(pred, gold, 2)
    tp, tn, fp, fn = 3, 3, 1, 1
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    mcc = (tp * tn - fp * fn) / np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert m["mcc"] == pytest.approx(mcc)
    assert m["majority"] == pytest.approx(0.5)


def test_multiclass_macro_f1_and_constant_predictor_mcc_zero():
    gold = np.array([0, 1, 2, 2])
    m = classification_metrics(np.array([0, 1, 2, 1]), gold, 3)
    assert m["f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert classification_metrics(np.zeros(4, dtype=int), gold, 3)["mcc"] == 0.0


def test_pearson_spearman_with_ties():
    x = np.array([1.0, 2.0, 2.0, 3.0, 5.0])
    y = np.array([2.0, 4.0, 4.0, 6.0, 11.0])
    r = regression_metrics(x, y)
    assert r["spearman"] == pytest.approx(1.0)
    assert r["pearson"] == pytest.approx(np.corrcoef(x, y)[0, 1])


def test_near_chance():
    assert near_chance({"accuracy": 0.60, "majority": 0.58}, 2)
    assert not near_chance({"accuracy": 0.85, "majority": 0.58}, 2)
    assert near_chance({"accuracy": 0.10, "majority": 0.35}, 3)  # the public code's MNLI symptom
