"""The edge's side of the wire, whatever computes the code: one gRPC stream, sample after sample.

:class:`StreamingClient` owns everything but the network: it keeps one bidirectional stream
open, sends one codec packet per timestep, and with ``pipeline=True`` computes timestep t+1
while the answer for t is in flight — sending it only if the answer says go on, so the bits sent
are exactly those an offline evaluation counts.

If the cloud is unreachable or dies mid-sample, the packets already computed are replayed on a
new stream until ``retry_deadline`` runs out; then the sample goes to :meth:`_give_up`: here it
ends with ``status="failed"`` and the error; the PyTorch edge (:mod:`.edge`) can answer locally
instead. Never a hang: every wait has a timeout.

Subclasses supply the computation (:meth:`_check`, :meth:`_reset`, :meth:`_code`): the PyTorch
edge runs the checkpoint's head, the torch-free edge (:mod:`neucodex.lite`) an exported ONNX
graph. This module needs no PyTorch.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import asdict, dataclass, field

import grpc
import numpy as np

from .. import codec
from ..errors import NeucodexError
from . import neucodex_pb2 as pb
from . import neucodex_pb2_grpc as pb_grpc
from .protocol import CHANNEL_OPTIONS, RuntimeFailure, channel_target, policy_to_pb

_END = object()
_RETRYABLE = (
    grpc.StatusCode.UNAVAILABLE,  # no server, or it is draining
    grpc.StatusCode.RESOURCE_EXHAUSTED,  # the server is full: another replica, or later, may take it
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
)

KEEPALIVE = [("grpc.keepalive_time_ms", 30_000), ("grpc.keepalive_timeout_ms", 10_000)]
"""Ping the cloud every 30 s on an open connection: a dead peer is found in 40 s, not hours."""


@dataclass
class SampleResult:
    """One sample as the edge saw it. Times in milliseconds; bits and bytes for frames sent."""

    index: int
    prediction: int
    steps: int  # timesteps sent (or run locally, for a fallback)
    status: str  # ok | fallback | failed
    confidence: float = 0.0
    label: int | None = None
    payload_bits: int = 0
    wire_bytes: int = 0  # codec packets, headers included
    grpc_bytes: int = 0  # serialised frame messages (HTTP/2 framing not counted)
    edge_ms: float = 0.0  # head + encoder + encoding, all steps computed
    steps_computed: int = 0  # includes a speculative step discarded on exit
    rtt_ms: float = 0.0  # mean per frame: send → answer
    cloud_ms: float = 0.0  # sum over frames, as the server reports it
    latency_ms: float = 0.0  # first compute → final answer
    retries: int = 0
    error: str = ""
    logits: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class _Transport(Exception):
    """The stream broke or an answer did not come in time; the sample may be retried."""


class _Stream:
    """One open bidirectional call: requests through a queue, answers read in the caller's thread.

    Reading in the caller's thread saves a thread hand-off per frame (a reader thread and an
    answer queue add one on every round trip); a watchdog thread that wakes a few times a second
    cancels the call when an answer is overdue, so every wait still has a timeout."""

    def __init__(self, stub, open_msg: pb.EdgeMessage, metadata, timeout: float) -> None:
        self.requests: queue.Queue = queue.Queue()
        self.timeout = timeout
        self.born = time.monotonic()
        self.requests.put(open_msg)
        self.call = stub.Stream(iter(self.requests.get, _END), metadata=metadata)
        self._deadline: float | None = None  # set while the caller waits for an answer
        self._overdue = False
        self._closed = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, daemon=True)
        self._watchdog.start()
        try:
            first = self.next()
            if first.WhichOneof("kind") != "opened":
                raise _Transport("server did not open the session")
        except BaseException:
            self.close()
            raise
        self.opened = first.opened

    def _watch(self) -> None:
        tick = min(0.25, self.timeout / 4)
        while not self._closed.wait(tick):
            deadline = self._deadline
            if deadline is not None and time.monotonic() > deadline:
                self._overdue = True
                self.call.cancel()
                return

    def send(self, msg: pb.EdgeMessage) -> None:
        self.requests.put(msg)

    def next(self) -> pb.CloudMessage:
        self._deadline = time.monotonic() + self.timeout
        try:
            return next(self.call)
        except StopIteration:
            raise _Transport("the server ended the stream") from None
        except grpc.RpcError as e:
            if self._overdue:
                raise _Transport(f"no answer within {self.timeout:g} s") from None
            code = e.code()
            if code in _RETRYABLE:
                raise _Transport(f"{code.name}: {e.details()}") from None
            raise RuntimeFailure(f"server refused: {code.name}: {e.details()}") from None
        finally:
            self._deadline = None

    def close(self) -> None:
        self._closed.set()
        self.requests.put(_END)
        self.call.cancel()


class StreamingClient:
    """Streams samples to a ``neucodex serve`` cloud; subclasses compute each timestep's code.

    ``policy``: the client's early-exit rule sent in ``Open`` (any object with ``measure``,
    ``threshold``, ``min_steps``, ``max_steps``); ``None`` lets the server apply its own (the
    checkpoint's calibrated one). ``codec_format``: ``auto`` picks the smallest spike format per
    packet; ``probs``: the learned per-channel firing probabilities both ends share.
    ``stream_age``: a stream older than this many seconds is closed at the next sample boundary
    and the next sample opens a new one, which gRPC's ``round_robin`` places on the next replica —
    so over time every edge spends as long on each replica, whatever placement it started with
    (one extra round trip per reopen; 0: keep one stream).
    """

    def __init__(
        self,
        server: str,
        *,
        model_id: str,
        T: int,
        codec_format: str,
        probs: np.ndarray | None = None,
        context_probs: np.ndarray | None = None,
        token: str | None = None,
        tls_ca: bytes | None = None,
        policy=None,
        pipeline: bool = True,
        timeout: float = 10.0,
        retry_deadline: float = 5.0,
        fallback: str = "none",
        fallbacks: tuple[str, ...] = ("none",),
        want_logits: bool = False,
        stream_age: float = 2.0,
    ) -> None:
        if fallback not in fallbacks:
            raise NeucodexError(f"fallback must be {' or '.join(repr(f) for f in fallbacks)}, got {fallback!r}")
        if not stream_age >= 0:
            raise NeucodexError(f"stream_age must be ≥ 0 seconds (0: keep one stream), got {stream_age}")
        self.stream_age = stream_age
        self.model_id = model_id
        self.T = T
        self.format = codec_format
        self.probs = probs
        self.context_probs = context_probs
        self._previous = None  # the code of the timestep before, which the context format codes against
        self.policy = policy
        self.server_policy: pb.Policy | None = None  # what the server said it applies, once opened
        self.pipeline = pipeline
        self.timeout = timeout
        self.retry_deadline = retry_deadline
        self.fallback = fallback
        self.want_logits = want_logits
        self.server = server
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        target, balanced = channel_target(server)
        options = [*CHANNEL_OPTIONS, *KEEPALIVE, *balanced]
        creds = grpc.ssl_channel_credentials(root_certificates=tls_ca) if tls_ca else None
        self._channel = (
            grpc.secure_channel(target, creds, options=options)
            if creds
            else grpc.insecure_channel(target, options=options)
        )
        self._stub = pb_grpc.CoInferenceStub(self._channel)
        self._stream: _Stream | None = None
        self._next_sample = 0
        self._cloud_down = False  # the last sample found no cloud

    # --- what a subclass computes --------------------------------------------------------------
    def _check(self, x) -> None:
        """Refuse, with one line, a sample this edge cannot take."""

    def _reset(self) -> None:
        """Clear neuron state: called before and after every sample."""
        raise NotImplementedError

    def _code(self, x, t: int):
        """The ``[C', H', W']`` code of timestep ``t`` (a NumPy array or a tensor)."""
        raise NotImplementedError

    def _give_up(self, x, packets: list[bytes], res: SampleResult) -> None:
        """The cloud could not be reached in time: the sample fails, explicitly."""
        res.payload_bits = res.wire_bytes = res.grpc_bytes = 0
        res.status, res.steps = "failed", 0

    # --- public ------------------------------------------------------------------------------
    def infer(self, x, label: int | None = None) -> SampleResult:
        """One sample: an image (fed every timestep) or event frames ``[T, ...]``."""
        self._check(x)
        number = self._next_sample
        self._next_sample += 1
        start = time.perf_counter()
        packets: list[bytes] = []
        res = SampleResult(index=number, prediction=-1, steps=0, status="ok", label=label)
        self._reset()
        # While the cloud is known to be down, a sample gets one quick retry, not the whole deadline.
        deadline = time.monotonic() + (min(self.retry_deadline, 0.1) if self._cloud_down else self.retry_deadline)
        delay = 0.05
        while True:
            try:
                self._exchange(number, x, packets, res)
                self._cloud_down = False
                break
            except RuntimeFailure:
                self._drop_stream()
                raise
            except _Transport as e:
                self._drop_stream()
                res.error = str(e)
                if time.monotonic() + delay > deadline:
                    self._cloud_down = True
                    self._give_up(x, packets, res)
                    break
                res.retries += 1
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        self._reset()
        res.latency_ms = (time.perf_counter() - start) * 1000.0
        return res

    def close(self) -> None:
        self._drop_stream()
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- internals ---------------------------------------------------------------------------
    def _compute(self, x, t: int, res: SampleResult) -> bytes:
        t0 = time.perf_counter()
        code = self._code(x, t)
        pkt = codec.encode(
            code,
            self.format,
            timestep=t,
            channel_probs=self.probs,
            context_probs=self.context_probs,
            previous=self._previous if t else None,
        )
        self._previous = code
        res.edge_ms += (time.perf_counter() - t0) * 1000.0
        res.steps_computed += 1
        return pkt

    def _ensure_stream(self) -> _Stream:
        if self._stream is not None and self.stream_age and time.monotonic() - self._stream.born > self.stream_age:
            self._drop_stream()  # at a sample boundary: the balancer places the next stream
        if self._stream is None:
            open_msg = pb.Open(model_id=self.model_id, T=self.T, codec=self.format, want_logits=self.want_logits)
            if self.policy is not None:
                open_msg.policy.CopyFrom(policy_to_pb(self.policy))
            self._stream = _Stream(self._stub, pb.EdgeMessage(open=open_msg), self.metadata, self.timeout)
            self.server_policy = self._stream.opened.policy
        return self._stream

    def _drop_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def _exchange(self, number: int, x, packets: list[bytes], res: SampleResult) -> None:
        """Send the sample's frames from timestep 0 (replaying ``packets``), until exit or T."""
        stream = self._ensure_stream()
        res.payload_bits = res.wire_bytes = res.grpc_bytes = 0
        res.cloud_ms = 0.0
        rtt = 0.0
        for t in range(self.T):
            if t == len(packets):
                packets.append(self._compute(x, t, res))
            frame = pb.EdgeMessage(frame=pb.Frame(sample=number, timestep=t, packet=packets[t]))
            sent = time.perf_counter()
            stream.send(frame)
            res.payload_bits += (len(packets[t]) - codec.HEADER_BYTES) * 8
            res.wire_bytes += len(packets[t])
            res.grpc_bytes += frame.ByteSize()
            if self.pipeline and t + 1 < self.T and len(packets) == t + 1:
                packets.append(self._compute(x, t + 1, res))
            msg = stream.next()
            rtt += (time.perf_counter() - sent) * 1000.0
            if msg.WhichOneof("kind") != "answer" or msg.answer.sample != number or msg.answer.timestep != t:
                raise RuntimeFailure(f"unexpected reply from the server for sample {number}, timestep {t}")
            a = msg.answer
            res.prediction, res.confidence, res.steps = a.prediction, a.confidence, t + 1
            res.cloud_ms += a.cloud_ms
            res.logits = list(a.logits)
            if a.exit:
                break
        res.rtt_ms = rtt / max(res.steps, 1)
        res.status, res.error = "ok", ""
