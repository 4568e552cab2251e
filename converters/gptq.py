"""GPTQ rounding of the student's linear weights to the int8 grid the exporters use.

Why: every int8 artifact the kit ships (ExecuTorch and LiteRT dynamic int8, and the full-integer
recipes) rounds each linear's weights per output channel to the nearest step of max|row| / 127.
On the demo student that rounding alone moves 0.5 % of dev labels (weight-only probe,
BENCHMARKS.md), which is most of what separates a16w8 LiteRT (98.2-98.7 %) from issue #14's
99 % bar. Rounding to the nearest step minimises each weight's error; GPTQ (Frantar et al.,
"GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers", 2023)
minimises the error of the linear's *output* on real inputs instead: it rounds one input column
at a time and spreads that column's error over the columns not yet rounded, weighted by the
inverse of the input Hessian H = X^T X of calibration rows (the Optimal Brain Surgeon update,
through the Cholesky factor of H^-1 so that the sequence of updates is exact).

The result is an ordinary float model whose linear weights already sit on the int8 grid
(w = q * scale, with the scale every per-channel min/max quantizer computes from that row), so
every exporter downstream reproduces the same integers without knowing GPTQ was used. Where
the updates would move a row's largest weight, it is pinned to +-127 steps (its own value before
rounding), so the downstream scale is the same and the integers are reproduced exactly;
`gptq_round_model` counts the rows where that holds (all, unless a row is all zeros). A quantizer
that floors its scales (ExecuTorch's XNNPACK quantizer: 2^-12) stores rows whose weights all stay
under 127 x the floor on the floor's grid; rounded with `min_scale` set to that floor, those rows
are rounded on that grid and left unpinned, and the integers are reproduced there too. Rounded
without it, a floored quantizer re-rounds them.

Pure PyTorch: the core package stays free of ExecuTorch and LiteRT, and this module needs
neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class GptqReport:
    """What gptq_round_model did.

    Attributes:
        linears: names of the rounded nn.Linear modules, in model order.
        tokens: calibration token rows seen by the encoder's linears (padding excluded).
        exact_rows: output channels whose integers a per-channel min/max quantizer, run on the
            rounded weights (int8_codes), stores unchanged; `rows` is all of them.
        rows: output channels rounded in all.
        output_error: per linear, relative output error ||X(W_q - W)^T|| / ||X W^T|| on the
            calibration rows, for nearest rounding and for GPTQ.
    """

    linears: list[str] = field(default_factory=list)
    tokens: int = 0
    exact_rows: int = 0
    rows: int = 0
    output_error: dict[str, dict[str, float]] = field(default_factory=dict)


class NonFiniteHessian(ValueError):
    """A linear's input Hessian holds NaN or inf: its calibration inputs were not finite."""


def per_channel_scale(weight: torch.Tensor, bits: int = 8, min_scale: float = 0.0) -> torch.Tensor:
    """Symmetric per-output-channel scale of a per-channel int8 quantizer.

    Args:
        weight: (out, in) weight.
        bits: weight bits (8: max|row| / 127, as XNNPACK's and ai-edge-quantizer's int8 weights).
        min_scale: the quantizer's floor on a scale (XNNPACK's weight observers: eps 2^-12,
            executorch.XNNPACK_WEIGHT_EPS; ai-edge-quantizer: none, 0).

    Returns:
        (out,) scales; an all-zero row gets 1 without a floor, the floor with one.
    """
    qmax = 2 ** (bits - 1) - 1
    amax = weight.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax) if min_scale <= 0 else torch.zeros_like(amax))
    return torch.clamp(scale, min=min_scale)


def int8_codes(weight: torch.Tensor, bits: int = 8, min_scale: float = 0.0) -> torch.Tensor:
    """The integers a per-channel symmetric min/max quantizer stores for `weight`.

    Args:
        weight: (out, in) weight (computed in float32, as the exporters compute them).
        bits, min_scale: see per_channel_scale.

    Returns:
        (out, in) int32 tensor of integers in [-(2^(bits-1) - 1), 2^(bits-1) - 1].
    """
    qmax = 2 ** (bits - 1) - 1
    w = weight.detach().to(torch.float32)
    return torch.clamp(torch.round(w / per_channel_scale(w, bits, min_scale)[:, None]), -qmax, qmax).to(torch.int32)


