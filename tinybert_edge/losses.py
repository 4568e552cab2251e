"""TinyBERT distillation losses as pure functions.

Shapes: B batch, T tokens, h heads, d_S / d_T student / teacher hidden size, C classes.
`mask` is the tokenizer's attention mask, (B, T), 1 for real tokens and 0 for padding.
Unlike the public TinyBERT code, padding is excluded from every mean: padded key columns
AND padded query rows of attention maps, and padded tokens of hidden states.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attention_loss(student_scores: torch.Tensor, teacher_scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE between pre-softmax attention scores QK^T/sqrt(d), over valid (query, key) pairs.

    Args:
        student_scores: (B, h, T, T) student scores, without the additive padding mask.
        teacher_scores: (B, h, T, T) teacher scores for the mapped layer, same heads.
        mask: (B, T) attention mask.

    Returns:
        Scalar: mean squared error over every head and every entry whose query AND key
        are real tokens. This equals the paper's (1/h) sum_heads MSE with padding removed.

    Raises:
        ValueError: shapes differ (e.g. teacher and student head counts differ).
    """
    if student_scores.shape != teacher_scores.shape:
        raise ValueError(
            f"attention maps differ in shape: student {tuple(student_scores.shape)} vs teacher "
            f"{tuple(teacher_scores.shape)}; the student needs as many heads as the teacher"
        )
    m = mask.to(student_scores.dtype)
    pair = m[:, None, :, None] * m[:, None, None, :]  # (B, 1, T, T): query row valid AND key column valid
    sq = (student_scores - teacher_scores).pow(2) * pair
    n_valid = pair.sum() * student_scores.shape[1]
    return sq.sum() / n_valid.clamp_min(1.0)


def hidden_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE(H_S W, H_T) over real tokens; the caller applies the projection W.

    Used for both the embedding loss (layer 0, W_e) and hidden-state losses (W_h).

    Args:
        student_hidden: (B, T, d_T) projected student states H_S W.
        teacher_hidden: (B, T, d_T) teacher states.
        mask: (B, T) attention mask.

    Returns:
        Scalar: squared error summed over real tokens and features, divided by their count.
    """
    if student_hidden.shape != teacher_hidden.shape:
        raise ValueError(
            f"hidden states differ in shape after projection: {tuple(student_hidden.shape)} vs "
            f"{tuple(teacher_hidden.shape)}"
        )
    m = mask.to(student_hidden.dtype)[:, :, None]  # (B, T, 1)
    sq = (student_hidden - teacher_hidden).pow(2) * m
    return sq.sum() / (m.sum() * student_hidden.shape[-1]).clamp_min(1.0)


def prediction_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    scale_by_t2: bool = False,
) -> torch.Tensor:
    """Soft cross-entropy -softmax(z_T/t) . log_softmax(z_S/t), summed over classes.

    Args:
        student_logits: (B, C).
        teacher_logits: (B, C).
        temperature: t > 0; the paper uses 1.
        scale_by_t2: multiply by t^2 (Hinton et al.) so gradients keep their size when t > 1.

    Returns:
        Scalar: mean over the batch of the per-example soft cross-entropy.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    p_teacher = F.softmax(teacher_logits / temperature, dim=-1)
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    loss = -(p_teacher * log_p_student).sum(dim=-1).mean()
    return loss * temperature**2 if scale_by_t2 else loss


def regression_loss(student_outputs: torch.Tensor, teacher_outputs: torch.Tensor) -> torch.Tensor:
    """MSE between student and teacher outputs for regression tasks (targets are the teacher's).

    Args:
        student_outputs: (B, 1) or (B,).
        teacher_outputs: same shape.

    Returns:
        Scalar mean squared error.
    """
    return F.mse_loss(student_outputs.float(), teacher_outputs.float())
