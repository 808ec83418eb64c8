"""The cloud: a gRPC server that decodes spike packets and runs decoder + tail per session.

Every call to ``Stream`` is one session: an ``Open`` naming the model (its content hash), then
frames. A frame that cannot be accepted (malformed packet, wrong shape, out of order, unknown
model) ends that session with a gRPC status whose details say what was wrong; the server goes on
serving everyone else. ``stop`` drains: open samples finish, then streams end.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import torch

from .. import codec
from ..checkpoint import Checkpoint, load_checkpoint
from ..errors import NeucodexError
from ..exit import ExitPolicy
from . import neucodex_pb2 as pb
from . import neucodex_pb2_grpc as pb_grpc
from .cloud import Batcher, CloudModel

MAX_MESSAGE_BYTES = 4 << 20
"""Largest message either side accepts (a 4 MiB frame is a 32 M-neuron bitmap)."""


class RuntimeFailure(NeucodexError):
    """The runtime could not do what was asked (bad server setup, unreachable cloud, …)."""


def policy_to_pb(p: ExitPolicy) -> pb.Policy:
    return pb.Policy(measure=p.measure, threshold=p.threshold, min_steps=p.min_steps, max_steps=p.max_steps or 0)


def policy_from_pb(m: pb.Policy) -> ExitPolicy:
    return ExitPolicy(m.measure or "max_softmax", m.threshold, max(1, m.min_steps), m.max_steps or None)


def own_checkpoint(checkpoint: str | Path | Checkpoint) -> Checkpoint:
    """A checkpoint whose model this process may step alone (neuron state is per model object)."""
    if isinstance(checkpoint, Checkpoint):
        return Checkpoint(copy.deepcopy(checkpoint.model), checkpoint.meta)
    return load_checkpoint(checkpoint)


class _TokenInterceptor(grpc.ServerInterceptor):
    """Checks ``authorization: Bearer <token>`` on every call."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}"

        def deny(request_iterator, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token (pass --token)")

        self._deny = grpc.stream_stream_rpc_method_handler(deny)

    def intercept_service(self, continuation, handler_call_details):
        meta = dict(handler_call_details.invocation_metadata or ())
        if meta.get("authorization") != self._expected:
            return self._deny
        return continuation(handler_call_details)


@dataclass
class _Sample:
    """What the cloud holds for the sample in progress on one session."""

    number: int
    state: list = field(default_factory=list)
    sums: torch.Tensor | None = None
    t: int = 0


class CoInferenceServicer(pb_grpc.CoInferenceServicer):
    def __init__(self, ck: Checkpoint, batcher: Batcher, policy: ExitPolicy | None = None,
                 delay_ms: float = 0.0, idle_timeout: float = 300.0) -> None:
        self.ck = ck
        self.model_id = ck.model_id
        self.batcher = batcher
        self.cloud = batcher.cloud
        self.T = ck.model.T if ck.model.spiking else 1
        self.spiking = ck.model.spiking
        self.policy = policy or ExitPolicy.from_dict(ck.meta.get("exit_policy"))
        self.delay = delay_ms / 1000.0  # link emulation: added before every answer
        self.draining = threading.Event()
        self.closed = threading.Event()  # set once the server has stopped: ends the idle watch
        self.sessions = 0
        self._lock = threading.Lock()
        self.idle_timeout = idle_timeout
        self._last_seen: dict = {}  # context → monotonic time of its last message
        threading.Thread(target=self._watch_idle, name="neucodex-idle", daemon=True).start()

    def _watch_idle(self) -> None:
        """Cancel sessions that sent nothing for ``idle_timeout`` s: a silent edge must not hold a slot."""
        while not self.closed.wait(min(1.0, self.idle_timeout / 4)):
            now = time.monotonic()
            with self._lock:
                idle = [c for c, seen in self._last_seen.items() if now - seen > self.idle_timeout]
            for context in idle:
                context.cancel()

    def _seen(self, context) -> None:
        with self._lock:
            self._last_seen[context] = time.monotonic()

    # --- one session ---------------------------------------------------------------------
    def Stream(self, request_iterator: Iterator[pb.EdgeMessage], context) -> Iterator[pb.CloudMessage]:
        with self._lock:
            self.sessions += 1
        self._seen(context)
        sample: _Sample | None = None
        try:
            first = next(request_iterator, None)
            if first is None:
                return
            opened, policy, T, want_logits = self._open(first, context)
            yield pb.CloudMessage(opened=opened)
            last_number = -1
            for msg in request_iterator:
                self._seen(context)
                kind = msg.WhichOneof("kind")
                if kind == "frame":
                    f = msg.frame
                    if sample is None:
                        if self.draining.is_set():
                            context.abort(grpc.StatusCode.UNAVAILABLE, "server is shutting down; no new samples")
                        if f.timestep != 0:
                            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                          f"sample {f.sample} starts at timestep {f.timestep}; a sample starts at 0")
                        if f.sample <= last_number:
                            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                          f"sample number {f.sample} is not after the previous sample {last_number}")
                        sample = _Sample(f.sample, self.cloud.new_state())
                        self.batcher.sample_started()
                    elif f.sample != sample.number or f.timestep != sample.t:
                        context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                      f"frame (sample {f.sample}, timestep {f.timestep}) out of order: expected "
                                      f"(sample {sample.number}, timestep {sample.t})")
                    answer = self._step(sample, f.packet, policy, T, want_logits, context)
                    yield pb.CloudMessage(answer=answer)
                    if answer.exit:
                        last_number, sample = sample.number, None
                        self.batcher.sample_ended()
                        if self.draining.is_set():
                            return
                elif kind == "close":
                    if sample is not None and msg.close.sample == sample.number:
                        last_number, sample = sample.number, None
                        self.batcher.sample_ended()
                    if self.draining.is_set():
                        return
                else:
                    context.abort(grpc.StatusCode.FAILED_PRECONDITION, "session is already open; send frames")
        finally:
            if sample is not None:
                self.batcher.sample_ended()
            with self._lock:
                self.sessions -= 1
                self._last_seen.pop(context, None)

    def _open(self, msg: pb.EdgeMessage, context) -> tuple[pb.Opened, ExitPolicy, int, bool]:
        if msg.WhichOneof("kind") != "open":
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "a session starts with Open (model id, T, codec)")
        o = msg.open
        if o.model_id != self.model_id:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"model {o.model_id[:16] or '(none)'}… is not served here; this server serves "
                          f"{self.model_id[:16]}… (use the same checkpoint on both sides)")
        if not 1 <= o.T <= self.T:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"T={o.T} is outside 1..{self.T} for this model")
        if o.codec and o.codec not in (*codec.FORMATS, "auto"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"unknown codec {o.codec!r}; choose from {', '.join([*codec.FORMATS, 'auto'])}")
        try:
            policy = policy_from_pb(o.policy) if o.HasField("policy") else self.policy
        except NeucodexError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad exit policy: {e}")
        opened = pb.Opened(session=uuid.uuid4().hex, model_id=self.model_id, T=o.T,
                           code_shape=list(self.cloud.code_shape), policy=policy_to_pb(policy))
        return opened, policy, o.T, o.want_logits

    def _step(self, sample: _Sample, packet: bytes, policy: ExitPolicy, T: int, want_logits: bool,
              context) -> pb.Answer:
        where = f"frame (sample {sample.number}, timestep {sample.t})"
        t0 = time.perf_counter()
        try:
            pkt = codec.decode_packet(packet)
        except codec.CodecError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{where}: {e}")
        if tuple(pkt.tensor.shape) != (1, *self.cloud.code_shape):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"{where}: code shape {tuple(pkt.tensor.shape[1:])} does not match the model's "
                          f"{self.cloud.code_shape} (one [C', H', W'] map per frame)")
        if (pkt.format == "uint8") == self.spiking:
            want = "a spike format" if self.spiking else "uint8"
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{where}: format {pkt.format} sent, model needs {want}")
        decode_ms = (time.perf_counter() - t0) * 1000.0
        try:
            logits, sample.state, cloud_ms, batch = self.batcher.submit(pkt.tensor, sample.state).result()
        except Exception as e:  # noqa: BLE001 — one clear status for this session, the server stays up
            context.abort(grpc.StatusCode.INTERNAL, f"{where}: the cloud model failed: {e}")
        sample.sums = logits if sample.sums is None else sample.sums + logits
        sample.t += 1
        exit_now, conf = policy.check(sample.sums[None], sample.t, T)
        mean = sample.sums / sample.t
        if self.delay:
            time.sleep(self.delay)
        return pb.Answer(sample=sample.number, timestep=sample.t - 1, prediction=int(mean.argmax()),
                         confidence=float(conf[0]), exit=bool(exit_now[0]),
                         logits=mean.tolist() if want_logits else [], cloud_ms=decode_ms + cloud_ms, batch=batch)