def round_nearest(weight: torch.Tensor, bits: int = 8, min_scale: float = 0.0) -> torch.Tensor:
    """Per-channel symmetric rounding to the nearest step (what the exporters do), dequantized.

    Args:
        weight: (out, in) weight.
        bits, min_scale: see per_channel_scale.

    Returns:
        (out, in) weight on the grid, in `weight`'s dtype.
    """
    qmax = 2 ** (bits - 1) - 1
    s = per_channel_scale(weight, bits, min_scale)[:, None]
    return torch.clamp(torch.round(weight / s), -qmax, qmax) * s


def gptq_round(weight: torch.Tensor, hessian: torch.Tensor, *, bits: int = 8, damp: float = 0.01,
               block: int = 128, min_scale: float = 0.0) -> torch.Tensor:
    """GPTQ-round one linear weight onto the per-channel int8 grid of its own rows.

    Args:
        weight: (out, in) float weight.
        hessian: (in, in) X^T X of the linear's inputs (any positive scale).
        bits: weight bits (8: integers in [-127, 127]).
        damp: added to H's diagonal as a fraction of its mean (GPTQ's 1 %), so H^-1 exists
            when some inputs never vary.
        block: columns updated together (lazy batch updates; the result does not depend on it).
        min_scale: the downstream quantizer's floor on a row's scale (per_channel_scale).

    Returns:
        (out, in) float32 weight equal to q * scale with q integer, |q| <= 2^(bits-1) - 1 and
        scale = per_channel_scale(weight, bits, min_scale).

    Raises:
        ValueError: shapes that do not match.
        NonFiniteHessian: a Hessian with NaN or inf (inputs that were not finite).
    """
    w = weight.detach().to(torch.float64).clone()
    rows, cols = w.shape
    if hessian.shape != (cols, cols):
        raise ValueError(f"hessian {tuple(hessian.shape)} does not match a weight with {cols} input columns")
    if not torch.isfinite(hessian).all():
        raise NonFiniteHessian("a linear whose calibration inputs are not finite (NaN or inf)")
    qmax = 2 ** (bits - 1) - 1
    scale = per_channel_scale(w, bits, min_scale)
    h = hessian.detach().to(torch.float64).clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    # Largest-Hessian columns first ("act order"): their errors get the most columns to absorb them.
    # The grid is per output row, so the order cannot change a row's scale.
    perm = torch.argsort(torch.diag(h), descending=True)
    w, h = w[:, perm], h[perm][:, perm]
    # Each row's largest weight sets its scale. It is pinned to +-qmax (its value before any
    # update), so a per-channel min/max quantizer downstream computes the same scale and
    # reproduces every integer exactly; the updates absorb the pin's error like any other. A row
    # whose scale is the floor (every weight under qmax * min_scale) keeps that scale whatever
    # its largest integer is, so it is not pinned (-1 matches no column).
    anchor = w.abs().argmax(dim=1)
    anchor_value = torch.sign(w[torch.arange(rows), anchor]) * qmax * scale
    anchor[w.abs().amax(dim=1) / qmax < min_scale] = -1
    h += damp * torch.mean(torch.diag(h)) * torch.eye(cols, dtype=h.dtype)
    # Upper Cholesky factor of H^-1: row i holds the OBS update for column i given that columns
    # < i are already fixed, so the sequential updates below are exact.
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    q = torch.zeros_like(w)
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = w1[:, i]
            qc = torch.clamp(torch.round(col / scale), -qmax, qmax) * scale
            pinned = anchor == i1 + i
            qc[pinned] = anchor_value[pinned]
            q[:, i1 + i] = qc
            e = (col - qc) / hinv1[i, i]
            w1[:, i:] -= e[:, None] * hinv1[i, i:][None, :]
            err1[:, i] = e
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    out = torch.empty_like(q)
    out[:, perm] = q
    return out.to(torch.float32)


