"""The figures of a run's report: accuracy, bits, energy, latency — what ``report.json`` holds.

A run directory holds a backbone checkpoint (``backbone/``), one or more co-inference checkpoints
(``coinference-*/``), optionally a sweep (``sweep/results.json``) and a live runtime run
(``runtime.json``, written by ``neucodex demo``). The report evaluates the co-inference checkpoint
(the calibrated one, if any) on test samples, counts bits from real packets, energy from
operation counts with measured firing rates, and latency from measured compute times.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..accounting import combine, measure_bits
from ..baselines import CodecPoint, codec_curve
from ..checkpoint import CheckpointError, load_checkpoint, read_info
from ..data import stratified, stratified_subset
from ..data.events import recording_sizes
from ..energy import OpCounts, coinference_energy, split_point_rows
from ..evaluate import check_fits, load_split, predict, resolve_device, to_model_input, with_data
from ..exit import evaluate_policy
from ..latency import latency_table, measure_frame_overhead, measure_timings
from ..models import create_model
from ..profiles import HARDWARE, radio_profile
from .schema import Accuracy, CloudOnly, FrameOverhead, Report, SplitEnergy

BANDWIDTHS = [1e6, 10e6, 100e6]
CODEC_QUALITIES = (10, 30, 50, 70, 90)
"""The JPEG / WebP quality grid of the report's cloud-only codec points."""


def find_checkpoints(run_dir: Path) -> tuple[Path, list[Path]]:
    """(backbone, co-inference checkpoints) under ``run_dir``, or as its ``run.json`` lists them."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"no run directory at {run_dir}")
    if (run_dir / "run.json").is_file():  # a demo run: its checkpoints live in the cache
        listed = json.loads((run_dir / "run.json").read_text())
        return Path(listed["backbone"]), [Path(p) for p in listed["coinference"]]
    found = sorted(p.parent for p in run_dir.glob("*/model.json"))
    coinf = [p for p in found if read_info(p).is_coinference]
    backbones = [p for p in found if p not in coinf]
    if not coinf:
        raise CheckpointError(f"no co-inference checkpoint in {run_dir}: run neucodex finetune (or neucodex demo)")
    if not backbones:
        backbones = [read_info(coinf[0]).backbone_path]
    return backbones[0], coinf


def _main_checkpoint(coinf: list[Path]) -> Path:
    calibrated = [p for p in coinf if read_info(p).exit_policy is not None]
    return (calibrated or coinf)[0]


BATCH = 100  # samples run together
OPS_SAMPLES = 1000  # samples (stratified by class) whose firing rates the energy figures use


def ops_samples(images: torch.Tensor, labels: torch.Tensor, n: int = OPS_SAMPLES) -> torch.Tensor:
    """The ``n`` samples whose firing rates price the energy figures, stratified by class: the
    report's samples are the whole test split, sorted by class, unless a subset was asked for."""
    if len(labels) <= n:
        return images
    return images[torch.from_numpy(stratified_subset(labels.numpy(), n, 0))]


def table1_rows(run_dir: Path, coinf: list[Path]) -> list[dict]:
    """Split point, configuration, T, bits and ratios (all T sent), accuracy and drop per checkpoint/sweep row."""
    rows = []
    for p in coinf:
        m = read_info(p).metrics
        b = m["bits"]
        rows.append(
            {
                "source": p.name,
                "point": m["point"],
                "bottleneck": m["bottleneck"],
                "T": m["T"],
                "payload_bits": b["payload_bits"],
                "wire_bytes": b["wire_bytes"],
                "vs_spikes": b["vs_spikes"],
                "vs_float32": b["vs_float32"],
                "vs_input": b["vs_input"],
                "accuracy": m["test_accuracy"],
                "backbone_accuracy": m["backbone_test_accuracy"],
                "drop": m["backbone_test_accuracy"] - m["test_accuracy"],
            }
        )
    sweep = run_dir / "sweep" / "results.json"
    if sweep.is_file():
        for r in json.loads(sweep.read_text())["rows"]:
            if "error" in r:  # a configuration that could not be built (e.g. stride larger than the map)
                continue
            rows.append(
                {
                    "source": "sweep",
                    **{
                        k: r.get(k)
                        for k in (
                            "point",
                            "bottleneck",
                            "T",
                            "payload_bits",
                            "wire_bytes",
                            "vs_spikes",
                            "vs_float32",
                            "vs_input",
                            "accuracy",
                            "drop",
                        )
                    },
                }
            )
    return rows


