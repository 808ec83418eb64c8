"""``neucodex serve``: the cloud half as a gRPC server."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from ..errors import NeucodexError
from ..runtime.options import read_bytes, token, token_arguments
from .common import policy, policy_arguments, positive

NAME = "serve"
HELP = "the cloud: a gRPC server running decoder + tail per session"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="co-inference checkpoint directory")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=50051, help="0: any free port (printed)")
    token_arguments(p, "every call must carry")
    p.add_argument("--tls-cert", help="PEM certificate chain (with --tls-key)")
    p.add_argument("--tls-key", help="PEM private key")
    p.add_argument("--max-batch", type=positive, default=32, help="frames run together at most (dynamic batching)")
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="longest wait for more frames to batch")
    p.add_argument("--no-batching", action="store_true", help="run frames one by one")
    p.add_argument("--max-sessions", type=int, default=128, help="concurrent streams accepted")
    p.add_argument("--grace", type=float, default=10.0, help="seconds open samples get to finish on shutdown")
    p.add_argument(
        "--drain-delay",
        type=float,
        default=0.0,
        help="seconds to report NOT_SERVING on grpc.health.v1 before draining (for load balancers)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="PyTorch threads per model step (default 1: on a 2-core CPU, 2 were slower from a server thread)",
    )
    p.add_argument("--idle-timeout", type=float, default=300.0, help="end sessions silent this long (s)")
    p.add_argument("--open-timeout", type=float, default=10.0, help="end sessions that send no frame this long (s)")
    p.add_argument(
        "--max-sessions-per-client", type=int, default=64, help="concurrent streams one peer address may hold"
    )
    p.add_argument("--keepalive", type=float, default=60.0, help="seconds between keepalive pings on a connection")
    p.add_argument(
        "--max-connection-age",
        type=float,
        help="close connections after this many seconds (clients reconnect: re-balances over replicas)",
    )
    p.add_argument("--reflection", action="store_true", help="enable gRPC server reflection (grpcurl, grpc_cli)")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port (0: any free port)")
    p.add_argument("--metrics-host", default="127.0.0.1", help="address of the metrics endpoint")
    p.add_argument(
        "--delay-ms",
        type=float,
        default=0.0,
        help="add this delay before every answer (emulates a link's round trip in benchmarks)",
    )
    policy_arguments(p, "default: the checkpoint's calibrated policy; clients may send their own")


def run(args: argparse.Namespace) -> None:
    from ..runtime import Server

    if (args.tls_cert is None) != (args.tls_key is None):
        raise NeucodexError("TLS needs both --tls-cert and --tls-key")
    tls = (read_bytes(args.tls_key, "TLS key"), read_bytes(args.tls_cert, "TLS certificate")) if args.tls_cert else None
    secret = token(args)
    if secret and not tls:
        print(
            "neucodex: warning: a bearer token over plaintext can be read on the network; add --tls-cert/--tls-key",
            file=sys.stderr,
        )
    server = Server(
        args.checkpoint,
        args.host,
        args.port,
        device=args.device,
        token=secret,
        tls=tls,
        max_batch=1 if args.no_batching else args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_sessions=args.max_sessions,
        policy=policy(args),
        delay_ms=args.delay_ms,
        idle_timeout=args.idle_timeout,
        open_timeout=args.open_timeout,
        max_per_client=args.max_sessions_per_client,
        keepalive=args.keepalive,
        max_connection_age=args.max_connection_age,
        reflection=args.reflection,
        threads=args.threads,
    ).start()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)  # one JSON line per session
    if args.metrics_port is not None:
        try:
            port = server.metrics.serve(args.metrics_port, args.metrics_host)
        except OSError as e:
            server.stop(0)
            raise NeucodexError(
                f"cannot serve metrics on {args.metrics_host}:{args.metrics_port}: {e.strerror}"
            ) from None
        print(f"metrics on http://{args.metrics_host}:{port}/metrics", file=sys.stderr, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"serving model {server.model_id[:16]}… on {server.address}", flush=True)
    # Wake now and then: a signal that lands on one of grpcio's threads does not interrupt a
    # main thread blocked without a timeout, so its handler would wait for the next wake-up.
    while not stop.wait(0.5):
        pass
    print("draining open samples …", file=sys.stderr, flush=True)
    server.stop(args.grace, args.drain_delay)
    # Every sample has been answered and the port closed. Exit now rather than through the
    # interpreter's finalisation: there grpcio's C++ threads are sometimes destroyed while still
    # joinable ("terminate called without an active exception", SIGABRT) — seen 1 in ~60 stops.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