def _relative_output_error(weight: torch.Tensor, rounded: torch.Tensor, hessian: torch.Tensor) -> float:
    """||X (W_q - W)^T|| / ||X W^T|| from H = X^T X, without keeping X."""
    d = (rounded.double() - weight.double())
    num = torch.einsum("oi,ij,oj->", d, hessian, d)
    den = torch.einsum("oi,ij,oj->", weight.double(), hessian, weight.double())
    return float(torch.sqrt(num.clamp_min(0) / den.clamp_min(1e-30)))


@torch.no_grad()
def linear_hessians(model: nn.Module, batches, *, progress=None) -> tuple[dict[str, torch.Tensor], int]:
    """X^T X of every nn.Linear's input over the calibration batches, padding excluded.

    Args:
        model: a sequence classifier in eval mode.
        batches: iterable of dicts of model inputs, each with an `attention_mask`.
        progress: optional callable(batch_index) after each batch.

    Returns:
        ({module name: float64 (in, in) Hessian}, number of non-padding tokens seen).
    """
    hessians: dict[str, torch.Tensor] = {}
    current: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(module, args, _output):
            x = args[0].detach()
            if x.dim() == 3:  # (batch, tokens, features): keep real tokens only
                x = x[current["mask"]]
            x = x.reshape(-1, x.shape[-1]).double()
            h = hessians.get(name)
            hessians[name] = x.T @ x if h is None else h + x.T @ x
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    tokens = 0
    try:
        for k, batch in enumerate(batches):
            current["mask"] = batch["attention_mask"].bool()
            tokens += int(current["mask"].sum())
            model(**batch)
            if progress:
                progress(k)
    finally:
        for h in handles:
            h.remove()
    return hessians, tokens


@torch.no_grad()
def gptq_round_model(model: nn.Module, batches, *, bits: int = 8, damp: float = 0.01,
                     progress=None, min_scale: float = 0.0) -> GptqReport:
    """GPTQ-round every nn.Linear weight of `model` in place (biases and all other weights kept).

    Every linear sees the fp32 model's inputs (one calibration pass), not the inputs of the
    already-rounded layers before it; that keeps it one forward pass for all layers.

    Args:
        model: a sequence classifier (e.g. a TinyBERT student, or the export wrapper around one),
            eval mode, called as model(**batch).
        batches: calibration batches (dicts of model inputs with `attention_mask`); real,
            in-domain texts the scored split does not contain (e.g. the training split).
        bits: weight bits (8 for the kit's int8 artifacts).
        damp: see gptq_round.
        progress: optional callable(batch_index).
        min_scale: the downstream quantizer's floor on a row's scale (per_channel_scale).

    Returns:
        A GptqReport.

    Raises:
        ValueError: no calibration batch, or no nn.Linear in the model.
        NonFiniteHessian: a linear whose calibration inputs were not finite (named).
    """
    batches = list(batches)
    if not batches:
        raise ValueError("GPTQ needs at least one calibration batch")
    hessians, tokens = linear_hessians(model, batches, progress=progress)
    if not hessians:
        raise ValueError("the model has no nn.Linear to round")
    # every Hessian checked before any weight is rounded, so an error leaves the model as it was
    for name, h in hessians.items():
        if not torch.isfinite(h).all():
            raise NonFiniteHessian(f"{name}: a linear whose calibration inputs are not finite (NaN or inf)")
    report = GptqReport(tokens=tokens)
    for name, module in model.named_modules():
        if name not in hessians:
            continue
        w, h = module.weight.data, hessians[name]
        rounded = gptq_round(w, h, bits=bits, damp=damp, min_scale=min_scale)
        report.output_error[name] = {"nearest": _relative_output_error(w, round_nearest(w, bits, min_scale), h),
                                     "gptq": _relative_output_error(w, rounded, h)}
        # GPTQ's integers (on the original scales) against what a downstream quantizer stores
        q = torch.round(rounded.double() / per_channel_scale(w, bits, min_scale).double()[:, None]).to(torch.int32)
        report.exact_rows += int((int8_codes(rounded, bits, min_scale) == q).all(dim=1).sum())
        report.rows += w.shape[0]
        module.weight.data.copy_(rounded.to(w.dtype))
        report.linears.append(name)
    return report
