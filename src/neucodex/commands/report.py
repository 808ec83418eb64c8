"""``neucodex report``: the reproduction report of a run directory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..profiles import RADIOS
from .common import positive

NAME = "report"
HELP = "markdown report and plots of a run directory"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run with backbone/ and coinference-*/ checkpoints (e.g. runs/tiny)")
    p.add_argument("--samples", type=positive, help="test samples to evaluate (default: all)")
    p.add_argument("--rtt-ms", type=float, default=20.0, help="link round-trip time for the latency model")
    p.add_argument("--device-factor", type=float, default=10.0, help="edge compute is this many times slower")
    p.add_argument("--radio", default="wifi", choices=sorted(RADIOS), help="energy per transmitted bit of this radio")
    p.add_argument("--scope", default="paper", choices=("full", "paper"), help="scope of the per-split-point table")
    p.add_argument("--dataset", help="test samples from this dataset (default: the checkpoint's)")
    p.add_argument("--root", help="dataset files (default: the checkpoint's)")
    p.add_argument(
        "--frame-overhead-ms",
        type=float,
        help="the runtime's cost per frame for the latency model (default: from the run's live streaming, "
        "else measured on a loopback server)",
    )
    p.add_argument(
        "--no-codecs",
        action="store_true",
        help="skip the cloud-only image-file baselines (PNG/JPEG/WebP); cloud-only then sends the raw 8-bit input",
    )
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> None:
    from ..report import write_report

    r = write_report(
        args.run_dir,
        samples=args.samples,
        rtt_ms=args.rtt_ms,
        device_factor=args.device_factor,
        radio=args.radio,
        scope=args.scope,
        dataset=args.dataset,
        root=args.root,
        frame_overhead_ms=args.frame_overhead_ms,
        codecs=not args.no_codecs,
    )
    print(json.dumps(r.to_json(), default=float) if args.json else (Path(args.run_dir) / "report.md").read_text())
    if not args.json:
        print("files: " + ", ".join(r.files))
