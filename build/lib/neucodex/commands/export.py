"""``neucodex export``: the edge half of a co-inference checkpoint as ONNX and/or NIR, plus edge.json."""

from __future__ import annotations

import argparse
import sys

NAME = "export"
HELP = "write the edge half as ONNX (for neucodex-edge) or NIR (for neuromorphic toolchains)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="co-inference checkpoint directory (or zoo:NAME)")
    p.add_argument(
        "--format",
        action="append",
        choices=("onnx", "nir"),
        help="onnx (default) or nir; repeat for both",
    )
    p.add_argument("--out", required=True, help="directory to write (edge.onnx / edge.nir and edge.json)")


def run(args: argparse.Namespace) -> int:
    from ..export import export_edge

    out = export_edge(args.checkpoint, args.format or ["onnx"], args.out)
    files = sorted(p.name for p in out.iterdir())
    print(f"wrote {', '.join(files)} to {out}", file=sys.stderr)
    return 0
