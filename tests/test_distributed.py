"""Two CPU processes (torch.distributed, gloo) via torchrun + Accelerate give the weights of one
process with the same global batch: the gradients really are all-reduced."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import WORDS, make_tiny_model_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    # No dropout (each process draws its own masks), and every sentence the same number of tokens:
    # each process's loss is a mean over its tokens, so two equal halves average to the global mean.
    teacher = make_tiny_model_dir(root / "teacher", classifier=False, seed=3)
    cfg = json.loads((teacher / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (teacher / "config.json").write_text(json.dumps(cfg))
    g = torch.Generator().manual_seed(0)
    words = [w for w in WORDS if len(w) > 1]
    lines = [" ".join(words[int(i)] for i in torch.randint(len(words), (6,), generator=g)) for _ in range(32)]
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n")
    return teacher, corpus


def _args(teacher, corpus, out):
    return ["distill", "general", "--teacher", str(teacher), "--corpus", str(corpus), "--out", str(out),
            "--batch-size", "8", "--max-seq-len", "16", "--max-steps", "4", "--checkpoint-every", "2",
            "--lr", "1e-3", "--threads", "1", "--init", "random", "--no-gd-cache"]


def test_two_processes_give_the_weights_of_one_with_the_same_global_batch(setup, tmp_path):
    teacher, corpus = setup
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    one = tmp_path / "one"
    subprocess.run([sys.executable, "-m", "tinybert_edge", *_args(teacher, corpus, one)], check=True, env=env,
                   capture_output=True)
    two = tmp_path / "two"
    torchrun = shutil.which("torchrun") or "torchrun"
    r = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "tinybert_edge",
                        *_args(teacher, corpus, two)], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    s1 = json.loads((one / "summary.json").read_text())
    s2 = json.loads((two / "summary.json").read_text())
    assert (s1["processes"], s2["processes"]) == (1, 2)
    assert s1["steps"] == s2["steps"] == 4  # global batch split over processes: same step count
    w1 = load_file(str(one / "model" / "model.safetensors"))
    w2 = load_file(str(two / "model" / "model.safetensors"))
    assert w1.keys() == w2.keys()
    # Tolerance from the run itself: how far two optimizer steps move the weights. Without the
    # all-reduce, each process would step on its own half batch and land that far apart; with it,
    # only float summation order differs.
    mid = load_file(str(one / "checkpoints" / "step-00000002" / "trainable.safetensors"))
    moved = max(float((w1[k] - mid[f"student.{k}"]).abs().max()) for k in w1 if f"student.{k}" in mid)
    apart = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    assert moved > 1e-4, moved  # the steps really moved the weights (two Adam steps of lr 1e-3: ~1e-3)
    assert apart < 1e-3 * moved, (apart, moved)
    # the final losses agree too (both are means over the same global batch)
    for k in ("attention", "embedding", "hidden", "loss"):
        assert s2["final_losses"][k] == pytest.approx(s1["final_losses"][k], rel=1e-4)
    # a checkpoint of the 2-process run holds one RNG state per process
    ckpts = list((two / "checkpoints").glob("step-*"))
    assert ckpts and {p.name for p in ckpts[0].glob("rng-rank*.safetensors")} == {"rng-rank0.safetensors",
                                                                                 "rng-rank1.safetensors"}
