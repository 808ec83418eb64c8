"""Client statistics: streaming a dataset through an edge client, and the summary of its samples
(the server's own metrics are in :mod:`.observe`)."""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Sequence

from tqdm import tqdm

from ..errors import InvalidArgumentError
from .stream import SampleResult, StreamingClient


def stream_dataset(
    client: StreamingClient, dataset, indices: Sequence[int] | None = None, progress: bool = True
) -> list[SampleResult]:
    """Every sample (or ``indices``) of ``dataset`` (indexable: ``(x, label)`` pairs) through ``client``, in order."""
    indices = range(len(dataset)) if indices is None else indices
    out = []
    for i in tqdm(indices, desc="edge", unit="sample", disable=not (progress and sys.stderr.isatty())):
        x, y = dataset[i]
        r = client.infer(x, None if y is None else int(y))
        r.index = int(i)
        out.append(r)
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``q`` % of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def stream_summary(results: Sequence[SampleResult]) -> dict:
    """Means per sample (per frame for round trips) and counts by status."""
    if not results:
        raise InvalidArgumentError("no samples were streamed")
    answered = [r for r in results if r.status != "failed"]
    labelled = [r for r in answered if r.label is not None]
    mean = lambda xs: statistics.fmean(xs) if xs else 0.0  # noqa: E731
    return {
        "samples": len(results),
        "status": {s: sum(r.status == s for r in results) for s in ("ok", "fallback", "failed")},
        "accuracy": 100.0 * mean([r.prediction == r.label for r in labelled]) if labelled else None,
        "mean_steps": mean([r.steps for r in answered]),
        "payload_bits": mean([r.payload_bits for r in results]),
        "wire_bytes": mean([r.wire_bytes for r in results]),
        "grpc_bytes": mean([r.grpc_bytes for r in results]),
        "edge_ms": mean([r.edge_ms for r in results]),
        "edge_ms_per_step": mean([r.edge_ms / r.steps_computed for r in results if r.steps_computed]),
        "rtt_ms": mean([r.rtt_ms for r in results if r.status == "ok"]),
        "cloud_ms": mean([r.cloud_ms for r in results if r.status == "ok"]),
        "latency_ms": mean([r.latency_ms for r in results]),
        "latency_ms_p95": percentile([r.latency_ms for r in results], 95),
        "retries": sum(r.retries for r in results),
    }


def stream_table(s: dict) -> str:
    acc = "n/a" if s["accuracy"] is None else f"{s['accuracy']:.2f}%"
    rows = [
        (
            "samples",
            f"{s['samples']} (ok {s['status']['ok']}, fallback {s['status']['fallback']}, "
            f"failed {s['status']['failed']})",
        ),
        ("accuracy", acc),
        ("timesteps per sample", f"{s['mean_steps']:.2f}"),
        ("payload bits per sample", f"{s['payload_bits']:.1f}"),
        ("on-wire bytes per sample", f"{s['wire_bytes']:.1f} codec packets, {s['grpc_bytes']:.1f} gRPC messages"),
        ("edge compute per step", f"{s['edge_ms_per_step']:.2f} ms"),
        ("round trip per frame", f"{s['rtt_ms']:.2f} ms (cloud compute {s['cloud_ms']:.2f} ms per sample)"),
        ("latency per sample", f"{s['latency_ms']:.2f} ms mean, {s['latency_ms_p95']:.2f} ms p95"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
