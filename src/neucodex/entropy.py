"""The learned probability model of a spike code, conditioned on the same neuron's previous bit.

A code bit ``s[t, c, h, w]`` is 1 with probability ``p[k, c]``, where the context ``k`` is what the
receiver already holds when the bit arrives: ``0`` or ``1`` — the same neuron's bit at ``t - 1`` —
or ``2`` at the first timestep, which has no past. LIF codes are strongly correlated over time (a
neuron driven above threshold tends to fire again), so ``H(s_t | s_{t-1})`` is well below ``H(p)``.

As in CompressAI, one object owns both halves: :class:`ContextModel` (PyTorch) gives training its
differentiable bit count, ``-[s log2 p + (1 - s) log2 (1 - p)]`` summed over the code, and
:func:`fit_context_probs` counts the deployed code's frequencies; the codec's ``context`` format
(:mod:`neucodex.codec`, NumPy) codes exactly those probabilities with ANS, so the bits trained on
are the bits sent.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

CONTEXTS = 3
"""Context rows: previous bit 0, previous bit 1, first timestep (no past)."""
FIRST = 2


class ContextModel(nn.Module):
    """Learned ``p[k, c]`` (logits) and the code's expected bits under it.

    The previous bit enters as a mixture, ``p = s_{t-1} p[1] + (1 - s_{t-1}) p[0]``, which equals the
    table lookup on binary codes and lets the gradient reach the earlier spikes as well.
    """

    def __init__(self, channels: int, init_p: float = 0.1) -> None:
        super().__init__()
        logit = float(np.log(init_p / (1 - init_p)))
        self.logits = nn.Parameter(torch.full((CONTEXTS, channels), logit))

    @torch.no_grad()
    def init_from(self, code: torch.Tensor) -> None:
        """Start from the counted frequencies of a code ``[T, B, C, H, W]`` (no wasted first steps)."""
        p = torch.from_numpy(context_probs_from_counts(*context_counts(code))).to(self.logits)
        self.logits.copy_(torch.log(p) - torch.log1p(-p))

    def bits(self, code: torch.Tensor) -> torch.Tensor:
        """Expected bits per sample ``[B]`` of a code ``[T, B, C, H, W]`` (all T sent)."""
        code = code.float()
        log_p = nn.functional.logsigmoid(self.logits)  # log p(1)
        log_q = nn.functional.logsigmoid(-self.logits)  # log p(0)
        p = log_p.exp()[..., None, None]  # [K, C, 1, 1]
        first = _bits(code[:1], log_p[FIRST][:, None, None], log_q[FIRST][:, None, None])
        if code.shape[0] == 1:
            return first.flatten(2).sum(-1).sum(0)
        prev = code[:-1]
        pt = prev * p[1] + (1 - prev) * p[0]
        pt = pt.clamp(1e-6, 1 - 1e-6)
        rest = _bits(code[1:], torch.log(pt), torch.log1p(-pt))
        return first.flatten(2).sum(-1).sum(0) + rest.flatten(2).sum(-1).sum(0)

    def probs(self) -> np.ndarray:
        """``[3, C]`` float64 probabilities as the codec takes them."""
        return torch.sigmoid(self.logits.detach()).double().cpu().numpy()


def _bits(s: torch.Tensor, log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    return -(s * log_p + (1 - s) * log_q) / np.log(2.0)


@torch.no_grad()
def context_counts(code: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(ones, totals), each ``[3, C]``: how often a bit was 1, and how many bits, per context."""
    code = code.float()
    C = code.shape[2]
    ones, totals = np.zeros((CONTEXTS, C)), np.zeros((CONTEXTS, C))
    first = code[0]
    ones[FIRST] = first.sum(dim=(0, 2, 3)).double().cpu().numpy()
    totals[FIRST] = first[:, 0].numel()
    if code.shape[0] > 1:
        prev, cur = code[:-1], code[1:]
        for k, mask in ((0, 1 - prev), (1, prev)):
            ones[k] = (mask * cur).sum(dim=(0, 1, 3, 4)).double().cpu().numpy()
            totals[k] = mask.sum(dim=(0, 1, 3, 4)).double().cpu().numpy()
    return ones, totals


def context_probs_from_counts(ones: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Krichevsky–Trofimov estimates, ``[3, C]``: never 0 or 1, so every symbol stays codable."""
    return (np.asarray(ones, np.float64) + 0.5) / (np.asarray(totals, np.float64) + 1.0)


def conditional_entropy(ones: np.ndarray, totals: np.ndarray) -> tuple[float, float]:
    """(bits of ``H(s_t | context)``, bits of ``H(p)`` per channel without context) summed over
    the counted code: the floors a context-conditioned and a per-channel coder can reach."""

    def h(k: np.ndarray, n: np.ndarray) -> float:
        p = np.divide(k, n, out=np.zeros_like(k, dtype=np.float64), where=n > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            e = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
        return float(np.nansum(e * n))

    return h(ones, totals), h(ones.sum(0), totals.sum(0))
