"""``neucodex ratecurve``: co-inference checkpoints against cloud-only PNG / JPEG / WebP, on one set of samples."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import positive, split_argument

NAME = "ratecurve"
HELP = "bits per sample against accuracy: co-inference checkpoints and the input sent as real image files"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", required=True, help="the backbone checkpoint (directory or zoo:NAME) for cloud-only")
    p.add_argument(
        "checkpoints",
        nargs="*",
        help="co-inference checkpoints, the curve's points; LABEL=CHECKPOINT names a point in the table and plot",
    )
    p.add_argument("--dataset", help="dataset name (default: the backbone's)")
    p.add_argument("--root", help="dataset files (default: the backbone's)")
    split_argument(p)
    p.add_argument("--limit", type=positive, help="only this many samples, stratified by class (seeded)")
    p.add_argument("--qualities", default="5,10,20,30,50,70,90", help="JPEG/WebP qualities, comma-separated (1-100)")
    p.add_argument("--out", default="runs/ratecurve", help="where ratecurve.json/.md and rate_accuracy.png go")
    p.add_argument("--json", action="store_true", help="print ratecurve.json")


def _qualities(text: str) -> list[int]:
    try:
        q = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        q = []
    if not q or not all(1 <= v <= 100 for v in q):
        raise argparse.ArgumentTypeError(f"--qualities takes whole numbers in 1..100, comma-separated; got {text!r}")
    return q


def run(args: argparse.Namespace) -> None:
    from ..errors import NeucodexError
    from ..ratecurve import markdown, rate_curve, write

    try:
        qualities = _qualities(args.qualities)
    except argparse.ArgumentTypeError as e:
        raise NeucodexError(str(e)) from None
    r = rate_curve(
        args.backbone,
        list(args.checkpoints),
        dataset=args.dataset,
        root=args.root,
        split=args.split,
        limit=args.limit,
        qualities=qualities,
        progress=not args.json,
    )
    paths = write(r, Path(args.out))
    if args.json:
        print(json.dumps(r, default=float))
        return
    print(markdown(r))
    print("wrote " + ", ".join(str(p) for p in paths))
