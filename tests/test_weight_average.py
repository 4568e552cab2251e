"""Tail weight averaging (TrainConfig.average_last, `distill task --average-last`).

Claims: the saved model is the exact mean of the weights after each of the last steps (checked
against every step's checkpoint of the same run), the last step's weights are kept in model-raw,
a run resumed from a checkpoint inside the averaged tail ends with the same average as an
uninterrupted run, the setting is part of the run's spec (a resume with another fraction is
refused), and a fraction outside [0, 1] is one clear error. Real HF models (tiny configs), real
tokenizer, the real training loop.
"""

import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tinybert_edge.errors import CheckpointError, ConfigError
from tinybert_edge.pipeline import finetune
from tinybert_edge.training import TrainConfig, WeightAverage

STEPS = 12  # 48 rows, batch 4, one epoch


def _cfg(**kw):
    base = dict(epochs=1, batch_size=4, learning_rate=1e-3, max_seq_len=16, seed=3, checkpoint_every=1,
                keep_checkpoints=100, threads=1, average_last=0.25)
    return TrainConfig(**{**base, **kw})


def _weights(path):
    return load_file(str(path / "model.safetensors"))


def _same(a, b, tol=0.0):
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst <= tol, f"weights differ by {worst}"


def test_saved_model_is_the_mean_of_the_last_steps(tiny_assets, tmp_path):
    out = tmp_path / "run"
    finetune(tiny_assets["teacher_base"], tiny_assets["train"], out, _cfg())
    summary = (out / "summary.json").read_text()
    assert '"averaged_steps": 3' in summary  # 25 % of 12 steps
    model, raw = _weights(out / "model"), _weights(out / "model-raw")
    # weights after steps 10 and 11 from their checkpoints (keys carry the objective's prefix), 12 from model-raw
    per_step = []
    for step in (10, 11):
        ckpt = load_file(str(out / "checkpoints" / f"step-{step:08d}" / "trainable.safetensors"))
        per_step.append({k: next(v for ck, v in ckpt.items() if ck.endswith("." + k) or ck == k) for k in model})
    per_step.append(raw)
    expected = {k: torch.stack([w[k].float() for w in per_step]).mean(0) for k in model}
    _same(model, expected, tol=1e-6)
    # and the average is not just the last step
    assert max((model[k] - raw[k]).abs().max().item() for k in model) > 1e-4


def test_resume_inside_the_tail_equals_an_uninterrupted_run(tiny_assets, tmp_path):
    ref = tmp_path / "ref"
    finetune(tiny_assets["teacher_base"], tiny_assets["train"], ref, _cfg())
    # the same run stopped after step 11 (inside the averaged tail, whose state is in that checkpoint)
    cut = tmp_path / "cut"
    shutil.copytree(ref, cut)
    for p in ("model", "model-raw"):
        shutil.rmtree(cut / p)
    (cut / "summary.json").unlink()
    assert (cut / "checkpoints" / "step-00000011" / WeightAverage.FILE).is_file()
    (cut / "checkpoints" / "latest").write_text("step-00000011")
    r = finetune(tiny_assets["teacher_base"], tiny_assets["train"], cut, _cfg(), resume=True)
    assert r.resumed_from == 11
    _same(_weights(ref / "model"), _weights(cut / "model"), tol=1e-6)
    _same(_weights(ref / "model-raw"), _weights(cut / "model-raw"), tol=1e-6)


def test_resume_with_another_fraction_is_refused(tiny_assets, tmp_path):
    out = tmp_path / "run"
    finetune(tiny_assets["teacher_base"], tiny_assets["train"], out, _cfg(checkpoint_every=0, epochs=1))
    (out / "summary.json").unlink()
    with pytest.raises(CheckpointError, match="average_last"):
        finetune(tiny_assets["teacher_base"], tiny_assets["train"], out, _cfg(checkpoint_every=0, average_last=0.5),
                 resume=True)


def test_overwriting_an_averaged_run_without_averaging_leaves_no_stale_raw_model(tiny_assets, tmp_path):
    out = tmp_path / "run"
    finetune(tiny_assets["teacher_base"], tiny_assets["train"], out, _cfg(checkpoint_every=0))
    assert (out / "model-raw").is_dir()
    finetune(tiny_assets["teacher_base"], tiny_assets["train"], out, _cfg(checkpoint_every=0, average_last=0.0),
             overwrite=True)
    assert (out / "model").is_dir() and not (out / "model-raw").exists()
    assert "averaged_steps" not in (out / "summary.json").read_text()


def test_off_by_default_and_absent_from_the_spec():
    # absent when off: run directories and GD-cache keys made before the option still match
    assert "average_last" not in TrainConfig().to_dict()
    assert TrainConfig(average_last=0.3).to_dict()["average_last"] == 0.3


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_fraction_outside_0_1_is_one_clear_error(bad, tiny_assets, tmp_path):
    with pytest.raises(ConfigError, match=r"average-last must be a fraction of the steps in \[0, 1\]"):
        TrainConfig(average_last=bad)
    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, "-m", "tinybert_edge", "distill", "task", "--teacher",
                        str(tiny_assets["teacher_cls"]), "--train", str(tiny_assets["train"]), "--out", str(out),
                        "--average-last", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert "average-last must be a fraction of the steps in [0, 1]" in r.stderr
    assert not out.exists()
