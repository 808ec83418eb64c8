"""The task losses: cross-entropy over T (TET-style per timestep, weighted) and distillation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import ConfigError, OptimConfig
from ..exit import running_mean


def classification_loss(
    logits: torch.Tensor,
    y: torch.Tensor,
    per_timestep: bool,
    smoothing: float = 0.0,
    weights: list[float] | None = None,
) -> torch.Tensor:
    """CE on the mean output over T, or (TET-style) the mean CE of every cumulative output —
    weighted by ``weights`` (one per timestep) to make early outputs, which early exit acts on,
    count more."""
    if logits.dim() == 2:
        return F.cross_entropy(logits, y, label_smoothing=smoothing)
    if not per_timestep:
        return F.cross_entropy(logits.mean(0), y, label_smoothing=smoothing)
    T = logits.shape[0]
    flat = running_mean(logits).flatten(0, 1)
    ce = F.cross_entropy(flat, y.repeat(T), label_smoothing=smoothing, reduction="none").view(T, -1).mean(1)
    w = torch.ones_like(ce) if weights is None else torch.as_tensor(weights, dtype=ce.dtype, device=ce.device)
    return (ce * w).sum() / w.sum()


def check_timestep_weights(oc: OptimConfig, T: int, section: str) -> None:
    w = oc.timestep_weights
    if w is None:
        return
    if not oc.per_timestep_loss:
        raise ConfigError(
            f"{section}.timestep_weights weighs the per-timestep loss: set {section}.per_timestep_loss=true"
        )
    if len(w) != T or min(w) < 0 or sum(w) <= 0:
        raise ConfigError(
            f"{section}.timestep_weights must be {T} weights (one per timestep, >= 0, not all 0), got {w}"
        )


def distillation_loss(logits: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's KL from the teacher's softened output to the student's, × τ² (so its gradient
    scale does not depend on τ); over T, at every timestep's cumulative output, as the TET loss.

    Why: a co-inference model is its backbone with a lossy code in the middle; the backbone's own
    output says which wrong classes are near, which one label per image does not.
    """
    if logits.dim() == 3:
        teacher = running_mean(teacher) if teacher.dim() == 3 else teacher.expand_as(logits)  # a DNN: one output
        logits, teacher = running_mean(logits).flatten(0, 1), teacher.flatten(0, 1)
    log_p = F.log_softmax(logits / temperature, -1)
    return F.kl_div(log_p, F.log_softmax(teacher / temperature, -1), log_target=True, reduction="batchmean") * (
        temperature**2
    )
