"""``neucodex demo``: the whole system end to end on the embedded data."""

from __future__ import annotations

import argparse
import json

from ..pretrained import DEMOS, EVENT_DEMOS, TRAINED_DEMOS

NAME = "demo"
HELP = "the whole system end to end: the shipped CIFAR-10 model on embedded held-out images (start here)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        choices=(*DEMOS, *EVENT_DEMOS, *TRAINED_DEMOS),
        help="cifar10-demo: the shipped checkpoints, no training (the default when shipped); caltech101-demo: "
        "the shipped Caltech101 model on 303 embedded held-out images (64x64); nmnist-demo: the "
        "shipped N-MNIST event model on 100 embedded held-out real recordings (nmnist with --root: on the "
        "test split there); digits, digits-dvs: a tiny model trained here first",
    )
    p.add_argument("--root", help="with --dataset nmnist: the recordings (folder or .tar.gz), its test split streamed")
    p.add_argument("--events", action="store_true", help="same as --dataset digits-dvs")
    p.add_argument(
        "--checkpoint",
        help="for a shipped demo set: another shipped co-inference entry (e.g. zoo:cifar10-resnet18-rb8; default: "
        "zoo:cifar10-resnet18-v3-rb1-c16s2) or a checkpoint directory fine-tuned from a shipped spiking backbone",
    )
    p.add_argument("--quick", action="store_true", help="fewer samples (and, for digits, a smaller model)")
    p.add_argument(
        "--cache-dir",
        help="where trained models are kept and reused (default: $NEUCODEX_CACHE/demo or ~/.cache/neucodex/demo)",
    )
    p.add_argument("--out", default="runs/demo", help="run directory for the report (default: runs/demo)")
    p.add_argument("--rtt-ms", type=float, default=20.0, help="round-trip time of the modelled link")
    p.add_argument("--device-factor", type=float, default=10.0, help="edge CPU this many times slower than this one")
    p.add_argument("--json", action="store_true", help="the summary as JSON (no progress output)")


def run(args: argparse.Namespace) -> None:
    from ..demo import demo_table, run_demo

    s = run_demo(
        dataset="digits-dvs" if args.events else args.dataset,
        quick=args.quick,
        cache_dir=args.cache_dir,
        out=args.out,
        quiet=args.json,
        rtt_ms=args.rtt_ms,
        device_factor=args.device_factor,
        checkpoint=args.checkpoint,
        root=args.root,
    )
    print(json.dumps(s, default=float) if args.json else demo_table(s))
