"""Quantization-aware distillation (QAD) for static int8 ExecuTorch artifacts.

Post-training static int8 leaves this kit's students at 92-96 % label agreement with fp32
(BENCHMARKS.md, "Full-integer int8"): one calibrated range per activation tensor cannot hold
what the fp32 student computes. QAD trains the student through the quantizer's fake-quant
nodes (PT2E `prepare_qat_pt2e`, the XNNPACK quantizer's static per-channel config) with the
fp32 model as its teacher (the prediction-layer loss of TinyBERT's step 2: soft cross-entropy
on the teacher's logits, plus an MSE on the logits, which also covers regression heads), the
same idea as the TinyBERT group's TernaryBERT. No labels are needed: any in-domain texts teach.

Why the batches are never padded: with padding masked after the softmax (the static export's
mask), a short row's softmax mass sits on padding keys, and padded positions would also shape
the fake-quant ranges (XNNPACK's histogram observers, executorch._static_on_unpadded_rows).
Rows are grouped by token length instead; a bucketed or fixed-length .pte is traced from the
converted graph, so its buckets take ranges learnt on real tokens. Whether the kept mass of a
short row in a long bucket survives int8 rounding (it could round to zero, and the
renormalisation divide 0 by 0) is measured, not assumed: the demo student's 200 shortest dev
rows (4-15 tokens) run through the 128-token method stayed finite and agreed on 99.5 % for
int8-static and int8-qat (BENCHMARKS.md); `export` validates every bucket it is given rows for.

Why LayerNorm stays in fp32: its variance spans decades within one tensor, so a static
per-tensor scale rounds small variances to zero (rsqrt(0) = inf); XNNPACK has no int8
LayerNorm either, so quantizing it would only add quantize/dequantize round trips.

Why the residual add before each LayerNorm stays in fp32 too (the Transformer's "Add & Norm"):
its output is the residual stream, where BERT's outlier dimensions reach ~200 while most
channels stay near 1, so one per-tensor int8 range leaves the ordinary channels a step or two.
Its output goes straight into the fp32 LayerNorm, so keeping it in fp32 costs no int8 kernel
(XNNPACK would dequantize for the LayerNorm anyway). The adds that only feed it stay fp32 for the
same reason (the split FFN output's two halves: summed in int8 they would share the outlier range
again). The linears' outputs themselves stay int8.

Why the FFN output linear is split by channels: see outliers.py (split_ffn_outliers); the split
linear's two halves are summed in fp32 with the residual add (above).

Why QAD starts from int8-static's ranges and keeps them (start_from_static_ranges): the QAT config's
activation observers are moving-average min/max, which follow each batch's extremes, while
int8-static's histogram observers choose the clipping range that minimises the error over the
calibration texts. On the demo student (PyTorch's reference graph, 1,250 dev and 1,132 test rows)
QAD with moving-average ranges ended at a mean |logit error| of 0.050, 1.46x int8-static's 0.034;
from int8-static's ranges, held, 300 steps at the default lr 3e-6 end at 0.027-0.029 (0.034-0.036 at
the old 1e-5, where Adam's steps on so small a loss wander; BENCHMARKS.md, "A retrained demo
student ... int8-qat from int8-static's ranges"). The weights' per-channel ranges still follow the
trained weights.
"""

from __future__ import annotations

import copy
import random
from collections import defaultdict

import torch
from executorch.backends.xnnpack.quantizer import xnnpack_quantizer as xq
from torch import nn
from torchao.quantization.pt2e.fake_quantize import disable_observer
from torchao.quantization.pt2e.observer import HistogramObserver, MovingAverageMinMaxObserver
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e
from tqdm.auto import tqdm

from .export import QadSettings
from .runtime import ExportError

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def is_layer_norm(node) -> bool:
    """Whether an exported graph node belongs to a LayerNorm module (kept in fp32)."""
    stack = node.meta.get("nn_module_stack") or {}
    return any("LayerNorm" in str(path) or "LayerNorm" in str(kind) for path, kind in stack.values())


