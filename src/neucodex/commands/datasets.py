"""``neucodex datasets``: what datasets there are, or one loaded with its split sizes."""

from __future__ import annotations

import argparse
import json
import time

from .common import positive

NAME = "datasets"
HELP = "list datasets, load one and report its splits, or build an emulated one"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "name", nargs="?", help="dataset to load (default: list all); 'build NAME' records an emulated event set"
    )
    p.add_argument("target", nargs="?", help=argparse.SUPPRESS)
    p.add_argument("--root", help="where the dataset's files are (see the list for the layout); for build: the images")
    p.add_argument("--out", help="build: the folder to record into (resumable: run again to finish it)")
    p.add_argument("--seed", type=int, default=0, help="build: seed of the image choice, noise and mismatch")
    p.add_argument("--per-class", type=positive, help="build: images per class (default: as the real dataset)")
    p.add_argument("--workers", type=positive, default=1, help="build: processes recording in parallel")
    p.add_argument("-T", "--T", type=int, default=4, help="timesteps for event frames")
    p.add_argument("--size", type=positive, help="image / frame side (default: the dataset's)")
    p.add_argument("--download", action="store_true", help="fetch with torchvision / Tonic where they can")
    p.add_argument("--cache-dir", help="cache for framed events and decoded archives")
    p.add_argument("--full-pass", action="store_true", help="time one pass over each split")
    p.add_argument("--json", action="store_true")


def build(args: argparse.Namespace) -> None:
    from ..data import EMULATED, build_emulated
    from ..errors import InvalidArgumentError

    if args.target not in EMULATED:
        raise InvalidArgumentError(
            f"neucodex datasets build: give one of {', '.join(EMULATED)} (got {args.target or 'nothing'})"
        )
    if not args.root or not args.out:
        raise InvalidArgumentError(
            f"neucodex datasets build {args.target}: give --root (the images: {EMULATED[args.target].source}) "
            "and --out (the folder to record into)"
        )
    t0 = time.perf_counter()
    per_class = args.per_class if args.per_class else -1
    manifest = build_emulated(
        args.target, args.root, args.out, seed=args.seed, per_class=per_class, workers=args.workers
    )
    manifest["wall_s"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(manifest, indent=1))
        return
    print(
        f"{args.target}: {manifest['recordings']} recordings of {len(manifest['classes'])} classes in {args.out} "
        f"({manifest['wall_s']} s); use it with --dataset {args.target} --root {args.out}"
    )


def run(args: argparse.Namespace) -> None:
    from ..data import build_dataset, dataset_spec, list_datasets

    if args.name == "build":
        return build(args)
    if args.target:
        from ..errors import InvalidArgumentError

        raise InvalidArgumentError(f"neucodex datasets takes one dataset name (got {args.name} {args.target})")
    if not args.name:
        specs = list_datasets()
        w = max(len(spec.name) for spec in specs)
        for spec in specs:
            classes = spec.classes or "any"
            print(
                f"{spec.name:<{w}} {spec.kind:<7} {classes!s:>4} classes, {spec.channels} ch, "
                f"default {spec.default_size}x{spec.default_size}; {spec.samples}"
            )
            print(f"{'':<{w}} files: {spec.layout}")
            print(f"{'':<{w}} get:   {spec.get}")
        return
    spec = dataset_spec(args.name)
    summary = {"dataset": spec.name, "T": args.T, "splits": {}}
    for split in ("test",) if spec.test_only else ("train", "val", "test"):
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
        if len(ds):
            info["shape"] = list(ds[0][0].shape)
        if args.full_pass:
            t0 = time.perf_counter()
            active = total = 0.0
            for i in range(len(ds)):
                x, _ = ds[i]
                active += float((x > 0).sum())
                total += x.numel()
            info["pass_s"] = round(time.perf_counter() - t0, 3)
            info["nonzero_fraction"] = active / total if total else 0.0
        summary["splits"][split] = info
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    for split, info in summary["splits"].items():
        extra = ""
        if "pass_s" in info:
            extra = f", one pass {info['pass_s']:.2f} s, non-zero fraction {info['nonzero_fraction']:.4f}"
        shape = "x".join(map(str, info.get("shape", []))) or "nothing"
        print(f"{spec.name} {split:<5} {info['samples']:>6} samples of {shape}{extra}")
