"""Malformed messages against a real ``neucodex serve``: every failure a status and one session line.

    python bench/fuzz_server.py CHECKPOINT [--messages 10000] [--seed 0]

Each call sends one mutated message on its own ``Stream`` (a valid ``Open`` then a damaged
frame, a damaged ``Open``, random bytes, an oversized message, a bad token) or a damaged
health request, and records the status the client got. Then the server is stopped (SIGTERM) and
its stderr is read: printed are the number of tracebacks (must be 0), whether the token ever
appears (must not), whether every session line carries a status some client got (lines are
rate-limited per client, so most are held back and counted), and whether the server's
``neucodex_errors_total{code}`` equals the error statuses the clients got.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import time
import urllib.request
from collections import Counter
from pathlib import Path

import grpc
import numpy as np

from neucodex import codec
from neucodex.checkpoint import load_checkpoint
from neucodex.runtime import neucodex_pb2 as pb
from neucodex.runtime.process import spawn_server, stop_server

TOKEN = "fuzz-s3cret-token"


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    op = rng.randrange(4)
    if op == 0 and b:
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif op == 1:
        b = b[: rng.randrange(len(b) + 1)]
    elif op == 2:
        b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    else:
        b = bytearray(rng.randbytes(rng.randint(0, 64)))
    return bytes(b)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    ck = load_checkpoint(a.checkpoint)
    shape = ck.model.code_shape
    good_open = pb.EdgeMessage(open=pb.Open(model_id=ck.model_id, T=ck.model.T, codec="auto")).SerializeToString()
    good_pkt = codec.encode((np.random.default_rng(a.seed).random(shape) < 0.3).astype(np.float32), "bitmap")
    mport = free_port()
    proc, address = spawn_server(a.checkpoint, "--token", TOKEN, "--grace", "1", "--metrics-port", str(mport))
    meta = (("authorization", f"Bearer {TOKEN}"),)
    stream_codes: Counter = Counter()
    health_codes: Counter = Counter()
    t0 = time.time()
    try:
        with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
            raw = ch.stream_stream("/neucodex.v1.CoInference/Stream")
            check = ch.unary_unary("/grpc.health.v1.Health/Check")
            for i in range(a.messages):
                kind = i % 5
                try:
                    if kind == 4:
                        check(mutate(b"\x0a\x17neucodex.v1.CoInference", rng), timeout=10)
                        health_codes["OK"] += 1
                        continue
                    if kind == 0:  # a valid Open, then a frame whose packet is damaged
                        frame = pb.Frame(sample=0, timestep=0, packet=mutate(good_pkt, rng))
                        msgs = [good_open, pb.EdgeMessage(frame=frame).SerializeToString()]
                    elif kind == 1:  # a damaged Open
                        msgs = [mutate(good_open, rng)]
                    elif kind == 2:  # random bytes, sometimes oversized
                        msgs = [rng.randbytes(rng.choice([6, 64, 5 << 20]))]
                    else:  # a valid Open, then a damaged frame message
                        frame = pb.EdgeMessage(frame=pb.Frame(sample=0, timestep=0, packet=good_pkt))
                        msgs = [good_open, mutate(frame.SerializeToString(), rng)]
                    list(raw(iter(msgs), metadata=meta, timeout=10))
                    stream_codes["OK"] += 1
                except grpc.RpcError as e:
                    (health_codes if kind == 4 else stream_codes)[e.code().name] += 1
        text = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10).read().decode()
    finally:
        stop_server(proc)
    err = proc.stderr.read()
    records = [json.loads(line) for line in err.splitlines() if line.startswith('{"event":"session"')]
    logged = Counter(r["status"] for r in records)
    counted = Counter(
        {
            line.split('"')[1]: int(float(line.split()[-1]))
            for line in text.splitlines()
            if line.startswith("neucodex_errors_total{")
        }
    )
    held = sum(r.get("lines_held_back", 0) for r in records)
    print(f"{a.messages} messages in {time.time() - t0:.0f} s against {a.checkpoint}")
    print(f"  Stream calls, status the client got: {dict(stream_codes)}")
    print(f"  Stream calls, status in the session lines written: {dict(logged)} (+{held} held back by the rate limit)")
    print(f"  neucodex_errors_total by code: {dict(counted)}")
    print(f"  health calls: {dict(health_codes)}")
    print(f"  tracebacks in stderr: {err.count('Traceback')}; token in stderr: {TOKEN in err}")
    errors = Counter({k: v for k, v in stream_codes.items() if k != "OK"})
    print(f"  every session line carries a status a client got: {set(logged) <= set(stream_codes)}")
    print(f"  the error counter equals the clients' error statuses: {counted == errors}")


if __name__ == "__main__":
    main()
