"""Run a bundle's artifact on pre-tokenized inputs with the kit's runtime side: numpy, `tokenizers`,
jsonschema and the format's runtime, no torch for .tflite.

This is what runs on the aarch64 side of the ARM check (`tinybert_edge.benchmarks.arm_emulation`,
under qemu-user), and it runs as is on a real board:

    pip install --no-deps tinybert-edge && pip install ai-edge-litert numpy tokenizers jsonschema
    python3 -m tinybert_edge.benchmarks.arm_runner BUNDLE_DIR inputs.json out.json [--threads N] [--runs N]

It opens the bundle like every other reader (metadata.json validated against its schema, every
sha256 checked), pads each row with the kit's one pad rule and runs the matching signature (LiteRT)
or method (ExecuTorch, which needs the executorch and torch wheels). inputs.json holds {"rows":
[{"ids": [...], "types": [...]}]}, made by the host from the same bundle's tokenizer. out.json gets
the artifact's outputs, per-row latencies and the machine.

Exit status: 0 ok, 2 bad input (missing file, sha256 mismatch, bad metadata, unknown format).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from tinybert_edge.converters.bundle import load_bundle
from tinybert_edge.errors import KitError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("inputs")
    p.add_argument("out")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=1, help="timed passes over the inputs after one untimed pass")
    a = p.parse_args(argv)
    try:
        t0 = time.perf_counter()
        bundle = load_bundle(a.bundle)
        runner = bundle.runner(threads=a.threads)
        load_s = time.perf_counter() - t0
        with open(a.inputs, encoding="utf-8") as f:
            rows = [(r["ids"], r["types"]) for r in json.load(f)["rows"]]
    except (KitError, OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    outputs = [runner.run_row(*row).tolist() for row in rows]  # untimed first pass: the outputs compared
    ms = []
    for _ in range(a.runs):
        for row in rows:
            t = time.perf_counter()
            runner.run_row(*row)
            ms.append(1000 * (time.perf_counter() - t))
    out = {"format": bundle.format, "quantization": bundle.metadata["quantization"]["name"], "logits": outputs,
           "latency_ms": ms, "load_s": load_s, "threads": a.threads,
           "machine": {"arch": platform.machine(), "python": platform.python_version(), "numpy": np.__version__}}
    with open(a.out + ".tmp", "w", encoding="utf-8") as f:
        json.dump(out, f)
    os.replace(a.out + ".tmp", a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
