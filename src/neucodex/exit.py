"""Early exit over PyTorch logits: evaluating a policy on a split and calibrating its threshold.

The rule itself, :class:`~neucodex.policy.ExitPolicy` with its confidence measures, is NumPy
(:mod:`neucodex.policy`), shared with the server and the torch-free edge; this module feeds it
``[T, N, K]`` logits, and searches the threshold on a validation split.
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import NeucodexError
from .policy import MEASURES, ExitPolicy, confidence

__all__ = ["MEASURES", "ExitPolicy", "calibrate", "confidence", "evaluate_policy", "running_mean", "tradeoff_curve"]


def running_mean(logits: torch.Tensor) -> torch.Tensor:
    """``[T, B, K]`` per-timestep logits → running means over 1..t (the training losses' form)."""
    T = logits.shape[0]
    steps = torch.arange(1, T + 1, dtype=torch.float32, device=logits.device)
    return logits.float().cumsum(0) / steps.view(T, *[1] * (logits.dim() - 1))


def evaluate_policy(logits: torch.Tensor, labels: torch.Tensor, policy: ExitPolicy) -> dict:
    """Accuracy, mean timesteps and the exit-step histogram of ``policy`` on ``[T, N, K]`` logits."""
    steps, preds = policy.decide(logits.detach().float().cpu().numpy())
    T = logits.shape[0]
    y = labels.cpu().numpy()
    full = logits.float().sum(0).argmax(-1)
    return {
        "policy": policy.to_dict(),
        "accuracy": 100.0 * float((preds == y).astype(np.float32).mean()),  # float32, as the figures stored
        "accuracy_all_T": 100.0 * (full == labels).float().mean().item(),
        "mean_steps": float(steps.astype(np.float32).mean()),
        "histogram": np.bincount(steps - 1, minlength=T).tolist(),
        "steps": steps.tolist(),
        "predictions": preds.tolist(),
    }


def tradeoff_curve(logits: torch.Tensor, labels: torch.Tensor, measure: str, min_steps: int = 1) -> list[dict]:
    """(threshold, mean steps, accuracy) for every threshold that changes a decision."""
    conf = confidence(running_mean(logits).numpy(), measure)  # the running means the policy sees
    candidates = np.unique(np.concatenate([conf.ravel().astype(np.float64), [0.0, 2.0]]))
    if len(candidates) > 400:  # keep the search cheap: quantiles cover the curve
        candidates = np.unique(np.concatenate([np.quantile(candidates, np.linspace(0, 1, 400)), [0.0, 2.0]]))
    out = []
    for th in candidates:
        r = evaluate_policy(logits, labels, ExitPolicy(measure, float(th), min_steps))
        out.append({"threshold": float(th), "mean_steps": r["mean_steps"], "accuracy": r["accuracy"]})
    return out


def calibrate(
    logits: torch.Tensor,
    labels: torch.Tensor,
    measure: str,
    target_drop: float = 0.5,
    min_steps: int = 1,
    max_steps: float | None = None,
) -> tuple[ExitPolicy, list[dict]]:
    """The threshold with the fewest mean timesteps whose accuracy drop against running all T is
    ≤ ``target_drop`` percentage points, on a validation split (not the test split). With
    ``max_steps`` (a latency budget) instead: the most accurate threshold whose mean timesteps are
    ≤ ``max_steps``."""
    curve = tradeoff_curve(logits, labels, measure, min_steps)
    if max_steps is not None:
        ok = [c for c in curve if c["mean_steps"] <= max_steps + 1e-9]
        if not ok:
            raise NeucodexError(
                f"no threshold exits within {max_steps} mean timesteps (--min-steps {min_steps}): "
                f"allow at least {min(c['mean_steps'] for c in curve):.2f}"
            )
        best = max(ok, key=lambda c: (c["accuracy"], -c["mean_steps"], c["threshold"]))
        return ExitPolicy(measure, best["threshold"], min_steps), curve
    full = 100.0 * (logits.float().sum(0).argmax(-1) == labels).float().mean().item()
    ok = [c for c in curve if full - c["accuracy"] <= target_drop + 1e-9]
    best = min(ok, key=lambda c: (c["mean_steps"], -c["accuracy"], -c["threshold"]))
    return ExitPolicy(measure, best["threshold"], min_steps), curve
