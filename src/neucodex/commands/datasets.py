"""``neucodex datasets``: what datasets there are, or one loaded with its split sizes."""

from __future__ import annotations

import argparse
import json
import time

from .common import positive

NAME = "datasets"
HELP = "list datasets, or load one and report its splits"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="dataset to load (default: list all)")
    p.add_argument("--root", help="where the dataset's files are (see the list for the layout)")
    p.add_argument("-T", "--T", type=int, default=4, help="timesteps for event frames")
    p.add_argument("--size", type=positive, help="image / frame side (default: the dataset's)")
    p.add_argument("--download", action="store_true", help="fetch with torchvision / Tonic where they can")
    p.add_argument("--cache-dir", help="cache for framed events and decoded archives")
    p.add_argument("--full-pass", action="store_true", help="time one pass over each split")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> None:
    from ..data import build_dataset, dataset_spec, list_datasets

    if not args.name:
        for spec in list_datasets():
            classes = spec.classes or "any"
            print(
                f"{spec.name:<13} {spec.kind:<7} {classes!s:>4} classes, {spec.channels} ch, "
                f"default {spec.default_size}x{spec.default_size}; {spec.samples}"
            )
            print(f"{'':<13} files: {spec.layout}")
            print(f"{'':<13} get:   {spec.get}")
        return
    spec = dataset_spec(args.name)
    summary = {"dataset": spec.name, "T": args.T, "splits": {}}
    for split in ("train", "val", "test"):
        t0 = time.perf_counter()
        ds = build_dataset(
            spec.name,
            split,
            root=args.root,
            T=args.T,
            size=args.size,
            download=args.download,
            train_augment=False,
            cache_dir=args.cache_dir,
        )
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
