"""The early-exit rule (NeuCODEX), in NumPy: one implementation, batched, for the PyTorch evaluation,
the streaming server and the torch-free edge alike.

After timestep t the cloud holds the running mean of logits over 1..t. A confidence measure maps
it to [0, 1]; an :class:`ExitPolicy` exits once confidence ≥ threshold (and t ≥ ``min_steps``), or
at ``max_steps``. Measures, after published rules:

- ``max_softmax`` — the largest softmax probability (SEENN);
- ``entropy`` — 1 − normalised entropy of the softmax (DT-SNN, SEENN);
- ``margin`` — top-1 minus top-2 softmax probability (SNNCutoff).

Everything runs in float32 on the same running means, so a sample decided offline on a
``[T, B, K]`` batch and one decided step by step on the server exit at the same step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .errors import NeucodexError, short

MEASURES = ("max_softmax", "entropy", "margin")


def _unknown(measure) -> NeucodexError:
    return NeucodexError(f"unknown confidence measure {short(repr(measure))}; choose from {', '.join(MEASURES)}")


def confidence(mean_logits, measure: str) -> np.ndarray:
    """Confidence in [0, 1] (float32) for each row of ``[..., K]`` running-mean logits."""
    x = np.asarray(mean_logits, dtype=np.float32)
    e = np.exp(x - x.max(-1, keepdims=True))
    p = e / e.sum(-1, keepdims=True)
    if measure == "max_softmax":
        return p.max(-1)
    if measure == "entropy":
        k = p.shape[-1]
        if k == 1:
            return np.ones(p.shape[:-1], np.float32)
        h = -(p * np.log(np.maximum(p, np.float32(1e-12)))).sum(-1)
        return (np.float32(1.0) - h / np.float32(math.log(k))).astype(np.float32)
    if measure == "margin":
        if p.shape[-1] == 1:
            return p[..., 0]
        top2 = np.partition(p, p.shape[-1] - 2, axis=-1)[..., -2:]
        return top2[..., 1] - top2[..., 0]
    raise _unknown(measure)


@dataclass(frozen=True)
class ExitPolicy:
    measure: str = "max_softmax"
    threshold: float = 2.0  # > 1: never exit early
    min_steps: int = 1
    max_steps: int | None = None  # None: the model's T

    def __post_init__(self) -> None:
        if self.measure not in MEASURES:
            raise _unknown(self.measure)
        try:
            bad = math.isnan(float(self.threshold))
        except (TypeError, ValueError):
            bad = True
        if bad:
            raise NeucodexError(f"the early-exit threshold must be a number, got {short(repr(self.threshold))}")
        if self.min_steps < 1 or (self.max_steps is not None and self.max_steps < self.min_steps):
            raise NeucodexError(f"need 1 ≤ min_steps ≤ max_steps, got {self.min_steps} and {self.max_steps}")

    def last(self, T: int) -> int:
        """The step every sample has exited by."""
        return min(T, self.max_steps or T)

    def check(self, mean_logits, steps, T: int) -> tuple[np.ndarray, np.ndarray]:
        """After ``steps`` timesteps (1-based; one per row, or one for all) with running-mean logits
        ``[B, K]`` → (exit ``[B]`` bool, confidence ``[B]`` float32)."""
        conf = confidence(mean_logits, self.measure)
        t = np.asarray(steps)
        return (t >= self.last(T)) | ((t >= self.min_steps) & (conf >= self.threshold)), conf

    def decide(self, logits) -> tuple[np.ndarray, np.ndarray]:
        """Offline on ``[T, B, K]`` per-timestep logits: (exit step per sample, 1-based; the
        prediction at that step), by the running means and the same :meth:`check` as online."""
        x = np.asarray(logits, dtype=np.float32)
        T, B = x.shape[:2]
        sums = np.cumsum(x, axis=0, dtype=np.float32)
        steps = np.full(B, T, np.int64)
        decided = np.zeros(B, bool)
        for t in range(1, T + 1):
            now = self.check(sums[t - 1] / np.float32(t), t, T)[0] & ~decided
            steps[now] = t
            decided |= now
        preds = sums[steps - 1, np.arange(B)].argmax(-1)
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
