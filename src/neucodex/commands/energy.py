"""``neucodex energy``: edge energy up to each split point, from operation counts and firing rates."""

from __future__ import annotations

import argparse
import json

from ..profiles import HARDWARE, hardware_profile
from .common import positive

NAME = "energy"
HELP = "edge energy (mJ) up to each split point: MACs, ACs with firing rates"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", default="resnet18", help="model name (ignored with --checkpoint)")
    p.add_argument("--dnn", action="store_true", help="the DNN twin (MACs only)")
    p.add_argument("--checkpoint", help="trained checkpoint: its firing rates (a co-inference one: its backbone)")
    p.add_argument("--dataset", help="measure firing rates on this dataset's test samples (default: random input)")
    p.add_argument("--samples", type=positive, default=16)
    p.add_argument(
        "--scope",
        default="full",
        choices=("full", "paper"),
        help="paper: residual-block convs only, as SpikeBottleNet Table 3",
    )
    p.add_argument(
        "--profile",
        default="45nm",
        help=f"a hardware profile ({', '.join(HARDWARE)}) or a YAML file with mac_pj and ac_pj",
    )
    p.add_argument("--input-size", type=positive, default=32)
    p.add_argument("--in-channels", type=positive, default=3)
    p.add_argument("--num-classes", type=positive, default=10)
    p.add_argument("-T", "--T", type=int, default=4)
    p.add_argument("--json", action="store_true", help='a list of {"point", "rb", "macs", "acs", "energy_mj"}')


def run(args: argparse.Namespace) -> None:
    import sys

    from ..energy import split_point_energy

    profile = hardware_profile(args.profile)  # an unknown profile fails before PyTorch loads
    table = split_point_energy(
        args.checkpoint,
        args.model,
        dnn=args.dnn,
        dataset=args.dataset,
        samples=args.samples,
        profile=profile,
        scope=args.scope,
        T=args.T,
        input_size=args.input_size,
        num_classes=args.num_classes,
        in_channels=args.in_channels,
    )
    if table.note:
        print(f"neucodex: note: {table.note}", file=sys.stderr)
    if args.json:
        print(json.dumps(table.rows))
        return
    print(
        f"edge energy of {table.arch} ({table.kind}, T={table.steps}) up to each split point; "
        f"scope {args.scope}; {profile.name}: MAC {profile.mac_pj} pJ, AC {profile.ac_pj} pJ"
    )
    print(f"{'point':<8} {'MACs':>14} {'ACs':>14} {'energy mJ':>10}")
    for r in table.rows:
        print(f"{(r['rb'] or r['point']):<8} {r['macs']:>14,.0f} {r['acs']:>14,.0f} {r['energy_mj']:>10.4f}")
