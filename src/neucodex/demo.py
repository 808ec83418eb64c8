"""``neucodex demo``: the whole system end to end on embedded data, offline, on a CPU.

Default: the shipped CIFAR-10 spiking ResNet-18 co-inference checkpoint over the 1,000 embedded
held-out images — no training. Event sets (``nmnist-demo``, …): the shipped event entries over
their embedded held-out recordings, or over a dataset's test split at ``root`` (``nmnist``).
``digits`` / ``digits-dvs``: train (or reuse from the cache) a tiny backbone and co-inference
model and calibrate early exit first. Then start the cloud server as
its own process on a free loopback port, stream the test images through the edge client, write
the report, stop the server, and return one summary.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from .cache import cache_root
from .calibration import calibrate_checkpoint
from .checkpoint import load_checkpoint, read_info
from .config import load_config
from .data import build_dataset, stratified
from .energy import CoInferenceEnergy
from .errors import NeucodexError
from .evaluate import load_split
from .pretrained import DEMOS, EVENT_DEMOS, TRAINED_DEMOS
from .pretrained import PREFIX as ZOO
from .pretrained import entries as zoo_entries
from .pretrained import entry as zoo_entry
from .promises import Check, check_promises, promises_table
from .report import write_report
from .report.markdown import head_share, saving
from .runtime import EdgeClient
from .runtime.clientstats import stream_dataset, stream_summary
from .runtime.process import spawn_server, stop_server
from .training import finetune, pretrain

QUICK = ["data.limit=600", "optim.epochs=6", "optim.batch_size=32", "finetune.epochs=3", "finetune.batch_size=32"]
QUICK_SAMPLES = 24
PRETRAINED_QUICK = 100


def shipped(dataset: str) -> bool:
    """Whether this install ships the checkpoints the demo runs on ``dataset``."""
    names = {e.name for e in zoo_entries()}
    return dataset in DEMOS and all(ref[len(ZOO) :] in names for ref in DEMOS[dataset])


def default_dataset() -> str:
    """``cifar10-demo`` when this install ships its checkpoints, else ``digits`` (trained here)."""
    return "cifar10-demo" if shipped("cifar10-demo") else "digits"


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _trained_here(dataset: str, quick: bool, cache_dir, quiet: bool) -> tuple[str, str, object, bool]:
    """Train (or reuse from the cache) the tiny backbone and co-inference model on ``dataset``."""
    overrides = [*([f"data.name={dataset}"] if dataset != "digits" else []), *(QUICK if quick else [])]
    key = hashlib.sha256(json.dumps(overrides).encode()).hexdigest()[:12]
    cache = Path(cache_dir) if cache_dir else cache_root() / "demo"
    cfg = load_config("tiny", [f"out={cache}", f"name=demo-{key}", *overrides])
    run = cfg.run_dir
    backbone_dir = run / "backbone"
    coinf_dir = run / f"coinference-{cfg.coinference.point}-{cfg.coinference.bottleneck}"
    reused = (coinf_dir / "model.json").is_file() and read_info(coinf_dir).exit_policy is not None
    _say(
        f"[1/5] {'reusing' if reused else 'training'} the tiny backbone and co-inference model on "
        f"{cfg.data.name} in {run}",
        quiet,
    )
    if not reused:
        if not (backbone_dir / "model.json").is_file():
            pretrain(cfg, progress=not quiet, out=backbone_dir)
        finetune(
            cfg, backbone_dir, cfg.coinference.point, cfg.coinference.bottleneck, out=coinf_dir, progress=not quiet
        )
        _say("[2/5] calibrating early exit on the validation split", quiet)
        calibrate_checkpoint(coinf_dir, target_drop=0.5, device="cpu")
    else:
        _say("[2/5] early exit already calibrated", quiet)
    return str(backbone_dir), str(coinf_dir), cfg, reused


def _demo_coinference(ref: str, backbone: str) -> tuple[str, str]:
    """What ``--checkpoint`` names for the shipped images, and the backbone to report beside it: a
    shipped co-inference entry for ``backbone``'s dataset, of any architecture (``zoo:NAME`` or
    ``NAME``), with its own backbone entry, or a checkpoint directory fine-tuned from one of that
    dataset's shipped backbones — the embedded images are held out of all of them (one split per
    dataset), so the report's backbone figures stay honest. Anything else: one line."""
    own = zoo_entry(backbone[len(ZOO) :])
    shipped = [e for e in zoo_entries() if e.dataset == own.dataset]  # the same held-out images
    bases = {e.sha256: ZOO + e.name for e in shipped if e.kind == "backbone"}
    if not ref.startswith(ZOO) and (Path(ref).name != ref or Path(ref).exists()):  # a path, not a name
        if not Path(ref).is_dir():
            raise NeucodexError(f"--checkpoint {ref}: no such checkpoint directory")
        info = read_info(ref)
        if not info.is_coinference:
            raise NeucodexError(f"--checkpoint {ref}: a backbone; the demo streams a co-inference checkpoint")
        base = bases.get((info.backbone or {}).get("sha256"))
        if base is None:
            raise NeucodexError(
                f"--checkpoint {ref}: not fine-tuned from a shipped backbone ({', '.join(bases.values())}), whose "
                f"held-out images the demo streams (make one with neucodex finetune --checkpoint {backbone})"
            )
        return str(ref), base
    cut = {ZOO + e.name: ZOO + e.base for e in shipped if e.kind == "coinference" and e.base}
    ref = ref if ref.startswith(ZOO) else ZOO + ref
    if ref not in cut:
        raise NeucodexError(
            f"--checkpoint {ref}: the demo streams a shipped co-inference entry ({', '.join(cut)}) "
            f"or a checkpoint directory fine-tuned from {backbone}"
        )
    return ref, cut[ref]