def is_add_and_norm(node) -> bool:
    """Whether an exported graph node is an add whose sum flows, through adds only, into a LayerNorm
    (kept in fp32): the residual add, the sums before it (the embeddings' word + token-type sum, a
    ChannelSplitLinear's two halves) and nothing else."""
    if "add" not in str(node.target) or is_layer_norm(node):
        return False
    return _feeds_layer_norm(node)


# ops an exported eval-mode graph keeps between an add and the LayerNorm it feeds (BERT's dropout)
_PASS_THROUGH = ("dropout", "clone", "alias")


def _feeds_layer_norm(node) -> bool:
    for user in node.users:
        target = str(user.target)
        if is_layer_norm(user):
            return True
        if ("add" in target or any(k in target for k in _PASS_THROUGH)) and _feeds_layer_norm(user):
            return True
    return False


# the modules of the residual outlier split (outliers.py) whose joins stay fp32, by class (module
# path and name, so another module's name that merely contains these cannot match)
_SPLIT_JOINS = ("outliers.ResidualSplitLinear", "outliers.RowSplitLinear")
_PLACEMENT = "outliers.Placement"
# the ops a linear layer can take in an exported graph (torch.export keeps aten.linear; the rest in case
# a version decomposes it), so that the split's own linears are never taken for joins
_LINEAR_OPS = ("aten.linear.", "aten.addmm.", "aten.mm.", "aten.matmul.")


def _class_path(kind) -> str:
    """'package.module.Class' of an nn_module_stack entry's type (a class, or its name as a string)."""
    return f"{kind.__module__}.{kind.__qualname__}" if isinstance(kind, type) else str(kind)


def is_split_join(node) -> bool:
    """Whether an exported graph node joins the parts of the residual outlier split
    (outliers.ResidualSplitLinear, RowSplitLinear): the slices, the fp32 placement of the head rows
    (outliers.Placement) and the add, kept in fp32: quantizing the sum of the two partial products
    would put the outlier dimensions' range back on the ordinary ones (measured: 1.2-1.6 dB worse
    than the unsplit graph). The split's own linears stay int8."""
    stack = [_class_path(kind) for _, kind in (node.meta.get("nn_module_stack") or {}).values()]
    if not any(path.endswith(name) for path in stack for name in _SPLIT_JOINS):
        return False
    return not any(op in str(node.target) for op in _LINEAR_OPS) or stack[-1].endswith(_PLACEMENT)


def static_int8_quantizer(qat: bool) -> xq.XNNPACKQuantizer:
    """The XNNPACK quantizer with static per-channel int8; LayerNorm, the residual add before it and
    the residual outlier split's joins left in fp32 (see module doc)."""
    q = xq.XNNPACKQuantizer().set_global(
        xq.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False, is_qat=qat))
    q.set_filter_function(lambda node: not is_layer_norm(node) and not is_add_and_norm(node)
                          and not is_split_join(node))
    return q


def length_batches(rows: list[tuple[list[int], list[int]]], batch_size: int, seed: int) -> list[tuple]:
    """Unpadded batches: rows of one token length together, in a seeded order.

    Args:
        rows: (input_ids, token_type_ids) per text, already truncated.
        batch_size: rows per batch at most.
        seed: shuffles rows within a length and the order of batches.

    Returns:
        (input_ids, attention_mask, token_type_ids) int64 tensors of shape (b, length).
    """
    rng = random.Random(seed)
    groups: dict[int, list] = defaultdict(list)
    for ids, types in rows:
        if len(ids) >= 2:  # the exported graph's sequence dimension starts at 2
            groups[len(ids)].append((ids, types))
    batches = []
    for length in sorted(groups):
        group = groups[length]
        rng.shuffle(group)
        for i in range(0, len(group), batch_size):
            part = group[i:i + batch_size]
            ids = torch.tensor([r[0] for r in part], dtype=torch.long)
            types = torch.tensor([r[1] for r in part], dtype=torch.long)
            batches.append((ids, torch.ones_like(ids), types))
    rng.shuffle(batches)
    return batches


