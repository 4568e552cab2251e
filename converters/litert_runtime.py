"""The LiteRT runtime (ai-edge-litert's Interpreter): the one module that imports it.

Runs a .tflite classifier one example at a time with numpy inputs; no torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .runtime import ArtifactRunner, ExportError, SeqLenPolicy, quiet_native_output, require

DEFAULT_SIGNATURE = "serving_default"


def signature_names(policy: SeqLenPolicy) -> list[tuple[str, int]]:
    """(signature name, length) pairs of a .tflite exported with `policy`."""
    if policy.kind == "buckets":
        return [(f"seq{b}", b) for b in policy.buckets]
    return [(DEFAULT_SIGNATURE, policy.max_len)]


def interpreter_module():
    """ai_edge_litert.interpreter, or an ExportError naming the pip package."""
    return require("ai_edge_litert.interpreter", "ai-edge-litert")


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
        interp = interpreter_module()
        self._open(path, policy, pad_id, "tflite")
        try:
            with quiet_native_output():  # the runtime logs its delegate setup to stderr
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
