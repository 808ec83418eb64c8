"""Dynamic early exit over timesteps (NeuCODEX): stop when the running output is confident.

After timestep t the cloud holds the running mean of logits over 1..t. A confidence measure
maps it to [0, 1]; the :class:`ExitPolicy` exits once confidence ≥ threshold (and t ≥
``min_steps``), or at ``max_steps``. Measures, after published rules:

- ``max_softmax`` — the largest softmax probability (SEENN);
- ``entropy`` — 1 − normalised entropy of the softmax (DT-SNN, SEENN);
- ``margin`` — top-1 minus top-2 softmax probability (SNNCutoff).

The same policy object decides offline on a ``[T, B, K]`` batch and online one step at a time
(the streaming runtime), and both give the same decision for the same sample.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .errors import NeucodexError, short

MEASURES = ("max_softmax", "entropy", "margin")


def confidence(mean_logits: torch.Tensor, measure: str) -> torch.Tensor:
    """Confidence in [0, 1] for each row of ``[..., K]`` running-mean logits."""
    p = torch.softmax(mean_logits.float(), dim=-1)
    if measure == "max_softmax":
        return p.max(-1).values
    if measure == "entropy":
        k = p.shape[-1]
        h = -(p * torch.log(p.clamp_min(1e-12))).sum(-1)
        return 1.0 - h / math.log(k) if k > 1 else torch.ones_like(h)
    if measure == "margin":
        top2 = p.topk(min(2, p.shape[-1]), dim=-1).values
        return top2[..., 0] - (top2[..., 1] if top2.shape[-1] > 1 else 0.0)
    raise NeucodexError(f"unknown confidence measure {short(repr(measure))}; choose from {', '.join(MEASURES)}")


def running_mean(logits: torch.Tensor) -> torch.Tensor:
    """``[T, B, K]`` per-timestep logits → running means over 1..t."""
    T = logits.shape[0]
    steps = torch.arange(1, T + 1, dtype=torch.float32, device=logits.device)
    return logits.float().cumsum(0) / steps.view(T, *[1] * (logits.dim() - 1))


@dataclass(frozen=True)
class ExitPolicy:
    measure: str = "max_softmax"
    threshold: float = 2.0  # > 1: never exit early
    min_steps: int = 1
    max_steps: int | None = None  # None: the model's T

    def __post_init__(self) -> None:
        if self.measure not in MEASURES:
            raise NeucodexError(
                f"unknown confidence measure {short(repr(self.measure))}; choose from {', '.join(MEASURES)}"
            )
        try:
            bad = math.isnan(float(self.threshold))
        except (TypeError, ValueError):
            bad = True
        if bad:
            raise NeucodexError(f"the early-exit threshold must be a number, got {short(repr(self.threshold))}")
        if self.min_steps < 1 or (self.max_steps is not None and self.max_steps < self.min_steps):
            raise NeucodexError(f"need 1 ≤ min_steps ≤ max_steps, got {self.min_steps} and {self.max_steps}")

    def check(self, sum_logits: torch.Tensor, t: int | torch.Tensor, T: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Online: after ``t`` timesteps (1-based; an int, or one per row ``[B]``) with logits summed
        so far ``[B, K]`` → (exit, confidence)."""
        last = min(T, self.max_steps or T)
        steps = torch.as_tensor(t)
        conf = confidence(sum_logits.float() / (steps[:, None] if steps.dim() else steps), self.measure)
        return (steps >= last) | ((steps >= self.min_steps) & (conf >= self.threshold)), conf

    def decide_rows(self, mean_logits: torch.Tensor, steps: list[int], T: int) -> tuple[list[bool], list[float]]:
        """The streaming server's form of :meth:`check`, a few small tensor ops fewer per batch:
        ``[B, K]`` running means after ``steps[b]`` timesteps → (exit, confidence) per row as Python
        values. The confidence and its float32 comparison with the threshold are the same tensor
        ops as :meth:`check`'s; only the exact integer tests run in Python."""
        last = min(T, self.max_steps or T)
        conf = confidence(mean_logits, self.measure)
        confident = (conf >= self.threshold).tolist()
        exits = [t >= last or (t >= self.min_steps and c) for t, c in zip(steps, confident, strict=True)]
        return exits, conf.tolist()

    def should_exit(self, sum_logits: torch.Tensor, t: int, T: int) -> torch.Tensor:
        return self.check(sum_logits, t, T)[0]

    def decide(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Offline on ``[T, B, K]``: (exit step per sample, 1-based; prediction at that step).

        Uses the same running sums and the same decision as the step-by-step path.
        """
        T = logits.shape[0]
        sums = logits.float().cumsum(0)
        steps = torch.full((logits.shape[1],), T, dtype=torch.long)
        decided = torch.zeros(logits.shape[1], dtype=torch.bool)
        for t in range(1, T + 1):
            now = self.should_exit(sums[t - 1], t, T) & ~decided
            steps[now] = t
            decided |= now
        preds = (sums[steps - 1, torch.arange(logits.shape[1])]).argmax(-1)
        return steps, preds

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> ExitPolicy:
        """The policy a checkpoint stores (``exit_policy`` in model.json); none stored: never exit early.

        Checked field by field, so a tampered file fails here with one line, not later in a session.
        """
        if not d:
            return cls()
        if not isinstance(d, dict):
            raise NeucodexError(f"an exit policy must be an object, got {type(d).__name__}")
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise NeucodexError(
                f"unknown exit-policy field {unknown[0]!r}; fields: measure, threshold, min_steps, max_steps"
            )
        th = d.get("threshold", 2.0)
        if isinstance(th, bool) or not isinstance(th, int | float) or not math.isfinite(th):
            raise NeucodexError(f"exit-policy threshold must be a number, got {th!r}")
        for key in ("min_steps", "max_steps"):
            v = d.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise NeucodexError(f"exit-policy {key} must be an integer, got {v!r}")
        if not isinstance(d.get("measure", "max_softmax"), str):
            raise NeucodexError(f"exit-policy measure must be a string, got {d['measure']!r}")
        return cls(d.get("measure", "max_softmax"), float(th), d.get("min_steps", 1), d.get("max_steps"))


def evaluate_policy(logits: torch.Tensor, labels: torch.Tensor, policy: ExitPolicy) -> dict:
    """Accuracy, mean timesteps and the exit-step histogram of ``policy`` on ``[T, N, K]`` logits."""
    steps, preds = policy.decide(logits)
    T = logits.shape[0]
    full = logits.float().sum(0).argmax(-1)
    return {
        "policy": policy.to_dict(),
        "accuracy": 100.0 * (preds == labels).float().mean().item(),
        "accuracy_all_T": 100.0 * (full == labels).float().mean().item(),
        "mean_steps": steps.float().mean().item(),
        "histogram": torch.bincount(steps - 1, minlength=T).tolist(),
        "steps": steps.tolist(),
        "predictions": preds.tolist(),
    }


def tradeoff_curve(logits: torch.Tensor, labels: torch.Tensor, measure: str, min_steps: int = 1) -> list[dict]:
    """(threshold, mean steps, accuracy) for every threshold that changes a decision."""
    conf = confidence(running_mean(logits), measure)
    candidates = np.unique(np.concatenate([conf.flatten().numpy(), [0.0, 2.0]]))
    if len(candidates) > 400:  # keep the search cheap: quantiles cover the curve
        candidates = np.unique(np.concatenate([np.quantile(candidates, np.linspace(0, 1, 400)), [0.0, 2.0]]))
    out = []
    for th in candidates:
        r = evaluate_policy(logits, labels, ExitPolicy(measure, float(th), min_steps))
        out.append({"threshold": float(th), "mean_steps": r["mean_steps"], "accuracy": r["accuracy"]})
    return out


def calibrate(
    logits: torch.Tensor, labels: torch.Tensor, measure: str, target_drop: float = 0.5, min_steps: int = 1
) -> tuple[ExitPolicy, list[dict]]:
    """The threshold with the fewest mean timesteps whose accuracy drop against running all T is
    ≤ ``target_drop`` percentage points, on a validation split (not the test split)."""
    curve = tradeoff_curve(logits, labels, measure, min_steps)
    full = 100.0 * (logits.float().sum(0).argmax(-1) == labels).float().mean().item()
    ok = [c for c in curve if full - c["accuracy"] <= target_drop + 1e-9]
    best = min(ok, key=lambda c: (c["mean_steps"], -c["accuracy"], -c["threshold"]))
    return ExitPolicy(measure, best["threshold"], min_steps), curve
