"""``neucodex sweep``: a grid of bottlenecks per split point, fine-tuned, selected and tabulated."""

from __future__ import annotations

import argparse
import json

from .common import experiment, experiment_arguments

NAME = "sweep"
HELP = "fine-tune a grid of bottlenecks per split point; select and tabulate"


def add_arguments(p: argparse.ArgumentParser) -> None:
    experiment_arguments(p)
    p.add_argument("--checkpoint", help="backbone checkpoint directory (default: <out>/<name>/backbone)")
    p.add_argument("--point", action="append", help="only this split point (repeatable; one per process)")
    p.add_argument("--bottlenecks", help="comma-separated grid, e.g. c16s2,c8s4")
    p.add_argument("--tolerance", type=float, help="accuracy drop allowed, percentage points (default 3)")
    p.add_argument("--goal", help="how the best partition is chosen (bits)")
    p.add_argument("--merge", action="store_true", help="only rebuild the tables from per-point results")


def run(args: argparse.Namespace) -> None:
    from ..sweep import run_sweep, summarize_sweep, sweep_dir

    cfg = experiment(args, optim="finetune")
    if args.bottlenecks:
        cfg.sweep.bottlenecks = args.bottlenecks.split(",")
    tolerance = cfg.sweep.tolerance if args.tolerance is None else args.tolerance
    if not args.merge:
        run_sweep(cfg, args.checkpoint or cfg.run_dir / "backbone", args.point, progress=not args.quiet)
    result = summarize_sweep(sweep_dir(cfg), tolerance, args.goal or cfg.sweep.goal)
    if args.json:
        print(json.dumps(result, indent=1, default=float))
    else:
        print((sweep_dir(cfg) / "results.md").read_text(), end="")
        print(f"tables: {sweep_dir(cfg)}/results.{{md,csv,json}}")
