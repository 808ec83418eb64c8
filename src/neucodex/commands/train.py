"""``neucodex train``: step 1, the backbone (SNN, or its DNN twin)."""

from __future__ import annotations

import argparse

from .common import experiment, experiment_arguments, print_result

NAME = "train"
HELP = "pretrain a backbone (SNN, or its DNN twin with --set model.spiking=false)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    experiment_arguments(p)
    p.add_argument("-T", "--T", type=int, help="timesteps")
    p.add_argument("--resume", action="store_true", help="continue from the run's last epoch")


def run(args: argparse.Namespace) -> None:
    from ..training import pretrain

    print_result(args, pretrain(experiment(args), resume=args.resume, progress=not args.quiet))
