"""``neucodex evaluate``: a backbone or co-inference checkpoint on any dataset, root and split."""

from __future__ import annotations

import argparse
import json

from .common import policy, policy_arguments, positive, split_argument

NAME = "evaluate"
HELP = "accuracy (per timestep, with early exit), bits and ratios of a checkpoint on a dataset split"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint directory, or zoo:NAME")
    p.add_argument("--dataset", help="dataset name (default: the checkpoint's)")
    p.add_argument("--root", help="dataset files (default: the checkpoint's)")
    split_argument(p)
    p.add_argument("--limit", type=positive, help="only this many samples of the split, stratified by class (seeded)")
    p.add_argument("--batch-size", type=positive, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="one JSON object with every figure")
    policy_arguments(p, "default: the checkpoint's calibrated policy")


def run(args: argparse.Namespace) -> None:
    from ..evaluate import evaluate_checkpoint

    r = evaluate_checkpoint(
        args.checkpoint,
        dataset=args.dataset,
        root=args.root,
        split=args.split,
        limit=args.limit,
        policy=policy(args),
        device=args.device,
        batch_size=args.batch_size,
        progress=not args.json,
    )
    if args.json:
        print(json.dumps(r, default=float))
        return
    at_t = ", ".join(f"t={t + 1}: {a:.2f}%" for t, a in enumerate(r["accuracy_at_t"]))
    print(f"{r['kind']} {r['checkpoint']} on {r['dataset']} {r['split']} ({r['samples']} samples, T={r['T']})")
    print(f"  accuracy of the running mean after  {at_t}")
    if r["kind"] == "coinference":
        bb = "–" if r["backbone_accuracy"] is None else f"{r['backbone_accuracy']:.2f}%"
        ratios = r["ratios"]
        print(
            f"  backbone (all T) {bb}; co-inference all T {r['accuracy_all_t']:.2f}%; with early exit "
            f"{r['accuracy']:.2f}% in {r['mean_steps']:.2f} timesteps on average"
        )
        print(
            f"  per sample {r['payload_bits']:.1f} payload bits, {r['wire_bytes']:.1f} on-wire bytes; "
            f"{ratios['vs_spikes']:.1f}x vs binary spike features over T, {ratios['vs_float32']:.1f}x vs float32 "
            f"features, {ratios['vs_input']:.1f}x vs raw 8-bit input"
        )
