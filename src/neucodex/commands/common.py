"""Arguments and helpers several commands share."""

from __future__ import annotations

import argparse
import json


def positive(text: str) -> int:
    """An argparse type for counts and sizes: a whole number ≥ 1 (0 or less is refused in one line)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def split_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--split",
        default="test",
        choices=("train", "val", "test", "all"),
        help="which split (default test); all: every sample under the root as the test set",
    )


def experiment_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a preset (tiny, cifar10-cpu, paper, …) or a YAML file (default: tiny)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any field, e.g. optim.lr=0.01")
    p.add_argument("--model")
    p.add_argument("--dataset")
    p.add_argument("--root")
    p.add_argument("--size", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--limit", type=int, help="at most this many samples per split (quick runs)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--out", help="runs directory (default: runs)")
    p.add_argument("--name", help="run name (default: the config's)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")


def experiment(args: argparse.Namespace, optim: str = "optim"):
    """The config named by ``--config`` with every flag and ``--set`` applied; ``--epochs``,
    ``--lr`` and ``--batch-size`` set the ``optim`` section (``finetune`` for fine-tuning)."""
    from ..config import load_config

    sets = list(args.set or [])
    for flag, key in (
        ("model", "model.name"),
        ("dataset", "data.name"),
        ("root", "data.root"),
        ("size", "data.size"),
        ("T", "model.T"),
        ("epochs", f"{optim}.epochs"),
        ("lr", f"{optim}.lr"),
        ("batch_size", f"{optim}.batch_size"),
        ("limit", "data.limit"),
        ("seed", "seed"),
        ("device", "device"),
        ("out", "out"),
        ("name", "name"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            sets.append(f"{key}={value}")
    return load_config(args.config, sets)


def print_result(args: argparse.Namespace, result) -> None:
    """A training step's summary line, or its figures as JSON; nothing off rank 0 under torchrun."""
    if result is None:
        return
    print(json.dumps(result.to_dict(), indent=1, default=float) if args.json else result.summary())


def policy_arguments(p: argparse.ArgumentParser, whose: str) -> None:
    p.add_argument("--threshold", type=float, help=f"early-exit threshold ({whose})")
    p.add_argument("--measure", default="max_softmax", help="max_softmax, entropy or margin")
    p.add_argument("--min-steps", type=positive, default=1)


def policy(args: argparse.Namespace):
    from ..policy import ExitPolicy

    if args.threshold is None:
        return None
    return ExitPolicy(args.measure, args.threshold, args.min_steps)
