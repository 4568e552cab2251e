"""The real embedded teacher (all-MiniLM-L6-v2, 6 layers) teaching the default 4L-312D student:
non-divisible uniform map 1,3,4,6, finite losses, gradients on student and projections only."""

import pytest
import torch

pytestmark = pytest.mark.slow


def test_minilm_teaches_default_student_one_step():
    from transformers import AutoModel

    from tinybert_edge.fetch import fetch_default
    from tinybert_edge.mapping import LayerMap
    from tinybert_edge.models import get_preset, load_encoder, load_tokenizer, student_config
    from tinybert_edge.objectives import DistillObjective, DistillSettings

    paths = fetch_default()
    teacher = load_encoder(paths.teacher)
    tok = load_tokenizer(paths.teacher)
    assert (teacher.config.num_hidden_layers, teacher.config.hidden_size) == (6, 384)
    student = AutoModel.from_config(student_config(teacher.config, get_preset("tinybert-4l-312d")))
    lm = LayerMap.uniform(4, 6)
    assert lm.teacher_for_student == (1, 3, 4, 6)
    obj = DistillObjective(student, teacher, DistillSettings("general", lm))
    batch = dict(tok(["A three-hour cinema master class.", "Dull."], padding=True, return_tensors="pt"))
    losses = obj(batch)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    assert obj.proj_embedding.weight.grad is not None and obj.proj_hidden[3].weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())
    assert "_teacher" not in dict(obj.named_children()) and not any(k.startswith("teacher") for k in obj.state_dict())
