"""Pre-softmax attention scores captured by hooks equal QK^T/sqrt(d) and match HF's own softmax."""

import math

import torch

from tinybert_edge.attention import AttentionScoreRecorder
from conftest import tiny_config


def test_scores_equal_hand_computation_and_hf_probabilities():
    from transformers import AutoModel

    torch.manual_seed(0)
    model = AutoModel.from_config(tiny_config(3), attn_implementation="eager").eval()
    ids = torch.randint(5, 60, (2, 7))
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    with torch.no_grad(), AttentionScoreRecorder(model, [1, 3]) as rec:
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
        scores = {n: rec.scores(n) for n in (1, 3)}
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


def test_scores_do_not_depend_on_attention_kernel():
    from transformers import AutoModel

    torch.manual_seed(0)
    eager = AutoModel.from_config(tiny_config(2), attn_implementation="eager").eval()
    sdpa = AutoModel.from_config(tiny_config(2), attn_implementation="sdpa").eval()
    sdpa.load_state_dict(eager.state_dict())
    ids = torch.randint(5, 60, (1, 5))
    got = []
    for m in (eager, sdpa):
        with torch.no_grad(), AttentionScoreRecorder(m, [2]) as rec:
            m(input_ids=ids)
            got.append(rec.scores(2))
    assert torch.allclose(got[0], got[1], atol=1e-5)


def test_hooks_are_removed_after_the_block():
    from transformers import AutoModel

    model = AutoModel.from_config(tiny_config(2))
    with AttentionScoreRecorder(model, [1, 2]):
        pass
    assert not model.encoder.layer[0].attention.self.query._forward_hooks
