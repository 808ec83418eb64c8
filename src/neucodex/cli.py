"""The ``neucodex`` command: one parser over the command modules in ``neucodex.commands``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .commands import COMMANDS
from .errors import Interrupted, NeucodexError

FULL_INSTALL = ("torch", "torchvision", "spikingjelly", "tonic", "safetensors", "yaml", "onnx", "nir", "sklearn")
"""Top-level modules of the ``full`` extra: missing one means the edge-only install."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="neucodex", description="Neuromorphic edge-cloud co-inference.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for cmd in COMMANDS:
        c = sub.add_parser(cmd.NAME, help=cmd.HELP, description=cmd.__doc__)
        cmd.add_arguments(c)
        c.set_defaults(func=cmd.run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """User errors (the ``NeucodexError`` family) become one line and exit 2; anything else is a bug
    and keeps its traceback."""
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args) or 0
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below, not at exit
        return code
    except Interrupted as e:
        print(f"neucodex: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("neucodex: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `neucodex datasets | head`: the reader left; no traceback (Python docs' recipe)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except NeucodexError as e:
        print(f"neucodex: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        if e.name not in FULL_INSTALL:
            raise
        print(
            f"neucodex: error: `neucodex {args.command}` needs the full install ({e.name} is missing): "
            "pip install 'neucodex[full]' — the torch-free edge alone is neucodex-edge",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
