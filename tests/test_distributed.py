"""Two CPU processes (torch.distributed, gloo) via torchrun + Accelerate: same result shape as one."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from safetensors.torch import load_file

pytestmark = pytest.mark.slow


def _args(a, out):
    return ["distill", "general", "--teacher", str(a["teacher_base"]), "--corpus", str(a["corpus"]), "--out", str(out),
            "--batch-size", "8", "--max-seq-len", "16", "--max-steps", "4", "--checkpoint-every", "2",
            "--threads", "1", "--init", "random", "--no-gd-cache"]


def test_two_process_run_matches_one_process_shapes(tiny_assets, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    one = tmp_path / "one"
    subprocess.run([sys.executable, "-m", "tinybert_edge", *_args(tiny_assets, one)], check=True, env=env,
                   capture_output=True)
    two = tmp_path / "two"
    torchrun = shutil.which("torchrun") or "torchrun"
    r = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "tinybert_edge",
                        *_args(tiny_assets, two)], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    s1 = json.loads((one / "summary.json").read_text())
    s2 = json.loads((two / "summary.json").read_text())
    assert (s1["processes"], s2["processes"]) == (1, 2)
    assert s1["steps"] == s2["steps"] == 4  # global batch split over processes: same step count
    w1 = load_file(str(one / "model" / "model.safetensors"))
    w2 = load_file(str(two / "model" / "model.safetensors"))
    assert {k: v.shape for k, v in w1.items()} == {k: v.shape for k, v in w2.items()}
    assert set(s2["final_losses"]) == {"attention", "embedding", "hidden", "loss"}
    # a checkpoint of the 2-process run holds one RNG state per process
    ckpts = list((two / "checkpoints").glob("step-*"))
    assert ckpts and {p.name for p in ckpts[0].glob("rng-rank*.safetensors")} == {"rng-rank0.safetensors",
                                                                                 "rng-rank1.safetensors"}