def _distill_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    loss = nn.functional.mse_loss(student, teacher)
    if student.shape[-1] > 1:  # classification: the paper's soft cross-entropy (as KL, same gradient)
        loss = loss + nn.functional.kl_div(student.log_softmax(-1), teacher.softmax(-1), reduction="batchmean")
    return loss


def _observed_inputs(graph_module: nn.Module) -> dict[str, str]:
    """Observer module name -> the name of the graph node it observes (its call's first argument)."""
    return {str(node.target): str(node.args[0]) for node in graph_module.graph.nodes
            if node.op == "call_module" and node.args}


def start_from_static_ranges(prepared: nn.Module, graph: nn.Module, calibration: list[tuple]) -> int:
    """Give every activation fake-quant of a QAT graph int8-static's calibrated range, and hold it.

    Args:
        prepared: prepare_qat_pt2e(graph, static_int8_quantizer(qat=True)); changed in place.
        graph: the exported module `prepared` was made from (not changed): int8-static's observers
            are placed on a copy of it, so each observer of the one graph watches the node that
            the same-named fake-quant of the other watches (checked).
        calibration: unpadded model inputs (real texts) that set the ranges.

    Returns:
        How many activation ranges were set (every one the graph has).

    Raises:
        ExportError: no calibration input, calibration that never reached a range, or a QAT
            activation fake-quant without a histogram observer on the same node in int8-static's graph.
    """
    if not calibration:
        raise ExportError("int8-qat's ranges start from int8-static's and need calibration texts; pass --qad-data TRAIN")
    reference = prepare_pt2e(copy.deepcopy(graph), static_int8_quantizer(qat=False))
    with torch.no_grad():
        for inputs in calibration:
            reference(*inputs)
    observers = dict(reference.named_modules())
    watched, watched_here = _observed_inputs(reference), _observed_inputs(prepared)
    fixed = 0
    for name, fake_quant in prepared.named_modules():
        inner = getattr(fake_quant, "activation_post_process", None)
        if type(inner) is not MovingAverageMinMaxObserver:  # weights' per-channel ranges follow training
            continue
        observer = observers.get(name)
        if not isinstance(observer, HistogramObserver) or watched.get(name) != watched_here.get(name):
            raise ExportError(f"int8-static's graph has no activation observer on the node {name} watches "
                              f"({watched_here.get(name)}), so int8-qat cannot start from its ranges; use --quantize "
                              "int8-static, or report this with your torch, torchao and executorch versions")
        if not torch.isfinite(observer.min_val).all():
            raise ExportError(f"int8-qat's calibration texts never reached {watched.get(name)}; pass more "
                              "--qad-data texts (the task's training file)")
        scale, zero_point = observer.calculate_qparams()
        # convert_pt2e reads the inner observer's qparams, so the range is set there as min/max; its
        # float32 (max - min) / 255 can land 1 ulp from int8-static's scale, and training takes the
        # observer's own qparams so that it trains with exactly the scale the artifact will have
        inner.min_val = ((observer.quant_min - zero_point) * scale).reshape(()).float()
        inner.max_val = ((observer.quant_max - zero_point) * scale).reshape(()).float()
        held_scale, held_zero_point = inner.calculate_qparams()
        fake_quant.scale.copy_(held_scale.reshape(fake_quant.scale.shape))
        fake_quant.zero_point.copy_(held_zero_point.reshape(fake_quant.zero_point.shape))
        fake_quant.disable_observer()
        fixed += 1
    return fixed