class Server:
    """A running cloud server: ``Server(checkpoint).start()``; ``stop()`` drains and shuts down."""

    def __init__(self, checkpoint: str | Path | Checkpoint, host: str = "127.0.0.1", port: int = 0, *,
                 device: str = "cpu", token: str | None = None, tls: tuple[bytes, bytes] | None = None,
                 max_batch: int = 32, max_wait_ms: float = 2.0, max_sessions: int = 128,
                 policy: ExitPolicy | None = None, delay_ms: float = 0.0, idle_timeout: float = 300.0) -> None:
        ck = own_checkpoint(checkpoint)
        if ck.meta["model"].get("coinference") is None:
            raise RuntimeFailure("this checkpoint has no bottleneck: serve a fine-tuned co-inference checkpoint "
                                 "(neucodex finetune)")
        self.batcher = Batcher(CloudModel(ck.model, device), max_batch, max_wait_ms / 1000.0)
        self.servicer = CoInferenceServicer(ck, self.batcher, policy, delay_ms, idle_timeout)
        opts = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_sessions + 4),
                                   interceptors=[_TokenInterceptor(token)] if token else [],
                                   options=opts, maximum_concurrent_rpcs=max_sessions)
        pb_grpc.add_CoInferenceServicer_to_server(self.servicer, self._server)
        address = f"{host}:{port}"
        if tls:
            key, cert = tls
            self.port = self._server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
        else:
            self.port = self._server.add_insecure_port(address)
        if self.port == 0:
            raise RuntimeFailure(f"cannot listen on {address} (in use, or not an address of this machine)")
        self.host = host

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def model_id(self) -> str:
        return self.servicer.model_id

    def start(self) -> Server:
        self._server.start()
        return self

    def stop(self, grace: float = 10.0) -> None:
        """Refuse new sessions, let open samples finish (up to ``grace`` s), then stop."""
        self.servicer.draining.set()
        self._server.stop(grace).wait()
        self.servicer.closed.set()
        self.batcher.close()

    def wait(self) -> None:
        self._server.wait_for_termination()
