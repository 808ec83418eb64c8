"""``neucodex-edge``: the torch-free edge — an exported edge half streaming samples to ``neucodex serve``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .. import codec
from ..errors import NeucodexError
from ..policy import ExitPolicy
from ..runtime.options import check_target, read_bytes, stream_arguments, stream_options, token, token_arguments

MEASURES = ("max_softmax", "entropy", "margin")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="neucodex-edge",
        description="Stream samples through an exported edge half (ONNX Runtime, no PyTorch) to neucodex serve.",
    )
    p.add_argument("--model", required=True, help="directory written by: neucodex export --format onnx")
    p.add_argument("--server", required=True, help="HOST:PORT of neucodex serve (holding the same checkpoint)")
    p.add_argument(
        "--input",
        default="cifar10-demo",
        help="samples: a folder of images (class subfolders give labels), an image, an .npz "
        "(images/x, labels/y), or an embedded set by name: cifar10-demo (default), caltech101-demo; "
        "for an event model: "
        "a recording (.bin, .aedat4), a folder of them, an .npz of [N, T, 2, H, W] frames, or nmnist-demo",
    )
    p.add_argument(
        "--limit", type=int, help="only the first this many samples (the embedded sets are stored interleaved by class)"
    )
    token_arguments(p, "sent with every call")
    p.add_argument("--tls-ca", help="PEM CA certificate: connect with TLS")
    p.add_argument("--codec", default="auto", choices=tuple(c for c in codec.CHOICES if c != "uint8"))
    p.add_argument("--no-pipeline", action="store_true", help="compute t+1 only after the answer for t")
    stream_arguments(p)
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    p.add_argument("--threshold", type=float, help="early-exit threshold (default: the server's)")
    p.add_argument("--measure", default="max_softmax", choices=MEASURES)
    p.add_argument("--min-steps", type=int, default=1)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", action="store_true", help="summary and per-sample metrics as JSON")
    return p


def run(args: argparse.Namespace) -> int:
    """Exit status: 0 every sample answered, 1 some samples failed, 2 a usage or setup error."""
    from ..runtime.clientstats import stream_dataset, stream_summary, stream_table
    from .client import OnnxEdgeClient
    from .inputs import read_recordings, read_samples

    if args.limit is not None and args.limit < 1:
        raise NeucodexError(f"--limit must be at least 1, got {args.limit}")
    if args.threads < 1:
        raise NeucodexError(f"--threads must be at least 1, got {args.threads}")
    policy = None
    if args.threshold is not None:
        policy = ExitPolicy(args.measure, args.threshold, args.min_steps)
    with OnnxEdgeClient(
        args.model,
        check_target(args.server),
        threads=args.threads,
        token=token(args),
        tls_ca=read_bytes(args.tls_ca, "TLS CA certificate"),
        codec_format=args.codec,
        policy=policy,
        pipeline=not args.no_pipeline,
        **stream_options(args),
    ) as client:
        b = client.edge.bundle
        if b.kind == "events":
            xs, ys = read_recordings(args.input, b.sensor, b.T, b.input_shape)
        else:
            xs, ys = read_samples(args.input, b.input_shape)
        samples = list(zip(xs, ys, strict=True))[: args.limit]
        results = stream_dataset(client, samples, progress=not args.quiet)
    summary = stream_summary(results)
    if args.json:
        print(json.dumps({"summary": summary, "samples": [r.to_dict() for r in results]}, default=float))
    else:
        print(stream_table(summary))
    failed = summary["status"]["failed"]
    if failed:
        errors = sorted({r.error for r in results if r.error})
        print(
            f"neucodex-edge: error: {failed} of {len(results)} samples failed ({errors[0] if errors else 'no answer'})",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except NeucodexError as e:
        print(f"neucodex-edge: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("neucodex-edge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
