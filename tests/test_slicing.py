"""Teacher-sliced initialisation (issue #11): exact at the teacher's own shape, deterministic,
refused when the student does not fit, and a better start than random on the real teacher."""

import json
from pathlib import Path

import pytest
import torch

from tinybert_edge.cli import main
from tinybert_edge.errors import ConfigError
from tinybert_edge.mapping import LayerMap
from tinybert_edge.models import get_preset, student_config
from tinybert_edge.slicing import check_fits, load_sliced, measure_importance, plan_slice, sample_texts

from conftest import sentences, tiny_config, write_tsv


def _tiny_teacher(seed=0, classifier=False):
    from transformers import AutoModel, AutoModelForSequenceClassification

    torch.manual_seed(seed)
    cfg = tiny_config(6, num_labels=2)
    return (AutoModelForSequenceClassification if classifier else AutoModel).from_config(cfg).eval()


def _inputs():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 60, (3, 12), generator=g)
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def _importance(teacher, tiny_assets):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_assets["teacher_base"])
    return measure_importance(teacher, tok, sample_texts(tiny_assets["corpus"], 32, corpus=True), max_seq_len=32,
                              batch_size=8)


@pytest.mark.parametrize("classifier", [False, True])
def test_slicing_to_the_teachers_own_shape_gives_its_outputs_exactly(tiny_assets, classifier):
    from transformers import AutoModel

    teacher = _tiny_teacher(classifier=classifier)
    cfg = teacher.config
    plan = plan_slice(teacher, LayerMap.uniform(6, 6), hidden_size=cfg.hidden_size,
                      intermediate_size=cfg.intermediate_size, importance=_importance(teacher, tiny_assets))
    assert plan.qk_scale == 1.0 and plan.hidden == tuple(range(cfg.hidden_size))
    student = AutoModel.from_config(cfg).eval()
    load_sliced(student, teacher, plan)
    base = teacher.base_model
    with torch.no_grad():
        a, b = base(**_inputs(), output_hidden_states=True), student(**_inputs(), output_hidden_states=True)
    for h_t, h_s in zip(a.hidden_states, b.hidden_states):
        assert torch.equal(h_t, h_s)
    assert torch.equal(a.pooler_output, b.pooler_output)


def test_sliced_student_keeps_the_ranked_units_and_the_score_scale(tiny_assets):
    from transformers import AutoModel

    teacher = _tiny_teacher()
    imp = _importance(teacher, tiny_assets)
    shape = get_preset("tinybert-4l-312d", hidden_size=36, intermediate_size=40)
    plan = plan_slice(teacher, LayerMap.uniform(4, 6), hidden_size=36, intermediate_size=40, importance=imp)
    assert plan.teacher_layers == (1, 3, 4, 6)
    # the kept hidden dims are exactly the 36 with the largest mean |h|
    assert set(plan.hidden) == set(torch.topk(imp["hidden"], 36).indices.tolist())
    assert all(len(f) == 40 for f in plan.ffn) and all(len(q) == 36 for q in plan.qk)
    assert plan.qk_scale == pytest.approx((3 / 4) ** 0.25)
    student = AutoModel.from_config(student_config(teacher.config, shape)).eval()
    load_sliced(student, teacher, plan)
    h = torch.tensor(plan.hidden)
    assert torch.equal(student.embeddings.word_embeddings.weight, teacher.embeddings.word_embeddings.weight[:, h])
    q_t = teacher.encoder.layer[5].attention.self.query.weight
    q_s = student.encoder.layer[3].attention.self.query.weight
    assert torch.allclose(q_s, q_t[list(plan.qk[3])][:, h] * plan.qk_scale)


def test_importance_ranking_is_deterministic(tiny_assets):
    teacher = _tiny_teacher()
    a, b = _importance(teacher, tiny_assets), _importance(teacher, tiny_assets)
    assert torch.equal(a["hidden"], b["hidden"]) and torch.equal(a["ffn"], b["ffn"])
    p1 = plan_slice(teacher, LayerMap.uniform(4, 6), hidden_size=36, intermediate_size=40, importance=a)
    p2 = plan_slice(teacher, LayerMap.uniform(4, 6), hidden_size=36, intermediate_size=40, importance=b)
    assert p1 == p2
    # the sample does not depend on the file's row order beyond its content: same file, same texts
    assert sample_texts(tiny_assets["corpus"], 10, corpus=True) == sample_texts(tiny_assets["corpus"], 10, corpus=True)


