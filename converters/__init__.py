"""On-device converters and their registry (installed as `tinybert_edge.converters`).

Two sides. The runtime side (runtime.py, bundle.py, litert_runtime.py, executorch_runtime.py)
needs numpy, `tokenizers` and the format's runtime: it opens, verifies and runs bundles. The
export side (export.py, litert.py, executorch.py) needs torch and the converters. Every format
has one export signature,
`export(model_dir, out_path, *, quantization, policy, texts, text_pairs) -> ExportResult`
(ExecuTorch's static int8 schemes take a few more keywords: calibration size, int8-qat's texts),
whose result carries the artifact path, its size and a parity report measured through the
format's real runtime against eager PyTorch on the same inputs.

This registry is the one place that reaches each format's modules, lazily: importing the package
loads numpy and `tokenizers`, nothing else. A new export format is one more FormatSpec here, an
export module and a runtime module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .runtime import ExportError, ParityReport, SeqLenPolicy


@dataclass(frozen=True)
class FormatSpec:
    """One row of the format table.

    Attributes:
        name: registry name used on the command line.
        suffix: artifact file suffix.
        quantizations: what `export` accepts.
        policies: sequence-length policy kinds it supports.
        runtime_package: pip package of the runtime that validates and runs it.
        export: the export function.
        runner: (path, policy, pad_id, threads) -> ArtifactRunner.
        default_policy: seq_len -> the length-aware policy `export` uses when none is asked for
            (measured: BENCHMARKS.md, "Length-aware default").
        gptq: the quantizations whose linear weights are per-channel int8, which
            `--weight-rounding gptq` can round (converters/gptq.py).
        calibrated: the quantizations that calibrate activation ranges on --calibration-data.
        single_text: its consumer takes one text per input (MediaPipe Tasks' TextClassifier), so
            a model of sentence pairs cannot be exported to it.
    """

    name: str
    suffix: str
    quantizations: tuple[str, ...]
    policies: tuple[str, ...]
    runtime_package: str
    export: Callable
    runner: Callable
    default_policy: Callable[[int], SeqLenPolicy]
    gptq: tuple[str, ...] = ()
    calibrated: tuple[str, ...] = ()
    single_text: bool = False


def _missing(e: ImportError, package: str) -> ExportError:
    return ExportError(f"{e.name or package} is not installed; pip install {package} (or pip install -e \".[export]\")")


def _tflite(*args, **kwargs):
    try:
        from .litert import export_tflite
    except ImportError as e:
        raise _missing(e, "litert-torch") from None
    return export_tflite(*args, **kwargs)


def _tflite_runner(path, policy, pad_id=0, threads=None):
    from .litert_runtime import LiteRTRunner

    return LiteRTRunner(path, policy, threads=threads, pad_id=pad_id)


def _mediapipe(*args, **kwargs):
    return _tflite(*args, fmt="mediapipe", **kwargs)


def _fixed(seq_len: int) -> SeqLenPolicy:
    return SeqLenPolicy.make(seq_len)


def _pte(*args, **kwargs):
    try:
        from .executorch import export_pte
    except ImportError as e:
        raise _missing(e, "executorch") from None
    return export_pte(*args, **kwargs)


def _pte_runner(path, policy, pad_id=0, threads=None):
    from .executorch_runtime import ExecuTorchRunner

    return ExecuTorchRunner(path, policy, pad_id=pad_id, threads=threads)


def default_buckets(seq_len: int) -> SeqLenPolicy:
    """Buckets 32, 64, 128 ... up to seq_len (seq_len itself the last); fixed when seq_len <= 32."""
    buckets = [b for b in (32, 64, 128, 256) if b < seq_len]
    return SeqLenPolicy.make(seq_len, buckets=buckets) if buckets else SeqLenPolicy.make(seq_len)


def _dynamic(seq_len: int) -> SeqLenPolicy:
    return SeqLenPolicy.make(seq_len, dynamic=True)


FORMATS: dict[str, FormatSpec] = {
    "executorch": FormatSpec("executorch", ".pte", ("none", "int8", "int8-static", "int8-qat"), ("fixed", "dynamic", "buckets"),
                             "executorch", _pte, _pte_runner, _dynamic, gptq=("int8", "int8-static"),
                             calibrated=("int8-static",)),
    # int16x8: full-integer (int16 activations, int8 weights) for NPU delegates; int8-static: static
    # int8, with what ExecuTorch's int8-static keeps in fp32 in float; see litert_static.py
    "tflite": FormatSpec("tflite", ".tflite", ("none", "int8", "int16x8", "int8-static"), ("fixed", "buckets"),
                         "ai-edge-litert", _tflite, _tflite_runner, default_buckets,
                         gptq=("int8", "int16x8", "int8-static"),
                         calibrated=("int16x8", "int8-static")),
    # LiteRT with one fixed-length signature: what MediaPipe Tasks' TextClassifier loads as is
    # (int16x8 loads and runs in MediaPipe 1.2.2's TextClassifier: tests/test_int16x8.py)
    "mediapipe": FormatSpec("mediapipe", ".tflite", ("none", "int8", "int16x8"), ("fixed",), "ai-edge-litert",
                            _mediapipe, _tflite_runner, _fixed, gptq=("int8", "int16x8"), calibrated=("int16x8",),
                            single_text=True),
}


def get_format(name: str) -> FormatSpec:
    """The registry entry for `name`.

    Raises:
        ExportError: unknown format.
    """
    if name not in FORMATS:
        raise ExportError(f"unknown format {name!r}; available: {', '.join(FORMATS)}")
    return FORMATS[name]


__all__ = ["ExportError", "FORMATS", "FormatSpec", "ParityReport", "SeqLenPolicy", "get_format"]
