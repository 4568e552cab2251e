"""Pre-softmax attention scores, recorded inside the attention or by hooks, equal QK^T/sqrt(d), match
HF's own softmax, and leave the model as it was."""

import math

import pytest
import torch

from tinybert_edge.attention import AttentionScoreRecorder
from conftest import tiny_config


@pytest.mark.parametrize("mode", ["inside", "hooks"])
def test_scores_equal_hand_computation_and_hf_probabilities(mode):
    from transformers import AutoModel

    torch.manual_seed(0)
    model = AutoModel.from_config(tiny_config(3), attn_implementation="eager").eval()
    ids = torch.randint(5, 60, (2, 7))
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
        with AttentionScoreRecorder(model, [1, 3], mode=mode) as rec:
            recorded = model(input_ids=ids, attention_mask=mask)
            scores = {n: rec.scores(n) for n in (1, 3)}
    # the recorded forward computes the same outputs (real tokens) as the model's own attention
    real = mask.bool()
    assert torch.allclose(recorded.last_hidden_state[real], out.last_hidden_state[real], atol=1e-5)
    assert model.config._attn_implementation == "eager"  # restored
    for n in (1, 3):
        sa = model.encoder.layer[n - 1].attention.self
        x = out.hidden_states[n - 1]  # input of layer n: (B, T, H)
        q = (x @ sa.query.weight.T + sa.query.bias).view(2, 7, 12, 4).transpose(1, 2)
        k = (x @ sa.key.weight.T + sa.key.bias).view(2, 7, 12, 4).transpose(1, 2)
        hand = q @ k.transpose(-1, -2) / math.sqrt(4)
        assert scores[n].shape == (2, 12, 7, 7)
        assert torch.allclose(scores[n], hand, atol=1e-5)
        # HF's post-softmax probabilities are softmax(scores + additive mask).
        bias = (1 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        assert torch.allclose(torch.softmax(scores[n] + bias, -1), out.attentions[n - 1], atol=1e-5)


@pytest.mark.parametrize("mode", ["inside", "hooks"])
def test_scores_do_not_depend_on_attention_kernel(mode):
    from transformers import AutoModel

    torch.manual_seed(0)
    eager = AutoModel.from_config(tiny_config(2), attn_implementation="eager").eval()
    sdpa = AutoModel.from_config(tiny_config(2), attn_implementation="sdpa").eval()
    sdpa.load_state_dict(eager.state_dict())
    ids = torch.randint(5, 60, (1, 5))
    got = []
    for m in (eager, sdpa):
        with torch.no_grad(), AttentionScoreRecorder(m, [2], mode=mode) as rec:
            m(input_ids=ids)
            got.append(rec.scores(2))
    assert torch.allclose(got[0], got[1], atol=1e-5)


def test_hooks_are_removed_after_the_block():
    from transformers import AutoModel

    model = AutoModel.from_config(tiny_config(2))
    with AttentionScoreRecorder(model, [1, 2], mode="hooks"):
        pass
    assert not model.encoder.layer[0].attention.self.query._forward_hooks


def test_inside_mode_gives_gradients_through_the_recorded_scores():
    from transformers import AutoModel

    torch.manual_seed(0)
    model = AutoModel.from_config(tiny_config(2), attn_implementation="sdpa")
    ids = torch.randint(5, 60, (2, 6))
    with AttentionScoreRecorder(model, [2]) as rec:
        model(input_ids=ids)
        rec.scores(2).pow(2).mean().backward()
    assert model.encoder.layer[1].attention.self.query.weight.grad.abs().sum() > 0
    assert model.config._attn_implementation == "sdpa"
    rec.clear()
    with pytest.raises(KeyError):
        rec.scores(2)
