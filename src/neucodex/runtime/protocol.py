"""The wire: message limits, channel options, policy ⇄ protobuf, the runtime's errors, and the
generated modules of ``neucodex.proto``.

Both sides import this module and nothing of each other; it needs no PyTorch, so the torch-free
edge (:mod:`neucodex.lite`) speaks the same wire through it. The generated ``neucodex_pb2*.py`` are
committed so that running needs only ``grpcio`` and ``protobuf``; ``python -m
neucodex.runtime.protocol`` regenerates them (needs ``grpcio-tools``) and a test checks they
match the ``.proto``.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from ..errors import NeucodexError
from ..policy import ExitPolicy
from . import neucodex_pb2 as pb

HERE = Path(__file__).resolve().parent
PROTO = HERE / "neucodex.proto"
GENERATED = ("neucodex_pb2.py", "neucodex_pb2_grpc.py")

MAX_MESSAGE_BYTES = 4 << 20
"""Largest message either side accepts (a 4 MiB frame is a 32 M-neuron bitmap)."""

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]
"""Options of every channel and server: the same message limits on both sides."""


SERVICE_NAME = "neucodex.v1.CoInference"

BALANCED = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": SERVICE_NAME},  # skip replicas that are draining or down
    }
)
"""Service config for several replicas: round-robin over those whose health service says SERVING."""


# Each client its own connections: with grpc's process-wide subchannel pool, clients in one
# process share them, and every new channel's first stream goes to whichever replica was ready first.
OWN_CONNECTIONS = ("grpc.use_local_subchannel_pool", 1)


def channel_target(server: str) -> tuple[str, list[tuple[str, object]]]:
    """gRPC target and extra channel options for ``server``: ``HOST:PORT``, a comma-separated
    list of replicas (``IP:PORT,IP:PORT``), or a resolver name (``dns:///name:port``) — the last
    two balanced round-robin over healthy replicas."""
    if "," in server:
        hosts = [h.strip() for h in server.split(",")]
        # round_robin sends a channel's first stream to the first replica that connects: start
        # each client at a different one, so single-stream edges spread over the replicas
        hosts = random.sample(hosts, len(hosts))
        scheme = "ipv6" if any(h.startswith("[") for h in hosts) else "ipv4"
        return f"{scheme}:{','.join(hosts)}", [("grpc.service_config", BALANCED), OWN_CONNECTIONS]
    if server.startswith("dns:"):
        return server, [("grpc.service_config", BALANCED), OWN_CONNECTIONS]
    return server, []


class RuntimeFailure(NeucodexError):
    """The runtime could not do what was asked (bad server setup, unreachable cloud, …)."""


def policy_to_pb(p: ExitPolicy) -> pb.Policy:
    """An exit policy on the wire (``max_steps`` 0: the model's T)."""
    return pb.Policy(measure=p.measure, threshold=p.threshold, min_steps=p.min_steps, max_steps=p.max_steps or 0)


def policy_from_pb(m: pb.Policy) -> ExitPolicy:
    """The exit policy a message carries (an unset measure: ``max_softmax``; its checks apply)."""
    return ExitPolicy(m.measure or "max_softmax", m.threshold, max(1, m.min_steps), m.max_steps or None)


def generate(out_root: Path) -> list[Path]:
    """Run protoc on the ``.proto``; the modules land in ``out_root/neucodex/runtime/``."""
    from grpc_tools import protoc

    src_root = HERE.parent.parent  # the folder holding the ``neucodex`` package
    (out_root / "neucodex" / "runtime").mkdir(parents=True, exist_ok=True)
    rel = PROTO.relative_to(src_root)
    rc = protoc.main(["protoc", f"-I{src_root}", f"--python_out={out_root}", f"--grpc_python_out={out_root}", str(rel)])
    if rc != 0:
        raise RuntimeError(f"protoc failed on {PROTO} (exit {rc})")
    return [out_root / "neucodex" / "runtime" / name for name in GENERATED]


if __name__ == "__main__":
    for path in generate(HERE.parent.parent):
        print(f"wrote {path}", file=sys.stderr)