@pytest.mark.parametrize("shape, needle", [
    ({"num_layers": 7, "hidden_size": 36, "intermediate_size": 40, "num_heads": 12}, "7 layers > the teacher's 6"),
    ({"num_layers": 4, "hidden_size": 60, "intermediate_size": 40, "num_heads": 12}, "hidden 60 > the teacher's 48"),
    ({"num_layers": 4, "hidden_size": 36, "intermediate_size": 80, "num_heads": 12}, "FFN 80 > the teacher's 64"),
    ({"num_layers": 4, "hidden_size": 36, "intermediate_size": 40, "num_heads": 6}, "6 heads != the teacher's 12"),
])
def test_a_student_that_does_not_fit_is_refused(shape, needle):
    with pytest.raises(ConfigError, match="does not fit inside the teacher") as e:
        check_fits(tiny_config(6), **shape)
    assert needle in str(e.value) and "--init random" in str(e.value)


def test_cli_refuses_a_student_that_does_not_fit_and_writes_nothing(tiny_assets, tmp_path, capsys):
    out = tmp_path / "g"
    assert main(["distill", "general", "--teacher", str(tiny_assets["teacher_base"]), "--corpus",
                 str(tiny_assets["corpus"]), "--out", str(out), "--max-steps", "1", "--max-seq-len", "16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: the student does not fit inside the teacher") and "hidden 312 > " in err[-1]
    assert not out.exists()


def test_task_distillation_slices_the_fine_tuned_teacher_by_default(tiny_assets, tmp_path, capsys):
    common = ["--batch-size", "8", "--max-seq-len", "16", "--checkpoint-every", "0"]
    small = ["--hidden", "36", "--ffn", "40"]
    assert main(["finetune", "--model", str(tiny_assets["teacher_base"]), "--train", str(tiny_assets["train"]),
                 "--out", str(tmp_path / "t"), "--max-steps", "2", *common]) == 0
    assert main(["distill", "task", "--teacher", str(tmp_path / "t"), "--train", str(tiny_assets["train"]),
                 "--out", str(tmp_path / "s"), "--intermediate-max-steps", "1", "--prediction-max-steps", "1",
                 *small, *common]) == 0
    out = capsys.readouterr().out
    teacher = tmp_path / "t" / "model"
    assert "the fine-tuned teacher itself" in out and "student init: sliced from" in out
    spec = json.loads((tmp_path / "s" / "tinybert_edge_run.json").read_text())["spec"]
    assert spec["init"]["kind"] == "sliced" and Path(spec["init"]["source"]).resolve() == teacher.resolve()
    # --slice-from still takes the pre-trained model
    assert main(["distill", "task", "--teacher", str(tmp_path / "t"), "--train", str(tiny_assets["train"]),
                 "--out", str(tmp_path / "s2"), "--intermediate-max-steps", "1", "--prediction-max-steps", "1",
                 "--slice-from", str(tiny_assets["teacher_base"]), *small, *common]) == 0
    spec = json.loads((tmp_path / "s2" / "tinybert_edge_run.json").read_text())["spec"]
    assert spec["init"]["source"] == str(tiny_assets["teacher_base"])


@pytest.mark.slow
def test_sliced_init_starts_closer_to_the_real_teacher_than_random(real_assets):
    # All-MiniLM-L6-v2 cut to TinyBERT-4L-312D: the step-1 losses (attention, hidden states) at the
    # first batch must be far below those of the paper's random init.
    from transformers import AutoModel, AutoTokenizer

    from tinybert_edge.objectives import DistillObjective, DistillSettings

    teacher = AutoModel.from_pretrained(real_assets.teacher).eval()
    tok = AutoTokenizer.from_pretrained(real_assets.teacher)
    shape = get_preset("tinybert-4l-312d")
    lm = LayerMap.uniform(4, 6)
    texts = sample_texts(real_assets.corpus, 128, corpus=True)
    plan = plan_slice(teacher, lm, hidden_size=312, intermediate_size=1200,
                      importance=measure_importance(teacher, tok, texts))
    batch = dict(tok(texts[:16], padding=True, truncation=True, max_length=64, return_tensors="pt"))
    losses = {}
    for init in ("random", "sliced"):
        torch.manual_seed(0)
        student = AutoModel.from_config(student_config(teacher.config, shape)).eval()
        if init == "sliced":
            load_sliced(student, teacher, plan)
        obj = DistillObjective(student, teacher, DistillSettings("general", lm)).eval()
        with torch.no_grad():
            losses[init] = {k: float(v) for k, v in obj(batch).items()}
    assert losses["sliced"]["attention"] < 0.5 * losses["random"]["attention"], losses
    assert losses["sliced"]["loss"] < losses["random"]["loss"], losses
