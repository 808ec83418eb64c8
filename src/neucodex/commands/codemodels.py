"""``neucodex codemodels``: count a co-inference checkpoint's learned entropy models on its training images."""

from __future__ import annotations

import argparse
import json

from .common import positive

NAME = "codemodels"
HELP = "count a spike code's learned entropy models (channel, context) on training images"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a spiking co-inference checkpoint directory")
    p.add_argument(
        "--samples", type=positive, default=10_000, help="training images, stratified by class (default 10000)"
    )
    p.add_argument("--all", action="store_true", help="count on every training image instead")
    p.add_argument("--dataset", help="dataset name (default: the checkpoint's)")
    p.add_argument("--root", help="dataset files (default: the checkpoint's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> None:
    from ..codemodels import count_code_models, store_code_models
    from ..errors import NeucodexError
    from ..pretrained import is_zoo

    if is_zoo(args.checkpoint):
        raise NeucodexError(
            f"{args.checkpoint} is shipped read-only: copy its directory (neucodex zoo) and count on the copy"
        )
    models = count_code_models(
        args.checkpoint, None if args.all else args.samples, dataset=args.dataset, root=args.root, device=args.device
    )
    store_code_models(args.checkpoint, models)
    s = models.summary()
    if args.json:
        print(json.dumps(s))
        return
    print(
        f"code models counted on {s['samples']} training images: floors H(s_t | previous bit) "
        f"{s['h_context_bits']:.1f} and H(p_c) {s['h_channel_bits']:.1f} bits per sample (all T); "
        f"stored in {args.checkpoint}/model.json"
    )
