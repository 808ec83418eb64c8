"""The options both edges take — the PyTorch one (``neucodex edge``) and the torch-free one
(``neucodex-edge``): server target, token, waits and retries. Torch-free, below both CLIs, so
neither CLI package imports the other."""

from __future__ import annotations

import argparse
import re

from ..errors import NeucodexError


def read_bytes(path: str | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise NeucodexError(f"cannot read the {what} {path}: {e.strerror}") from None


def stream_arguments(p: argparse.ArgumentParser) -> None:
    """How an edge waits, retries and moves between replicas (both edges take the same)."""
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an answer")
    p.add_argument("--retry-deadline", type=float, default=5.0, help="seconds to keep retrying a sample")
    p.add_argument(
        "--stream-age",
        type=float,
        default=2.0,
        help="reopen the stream after this many seconds, at a sample boundary, so round_robin "
        "spreads edges evenly over replicas (0: keep one stream; default 2)",
    )


def stream_options(args: argparse.Namespace) -> dict:
    return {"timeout": args.timeout, "retry_deadline": args.retry_deadline, "stream_age": args.stream_age}


def token_arguments(p: argparse.ArgumentParser, whose: str) -> None:
    p.add_argument("--token", help=f"bearer token {whose} (visible in ps: prefer --token-file or $NEUCODEX_TOKEN)")
    p.add_argument("--token-file", help="read the bearer token from this file (first line)")


def token(args: argparse.Namespace) -> str | None:
    """``--token``, else ``--token-file``, else ``$NEUCODEX_TOKEN``; None when none is given."""
    import os

    if args.token:
        return args.token
    if args.token_file:
        text = read_bytes(args.token_file, "token file").decode(errors="replace").strip().splitlines()
        if not text or not text[0].strip():
            raise NeucodexError(f"the token file {args.token_file} is empty")
        return text[0].strip()
    return os.environ.get("NEUCODEX_TOKEN") or None


def check_target(server: str) -> str:
    """``HOST:PORT``, replicas ``IP:PORT,IP:PORT,…`` or a gRPC target such as ``dns:///name:port``,
    refused early if malformed."""
    if server.startswith(("dns:", "ipv4:", "ipv6:", "unix:")):
        return server
    parts = server.split(",")
    for part in parts:
        m = re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})", part.strip())
        if not m or not 1 <= int(m.group(2)) <= 65535:
            raise NeucodexError(f"--server {server!r} is not HOST:PORT (e.g. 127.0.0.1:50051) or a list of them")
        if len(parts) > 1 and not re.fullmatch(r"\[[0-9a-fA-F:.]+\]|[0-9.]+", m.group(1)):
            raise NeucodexError(
                f"replica {part!r}: list replicas by IP address, or give one dns:///NAME:PORT that resolves to all"
            )
    return server