def run_demo(
    *,
    dataset: str | None = None,
    quick: bool = False,
    cache_dir: str | Path | None = None,
    out: str | Path = "runs/demo",
    quiet: bool = False,
    rtt_ms: float = 20.0,
    device_factor: float = 10.0,
    checkpoint: str | None = None,
    root: str | None = None,
) -> dict:
    """``cifar10-demo`` (default): the shipped CIFAR-10 checkpoints on the 1,000 embedded held-out
    images, no training; ``checkpoint`` picks another shipped co-inference entry (another split
    point) or a checkpoint directory fine-tuned from the shipped backbone. ``digits`` /
    ``digits-dvs``: a tiny model trained here (or cached)."""
    t0 = time.perf_counter()
    dataset = dataset or default_dataset()
    source = dataset  # where the test samples come from: the embedded set, or the dataset at --root
    if dataset in EVENT_DEMOS:
        dataset = EVENT_DEMOS[dataset]
        source = source if root else dataset
    elif root:
        raise NeucodexError(f"--root is for {', '.join(EVENT_DEMOS)}; {dataset} is embedded or trained here")
    if checkpoint and dataset not in DEMOS:
        raise NeucodexError(
            f"--checkpoint picks the co-inference checkpoint for {', '.join(DEMOS)}; {dataset} trains its own model"
        )
    if dataset in DEMOS:
        if not shipped(dataset):
            raise NeucodexError(f"this install ships no checkpoints for {dataset}; run the demo with --dataset digits")
        backbone_dir, coinf_dir = DEMOS[dataset]
        if checkpoint:
            coinf_dir, backbone_dir = _demo_coinference(checkpoint, backbone_dir)
        reused = True
        _say(f"[1/5] using the shipped checkpoints {backbone_dir} and {coinf_dir} (no training)", quiet)
        _say("[2/5] early exit calibrated on its validation split when the checkpoint was made", quiet)
        T = read_info(coinf_dir).model.steps
        test = build_dataset(source, "test", root=root, T=T, train_augment=False)
        test = stratified(test, PRETRAINED_QUICK if quick else None)
        n = len(test)
        report_data = {"dataset": source, "root": root}
    elif dataset in TRAINED_DEMOS:
        backbone_dir, coinf_dir, cfg, reused = _trained_here(dataset, quick, cache_dir, quiet)
        test = None
        report_data = {}
    else:
        raise NeucodexError(
            f"the demo runs on {', '.join([*DEMOS, *EVENT_DEMOS])} (shipped models), "
            f"{' or '.join(TRAINED_DEMOS)}, not {dataset!r}"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps({"backbone": backbone_dir, "coinference": [coinf_dir]}))

    _say("[3/5] starting the cloud server on a free loopback port", quiet)
    proc, address = spawn_server(coinf_dir)
    try:
        ck = load_checkpoint(coinf_dir)
        if test is None:
            test = stratified(load_split(cfg, "test", ck.model.T), QUICK_SAMPLES if quick else None)
            n = len(test)
        _say(f"[4/5] streaming {n} test samples edge → {address} → cloud", quiet)
        with EdgeClient(ck, address) as client:
            results = stream_dataset(client, test, range(n), progress=not quiet)
    finally:
        stopped = stop_server(proc)
    live = stream_summary(results)
    (out / "runtime.json").write_text(
        json.dumps({"summary": live, "samples": [r.to_dict() for r in results]}, default=float)
    )
    _say(f"[5/5] writing the report into {out}", quiet)
    r = write_report(out, samples=n, rtt_ms=rtt_ms, device_factor=device_factor, **report_data)
    bits = r.bits["exit"]
    payload = live["payload_bits"]
    ratio = lambda ref: ref / payload if payload else float("inf")  # noqa: E731
    summary = {
        "run_dir": str(out),
        "checkpoint": coinf_dir,
        "reused": reused,
        "dataset": r.dataset,
        "T": r.T,
        "point": ck.info.model.point,
        "samples": n,
        "server": address,
        "server_stopped": stopped,
        "backbone_accuracy": r.accuracy.backbone,
        "co_inference_accuracy": live["accuracy"],
        "accuracy_drop": r.accuracy.backbone - live["accuracy"],
        "mean_steps": live["mean_steps"],
        "payload_bits": payload,
        "wire_bytes": live["wire_bytes"],
        "grpc_bytes": live["grpc_bytes"],
        "status": live["status"],
        "ratios": {
            "vs_spikes": ratio(bits.spike_bits),
            "vs_float32": ratio(bits.float32_bits),
            "vs_input": ratio(bits.input_bits),
        },
        "energy_mj": {hw: e.to_dict() for hw, e in r.energy.items()},
        "hardware": {hw: p.title for hw, p in r.hardware.items()},
        "radio": r.radio.to_dict(),
        "cloud_only": asdict(r.cloud_only),
        "latency_ms": r.latency,
        "device_factor": device_factor,
        "rtt_ms": rtt_ms,
        "report": r.files,
        "wall_s": time.perf_counter() - t0,
        "pid": os.getpid(),
        "server_pid": proc.pid,
    }
    summary["promises"] = [c.to_dict() for c in check_promises(summary)]
    return summary


