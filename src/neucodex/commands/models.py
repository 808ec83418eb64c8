"""``neucodex models``: backbones, their split points, feature shapes and bits per cut."""

from __future__ import annotations

import argparse
import json

from .common import positive

NAME = "models"
HELP = "list backbones, split points, feature shapes and bits"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="*", help="model names (default: all)")
    p.add_argument("--input-size", type=positive, default=32)
    p.add_argument("--in-channels", type=positive, default=3)
    p.add_argument("--num-classes", type=positive, default=10)
    p.add_argument("-T", "--T", type=int, default=4, help="timesteps")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> None:
    from ..models import create_model, list_models
    from ..split import feature_shapes

    rows = []
    for name in args.model or list_models():
        snn = create_model(
            name, num_classes=args.num_classes, T=args.T, input_size=args.input_size, in_channels=args.in_channels
        )
        params = sum(p.numel() for p in snn.parameters())
        for point, (c, h, w) in feature_shapes(snn).items():
            n = c * h * w
            rows.append(
                {
                    "model": name,
                    "params": params,
                    "point": point,
                    "shape": [c, h, w],
                    "spike_bits": n * args.T,
                    "float32_bits": n * 32,
                }
            )
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(
        f"input {args.in_channels}x{args.input_size}x{args.input_size}, T={args.T}, "
        f"{args.num_classes} classes; bits crossing each cut per sample: binary spikes x T "
        f"(SNN) and float32 (DNN twin)"
    )
    header = f"{'model':<14} {'params':>11}  {'point':<7} {'C x H x W':<15} {'spike bits':>11} {'float32 bits':>13}"
    print(header)
    print("-" * len(header))
    last = None
    for r in rows:
        first = r["model"] != last
        last = r["model"]
        model, params = (r["model"], f"{r['params']:,}") if first else ("", "")
        shape = "x".join(map(str, r["shape"]))
        print(f"{model:<14} {params:>11}  {r['point']:<7} {shape:<15} {r['spike_bits']:>11,} {r['float32_bits']:>13,}")
