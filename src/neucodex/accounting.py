"""Bits on the wire, counted from real encoded packets, and the three compression ratios.

Ratios, each named by what it is measured against:

- ``vs_float32``: the float32 feature tensor at the split point, once (DNN / BottleNet++ convention);
- ``vs_spikes``: the binary spike features at the split point over all T timesteps
  (SpikeBottleNet's convention: ResNet-50 RB16, 2048x4x4x4 = 131,072 bits → 512 bits = 256x);
- ``vs_input``: the raw input sample at 8 bits per value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from . import codec
from .bottleneck import CoInferenceModel
from .entropy import conditional_entropy, context_counts, context_probs_from_counts
from .errors import NeucodexError


@dataclass(frozen=True)
class BitReport:
    samples: int
    timesteps: float  # timesteps sent per sample (mean)
    payload_bits: float  # per sample, summed over the timesteps sent
    wire_bytes: float  # per sample, headers included
    float32_bits: int  # the split-point feature as float32, once
    spike_bits: int | None  # the split-point feature as binary spikes over T (SNN only)
    input_bits: int  # one input sample at 8 bits per value
    formats: dict[str, int]  # how many packets each format won
    per_sample_bits: tuple[int, ...] = field(default=(), repr=False)  # payload bits of each sample, in order
    per_sample_wire_bytes: tuple[int, ...] = field(default=(), repr=False)  # codec bytes of each sample, in order

    @property
    def vs_float32(self) -> float:
        return self.float32_bits / self.payload_bits if self.payload_bits else math.inf

    @property
    def vs_spikes(self) -> float | None:
        if self.spike_bits is None:
            return None
        return self.spike_bits / self.payload_bits if self.payload_bits else math.inf

    @property
    def vs_input(self) -> float:
        return self.input_bits / self.payload_bits if self.payload_bits else math.inf

    def to_dict(self) -> dict:
        """The means and ratios (per-sample bits left out: they would bloat checkpoint metadata)."""
        d = asdict(self)
        del d["per_sample_bits"], d["per_sample_wire_bytes"]
        d.update(vs_float32=self.vs_float32, vs_spikes=self.vs_spikes, vs_input=self.vs_input)
        return d


@torch.no_grad()
def measure_bits(
    model: CoInferenceModel,
    x: torch.Tensor,
    format: str = "auto",
    *,
    channel_probs: np.ndarray | None = None,
    context_probs: np.ndarray | None = None,
    steps: torch.Tensor | None = None,
    code: torch.Tensor | None = None,
) -> BitReport:
    """Encode every sample's code at every timestep it sends, one packet each, and count.

    ``x``: a batch ``[B, C, H, W]`` (static) or ``[T, B, C, H, W]`` (event frames).
    ``steps``: per-sample timesteps actually sent (early exit); default all T.
    SNN codes go through ``format`` (default ``auto``); DNN codes are sent as ``uint8``. Learned
    models (``channel_probs``, ``context_probs``) are those both ends of the runtime share.
    ``code``: the encoder's output for ``x`` when the caller already has it (an evaluation that
    just ran the model), so the edge is not run twice.
    """
    if code is None:
        edge = model.edge.eval()
        mode = model.step_mode
        edge.set_step_mode("m" if model.spiking else "s")
        code = edge(x)
        model.reset_state()
        model.set_step_mode(mode)
    if not model.spiking:
        code = code.unsqueeze(0)  # one "timestep"
    T, B = code.shape[:2]
    steps_sent = torch.full((B,), T) if steps is None else steps.to(torch.long).clamp(1, T)
    payload = wire = 0
    formats: dict[str, int] = {}
    per_sample, per_sample_wire = [], []
    fmt = format if model.spiking else "uint8"
    code = code.cpu().numpy()
    for b in range(B):
        sample = sample_wire = 0
        for t in range(int(steps_sent[b])):
            pkt = codec.encode(
                code[t, b],
                fmt,
                timestep=t,
                channel_probs=channel_probs,
                context_probs=context_probs,
                previous=code[t - 1, b] if t else None,
            )
            sample += (len(pkt) - codec.HEADER_BYTES) * 8
            sample_wire += len(pkt)
            name = codec.read_header(pkt)["format"]
            formats[name] = formats.get(name, 0) + 1
        per_sample.append(sample)
        per_sample_wire.append(sample_wire)
        payload += sample
        wire += sample_wire
    c, h, w = model.feature_shape
    sample_values = x[0].numel() if x.dim() == 4 else x[:, 0].numel()
    return BitReport(
        samples=B,
        timesteps=float(steps_sent.float().mean()),
        payload_bits=payload / B,
        wire_bytes=wire / B,
        float32_bits=c * h * w * 32,
        spike_bits=c * h * w * model.T if model.spiking else None,
        input_bits=sample_values * 8,
        formats=formats,
        per_sample_bits=tuple(per_sample),
        per_sample_wire_bytes=tuple(per_sample_wire),
    )


def measure_bits_batches(
    model: CoInferenceModel, batches: Iterable[torch.Tensor], format: str = "auto", **kw
) -> BitReport:
    """:func:`measure_bits` over many batches, combined per sample."""
    return combine([measure_bits(model, x, format, **kw) for x in batches])


def combine(reports: list[BitReport]) -> BitReport:
    """One report over the samples of several (same model), per-sample figures in order."""
    if not reports:
        raise NeucodexError("no batches to measure")
    n = sum(r.samples for r in reports)
    formats: dict[str, int] = {}
    for r in reports:
        for k, v in r.formats.items():
            formats[k] = formats.get(k, 0) + v
    mean = lambda attr: sum(getattr(r, attr) * r.samples for r in reports) / n  # noqa: E731
    return replace(
        reports[0],
        samples=n,
        timesteps=mean("timesteps"),
        payload_bits=mean("payload_bits"),
        wire_bytes=mean("wire_bytes"),
        formats=formats,
        per_sample_bits=tuple(b for r in reports for b in r.per_sample_bits),
        per_sample_wire_bytes=tuple(b for r in reports for b in r.per_sample_wire_bytes),
    )


@dataclass(frozen=True)
class CodeModels:
    """The learned probability models of a code, counted on the deployed (eval-mode) code, and
    the entropies they can reach on the counted samples (bits per sample, all T)."""

    channel_probs: np.ndarray  # [C]
    context_probs: np.ndarray  # [3, C]
    h_context_bits: float  # H(s_t | previous bit) per sample: the context coder's floor
    h_channel_bits: float  # H(p_c) per sample: the per-channel coder's floor
    samples: int

    def summary(self) -> dict:
        """The floors and the sample count (what a checkpoint's metrics keep)."""
        return {"h_context_bits": self.h_context_bits, "h_channel_bits": self.h_channel_bits, "samples": self.samples}


@torch.no_grad()
def fit_code_models(model: CoInferenceModel, batches: Iterable[torch.Tensor]) -> CodeModels:
    """Learned entropy models: each code channel's firing probability, and the same conditioned
    on the neuron's previous bit, over the samples in ``batches`` (model inputs, as for
    :func:`measure_bits`), in eval mode as deployed."""
    if not model.spiking:
        raise NeucodexError("learned channel probabilities are for spike codes; a DNN sends uint8")
    edge = model.edge.eval()
    mode = model.step_mode
    edge.set_step_mode("m")
    ones = totals = None
    samples = 0
    for x in batches:
        code = edge(x)  # [T, B, C', H', W']
        model.reset_state()
        k, n = context_counts(code)
        ones, totals = (k, n) if ones is None else (ones + k, totals + n)
        samples += code.shape[1]
    model.set_step_mode(mode)
    if not samples:
        raise NeucodexError("no samples to learn channel probabilities from")
    h_ctx, h_chan = conditional_entropy(ones, totals)
    return CodeModels(
        codec.probs_from_counts(ones.sum(0), totals.sum(0)[0]),
        context_probs_from_counts(ones, totals),
        h_ctx / samples,
        h_chan / samples,
        samples,
    )
