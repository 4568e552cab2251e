"""LiteRT (.tflite) export with litert-torch and validation with the ai-edge-litert runtime.

fp32: the eager graph converted as is. int8: litert-torch's full dynamic-range recipe (int8
weights, the embedding table included; activations stay float). Inputs are int32, shaped
(1, seq_len), in the order input_ids, attention_mask, token_type_ids.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tinybert_edge.models import write_bytes_atomically

from .base import ExportError, ExportResult, ParityReport, encode_fixed, load_for_export

QUANTIZATIONS = ("none", "int8")


def _require(module: str, package: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(f"{module} is not installed; pip install {package} (or pip install -e \".[export]\")") from None


class LiteRTRunner:
    """Runs a .tflite classifier with the ai-edge-litert Interpreter, one example at a time.

    Raises:
        ExportError: the runtime is missing or the file is not a loadable LiteRT model.
    """

    def __init__(self, path: str | Path, threads: int | None = None):
        interp = _require("ai_edge_litert.interpreter", "ai-edge-litert")
        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError(f"{self.path} does not exist; export it with tinybert-edge export --format tflite")
        try:
            self._interp = interp.Interpreter(model_path=str(self.path), num_threads=threads)
            self._interp.allocate_tensors()
            self._run = self._interp.get_signature_runner()
        except (ValueError, RuntimeError) as e:
            raise ExportError(f"{self.path} is not a loadable LiteRT model ({e}); export it again") from None
        self._names = sorted(self._run.get_input_details())  # args_0.. in positional order
        if len(self._names) != 3:
            raise ExportError(f"{self.path} takes {len(self._names)} inputs, expected 3 (ids, mask, type ids)")

    def logits(self, inputs: dict[str, torch.Tensor]) -> np.ndarray:
        """(n, C) logits for int tensors of shape (n, seq_len), run one row at a time."""
        rows = []
        ids, mask, types = inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"]
        for i in range(ids.shape[0]):
            feed = {n: t[i : i + 1].numpy().astype(np.int32) for n, t in zip(self._names, (ids, mask, types))}
            out = self._run(**feed)
            rows.append(next(iter(out.values()))[0])
        return np.stack(rows)


def export_tflite(model_dir: str | Path, out_path: str | Path, *, quantization: str = "none", seq_len: int = 128,
                  texts: list[str] | None = None) -> ExportResult:
    """Convert a sequence classifier to .tflite and check it against eager PyTorch.

    Args:
        model_dir: HF sequence-classifier directory (e.g. a distilled student).
        out_path: the .tflite file to write (atomically).
        quantization: "none" (fp32) or "int8" (dynamic range, embeddings included).
        seq_len: fixed input length.
        texts: inputs for the parity check (default: a few built-in sentences).

    Returns:
        ExportResult with the parity report measured through the ai-edge-litert runtime.

    Raises:
        ExportError: unknown quantization, bad seq_len, missing runtime, or a failed conversion.
        tinybert_edge.errors.ModelError: the directory is not a BERT-family classifier.
    """
    if quantization not in QUANTIZATIONS:
        raise ExportError(f"unknown quantization {quantization!r} for tflite; use one of {', '.join(QUANTIZATIONS)}")
    out_path = Path(out_path)
    wrapper, tok, config = load_for_export(model_dir)
    if not 3 <= seq_len <= config.max_position_embeddings:
        raise ExportError(f"seq-len {seq_len} is outside 3..{config.max_position_embeddings} (the model's "
                          "max_position_embeddings)")
    texts = texts or ["a gripping, beautifully made film", "dull and far too long", "it was fine, i guess"]
    inputs = encode_fixed(tok, texts, seq_len)
    litert_torch = _require("litert_torch", "litert-torch")
    sample = tuple(inputs[k][:1] for k in ("input_ids", "attention_mask", "token_type_ids"))
    t0 = time.perf_counter()
    try:
        if quantization == "int8":
            from litert_torch.generative.quantize import quant_recipes

            edge = litert_torch.convert(wrapper, sample, quant_config=quant_recipes.full_dynamic_recipe())
        else:
            edge = litert_torch.convert(wrapper, sample)
        with tempfile.TemporaryDirectory() as tmp:
            staged = Path(tmp) / out_path.name
            edge.export(str(staged))
            data = staged.read_bytes()
    except ExportError:
        raise
    except Exception as e:  # the converter raises many types
        raise ExportError(f"LiteRT conversion of {model_dir} failed: {type(e).__name__}: {e}") from None
    write_bytes_atomically(data, out_path)
    seconds = time.perf_counter() - t0
    with torch.inference_mode():
        reference = wrapper(**inputs).float().numpy()
    parity = ParityReport.compare(reference, LiteRTRunner(out_path).logits(inputs))
    return ExportResult("tflite", quantization, out_path, out_path.stat().st_size, seconds, seq_len, parity)
