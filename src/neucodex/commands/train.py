"""``neucodex train``: step 1, the backbone (SNN, or its DNN twin)."""

from __future__ import annotations

import argparse
import json

from .common import experiment, experiment_arguments, positive, print_result

NAME = "train"
HELP = "pretrain a backbone (SNN, or its DNN twin with --set model.spiking=false)"


def scales(text: str) -> list[float]:
    """An argparse type: positive numbers, comma-separated."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or not all(1e-3 <= v <= 1e3 for v in values):
        raise argparse.ArgumentTypeError(
            f"takes numbers in 0.001..1000, comma-separated (e.g. 4,8,12,16); got {text!r}"
        )
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    experiment_arguments(p)
    p.add_argument("-T", "--T", type=int, help="timesteps")
    p.add_argument("--resume", action="store_true", help="continue from the run's last epoch")
    p.add_argument(
        "--scan-init-scale",
        type=scales,
        metavar="S1,S2,…",
        help="train nothing: print the val accuracy after each timestep of the SNN started from "
        "model.init_from at each init_scale, to pick the one to train from",
    )
    p.add_argument("--scan-samples", type=positive, default=256, help="val samples for --scan-init-scale (stratified)")


def run(args: argparse.Namespace) -> None:
    if args.scan_init_scale:
        from ..training import scan_init_scale

        accuracy = scan_init_scale(experiment(args), args.scan_init_scale, args.scan_samples)
        if args.json:
            print(json.dumps({str(s): a for s, a in accuracy.items()}))
            return
        best = max(accuracy, key=lambda s: accuracy[s][-1])
        print(f"val accuracy % after t = 1..{len(accuracy[best])}, {args.scan_samples} samples stratified by class:")
        for s, a in accuracy.items():
            print(f"  init_scale {s:g}: {' '.join(f'{v:5.1f}' for v in a)}")
        print(f"best at t = T: {best:g} (train with --set model.init_scale={best:g})")
        return
    from ..training import pretrain

    print_result(args, pretrain(experiment(args), resume=args.resume, progress=not args.quiet))
