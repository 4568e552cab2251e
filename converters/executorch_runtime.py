"""The ExecuTorch runtime (its Python bindings, portable kernels + XNNPACK): the one module that
imports it. ExecuTorch's Python runtime takes torch tensors, so this side does import torch.
"""

from __future__ import annotations

from pathlib import Path

import torch  # ExecuTorch's Python bindings take and return torch tensors

from .runtime import ArtifactRunner, ExportError, SeqLenPolicy, quiet_native_output, require


def method_names(policy: SeqLenPolicy) -> list[tuple[str, int]]:
    """(method name, traced length) pairs of a .pte exported with `policy`."""
    if policy.kind == "buckets":
        return [(f"seq{b}", b) for b in policy.buckets]
    return [("forward", policy.max_len)]


def portable_lib():
    """executorch.extension.pybindings.portable_lib, or an ExportError naming the pip package."""
    return require("executorch.extension.pybindings.portable_lib", "executorch")


class ExecuTorchRunner(ArtifactRunner):
    """Runs a .pte classifier with ExecuTorch's Python runtime (portable kernels + XNNPACK).

    Args:
        path: the .pte file.
        policy: its sequence-length policy (from the bundle's metadata.json).
        pad_id: the tokenizer's [PAD] id.
        threads: size of ExecuTorch's thread pool (None: leave it as it is).

    Raises:
        ExportError: runtime missing, file not a loadable program, or its methods do not match.
    """

    def __init__(self, path: str | Path, policy: SeqLenPolicy | None = None, pad_id: int = 0,
                 threads: int | None = None):
        rt = portable_lib()
        self._open(path, policy, pad_id, "executorch")
        if threads is not None:
            rt._unsafe_reset_threadpool(threads)
        try:
            with quiet_native_output():  # the runtime logs CPU probing lines to stderr
                self._module = rt._load_for_executorch(str(self.path))
            available = set(self._module.method_names())
        except (RuntimeError, ValueError) as e:
            raise ExportError(f"{self.path} is not a loadable ExecuTorch program ({e}); export it again") from None
        wanted = [n for n, _ in method_names(self.policy)]
        if not set(wanted) <= available:
            raise ExportError(f"{self.path} has methods {sorted(available)}, but its metadata expects {wanted}; "
                              "the bundle does not match its artifact, export it again")
        self._by_len = {length: name for name, length in method_names(self.policy)}

    def signature_for(self, length: int) -> str:
        return "forward" if self.policy.kind == "dynamic" else self._by_len[length]

    def run(self, signature, ids, mask, types):
        inputs = [torch.from_numpy(a) for a in (ids, mask, types)]
        try:
            return self._module.run_method(signature, inputs)[0].numpy()[0]
        except RuntimeError as e:
            raise ExportError(f"{self.path}: method {signature} failed on inputs of length {ids.shape[1]} ({e})") \
                from None
