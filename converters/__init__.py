"""On-device converters and their registry.

Every format has one signature, `export(model_dir, out_path, *, quantization, seq_len, texts)
-> ExportResult`, whose result carries the artifact path, its size and a parity report
measured through the format's real runtime. Heavy runtimes are imported lazily.

Status (issue #3): LiteRT fp32 and int8 (dynamic range). ExecuTorch, length-aware artifacts,
bundles and the `export`/`predict` commands are still to come.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .base import ExportError, ExportResult, ParityReport


@dataclass(frozen=True)
class FormatSpec:
    """One row of the format table."""

    name: str
    suffix: str
    quantizations: tuple[str, ...]
    runtime_package: str
    export: Callable[..., ExportResult]


def _tflite(*args, **kwargs) -> ExportResult:
    from .litert import export_tflite

    return export_tflite(*args, **kwargs)


FORMATS: dict[str, FormatSpec] = {
    "tflite": FormatSpec("tflite", ".tflite", ("none", "int8"), "ai-edge-litert", _tflite),
}


def get_format(name: str) -> FormatSpec:
    """The registry entry for `name`.

    Raises:
        ExportError: unknown format.
    """
    if name not in FORMATS:
        raise ExportError(f"unknown format {name!r}; available: {', '.join(FORMATS)}")
    return FORMATS[name]


__all__ = ["ExportError", "ExportResult", "FORMATS", "FormatSpec", "ParityReport", "get_format"]
