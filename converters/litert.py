"""LiteRT (.tflite) export with litert-torch, validated through the ai-edge-litert runtime.

fp32: the eager graph converted as is. int8: litert-torch's full dynamic-range recipe (int8
weights, the word-embedding table included; activations stay float). Inputs are int32 of shape
(1, L) named args_0, args_1, args_2 = input_ids, attention_mask, token_type_ids.

Length-aware: litert-torch 0.10.0 cannot convert a symbolic sequence dimension of this model
(AssertionError on a float32[1, -9223372036854775808] shape), so `--dynamic` is refused here
and `--buckets` puts one signature per length ("seq32", "seq64", ...) into one file; the
weights are stored once.

Full-integer int8 (static activations, for NPU delegates) is not offered: see the README.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tinybert_edge.models import write_bytes_atomically

from .base import (ArtifactRunner, ExportError, ExportResult, ParityReport, SeqLenPolicy, converter_output,
                   eager_logits, load_for_export, pad_row, require, tokenize)

QUANTIZATIONS = ("none", "int8")
DEFAULT_SIGNATURE = "serving_default"


def signature_names(policy: SeqLenPolicy) -> list[tuple[str, int]]:
    """(signature name, length) pairs of a .tflite exported with `policy`."""
    if policy.kind == "buckets":
        return [(f"seq{b}", b) for b in policy.buckets]
    return [(DEFAULT_SIGNATURE, policy.max_len)]


class LiteRTRunner(ArtifactRunner):
    """Runs a .tflite classifier with the ai-edge-litert Interpreter, one example at a time.

    Args:
        path: the .tflite file.
        policy: its sequence-length policy (from the bundle's metadata.json).
        threads: interpreter threads (None: the runtime's default).
        pad_id: the tokenizer's [PAD] id.

    Raises:
        ExportError: the runtime is missing, the file is not a loadable LiteRT model, or its
            signatures do not match the policy.
    """

    def __init__(self, path: str | Path, policy: SeqLenPolicy | None = None, threads: int | None = None,
                 pad_id: int = 0):
        interp = require("ai_edge_litert.interpreter", "ai-edge-litert")
        self._open(path, policy, pad_id, "tflite")
        try:
            with converter_output():  # the runtime logs its delegate setup to stderr
                self._interp = interp.Interpreter(model_path=str(self.path), num_threads=threads)
            available = self._interp.get_signature_list()
            self._runners = {name: self._interp.get_signature_runner(name) for name, _ in signature_names(self.policy)
                             if name in available}
        except (ValueError, RuntimeError) as e:
            raise ExportError(f"{self.path} is not a loadable LiteRT model ({e}); export it again") from None
        wanted = [n for n, _ in signature_names(self.policy)]
        if sorted(self._runners) != sorted(wanted):
            raise ExportError(f"{self.path} has signatures {sorted(available)}, but its metadata expects {wanted}; "
                              "the bundle does not match its artifact, export it again")
        self._by_len = {length: name for name, length in signature_names(self.policy)}
        self._inputs = {}
        for name, r in self._runners.items():
            details = r.get_input_details()
            if len(details) != 3:
                raise ExportError(f"{self.path} signature {name} takes {len(details)} inputs, expected 3 "
                                  "(ids, mask, type ids)")
            self._inputs[name] = sorted(details)  # args_0.. in positional order

    def signature_for(self, length: int) -> str:
        return self._by_len[length]

    def run(self, signature, ids, mask, types):
        feed = {n: a.astype(np.int32) for n, a in zip(self._inputs[signature], (ids, mask, types))}
        out = self._runners[signature](**feed)
        return next(iter(out.values()))[0]


def export_tflite(model_dir: str | Path, out_path: str | Path, *, quantization: str = "none",
                  policy: SeqLenPolicy | None = None, texts: list[str] | None = None,
                  text_pairs: list[str] | None = None, seq_len: int | None = None) -> ExportResult:
    """Convert a sequence classifier to .tflite and check it against eager PyTorch.

    Args:
        model_dir: HF sequence-classifier directory (e.g. a distilled student).
        out_path: the .tflite file to write (atomically: temp file, then rename).
        quantization: "none" (fp32) or "int8" (dynamic range, embeddings included).
        policy: sequence-length policy (default fixed 128; "dynamic" is refused, see module doc).
        texts: inputs for the parity check (default: three built-in sentences).
        text_pairs: second segments for pair tasks, aligned with texts.
        seq_len: shorthand for a fixed policy of that length.

    Returns:
        ExportResult with the parity report measured through the ai-edge-litert runtime.

    Raises:
        ExportError: unknown quantization, bad policy, missing runtime, or a failed conversion.
        tinybert_edge.errors.ModelError: the directory is not a BERT-family classifier.
    """
    if quantization not in QUANTIZATIONS:
        raise ExportError(f"unknown quantization {quantization!r} for tflite; use one of {', '.join(QUANTIZATIONS)}")
    policy = policy or SeqLenPolicy.make(seq_len or 128)
    if policy.kind == "dynamic":
        raise ExportError("litert-torch 0.10.0 cannot convert a dynamic sequence length for BERT; "
                          "use --buckets 32,64,128 for a length-aware .tflite")
    out_path = Path(out_path)
    wrapper, tok, config = load_for_export(model_dir)
    policy.check(config.max_position_embeddings)
    texts = texts or ["a gripping, beautifully made film", "dull and far too long", "it was fine, i guess"]
    rows = tokenize(tok, texts, text_pairs, policy.max_len)
    litert_torch = require("litert_torch", "litert-torch")
    t0 = time.perf_counter()
    try:
        with converter_output():
            kwargs = {}
            if quantization == "int8":
                from litert_torch.generative.quantize import quant_recipes

                kwargs["quant_config"] = quant_recipes.full_dynamic_recipe()
            samples = {length: tuple(torch.from_numpy(a) for a in pad_row(*rows[0], length, tok.pad_token_id))
                       for _, length in signature_names(policy)}
            if policy.kind == "buckets":
                builder = None
                for name, length in signature_names(policy):
                    builder = (litert_torch if builder is None else builder).signature(name, wrapper, samples[length])
                edge = builder.convert(**kwargs)
            else:
                edge = litert_torch.convert(wrapper, samples[policy.max_len], **kwargs)
            with tempfile.TemporaryDirectory() as tmp:
                staged = Path(tmp) / out_path.name
                edge.export(str(staged))
                data = staged.read_bytes()
    except ExportError as e:
        raise ExportError(f"LiteRT conversion of {model_dir} failed: {e}") from None
    write_bytes_atomically(data, out_path)
    seconds = time.perf_counter() - t0
    reference = eager_logits(wrapper, rows, policy, tok.pad_token_id)
    candidate = LiteRTRunner(out_path, policy, pad_id=tok.pad_token_id).logits(rows)
    details = {"params": sum(p.numel() for p in wrapper.parameters()), "runtime": "ai-edge-litert", "input_dtype": "int32",
               "recipe": "litert_torch quant_recipes.full_dynamic_recipe (int8 weights incl. embeddings, "
                         "float activations)" if quantization == "int8" else "fp32",
               "signatures": [{"name": n, "seq_len": length} for n, length in signature_names(policy)]}
    return ExportResult("tflite", quantization, out_path, out_path.stat().st_size, seconds, policy,
                        ParityReport.compare(reference, candidate), details, reference, candidate)
