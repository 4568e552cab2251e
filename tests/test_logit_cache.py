"""Task step 2 reuses the teacher logits recorded in step 1 (TeacherLogitCache).

Claims: the cached logits are the teacher's (same loss as running the teacher), step 2 runs no
teacher forward when every row was seen in step 1, a row never seen runs the teacher, and a
whole task distillation with the cache gives the same student as one without it.
Real HF models (tiny configs), real tokenizer, the real training loop.
"""

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification

from conftest import make_tokenizer, tiny_config
from tinybert_edge.mapping import LayerMap
from tinybert_edge.errors import CheckpointError
from tinybert_edge.objectives import DistillObjective, DistillSettings, TeacherLogitCache


def _models():
    torch.manual_seed(0)
    labels = {"id2label": {0: "neg", 1: "pos"}, "label2id": {"neg": 0, "pos": 1}, "num_labels": 2}
    teacher = AutoModelForSequenceClassification.from_config(tiny_config(6, **labels)).eval()
    student = AutoModelForSequenceClassification.from_config(tiny_config(4, **labels)).eval()  # no dropout
    return teacher, student


def _batch(tok, texts):
    enc = tok(texts, padding="longest", return_tensors="pt")
    return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


class _Calls:
    def __init__(self, module):
        self.n = 0
        module.register_forward_hook(lambda *_: setattr(self, "n", self.n + 1))


def test_step2_reads_step1_logits_instead_of_running_the_teacher(tmp_path):
    teacher, student = _models()
    tok = make_tokenizer(tmp_path / "tok")
    lm = LayerMap.uniform(4, 6)
    cache = TeacherLogitCache()
    step1 = DistillObjective(student, teacher, DistillSettings("task-intermediate", lm), logit_cache=cache)
    texts = ["the film was good", "a very long and boring story of a sad actor", "fun"]
    step1(_batch(tok, texts))
    assert len(cache) == 3

    calls = _Calls(teacher)
    step2 = DistillObjective(student, teacher, DistillSettings("task-prediction", lm), logit_cache=cache)
    plain = DistillObjective(student, teacher, DistillSettings("task-prediction", lm))
    # another batch of the same rows: other order, other padding length (the long row left out)
    again = _batch(tok, ["fun", "the film was good"])
    with torch.no_grad():
        cached_loss = step2(again)["loss"]
    assert calls.n == 0 and cache.hits == 1, "step 2 ran the teacher although step 1 recorded every row"
    with torch.no_grad():
        teacher_loss = plain(again)["loss"]
    assert calls.n == 1
    assert torch.allclose(cached_loss, teacher_loss, atol=1e-6), (cached_loss, teacher_loss)

    # a row step 1 never saw: the teacher runs for the batch, and the loss is still the teacher's
    new = _batch(tok, ["fun", "great music"])
    with torch.no_grad():
        loss_new = step2(new)["loss"]
    assert calls.n == 2 and cache.misses == 1
    with torch.no_grad():
        assert torch.allclose(loss_new, plain(new)["loss"], atol=1e-6)


def test_rows_tokenized_differently_are_misses(tmp_path):
    teacher, student = _models()
    tok = make_tokenizer(tmp_path / "tok")
    cache = TeacherLogitCache()
    b = _batch(tok, ["the film was good and fun"])
    cache.put(b, torch.tensor([[1.0, -1.0]]))
    assert cache.get(b) is not None
    short = tok(["the film was good and fun"], truncation=True, max_length=5, return_tensors="pt")
    assert cache.get({k: short[k] for k in ("input_ids", "attention_mask", "token_type_ids")}) is None
    pair = tok(["the film was good and fun"], ["fun"], return_tensors="pt")
    assert cache.get({k: pair[k] for k in ("input_ids", "attention_mask", "token_type_ids")}) is None


def test_cache_stops_recording_at_its_bound(tmp_path):
    tok = make_tokenizer(tmp_path / "tok")
    cache = TeacherLogitCache(max_rows=2)
    cache.put(_batch(tok, ["good", "bad", "fun"]), torch.zeros(3, 2))
    assert len(cache) == 2
    assert cache.get(_batch(tok, ["fun"])) is None


def test_task_distillation_with_the_cache_equals_one_without(tiny_assets, tmp_path, capsys):
    from tinybert_edge.cli import main

    a = tiny_assets
    common = ["distill", "task", "--teacher", str(a["teacher_cls"]), "--train", str(a["train"]), "--init", "sliced",
              "--layers", "4", "--hidden", "36", "--ffn", "48", "--batch-size", "8", "--max-seq-len", "32",
              "--checkpoint-every", "0", "--intermediate-epochs", "1", "--prediction-epochs", "2", "--prediction-lr", "5e-3"]
    assert main([*common, "--out", str(tmp_path / "cached")]) == 0  # default: the cache is on
    out = capsys.readouterr()
    assert "served 12 of 12 batches" in out.out + out.err  # 48 rows / 8 = 6 batches x 2 epochs

    assert main([*common, "--no-reuse-teacher-logits", "--out", str(tmp_path / "plain")]) == 0
    out = capsys.readouterr()
    assert "served" not in out.out + out.err
    w1 = load_file(str(tmp_path / "cached" / "model" / "model.safetensors"))
    w2 = load_file(str(tmp_path / "plain" / "model" / "model.safetensors"))
    assert w1.keys() == w2.keys()
    worst = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    moved = max((w1[k] - load_file(str(tmp_path / "cached" / "step1-intermediate" / "model" / "model.safetensors"))[k])
                .abs().max().item() for k in w1)
    assert moved > 1e-3, "step 2 did not train"
    assert worst < 1e-5, f"cached and uncached step 2 differ by {worst}"