def quantization_aware_distill(student: nn.Module, teacher: nn.Module,
                               rows: list[tuple[list[int], list[int]]], max_len: int,
                               settings: QadSettings, progress: bool = True,
                               calibration: list[tuple] | None = None) -> tuple[nn.Module, dict]:
    """Train `student` through static-int8 fake quantization to match `teacher`, then convert it.

    The activation ranges are int8-static's (histogram observers over `calibration`), set before the
    first step and held; the weights' per-channel ranges follow the trained weights until
    `settings.freeze_step`.

    Args:
        student: the exportable classifier to quantize (e.g. with int8 word embeddings); not changed.
        teacher: the fp32 classifier whose logits are the targets (usually the same model in fp32).
        rows: tokenized training texts, unpadded.
        max_len: the longest sequence the artifact takes.
        settings: QadSettings.
        progress: show a progress bar.
        calibration: unpadded model inputs that set the activation ranges (None: the first 128
            training rows in the seeded batch order).

    Returns:
        (the converted module with quantize/dequantize nodes, ready to export per method;
         a summary: steps, first and last loss, batches, rows, calibration rows).

    Raises:
        ExportError: bad settings, no training row of at least 2 tokens, or activation ranges that
            cannot start from int8-static's (start_from_static_ranges).
    """
    settings.check()
    batches = length_batches(rows, settings.batch_size, settings.seed)
    if not batches:
        raise ExportError("quantization-aware distillation got no training text; pass the task's training file "
                          "(--qad-data TRAIN; labels are not needed)")
    if calibration is None:
        calibration = [tuple(t[i:i + 1] for t in batch) for batch in batches for i in range(batch[0].shape[0])][:128]
    with torch.random.fork_rng():  # seeded without moving the caller's global RNG
        torch.manual_seed(settings.seed)
        return _train_and_convert(student, teacher, batches, max_len, settings, progress, calibration)


def _train_and_convert(student, teacher, batches, max_len, settings, progress, calibration):
    batch_dim = torch.export.Dim("batch", min=1, max=max(settings.batch_size, 2))
    seq_dim = torch.export.Dim("seq", min=2, max=max_len)
    sample = next((b for b in batches if b[0].shape[0] >= 2 and b[0].shape[1] >= 3), None)
    if sample is None:  # torch.export needs a sample that is not 1 in a dynamic dimension
        sample = tuple(t.repeat(2, 1) for t in batches[0])
    exported = torch.export.export(copy.deepcopy(student), sample,
                                   dynamic_shapes={n: {0: batch_dim, 1: seq_dim} for n in INPUT_NAMES})
    # The exported graph is in eval form (no dropout): QAD matches the teacher's eval outputs
    prepared = prepare_qat_pt2e(exported.module(), static_int8_quantizer(qat=True))
    fixed = start_from_static_ranges(prepared, exported.module(), calibration)
    params = [p for p in prepared.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=0.0)
    was_training = teacher.training
    teacher.eval()
    losses = []
    freeze = settings.freeze_step
    bar = tqdm(range(settings.steps), desc="quantization-aware distillation", disable=not progress)
    for step in bar:
        if step == freeze:
            prepared.apply(disable_observer)
        x = batches[step % len(batches)]
        with torch.no_grad():
            target = teacher(*x)
        loss = _distill_loss(prepared(*x), target)
        if not torch.isfinite(loss):
            raise ExportError(f"quantization-aware distillation diverged at step {step} (loss {loss.item()}); "
                              "lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    teacher.train(was_training)
    head, tail = losses[:20], losses[-20:]
    summary = {"steps": settings.steps, "learning_rate": settings.learning_rate, "batch_size": settings.batch_size,
               "freeze_observers_after": freeze if freeze < settings.steps else None, "seed": settings.seed,
               "activation_ranges": {"from": "int8-static (histogram)", "calibration_rows": len(calibration),
                                     "tensors": fixed},
               "rows": sum(int(b[0].shape[0]) for b in batches), "batches": len(batches),
               "loss_first": sum(head) / len(head), "loss_last": sum(tail) / len(tail)}
    return convert_pt2e(prepared), summary
