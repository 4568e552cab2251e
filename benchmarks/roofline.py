"""The roofline line of a bench report: this machine's matmul peak on one core, and how much of
it each artifact reaches.

    python -m tinybert_edge.benchmarks.roofline OUT.json [--threads 1]

Peaks are large square GEMMs through PyTorch's CPU kernels (oneDNN: `torch.mm` for fp32,
`torch._int_mm` for int8 with int32 accumulation), best of several runs, in their own process
(like every bench row). An artifact's work is the matmul FLOPs of its Transformer at the row's mean
input length (the projections, the FFN and the two attention matmuls; embeddings, LayerNorm and
softmax are not counted), so "achieved" = FLOPs / p50 / peak is an upper bound on how busy the
matmul units were. The peak belongs to PyTorch's kernels, which may use units (AMX) that XNNPACK,
the kernel library of both on-device runtimes, does not.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch  # this measures PyTorch's kernels; the harness runs it in its own process

GEMM = 1024


def measure_peaks(threads: int = 1, repeats: int = 7) -> dict:
    """Best-of-`repeats` GFLOP/s of fp32 and GOP/s of int8 GEMMs of size GEMM x GEMM."""
    torch.set_num_threads(threads)
    a, b = torch.randn(GEMM, GEMM), torch.randn(GEMM, GEMM)
    qa = torch.randint(-128, 127, (GEMM, GEMM), dtype=torch.int8)
    qb = torch.randint(-128, 127, (GEMM, GEMM), dtype=torch.int8)
    ops = 2 * GEMM ** 3

    def best(fn) -> float:
        fn()  # warm-up: kernel selection, page faults
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return ops / min(times) / 1e9

    return {"threads": threads, "gemm": GEMM, "fp32_gflops": best(lambda: torch.mm(a, b)),
            "int8_gops": best(lambda: torch._int_mm(qa, qb)), "kernels": f"torch {torch.__version__} CPU (oneDNN)"}


def main(argv=None) -> int:
    argv = argv if argv is not None else sys.argv[1:]
    threads = int(argv[argv.index("--threads") + 1]) if "--threads" in argv else 1
    Path(argv[0]).write_text(json.dumps(measure_peaks(threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
