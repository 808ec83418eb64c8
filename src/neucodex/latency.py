"""End-to-end latency per sample of edge-only, cloud-only and co-inference, from measured compute.

Compute times are measured on this machine (:func:`measure_timings`); the edge's are multiplied
by ``device_factor`` (an edge CPU is slower than this one — say which factor you use). A link is
a bandwidth and a round-trip time. Co-inference follows what the runtime does: per timestep the
edge computes, sends one packet, and waits for the answer before sending the next; pipelined, it
computes timestep t+1 while t is in flight::

    per-step wait   w = bits_t / bandwidth + rtt + cloud_step + frame_overhead
    not pipelined   L = Σ_t (edge_step + w)
    pipelined       L = edge_step + Σ_t w + (steps − 1) · max(0, edge_step − w)
    edge-only       L = edge_full
    cloud-only      L = input_bits / bandwidth + rtt + cloud_full + frame_overhead

``frame_overhead`` is the runtime's own cost per frame: round trip minus cloud compute, measured
on loopback — from the run's live streaming, or by :func:`measure_frame_overhead` against a real
server started for it, or given; the report says which.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from .bottleneck import CoInferenceModel
from .errors import InvalidArgumentError
from .models import Backbone


@dataclass(frozen=True)
class Timings:
    """Milliseconds per sample (``*_full``) or per timestep (``*_step``) measured here."""

    edge_step: float  # head + encoder, one timestep
    cloud_step: float  # decoder + tail, one timestep
    edge_full: float  # the whole SNN, all T (edge-only)
    cloud_full: float  # the whole SNN, all T (cloud-only; the same network on the server)
    dnn_full: float | None = None  # the DNN twin, one pass
    frame_overhead_ms: float = 0.0  # the runtime's own cost per frame (threads, gRPC), beyond compute and link

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Link:
    bandwidth_bps: float
    rtt_ms: float

    def tx_ms(self, bits: float) -> float:
        return bits / self.bandwidth_bps * 1000.0


def co_inference_ms(
    t: Timings, link: Link, steps: float, bits_per_step: float, device_factor: float = 1.0, pipeline: bool = True
) -> float:
    edge = t.edge_step * device_factor
    wait = link.tx_ms(bits_per_step) + link.rtt_ms + t.cloud_step + t.frame_overhead_ms
    if not pipeline:
        return steps * (edge + wait)
    return edge + steps * wait + (steps - 1) * max(0.0, edge - wait)


def edge_only_ms(t: Timings, device_factor: float = 1.0, dnn: bool = False) -> float:
    full = t.dnn_full if dnn else t.edge_full
    if full is None:
        raise InvalidArgumentError("no DNN timing measured")
    return full * device_factor


def cloud_only_ms(t: Timings, link: Link, input_bits: float) -> float:
    return link.tx_ms(input_bits) + link.rtt_ms + t.cloud_full + t.frame_overhead_ms


def latency_table(
    t: Timings,
    bandwidths_bps: list[float],
    rtt_ms: float,
    *,
    input_bits: float,
    T: int,
    exit_steps: float,
    bits_per_step: float,
    device_factor: float,
    cloud_bits: float | None = None,
) -> list[dict]:
    """One row per bandwidth: every deployment's latency (ms) and co-inference's ratios.
    ``cloud_bits``: what cloud-only sends (e.g. an image file's bits; default the raw input)."""
    cloud_bits = input_bits if cloud_bits is None else cloud_bits
    rows = []
    for bw in bandwidths_bps:
        link = Link(bw, rtt_ms)
        row = {
            "bandwidth_mbps": bw / 1e6,
            "rtt_ms": rtt_ms,
            "edge_only_snn": edge_only_ms(t, device_factor),
            "edge_only_dnn": edge_only_ms(t, device_factor, dnn=True) if t.dnn_full is not None else None,
            "cloud_only": cloud_only_ms(t, link, cloud_bits),
            "cloud_only_raw": cloud_only_ms(t, link, input_bits),
            "co_inference": co_inference_ms(t, link, T, bits_per_step, device_factor, pipeline=False),
            "co_inference_pipelined": co_inference_ms(t, link, T, bits_per_step, device_factor),
            "co_inference_exit": co_inference_ms(t, link, exit_steps, bits_per_step, device_factor, pipeline=False),
            "co_inference_exit_pipelined": co_inference_ms(t, link, exit_steps, bits_per_step, device_factor),
        }
        best = row["co_inference_exit_pipelined"]
        row["speedup_vs_edge_only"] = row["edge_only_snn"] / best
        row["speedup_vs_cloud_only"] = row["cloud_only"] / best
        rows.append(row)
    return rows


def _medians_ms(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Each function's median time (ms) over ``repeats`` rounds that run them all in turn: a burst
    of other work on the cores then lands in one round of every part, not all of one part, and the
    median drops it — the ratios between the parts are what the latency model uses."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t0) * 1000.0)
    return {k: statistics.median(v) for k, v in times.items()}


@torch.no_grad()
def measure_timings(
    model: CoInferenceModel, backbone: Backbone, x: torch.Tensor, dnn: Backbone | None = None, repeats: int = 7
) -> Timings:
    """Single-sample times of each part on this machine; ``x`` one sample ``[C, H, W]`` or ``[T, C, H, W]``."""
    model.eval()
    T = model.T
    steps = [(x[t] if x.dim() == 4 else x).unsqueeze(0) for t in range(T)]
    edge, cloud = model.edge.set_step_mode("s"), model.cloud.set_step_mode("s")
    codes = [edge(s) for s in steps]
    model.reset_state()

    def run_edge():
        for s in steps:
            edge(s)
        model.reset_state()

    def run_cloud():
        for c in codes:
            cloud(c)
        model.reset_state()

    backbone.eval().set_step_mode("s")

    def run_full():
        for s in steps:
            backbone(s)
        backbone.reset_state()

    fns = {"edge": run_edge, "cloud": run_cloud, "full": run_full}
    if dnn is not None:
        dnn.eval().set_step_mode("s")
        flat = x.mean(0) if x.dim() == 4 else x
        fns["dnn"] = lambda: dnn(flat.unsqueeze(0))
    ms = _medians_ms(fns, repeats)
    return Timings(ms["edge"] / T, ms["cloud"] / T, ms["full"], ms["full"], ms.get("dnn"))


def measure_frame_overhead(checkpoint, samples, n: int = 8) -> float:
    """Per-frame runtime overhead (ms) on loopback: ``n`` samples through a real server started for
    the purpose and the edge client, mean round trip minus the server's own time per frame."""
    from .runtime import EdgeClient, Server

    server = Server(checkpoint, port=0).start()
    try:
        with EdgeClient(checkpoint, server.address, fallback="none") as client:
            results = [client.infer(samples[i][0]) for i in range(min(n, len(samples)))]
    finally:
        server.stop(1)
    ok = [r for r in results if r.status == "ok" and r.steps]
    if not ok:
        raise InvalidArgumentError("measuring the per-frame overhead: no sample was answered by the loopback server")
    return max(0.0, sum(r.rtt_ms - r.cloud_ms / r.steps for r in ok) / len(ok))
