"""The ``neucodex`` command: a thin layer over the library API."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .errors import NeucodexError


def _models(args: argparse.Namespace) -> None:
    from .models import create_model, list_models
    from .split import feature_shapes

    names = args.model or list_models()
    rows = []
    for name in names:
        snn = create_model(name, num_classes=args.num_classes, T=args.T,
                           input_size=args.input_size, in_channels=args.in_channels)
        params = sum(p.numel() for p in snn.parameters())
        for point, (c, h, w) in feature_shapes(snn).items():
            n = c * h * w
            rows.append({"model": name, "params": params, "point": point, "shape": [c, h, w],
                         "spike_bits": n * args.T, "float32_bits": n * 32})
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"input {args.in_channels}x{args.input_size}x{args.input_size}, T={args.T}, "
          f"{args.num_classes} classes; bits crossing each cut per sample: binary spikes x T "
          f"(SNN) and float32 (DNN twin)")
    header = f"{'model':<12} {'params':>11}  {'point':<7} {'C x H x W':<15} {'spike bits':>11} {'float32 bits':>13}"
    print(header)
    print("-" * len(header))
    last = None
    for r in rows:
        first = r["model"] != last
        last = r["model"]
        model, params = (r["model"], f"{r['params']:,}") if first else ("", "")
        shape = "x".join(map(str, r["shape"]))
        print(f"{model:<12} {params:>11}  {r['point']:<7} {shape:<15} "
              f"{r['spike_bits']:>11,} {r['float32_bits']:>13,}")


def _datasets(args: argparse.Namespace) -> None:
    import time

    from .data import build_dataset, dataset_spec, list_datasets

    if not args.name:
        for spec in list_datasets():
            classes = spec.classes or "any"
            print(f"{spec.name:<13} {spec.kind:<7} {classes!s:>4} classes, {spec.channels} ch, "
                  f"default {spec.default_size}x{spec.default_size}; {spec.samples}")
            print(f"{'':<13} files: {spec.layout}")
            print(f"{'':<13} get:   {spec.get}")
        return
    spec = dataset_spec(args.name)
    summary = {"dataset": spec.name, "T": args.T, "splits": {}}
    for split in ("train", "val", "test"):
        t0 = time.perf_counter()
        ds = build_dataset(spec.name, split, root=args.root, T=args.T, size=args.size, download=args.download,
                           train_augment=False, cache_dir=args.cache_dir)
        info = {"samples": len(ds), "open_s": round(time.perf_counter() - t0, 3)}
        x, _ = ds[0]
        info["shape"] = list(x.shape)
        if args.full_pass:
            t0 = time.perf_counter()
            active = total = 0.0
            for i in range(len(ds)):
                x, _ = ds[i]
                active += float((x > 0).sum())
                total += x.numel()
            info["pass_s"] = round(time.perf_counter() - t0, 3)
            info["nonzero_fraction"] = active / total
        summary["splits"][split] = info
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    for split, info in summary["splits"].items():
        extra = ""
        if "pass_s" in info:
            extra = f", one pass {info['pass_s']:.2f} s, non-zero fraction {info['nonzero_fraction']:.4f}"
        print(f"{spec.name} {split:<5} {info['samples']:>6} samples of {'x'.join(map(str, info['shape']))}{extra}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="neucodex", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    m = sub.add_parser("models", help="list backbones, split points, feature shapes and bits")
    m.add_argument("model", nargs="*", help="model names (default: all)")
    m.add_argument("--input-size", type=int, default=32)
    m.add_argument("--in-channels", type=int, default=3)
    m.add_argument("--num-classes", type=int, default=10)
    m.add_argument("-T", "--T", type=int, default=4, help="timesteps")
    m.add_argument("--json", action="store_true", help="machine-readable output")
    m.set_defaults(func=_models)

    d = sub.add_parser("datasets", help="list datasets, or load one and report its splits")
    d.add_argument("name", nargs="?", help="dataset to load (default: list all)")
    d.add_argument("--root", help="where the dataset's files are (see the list for the layout)")
    d.add_argument("-T", "--T", type=int, default=4, help="timesteps for event frames")
    d.add_argument("--size", type=int, help="image / frame side (default: the dataset's)")
    d.add_argument("--download", action="store_true", help="fetch with torchvision / Tonic where they can")
    d.add_argument("--cache-dir", help="cache for framed events and decoded archives")
    d.add_argument("--full-pass", action="store_true", help="time one pass over each split")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_datasets)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (NeucodexError, ValueError) as e:
        print(f"neucodex: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
