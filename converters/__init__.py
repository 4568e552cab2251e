"""On-device converters and their registry.

Every format has one signature,
`export(model_dir, out_path, *, quantization, policy, texts, text_pairs) -> ExportResult`,
whose result carries the artifact path, its size and a parity report measured through the
format's real runtime against eager PyTorch on the same inputs. Heavy runtimes are imported
lazily, so `import converters` costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .base import ExportError, ExportResult, ParityReport, SeqLenPolicy


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
        runner: (path, policy, pad_id) -> ArtifactRunner.
    """

    name: str
    suffix: str
    quantizations: tuple[str, ...]
    policies: tuple[str, ...]
    runtime_package: str
    export: Callable[..., ExportResult]
    runner: Callable


def _tflite(*args, **kwargs) -> ExportResult:
    from .litert import export_tflite

    return export_tflite(*args, **kwargs)


def _tflite_runner(path, policy, pad_id=0, threads=None):
    from .litert import LiteRTRunner

    return LiteRTRunner(path, policy, threads=threads, pad_id=pad_id)


def _pte(*args, **kwargs) -> ExportResult:
    from .executorch import export_pte

    return export_pte(*args, **kwargs)


def _pte_runner(path, policy, pad_id=0, threads=None):
    from .executorch import ExecuTorchRunner

    return ExecuTorchRunner(path, policy, pad_id=pad_id)


FORMATS: dict[str, FormatSpec] = {
    "executorch": FormatSpec("executorch", ".pte", ("none", "int8", "int8-static"), ("fixed", "dynamic", "buckets"),
                             "executorch", _pte, _pte_runner),
    "tflite": FormatSpec("tflite", ".tflite", ("none", "int8"), ("fixed", "buckets"), "ai-edge-litert", _tflite,
                         _tflite_runner),
}


def get_format(name: str) -> FormatSpec:
    """The registry entry for `name`.

    Raises:
        ExportError: unknown format.
    """
    if name not in FORMATS:
        raise ExportError(f"unknown format {name!r}; available: {', '.join(FORMATS)}")
    return FORMATS[name]


__all__ = ["ExportError", "ExportResult", "FORMATS", "FormatSpec", "ParityReport", "SeqLenPolicy", "get_format"]
