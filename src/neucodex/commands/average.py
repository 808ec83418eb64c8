"""``neucodex average``: one backbone from the mean of the weights of several runs of it."""

from __future__ import annotations

import argparse
import json

from .common import positive

NAME = "average"
HELP = "average the weights of backbone checkpoints of one model (a model soup), re-estimate its norms"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+", help="two or more backbone checkpoints (directories or zoo:NAME)")
    p.add_argument("--out", required=True, help="directory for the averaged checkpoint")
    p.add_argument("--dataset", help="dataset name (default: the first checkpoint's)")
    p.add_argument("--root", help="dataset files (default: the first checkpoint's)")
    p.add_argument("--norm-samples", type=positive, default=2048, help="training samples for the norms (2048)")
    p.add_argument("--batch-size", type=positive, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> None:
    from ..averaging import average_checkpoints

    info = average_checkpoints(
        args.checkpoints,
        args.out,
        dataset=args.dataset,
        root=args.root,
        norm_samples=args.norm_samples,
        batch_size=args.batch_size,
        device=args.device,
    )
    m = info.metrics
    if args.json:
        print(json.dumps({"checkpoint": args.out, "sha256": info.sha256, **m}, indent=1))
        return
    at_t = " / ".join(f"{a:.2f}" for a in m["test_accuracy_at_t"])
    print(
        f"average of {len(args.checkpoints)}: test accuracy {m['test_accuracy']:.2f}% (t = 1..T: {at_t}), "
        f"val {m['val_accuracy']:.2f}%, norms from {m['norm_samples']} training samples → {args.out}"
    )
