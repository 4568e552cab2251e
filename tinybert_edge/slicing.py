"""Teacher-sliced initialisation: the student starts as a sub-network of its pre-trained teacher.

The paper initialises the student at random and relies on general distillation (GD on
Wikipedia, days on GPUs) to make it a language model. On one CPU machine GD cannot get far,
so the student is instead cut out of the teacher (the prune-then-distil line of work, e.g.
Minitron), then distilled as usual:

- layers: teacher layer g(m) for student layer m (the layer map);
- hidden dims: the d_S of d_T dimensions with the largest mean |hidden state| over the
  embedding output and every layer, on sample sentences; one set used everywhere
  (embeddings, LayerNorms, every projection), so the residual stream stays aligned;
- per head, query/key dims ranked by ||W_q row|| * ||W_k row|| (Q and K are cut together:
  QK^T sums over their common dims), value dims by ||W_v row|| * ||W_o column||;
- FFN units: the largest mean |GELU activation| on the same sentences, per layer.

Q and K are each scaled by (d_S_head / d_T_head)^(1/4): the student divides QK^T by
sqrt(d_S_head) instead of sqrt(d_T_head), and this keeps the scores on the teacher's scale.
Kept indices are stored sorted, so slicing a teacher to its own shape is the identity and
gives the teacher's outputs exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import ConfigError, ModelError
from .mapping import LayerMap
from .taskfiles import iter_corpus_texts, iter_task_examples

IMPORTANCE_SENTENCES = 512
IMPORTANCE_SEQ_LEN = 128


@dataclass(frozen=True)
class SlicePlan:
    """Which parts of the teacher make the student.

    Attributes:
        teacher_layers: g(1)..g(M), 1-based teacher layer per student layer.
        hidden: the kept teacher hidden dims, sorted (length d_S).
        qk: per student layer, kept query/key output dims of the teacher layer (flat index
            head * d_T_head + j), sorted; d_S_head per head.
        v: per student layer, kept value dims, same layout.
        ffn: per student layer, kept FFN units, sorted.
        qk_scale: factor applied to W_q, b_q, W_k and b_k.
    """

    teacher_layers: tuple[int, ...]
    hidden: tuple[int, ...]
    qk: tuple[tuple[int, ...], ...]
    v: tuple[tuple[int, ...], ...]
    ffn: tuple[tuple[int, ...], ...]
    qk_scale: float

    def to_dict(self) -> dict:
        return {"teacher_layers": list(self.teacher_layers), "hidden_dims": len(self.hidden),
                "head_dims": len(self.qk[0]) if self.qk else 0, "ffn_units": len(self.ffn[0]) if self.ffn else 0,
                "qk_scale": self.qk_scale}


def check_fits(teacher_config, num_layers: int, hidden_size: int, intermediate_size: int, num_heads: int) -> None:
    """Refuse a student shape that is not a sub-network of the teacher.

    Raises:
        ConfigError: more layers, hidden dims, head dims or FFN units than the teacher, a
            different head count, or a teacher whose embeddings are factorised (ELECTRA-small).
    """
    t = teacher_config
    t_head = t.hidden_size // t.num_attention_heads
    problems = []
    if num_layers > t.num_hidden_layers:
        problems.append(f"{num_layers} layers > the teacher's {t.num_hidden_layers}")
    if hidden_size > t.hidden_size:
        problems.append(f"hidden {hidden_size} > the teacher's {t.hidden_size}")
    if intermediate_size > t.intermediate_size:
        problems.append(f"FFN {intermediate_size} > the teacher's {t.intermediate_size}")
    if num_heads != t.num_attention_heads:
        problems.append(f"{num_heads} heads != the teacher's {t.num_attention_heads} (head dims are cut, heads kept)")
    elif hidden_size // num_heads > t_head:
        problems.append(f"head dim {hidden_size // num_heads} > the teacher's {t_head}")
    if getattr(t, "embedding_size", t.hidden_size) != t.hidden_size:
        problems.append(f"the teacher's embeddings are factorised ({t.embedding_size} -> {t.hidden_size})")
    if problems:
        raise ConfigError(
            "the student does not fit inside the teacher for a sliced init: " + "; ".join(problems)
            + ". Choose a smaller student (--layers/--hidden/--ffn/--heads), or start from random weights "
            "with --init random (the paper's init)")


def sample_texts(path: str | Path, n: int = IMPORTANCE_SENTENCES, *, corpus: bool, seed: int = 0) -> list[str]:
    """Up to `n` texts drawn evenly from a task file or corpus (reservoir sampling, fixed seed).

    One pass over the file whatever its size; the same file gives the same texts, in file
    order, so the importance ranking does not depend on how rows happen to be sorted.

    Raises:
        DataError: the file is missing or malformed (the data module's messages).
    """
    rows = iter_corpus_texts(path) if corpus else iter_task_examples(path, require_label=False)
    rng = random.Random(seed)
    keep: list[tuple[int, str]] = []
    for i, ex in enumerate(rows):
        if len(keep) < n:
            keep.append((i, ex.text))
        else:
            j = rng.randrange(i + 1)
            if j < n:
                keep[j] = (i, ex.text)
    keep.sort()
    return [t for _, t in keep]


def _layers(base: nn.Module):
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if layers is None:
        raise ModelError(f"{type(base).__name__} has no encoder.layer list; sliced init needs a BERT-family encoder")
    return layers


@torch.inference_mode()
def measure_importance(teacher: nn.Module, tokenizer, texts: list[str], *, max_seq_len: int = IMPORTANCE_SEQ_LEN,
                       batch_size: int = 32) -> dict[str, torch.Tensor]:
    """Activation statistics of the teacher on sample texts (padding excluded).

    Args:
        teacher: BERT-family model (encoder or classifier).
        tokenizer: its tokenizer.
        texts: sample sentences.

    Returns:
        {"hidden": (d_T,) mean |h| over the embedding output and all layers, "ffn": (N, F)
        mean |GELU activation| per teacher layer}, float64.

    Raises:
        ConfigError: no texts.
    """
    if not texts:
        raise ConfigError("no sample texts to rank the teacher's units on; give a non-empty corpus or task file")
    base = getattr(teacher, "base_model", teacher)
    layers = _layers(base)
    was_training = teacher.training
    teacher.eval()
    d = teacher.config.hidden_size
    hidden = torch.zeros(d, dtype=torch.float64)
    ffn = torch.zeros(len(layers), teacher.config.intermediate_size, dtype=torch.float64)
    tokens = 0
    current_mask: list[torch.Tensor] = []

    def ffn_hook(i):
        def hook(_m, _inp, out):  # out: (B, T, F), after the activation
            ffn[i] += (out.abs().double() * current_mask[0][..., None]).sum((0, 1))
        return hook

    handles = [layer.intermediate.register_forward_hook(ffn_hook(i)) for i, layer in enumerate(layers)]
    try:
        for s in range(0, len(texts), batch_size):
            enc = tokenizer(texts[s:s + batch_size], padding=True, truncation=True, max_length=max_seq_len,
                            return_tensors="pt")
            mask = enc["attention_mask"].double()  # (B, T)
            current_mask[:] = [mask]
            out = base(**enc, output_hidden_states=True)
            for h in out.hidden_states:  # L+1 of (B, T, d)
                hidden += (h.abs().double() * mask[..., None]).sum((0, 1))
            tokens += int(mask.sum())
    finally:
        for h in handles:
            h.remove()
        teacher.train(was_training)
    n_states = len(layers) + 1
    return {"hidden": hidden / (tokens * n_states), "ffn": ffn / tokens}


def _top(scores: torch.Tensor, k: int) -> tuple[int, ...]:
    """Indices of the k largest scores, ties to the lower index, returned sorted."""
    order = torch.argsort(-scores, stable=True)[:k]
    return tuple(sorted(int(i) for i in order))


def plan_slice(teacher: nn.Module, layer_map: LayerMap, *, hidden_size: int, intermediate_size: int,
               importance: dict[str, torch.Tensor]) -> SlicePlan:
    """Choose the kept layers, hidden dims, head dims and FFN units.

    Args:
        teacher: the model to cut.
        layer_map: student layer m takes teacher layer g(m).
        hidden_size, intermediate_size: the student's d_S and FFN width.
        importance: from measure_importance.

    Returns:
        SlicePlan.
    """
    cfg = teacher.config
    check_fits(cfg, layer_map.student_layers, hidden_size, intermediate_size, cfg.num_attention_heads)
    heads = cfg.num_attention_heads
    t_head, s_head = cfg.hidden_size // heads, hidden_size // heads
    hidden = _top(importance["hidden"], hidden_size)
    cols = torch.tensor(hidden)
    layers = _layers(getattr(teacher, "base_model", teacher))
    qk, v, ffn = [], [], []
    for n in layer_map.teacher_for_student:
        layer = layers[n - 1]
        sa, so = layer.attention.self, layer.attention.output
        q_norm = sa.query.weight.detach()[:, cols].double().norm(dim=1)  # (d_T,) one per output dim
        k_norm = sa.key.weight.detach()[:, cols].double().norm(dim=1)
        v_norm = sa.value.weight.detach()[:, cols].double().norm(dim=1)
        o_norm = so.dense.weight.detach()[cols, :].double().norm(dim=0)  # (d_T,) one per value dim
        qk_l, v_l = [], []
        for h in range(heads):
            lo = h * t_head
            qk_l += [lo + j for j in _top((q_norm * k_norm)[lo:lo + t_head], s_head)]
            v_l += [lo + j for j in _top((v_norm * o_norm)[lo:lo + t_head], s_head)]
        qk.append(tuple(qk_l))
        v.append(tuple(v_l))
        ffn.append(_top(importance["ffn"][n - 1], intermediate_size))
    return SlicePlan(tuple(layer_map.teacher_for_student), hidden, tuple(qk), tuple(v), tuple(ffn),
                     (s_head / t_head) ** 0.25)


def sliced_state_dict(teacher: nn.Module, plan: SlicePlan) -> dict[str, torch.Tensor]:
    """The student encoder's weights cut from the teacher's (keys of `teacher.base_model`).

    Raises:
        ModelError: a weight of the teacher's encoder that this kit does not know how to cut.
    """
    base = getattr(teacher, "base_model", teacher)
    h = torch.tensor(plan.hidden)
    d_t = teacher.config.hidden_size
    out: dict[str, torch.Tensor] = {}
    params = dict(base.embeddings.named_parameters())
    for name, w in base.embeddings.state_dict().items():
        if name not in params:  # persistent buffers (position ids): no hidden dim
            out[f"embeddings.{name}"] = w.clone()
        elif w.shape[-1] != d_t:
            raise ModelError(f"cannot slice embeddings.{name} of shape {tuple(w.shape)}; use --init random")
        else:
            out[f"embeddings.{name}"] = w[..., h].clone()
    layers = _layers(base)
    for m, n in enumerate(plan.teacher_layers):
        t = layers[n - 1]
        qk, v, f = torch.tensor(plan.qk[m]), torch.tensor(plan.v[m]), torch.tensor(plan.ffn[m])
        s = plan.qk_scale
        pre = f"encoder.layer.{m}."
        sa, ao = t.attention.self, t.attention.output
        cut = {
            "attention.self.query.weight": sa.query.weight[qk][:, h] * s,
            "attention.self.query.bias": sa.query.bias[qk] * s,
            "attention.self.key.weight": sa.key.weight[qk][:, h] * s,
            "attention.self.key.bias": sa.key.bias[qk] * s,
            "attention.self.value.weight": sa.value.weight[v][:, h],
            "attention.self.value.bias": sa.value.bias[v],
            "attention.output.dense.weight": ao.dense.weight[h][:, v],
            "attention.output.dense.bias": ao.dense.bias[h],
            "attention.output.LayerNorm.weight": ao.LayerNorm.weight[h],
            "attention.output.LayerNorm.bias": ao.LayerNorm.bias[h],
            "intermediate.dense.weight": t.intermediate.dense.weight[f][:, h],
            "intermediate.dense.bias": t.intermediate.dense.bias[f],
            "output.dense.weight": t.output.dense.weight[h][:, f],
            "output.dense.bias": t.output.dense.bias[h],
            "output.LayerNorm.weight": t.output.LayerNorm.weight[h],
            "output.LayerNorm.bias": t.output.LayerNorm.bias[h],
        }
        known = set(cut)
        unknown = [k for k, _ in t.named_parameters() if k not in known]
        if unknown:
            raise ModelError(f"teacher layer {n} has weights this kit cannot slice ({unknown[:3]}); use --init random")
        out.update({pre + k: w.detach().clone() for k, w in cut.items()})
    pooler = getattr(base, "pooler", None)
    if pooler is not None:
        out["pooler.dense.weight"] = pooler.dense.weight.detach()[h][:, h].clone()
        out["pooler.dense.bias"] = pooler.dense.bias.detach()[h].clone()
    return out


def load_sliced(student: nn.Module, teacher: nn.Module, plan: SlicePlan) -> None:
    """Copy the sliced teacher weights into `student` (encoder, or classifier whose head stays new).

    Raises:
        ModelError: the student's encoder has a weight the plan does not cover, or a shape differs.
    """
    base = getattr(student, "base_model", student)
    state = sliced_state_dict(teacher, plan)
    own = base.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise ModelError(f"sliced weights do not match the student (missing {missing[:3]}, unexpected {extra[:3]})")
    for k, w in state.items():
        if own[k].shape != w.shape:
            raise ModelError(f"sliced {k} has shape {tuple(w.shape)}, the student expects {tuple(own[k].shape)}")
    base.load_state_dict(state, strict=True)