def test_cache_state_round_trips_and_a_broken_one_is_refused(tmp_path):
    tok = make_tokenizer(tmp_path / "tok")
    cache = TeacherLogitCache()
    b = _batch(tok, ["good", "a long and boring film", "fun"])
    cache.put(b, torch.tensor([[0.5, -1.25], [2.0, 3.0], [-0.125, 7.5]]))
    save_file(cache.state_dict(), str(tmp_path / "c.safetensors"))
    again = TeacherLogitCache()
    again.load_state_dict(load_file(str(tmp_path / "c.safetensors")))
    assert len(again) == 3 and torch.equal(again.get(b), cache.get(b))
    empty = TeacherLogitCache()
    empty.load_state_dict(TeacherLogitCache().state_dict())
    assert len(empty) == 0
    broken = cache.state_dict()
    broken["keys"] = broken["keys"][:2]
    with pytest.raises(CheckpointError, match="not a logit cache"):
        again.load_state_dict(broken)


def test_resumed_inside_or_after_step_1_equals_uninterrupted_with_the_cache(tiny_assets, tmp_path, capsys):
    """The cache is saved with step 1's checkpoints and its finished run: a run interrupted inside
    step 1 (after its step-3 checkpoint) or between the steps resumes to the very same student,
    bit for bit, and its step 2 still runs no teacher."""
    from tinybert_edge.cli import main

    a = tiny_assets
    common = ["distill", "task", "--teacher", str(a["teacher_cls"]), "--train", str(a["train"]), "--init", "sliced",
              "--layers", "4", "--hidden", "36", "--ffn", "48", "--batch-size", "8", "--max-seq-len", "32",
              "--checkpoint-every", "3", "--intermediate-epochs", "1", "--prediction-epochs", "2",
              "--prediction-lr", "5e-3"]
    ref = tmp_path / "uninterrupted"
    assert main([*common, "--out", str(ref)]) == 0
    want = (ref / "model" / "model.safetensors").read_bytes()
    for where in ("between", "inside"):
        run = tmp_path / where
        shutil.copytree(ref, run)
        # what a kill leaves: no step 2, no final model (and, inside step 1, only its step-3 checkpoint)
        shutil.rmtree(run / "model")
        shutil.rmtree(run / "step2-prediction")
        s1 = run / "step1-intermediate"
        if where == "inside":
            shutil.rmtree(s1 / "model")
            (s1 / "summary.json").unlink()
            (s1 / "objective-state-rank0.safetensors").unlink()
            assert (s1 / "checkpoints" / "step-00000003" / "objective-state-rank0.safetensors").is_file()
        capsys.readouterr()
        assert main([*common, "--out", str(run), "--resume"]) == 0
        out = capsys.readouterr()
        log = out.out + out.err
        assert ("from step-00000003" in log) == (where == "inside"), log
        assert "served 12 of 12 batches" in log, f"{where}: step 2 ran the teacher after the resume"
        assert (run / "model" / "model.safetensors").read_bytes() == want, f"resumed {where} step 1 differs"


    # Bad resumes, each one clear error and nothing written: the saved logits missing or corrupted,
    # or the other cache setting (which would mix cached and live teacher logits in step 2).
    for case in ("missing", "corrupted", "setting"):
        run = tmp_path / case
        shutil.copytree(ref, run)
        shutil.rmtree(run / "model")
        shutil.rmtree(run / "step2-prediction")
        state = run / "step1-intermediate" / "objective-state-rank0.safetensors"
        extra = []
        if case == "missing":
            state.unlink()
        elif case == "corrupted":
            data = bytearray(state.read_bytes())
            data[-3] ^= 0xFF
            state.write_bytes(bytes(data))
        else:
            extra = ["--no-reuse-teacher-logits"]
        capsys.readouterr()
        assert main([*common, "--out", str(run), "--resume", *extra]) == 2, case
        err = capsys.readouterr().err
        expect = {"missing": "objective-state-rank0.safetensors is missing; pass --overwrite",
                  "corrupted": "is corrupted (sha256 differs from summary.json)",
                  "setting": "reuse_teacher_logits"}[case]
        assert expect in err, (case, err)
        assert not (run / "model").exists() and not (run / "step2-prediction").exists(), case
