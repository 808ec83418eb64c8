"""``neucodex edge``: stream a dataset's samples through the edge half to a cloud server."""

from __future__ import annotations

import argparse
import json
import sys

from .. import codec
from ..runtime.options import check_target, read_bytes, stream_arguments, stream_options, token, token_arguments
from .common import policy, policy_arguments, positive, split_argument

NAME = "edge"
HELP = "the edge: stream a dataset's samples through the cloud server"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", required=True, help="HOST:PORT of neucodex serve")
    p.add_argument("--checkpoint", required=True, help="the same co-inference checkpoint the server has")
    p.add_argument("--dataset", help="dataset name (default: the checkpoint's)")
    p.add_argument("--root", help="dataset files (default: the checkpoint's)")
    split_argument(p)
    p.add_argument("--limit", type=positive, help="only the first this many samples of the split")
    token_arguments(p, "sent with every call")
    p.add_argument("--tls-ca", help="PEM CA certificate: connect with TLS")
    p.add_argument(
        "--codec",
        default="auto",
        choices=[c for c in codec.CHOICES if c != "uint8"],
        help="the spike format (default auto: the smallest per packet)",
    )
    p.add_argument("--no-pipeline", action="store_true", help="compute t+1 only after the answer for t")
    p.add_argument(
        "--fallback",
        default="local",
        choices=("local", "none"),
        help="when the cloud is gone: answer on the edge, or report the sample failed",
    )
    stream_arguments(p)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", action="store_true", help="summary and per-sample metrics as JSON")
    policy_arguments(p, "default: the server's")


def run(args: argparse.Namespace) -> int:
    """Exit status: 0 every sample answered (by the cloud, or on the edge with --fallback local),
    1 some samples failed, 2 a usage or setup error."""
    from dataclasses import replace

    from ..checkpoint import load_checkpoint
    from ..data import stratified
    from ..evaluate import check_fits, load_split, with_data
    from ..runtime import EdgeClient
    from ..runtime.clientstats import stream_dataset, stream_summary, stream_table

    ck = load_checkpoint(args.checkpoint)
    cfg = ck.info.experiment()
    if args.dataset or args.root:
        cfg = with_data(cfg, args.dataset, args.root)
        cfg = replace(cfg, data=replace(cfg.data, limit=None))
    ds = load_split(cfg, args.split, ck.model.T)
    check_fits(ck.model, ds, cfg.data.name, ck.info.dataset.get("kind"))
    ds = stratified(ds, args.limit)  # --limit: stratified by class, never the first N of a sorted set
    indices = range(len(ds))
    with EdgeClient(
        ck,
        check_target(args.server),
        token=token(args),
        tls_ca=read_bytes(args.tls_ca, "TLS CA certificate"),
        codec_format=args.codec,
        policy=policy(args),
        pipeline=not args.no_pipeline,
        **stream_options(args),
        fallback=args.fallback,
    ) as client:
        results = stream_dataset(client, ds, indices, progress=not args.quiet)
    summary = stream_summary(results)
    if args.json:
        print(json.dumps({"summary": summary, "samples": [r.to_dict() for r in results]}, default=float))
    else:
        print(stream_table(summary))
    failed, local = summary["status"]["failed"], summary["status"]["fallback"]
    errors = sorted({r.error for r in results if r.status != "ok" and r.error})
    if local:
        print(
            f"neucodex: warning: {local} samples answered on the edge, the cloud at {args.server} was not "
            f"reachable ({errors[0] if errors else 'no answer'})",
            file=sys.stderr,
        )
    if failed:
        print(
            f"neucodex: error: {failed} of {len(results)} samples failed ({errors[0] if errors else 'no answer'})",
            file=sys.stderr,
        )
        return 1
    return 0