def demo_table(s: dict) -> str:
    """The demo's summary as text: one line per figure, one energy line per hardware profile."""
    energies = {hw: CoInferenceEnergy(**e) for hw, e in s["energy_mj"].items()}
    cloud, radio = s["cloud_only"], s["radio"]
    lines = [
        f"neucodex demo on {s['dataset']} (T={s['T']}, {s['samples']} test samples, "
        f"{'shipped or cached models' if s['reused'] else 'trained now'}; {s['wall_s']:.0f} s)",
        f"  accuracy            backbone {s['backbone_accuracy']:.2f}%   "
        f"co-inference {s['co_inference_accuracy']:.2f}% (drop {s['accuracy_drop']:.2f} pp)",
        f"  timesteps           {s['mean_steps']:.2f} of {s['T']} on average (early exit)",
        f"  per sample          {s['payload_bits']:.1f} payload bits, {s['wire_bytes']:.1f} on-wire bytes "
        f"(codec packets; {s['grpc_bytes']:.1f} as gRPC messages)",
        f"  compression         {s['ratios']['vs_spikes']:.1f}x vs binary spike features over T, "
        f"{s['ratios']['vs_float32']:.1f}x vs float32 features, {s['ratios']['vs_input']:.1f}x vs raw 8-bit input",
        f"  cloud-only sends    {cloud['name']}, {cloud['bits']:.0f} bits per sample ({cloud['source']})",
        f"  edge energy, mJ     radio {radio['name']} ({radio['nj_per_bit']:g} nJ/bit); compute in full scope",
    ]
    for hw, e in energies.items():
        share = head_share(e)
        lines += [
            f"    {s['hardware'][hw]:<17} co-inference {e.co_inference_mj:.4g} (compute {e.co_inference_compute_mj:.3g}"
            f" + radio {e.co_inference_radio_mj:.3g}); edge-only SNN {e.edge_only_snn_mj:.4g}, DNN "
            f"{e.edge_only_dnn_mj:.4g}; cloud-only {e.cloud_only_mj:.4g}",
            f"    {'':<17} compute {saving(e.compute_reduction_vs_edge_only_snn)} than edge-only SNN "
            f"({saving(e.compute_reduction_vs_edge_only_snn_paper)} in SpikeBottleNet's scope: block convs only); "
            f"with the radio {saving(e.reduction_vs_edge_only_snn)}; break-even radio cost "
            f"{e.break_even_nj_per_bit:.3g} nJ/bit",
            *([f"    {'':<17} {share}"] if share else []),
        ]
    lines.append(f"  latency, ms         (edge x{s['device_factor']:g} slower than this CPU, RTT {s['rtt_ms']:g} ms)")
    for row in s["latency_ms"]:
        lines.append(
            f"    {row['bandwidth_mbps']:>5g} Mbit/s      co-inference {row['co_inference_exit_pipelined']:.1f}  "
            f"edge-only SNN {row['edge_only_snn']:.1f}  DNN {row['edge_only_dnn']:.1f}  cloud-only "
            f"{row['cloud_only']:.1f}  → {row['speedup_vs_edge_only']:.2f}x vs edge-only, "
            f"{row['speedup_vs_cloud_only']:.2f}x vs cloud-only"
        )
    lines += promises_table([Check(**c) for c in s["promises"]])
    lines.append(f"  server              {s['server']} stopped cleanly: {s['server_stopped']}")
    lines.append(f"  report              {s['report'][0]}")
    return "\n".join(lines)
