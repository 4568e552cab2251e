"""kill -9 and resume ends with the same student as an uninterrupted run; corrupted checkpoints
and changed options are refused."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow


def _cmd(a, out, *extra):
    return [sys.executable, "-m", "tinybert_edge", "distill", "general", "--teacher", str(a["teacher_base"]),
            "--corpus", str(a["corpus"]), "--out", str(out), "--batch-size", "4", "--max-seq-len", "16",
            "--epochs", "30", "--max-steps", "150", "--checkpoint-every", "10", "--threads", "1", "--init", "random",
            "--no-gd-cache", *extra]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _assert_same_weights(a_dir, b_dir):
    a = load_file(str(a_dir / "model" / "model.safetensors"))
    b = load_file(str(b_dir / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst <= 1e-6, f"resumed student differs from uninterrupted one by {worst}"


@pytest.fixture(scope="module")
def reference(tiny_assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    subprocess.run(_cmd(tiny_assets, out), check=True, env=_env(), capture_output=True)
    return out


def _killed_run(a, out):
    proc = subprocess.Popen(_cmd(a, out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = out / "checkpoints" / "latest"
    deadline = time.time() + 120
    while not latest.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "summary.json").exists() and not (out / "model").exists()
    return out


def test_sigkill_then_resume_equals_uninterrupted_run(tiny_assets, reference, tmp_path):
    out = _killed_run(tiny_assets, tmp_path / "run")
    killed_at = (out / "checkpoints" / "latest").read_text()
    r = subprocess.run(_cmd(tiny_assets, out, "--resume"), env=_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"from {killed_at}" in r.stdout
    _assert_same_weights(reference, out)


def test_corrupted_checkpoint_is_refused_and_nothing_is_written(tiny_assets, tmp_path):
    out = _killed_run(tiny_assets, tmp_path / "run")
    ckpt = out / "checkpoints" / (out / "checkpoints" / "latest").read_text()
    blob = ckpt / "trainable.safetensors"
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    r = subprocess.run(_cmd(tiny_assets, out, "--resume"), env=_env(), capture_output=True, text=True)
    assert r.returncode == 2
    assert "trainable.safetensors is corrupted (sha256 mismatch)" in r.stderr
    assert not (out / "model").exists()
    # a truncated file (no manifest rewrite) is caught the same way
    shutil.rmtree(ckpt / "manifest.json", ignore_errors=True) if (ckpt / "manifest.json").is_dir() else None
    (ckpt / "manifest.json").write_text("{trunc")
    r = subprocess.run(_cmd(tiny_assets, out, "--resume"), env=_env(), capture_output=True, text=True)
    assert r.returncode == 2 and "no readable manifest.json" in r.stderr


def test_resume_with_changed_options_is_refused(tiny_assets, tmp_path):
    out = _killed_run(tiny_assets, tmp_path / "run")
    cmd = _cmd(tiny_assets, out, "--resume")
    cmd[cmd.index("--max-seq-len") + 1] = "24"
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    assert r.returncode == 2
    assert "train.max_seq_len: was 16, now 24" in r.stderr


def test_optimizer_state_loads_without_pickle(tiny_assets, tmp_path):
    out = _killed_run(tiny_assets, tmp_path / "run")
    ckpt = out / "checkpoints" / (out / "checkpoints" / "latest").read_text()
    state = torch.load(ckpt / "optimizer.pt", weights_only=True)  # restricted unpickler: tensors and containers
    assert state["state"]
