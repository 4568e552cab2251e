"""Run a bundle's artifact on pre-tokenized inputs with nothing but its runtime and numpy.

This file is what runs on the aarch64 side of the ARM check (`benchmarks/arm_emulation.py`,
under qemu-user), and it runs as is on a real board:

    pip install ai-edge-litert numpy          # .tflite bundles (glibc >= 2.34)
    python3 arm_runner.py BUNDLE_DIR inputs.json out.json [--threads N] [--runs N]

It imports neither torch nor the kit (neither is needed to run a .tflite on a board), so it
reads metadata.json itself, checks the artifact's sha256, pads each row as the bundle's
sequence-length policy says and runs the matching signature (LiteRT) or method (ExecuTorch,
which needs the executorch and torch wheels). inputs.json holds {"rows": [{"ids": [...],
"types": [...]}]}, made by the host from the same bundle's tokenizer. out.json gets the
logits, per-row latencies and the machine.

Exit status: 0 ok, 2 bad input (missing file, sha256 mismatch, unknown format).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time


def _fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _pad_length(policy: dict, n: int) -> int:
    """Same rule as converters.base.SeqLenPolicy.pad_length (kept free of the kit's imports)."""
    if policy["kind"] == "dynamic":
        return max(n, 2)  # the exported dynamic dimension starts at 2
    if policy["kind"] == "buckets":
        return next(b for b in policy["buckets"] if b >= n)
    return policy["max_len"]


class _LiteRT:
    def __init__(self, path: str, meta: dict, threads: int):
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(model_path=path, num_threads=threads)
        self.by_len = {s["seq_len"]: self.interp.get_signature_runner(s["name"]) for s in meta["signatures"]}
        self.dtype = meta["inputs"][0]["dtype"]

    def run(self, ids, mask, types):
        r = self.by_len[ids.shape[1]]
        feeds = dict(zip(sorted(r.get_input_details()), (ids, mask, types)))  # args_0.. are positional
        out = r(**{k: v.astype(self.dtype) for k, v in feeds.items()})
        return next(iter(out.values()))[0]


class _ExecuTorch:
    def __init__(self, path: str, meta: dict, threads: int):
        import torch
        from executorch.extension.pybindings import portable_lib

        portable_lib._unsafe_reset_threadpool(threads)
        self.torch = torch
        self.module = portable_lib._load_for_executorch(path)
        self.dynamic = meta["seq_len_policy"]["kind"] == "dynamic"
        self.by_len = {s["seq_len"]: s["name"] for s in meta["signatures"]}

    def run(self, ids, mask, types):
        name = "forward" if self.dynamic else self.by_len[ids.shape[1]]
        return self.module.run_method(name, [self.torch.from_numpy(a) for a in (ids, mask, types)])[0].numpy()[0]


def main(argv=None) -> int:
    import argparse

    import numpy as np

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("inputs")
    p.add_argument("out")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=1, help="timed passes over the inputs after one untimed pass")
    a = p.parse_args(argv)
    meta_path = os.path.join(a.bundle, "metadata.json")
    if not os.path.isfile(meta_path):
        _fail(f"{a.bundle} has no metadata.json; give a bundle directory made by tinybert-edge export")
    meta = json.load(open(meta_path, encoding="utf-8"))
    artifact = os.path.join(a.bundle, meta["artifact"])
    if not os.path.isfile(artifact):
        _fail(f"{artifact} is missing; copy the whole bundle directory")
    want = meta["files"][meta["artifact"]]["sha256"]
    if _sha256(artifact) != want:
        _fail(f"{artifact} does not match the sha256 in metadata.json; copy the bundle again")
    engines = {"tflite": _LiteRT, "executorch": _ExecuTorch}
    if meta["format"] not in engines:
        _fail(f"unknown bundle format {meta['format']!r}; expected tflite or executorch")
    t0 = time.perf_counter()
    engine = engines[meta["format"]](artifact, meta, a.threads)
    load_s = time.perf_counter() - t0
    pad = meta["tokenizer"]["pad_id"]
    padded = []
    for row in json.load(open(a.inputs, encoding="utf-8"))["rows"]:
        n = len(row["ids"])
        length = _pad_length(meta["seq_len_policy"], n)
        ids = np.full((1, length), pad, dtype=np.int64)
        ids[0, :n] = row["ids"]
        mask = np.zeros((1, length), dtype=np.int64)
        mask[0, :n] = 1
        types = np.zeros((1, length), dtype=np.int64)
        types[0, :n] = row["types"]
        padded.append((ids, mask, types))
    logits = [engine.run(*x).tolist() for x in padded]  # untimed first pass: the outputs compared
    ms = []
    for _ in range(a.runs):
        for x in padded:
            t = time.perf_counter()
            engine.run(*x)
            ms.append(1000 * (time.perf_counter() - t))
    out = {"format": meta["format"], "quantization": meta["quantization"]["name"], "logits": logits,
           "latency_ms": ms, "load_s": load_s, "threads": a.threads,
           "machine": {"arch": platform.machine(), "python": platform.python_version(), "numpy": np.__version__}}
    with open(a.out + ".tmp", "w", encoding="utf-8") as f:
        json.dump(out, f)
    os.replace(a.out + ".tmp", a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
