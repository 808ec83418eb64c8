"""``neucodex finetune``: step 2, a bottleneck at a split point, fine-tuned with the whole model."""

from __future__ import annotations

import argparse

from ..errors import NeucodexError
from .common import experiment, experiment_arguments, print_result

NAME = "finetune"
HELP = "insert a bottleneck at a split point and fine-tune the whole model"


def add_arguments(p: argparse.ArgumentParser) -> None:
    experiment_arguments(p)
    p.add_argument("--checkpoint", help="backbone checkpoint directory (default: <out>/<name>/backbone)")
    p.add_argument("--point", help="split point, e.g. conv2 or rb4")
    p.add_argument("--bottleneck", help="c<channels>[s<stride>][k<kernel>], e.g. c8s4")
    p.add_argument("-T", "--T", type=int, help="timesteps (default: the backbone's)")
    p.add_argument("--resume", action="store_true")


def run(args: argparse.Namespace) -> None:
    from ..training import finetune

    cfg = experiment(args, optim="finetune")
    point = args.point or cfg.coinference.point
    spec = args.bottleneck or cfg.coinference.bottleneck
    if not point or not spec:
        raise NeucodexError("finetune needs --point and --bottleneck (or coinference.point/bottleneck in the config)")
    backbone = args.checkpoint or cfg.run_dir / "backbone"
    print_result(args, finetune(cfg, backbone, point, spec, T=args.T, resume=args.resume, progress=not args.quiet))
