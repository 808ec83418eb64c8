"""``neucodex calibrate``: the early-exit threshold of a checkpoint, chosen on its validation split."""

from __future__ import annotations

import argparse
import json

from .common import positive

NAME = "calibrate"
HELP = "choose the early-exit threshold on the validation split"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint directory (backbone or co-inference)")
    p.add_argument("--target-drop", type=float, default=0.5, help="accuracy drop allowed vs all T, pp (0.5)")
    p.add_argument(
        "--max-steps",
        type=float,
        help="a latency budget instead of --target-drop: the most accurate threshold within this many mean "
        "timesteps on val",
    )
    p.add_argument("--measure", help="comma-separated: max_softmax,entropy,margin (default: all)")
    p.add_argument("--min-steps", type=positive, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--dataset", help="dataset name (default: the checkpoint's)")
    p.add_argument("--root", help="dataset files (default: the checkpoint's)")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> None:
    from ..calibration import calibrate_checkpoint
    from ..policy import MEASURES

    measures = args.measure.split(",") if args.measure else list(MEASURES)
    r = calibrate_checkpoint(
        args.checkpoint,
        args.target_drop,
        measures,
        args.min_steps,
        args.device,
        dataset=args.dataset,
        root=args.root,
        max_steps=args.max_steps,
    )
    if args.json:
        print(json.dumps(r, indent=1, default=float))
        return
    rule = (
        f"for an accuracy drop ≤ {r['target_drop']} pp against all T"
        if r["max_steps"] is None
        else f"for the best accuracy within {r['max_steps']} mean timesteps"
    )
    print(f"early exit at T={r['T']}: thresholds chosen on val {rule}; test figures with the same thresholds")
    print(
        f"{'measure':<12} {'threshold':>9} {'val steps':>9} {'val acc':>8} {'test steps':>10} {'test acc':>8} "
        f"{'all-T acc':>9} {'drop':>6}  exit-step histogram (test)"
    )
    for row in r["rows"]:
        print(
            f"{row['measure']:<12} {row['threshold']:>9.4f} {row['val_mean_steps']:>9.2f} "
            f"{row['val_accuracy']:>8.2f} {row['test_mean_steps']:>10.2f} {row['test_accuracy']:>8.2f} "
            f"{row['test_accuracy_all_T']:>9.2f} {row['test_drop']:>6.2f}  {row['test_histogram']}"
        )
    print(f"stored in {args.checkpoint}/model.json: {r['chosen']['policy']}; plot: {r['plot']}")
