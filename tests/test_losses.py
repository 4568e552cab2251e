"""Each TinyBERT loss against a hand computation, and padding exclusion."""

import math

import pytest
import torch

from tinybert_edge.losses import attention_loss, hidden_loss, prediction_loss, regression_loss


def _mask():
    return torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])  # (B=2, T=4)


def test_attention_loss_equals_hand_computation_over_valid_pairs():
    torch.manual_seed(0)
    s, t, m = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), _mask()
    total, count = 0.0, 0
    for b in range(2):
        for h in range(3):
            for i in range(4):
                for j in range(4):
                    if m[b, i] and m[b, j]:
                        total += (s[b, h, i, j] - t[b, h, i, j]).item() ** 2
                        count += 1
    assert count == 3 * (9 + 4)
    assert attention_loss(s, t, m).item() == pytest.approx(total / count, rel=1e-6)


def test_attention_loss_ignores_padded_query_rows_and_key_columns():
    torch.manual_seed(1)
    s, t, m = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), _mask()
    base = attention_loss(s, t, m)
    s2 = s.clone()
    s2[0, :, 3, :] += 100.0  # padded query row of example 0
    s2[1, :, :, 2:] -= 50.0  # padded key columns of example 1
    s2[1, :, 2:, :] += 7.0  # padded query rows of example 1
    assert attention_loss(s2, t, m).item() == pytest.approx(base.item(), rel=1e-6)
    s3 = s.clone()
    s3[0, 0, 0, 0] = t[0, 0, 0, 0] + 10.0  # a valid entry does count
    assert attention_loss(s3, t, m).item() > base.item()


def test_attention_loss_rejects_different_head_counts():
    with pytest.raises(ValueError, match="heads"):
        attention_loss(torch.zeros(1, 2, 3, 3), torch.zeros(1, 4, 3, 3), torch.ones(1, 3))


def test_hidden_loss_equals_hand_computation_and_ignores_padding():
    torch.manual_seed(2)
    s, t, m = torch.randn(2, 4, 5), torch.randn(2, 4, 5), _mask()
    total = sum(((s[b, i] - t[b, i]) ** 2).sum().item() for b in range(2) for i in range(4) if m[b, i])
    expected = total / (5 * 5)  # 5 valid tokens x 5 features
    assert hidden_loss(s, t, m).item() == pytest.approx(expected, rel=1e-6)
    s[1, 3] += 1000.0
    assert hidden_loss(s, t, m).item() == pytest.approx(expected, rel=1e-6)


def test_prediction_loss_is_soft_cross_entropy_summed_over_classes():
    zs = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    zt = torch.tensor([[0.5, 1.5, -0.5], [2.0, 0.0, 1.0]])
    for t in (1.0, 2.0):
        per = []
        for b in range(2):
            pt = [math.exp(v / t) for v in zt[b].tolist()]
            pt = [v / sum(pt) for v in pt]
            ls = [v / t for v in zs[b].tolist()]
            lse = math.log(sum(math.exp(v) for v in ls))
            per.append(-sum(p * (v - lse) for p, v in zip(pt, ls)))
        expected = sum(per) / 2
        assert prediction_loss(zs, zt, t).item() == pytest.approx(expected, rel=1e-6)
        assert prediction_loss(zs, zt, t, scale_by_t2=True).item() == pytest.approx(expected * t * t, rel=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        prediction_loss(zs, zt, 0.0)


def test_regression_loss_is_mse_to_teacher():
    s, t = torch.tensor([[1.0], [2.0]]), torch.tensor([[0.0], [4.0]])
    assert regression_loss(s, t).item() == pytest.approx((1 + 4) / 2)