def cloud_only_point(points: list[CodecPoint], accuracy: float, input_bits: int) -> CloudOnly:
    """The smallest image file whose accuracy is at least ``accuracy`` (co-inference's, with exit):
    cloud-only at the same service. The raw 8-bit input when no file qualifies or none was made."""
    ok = [p for p in points if p.accuracy >= accuracy]
    if not ok:
        return CloudOnly("raw 8-bit", float(input_bits), None, "the input as 8-bit values (no codec point as accurate)")
    p = min(ok, key=lambda p: p.bytes_per_image)
    return CloudOnly(p.name, p.bits, p.accuracy, "the smallest image file at least as accurate as co-inference")


def analyse(
    run_dir: str | Path,
    *,
    samples: int | None = None,
    rtt_ms: float = 20.0,
    device_factor: float = 10.0,
    radio: str = "wifi",
    scope: str = "paper",
    dataset: str | None = None,
    root: str | None = None,
    frame_overhead_ms: float | None = None,
    codecs: bool = True,
) -> Report:
    """Every figure of the report (what ``report.json`` holds).

    Test samples come from the checkpoint's own dataset, or ``dataset`` / ``root``; ``samples`` of
    them are taken stratified by class and interleaved, so the firing rates of the energy figures,
    measured on the first :data:`OPS_SAMPLES` (or all), cover every class alike. ``codecs``: send
    the same images as PNG / JPEG / WebP files too (static images only), and use the smallest one
    as accurate as co-inference as the cloud-only row."""
    run_dir = Path(run_dir)
    radio_p = radio_profile(radio)  # an unknown radio fails before any evaluation work
    backbone_dir, coinf = find_checkpoints(run_dir)
    main_dir = _main_checkpoint(coinf)
    ck, bb = load_checkpoint(main_dir), load_checkpoint(backbone_dir)
    model, backbone = ck.model, bb.model
    cfg = with_data(ck.info.experiment(), dataset, root)
    T = model.T
    test = load_split(cfg, "test", T)
    check_fits(model, test, cfg.data.name, ck.info.dataset.get("kind"))
    ds = stratified(test, samples)
    dev = resolve_device("cpu")
    samples = [ds[i] for i in range(len(ds))]  # decoded once: every figure below reads these
    images = torch.stack([x for x, _ in samples])
    batches = [
        (images[i : i + BATCH], torch.tensor([int(y) for _, y in samples[i : i + BATCH]]))
        for i in range(0, len(samples), BATCH)
    ]
    logits, labels = predict(model, batches, dev)
    bb_logits, _ = predict(backbone, batches, dev)
    policy = ck.info.policy
    ev = evaluate_policy(logits, labels, policy)
    steps = torch.tensor(ev["steps"])
    parts = [(to_model_input(xb, dev), steps[i * BATCH : (i + 1) * BATCH]) for i, (xb, _) in enumerate(batches)]
    bits_exit = combine(
        [
            measure_bits(model, xb, steps=s, channel_probs=ck.info.probs, context_probs=ck.info.context)
            for xb, s in parts
        ]
    )
    bits_all = combine(
        [measure_bits(model, xb, channel_probs=ck.info.probs, context_probs=ck.info.context) for xb, _ in parts]
    )
    points = codec_curve(backbone, images, labels, CODEC_QUALITIES)[1] if codecs and images.dim() == 4 else []
    cloud = cloud_only_point(points, ev["accuracy"], bits_exit.input_bits)
    sizes = recording_sizes(ds) if images.dim() == 5 else None
    event_stream = None
    if sizes:  # event input: cloud-only sends the recording itself, compressed
        event_stream = {
            "events": float(np.mean([s["events"] for s in sizes])),
            "aer_bits": 8.0 * float(np.mean([s["aer_bytes"] for s in sizes])),
            "gzip_bits": 8.0 * float(np.mean([s["gzip_bytes"] for s in sizes])),
            "frame_bits": float(bits_exit.input_bits),
        }
        cloud = CloudOnly(
            "gzipped event stream",
            event_stream["gzip_bits"],
            None,
            "each recording's events as the 40-bit AER stream (5 bytes per event), gzip level 9",
        )
    x = to_model_input(ops_samples(images, labels), torch.device("cpu"))

    dnn = create_model(ck.info.model.name, **{**ck.info.model.kwargs, "spiking": False}).eval()
    counts = OpCounts.of(model, backbone, dnn, x)  # each model run once, priced under every profile
    energies, per_sample_mj = coinference_energy(model, counts, steps, bits_exit, bits_all, radio_p, cloud.bits)
    split_energy = SplitEnergy(
        scope,
        {hw: split_point_rows(backbone, counts.backbone, prof, scope) for hw, prof in HARDWARE.items()},
        {hw: split_point_rows(dnn, counts.dnn, prof, scope) for hw, prof in HARDWARE.items()},
    )

    runtime = json.loads((run_dir / "runtime.json").read_text()) if (run_dir / "runtime.json").is_file() else None
    if runtime and runtime["summary"]["status"]["ok"]:  # measured in this run: round trip minus cloud compute
        live = runtime["summary"]
        overhead = max(0.0, live["rtt_ms"] - live["cloud_ms"] / max(live["mean_steps"], 1.0))
        overhead_source = "measured in this run's live streaming (round trip minus cloud compute per frame)"
    elif frame_overhead_ms is not None:
        overhead, overhead_source = frame_overhead_ms, "given (--frame-overhead-ms), not measured here"
    else:
        overhead = measure_frame_overhead(ck, ds)
        overhead_source = "measured on a loopback server started for the report (8 samples)"
    timings = replace(measure_timings(model, backbone, ds[0][0], dnn), frame_overhead_ms=overhead)
    latency = latency_table(
        timings,
        BANDWIDTHS,
        rtt_ms,
        input_bits=bits_exit.input_bits,
        cloud_bits=cloud.bits,
        T=T,
        exit_steps=bits_exit.timesteps,
        bits_per_step=bits_exit.wire_bytes * 8 / bits_exit.timesteps,
        device_factor=device_factor,
    )

    bb_acc = 100.0 * (bb_logits.mean(0).argmax(-1) == labels).float().mean().item()
    return Report(
        run_dir=str(run_dir),
        checkpoint=str(main_dir),
        backbone=str(backbone_dir),
        model=ck.info.model.to_dict(),
        dataset=cfg.data.name,
        samples=len(ds),
        T=T,
        policy=policy.to_dict(),
        accuracy=Accuracy(bb_acc, ev["accuracy_all_T"], ev["accuracy"], bb_acc - ev["accuracy"]),
        mean_steps=ev["mean_steps"],
        exit_histogram=ev["histogram"],
        bits={"exit": bits_exit, "all_T": bits_all},
        energy=energies,
        radio=radio_p,
        hardware=dict(HARDWARE),
        split_energy=split_energy,
        timings_ms=timings,
        frame_overhead=FrameOverhead(overhead, overhead_source),
        device_factor=device_factor,
        latency=latency,
        table1=table1_rows(run_dir, coinf),
        cloud_only=cloud,
        codecs=points,
        per_sample=[
            {
                "label": int(labels[i]),
                "prediction": ev["predictions"][i],
                "steps": ev["steps"][i],
                "payload_bits": bits_exit.per_sample_bits[i],
                "edge_mj": {hw: per_sample_mj[hw][i] for hw in HARDWARE},
            }
            for i in range(len(ds))
        ],
        runtime=runtime and runtime.get("summary"),
        event_stream=event_stream,
    )
