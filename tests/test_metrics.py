"""Metrics against known values."""

import numpy as np
import pytest

from tinybert_edge.evaluate import agreement_interval, classification_metrics, near_chance, regression_metrics


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


@pytest.mark.parametrize("agreeing,rows", [(1243, 1250), (1238, 1250), (1250, 1250), (0, 1250), (39, 40), (1, 3),
                                           (1113, 1132)])
def test_agreement_interval_is_wilsons(agreeing, rows):
    """The interval export records next to label agreement is Wilson's score interval: checked
    against scipy's own implementation (scipy comes with the export extra; the core does not use it)."""
    binomtest = pytest.importorskip("scipy.stats").binomtest
    expected = binomtest(agreeing, rows).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = agreement_interval(agreeing, rows)
    assert low == pytest.approx(expected.low, abs=1e-12) and high == pytest.approx(expected.high, abs=1e-12)
    assert 0.0 <= low <= agreeing / rows <= high <= 1.0
    wider = agreement_interval(agreeing, rows, confidence=0.99)
    assert wider[0] <= low and wider[1] >= high


def test_agreement_interval_edges_and_bad_counts():
    assert agreement_interval(0, 0) == (0.0, 1.0)  # no rows decide nothing
    # 100 % on 40 rows cannot show 99 %, on 1,250 it can
    assert agreement_interval(40, 40)[0] < 0.99 < agreement_interval(1250, 1250)[0]
    for args in ((5, 4), (-1, 4), (1, 4, 1.0), (1, 4, 0.0)):
        with pytest.raises(ValueError):
            agreement_interval(*args)
