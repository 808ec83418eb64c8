"""The cloud: a gRPC server that decodes spike packets and runs decoder + tail per session.

Every call to ``Stream`` is one session: an ``Open`` naming the model (its content hash), then
frames. A frame that cannot be accepted (malformed packet, wrong shape, out of order, unknown
model) ends that session with a gRPC status whose details say what was wrong; the server goes on
serving everyone else. ``stop`` drains: open samples finish, then streams end.
"""

from __future__ import annotations

import asyncio
import hmac
import socket
import threading
import time
import uuid
from contextlib import suppress
from pathlib import Path

import grpc
import torch
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2

from .. import codec
from ..checkpoint import Checkpoint
from ..errors import InvalidArgumentError, NeucodexError, short
from ..policy import ExitPolicy
from . import neucodex_pb2 as pb
from . import neucodex_pb2_grpc as pb_grpc
from .cloud import Batcher, CloudModel, CloudSession, FrameError, open_coinference
from .health import PREFIX as HEALTH_PREFIX
from .health import GuardedHealth
from .observe import ServerMetrics, SessionRecord, filter_grpc_logs
from .protocol import CHANNEL_OPTIONS, MAX_MESSAGE_BYTES, SERVICE_NAME, RuntimeFailure, policy_from_pb, policy_to_pb

SPARE_RPCS = 16
"""Concurrent calls beyond sessions and health: reflection, and calls refused on arrival."""


def port_is_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now (no SO_REUSEPORT: a port in use is in use)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return False
    for family, kind, proto, _, addr in infos:
        with socket.socket(family, kind, proto) as s:
            try:
                s.bind(addr)
            except OSError:
                return False
    return True


class _TokenInterceptor(grpc.aio.ServerInterceptor):
    """Checks ``authorization: Bearer <token>`` on every call."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

        async def deny(request_iterator, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token (pass --token)")

        self._deny = grpc.stream_stream_rpc_method_handler(deny)

    async def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith(HEALTH_PREFIX):  # probes carry no token; health tells nothing
            return await continuation(handler_call_details)
        given = [v for k, v in (handler_call_details.invocation_metadata or ()) if k == "authorization"]
        # exactly one header, compared in constant time (no timing oracle on the token)
        if len(given) != 1 or not hmac.compare_digest(str(given[0]).encode(), self._expected):
            return self._deny
        return await continuation(handler_call_details)


class CoInferenceServicer(pb_grpc.CoInferenceServicer):
    """Sessions as coroutines on the server's event loop (``grpc.aio``): a frame is received,
    decoded, stepped (batched with other sessions' frames) and answered with no thread hand-off
    but the batch's model thread."""

    def __init__(
        self,
        ck: Checkpoint,
        batcher: Batcher,
        policy: ExitPolicy | None = None,
        delay_ms: float = 0.0,
        idle_timeout: float = 300.0,
        open_timeout: float = 10.0,
        max_per_client: int = 64,
        metrics: ServerMetrics | None = None,
        max_sessions: int = 128,
    ) -> None:
        self.ck = ck
        self.model_id = ck.model_id
        self.batcher = batcher
        self.cloud = batcher.cloud
        self.T = ck.info.model.steps
        self.policy = policy or ck.info.policy
        self.delay = delay_ms / 1000.0  # link emulation: added before every answer
        self.draining = threading.Event()
        self.sessions = 0
        self.idle_timeout = idle_timeout
        self.open_timeout = open_timeout
        self.max_per_client = max_per_client
        self.max_sessions = max_sessions
        self.metrics = metrics or ServerMetrics()
        self._last_seen: dict[asyncio.Task, tuple[float, bool]] = {}  # session → (last message, a frame came)
        self._idled: set[asyncio.Task] = set()
        self._per_client: dict[str, int] = {}  # peer address without port → sessions open

    async def watch_idle(self) -> None:
        """Cancel sessions silent for ``idle_timeout`` s, or that sent Open and no frame for
        ``open_timeout`` s: a silent edge must not hold a slot."""
        while True:
            await asyncio.sleep(min(1.0, self.idle_timeout / 4, self.open_timeout / 4))
            now = time.monotonic()
            for task, (seen, framed) in list(self._last_seen.items()):
                if now - seen > (self.idle_timeout if framed else min(self.open_timeout, self.idle_timeout)):
                    self._idled.add(task)
                    task.cancel()

    # --- one session ---------------------------------------------------------------------
    async def Stream(self, _requests, context) -> None:
        # context.read/write, not the request iterator and a generator: fewer hand-offs per frame
        # (bench/runtime_throughput.py measures the echo round trip)
        task = asyncio.current_task()
        client = context.peer().rsplit(":", 1)[0]
        record = SessionRecord(peer=context.peer(), model=self.model_id[:16])
        started = time.monotonic()
        admitted = False
        self.sessions += 1
        self.metrics.sessions.inc()
        self.metrics.active.inc()
        seen = self._last_seen
        seen[task] = (started, False)
        session: CloudSession | None = None
        try:
            if self.sessions > self.max_sessions:
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"the server is full ({self.max_sessions} sessions open); try again or another replica",
                )
            open_now = self._per_client.get(client, 0)
            if open_now >= self.max_per_client:
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"this client already has {open_now} sessions open (limit {self.max_per_client} per client)",
                )
            self._per_client[client] = open_now + 1
            admitted = True
            first = await self._read(context)
            if first is grpc.aio.EOF:
                return
            opened, session, want_logits = await self._open(first, context)
            record.session = opened.session
            await context.write(pb.CloudMessage(opened=opened))
            last_number = -1
            while (msg := await self._read(context)) is not grpc.aio.EOF:
                seen[task] = (time.monotonic(), True)
                if msg.WhichOneof("kind") != "frame":
                    await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "session is already open; send frames")
                f = msg.frame
                if not session.active:
                    if self.draining.is_set():
                        await context.abort(grpc.StatusCode.UNAVAILABLE, "server is shutting down; no new samples")
                    if f.timestep != 0:
                        await context.abort(
                            grpc.StatusCode.FAILED_PRECONDITION,
                            f"sample {f.sample} starts at timestep {f.timestep}; a sample starts at 0",
                        )
                    if f.sample <= last_number:
                        await context.abort(
                            grpc.StatusCode.FAILED_PRECONDITION,
                            f"sample number {f.sample} is not after the previous sample {last_number}",
                        )
                    session.begin(f.sample)
                    self.batcher.sample_started()
                elif f.sample != session.number or f.timestep != session.t:
                    await context.abort(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"frame (sample {f.sample}, timestep {f.timestep}) out of order: expected "
                        f"(sample {session.number}, timestep {session.t})",
                    )
                answer = await self._step(session, f.packet, want_logits, context)
                record.frames += 1
                self.metrics.frame(answer.cloud_ms, answer.batch)
                if answer.exit:  # account before the write: an edge may close on its last answer
                    record.samples += 1
                    self.metrics.sample(answer.timestep + 1)
                    last_number = session.number
                    session.end()
                    self.batcher.sample_ended()
                await context.write(pb.CloudMessage(answer=answer))
                if answer.exit and self.draining.is_set():
                    return
        except asyncio.CancelledError:
            if task not in self._idled:
                raise
            task.uncancel()  # cancelled by the idle watch: end with a status the edge can read
            await context.abort(grpc.StatusCode.CANCELLED, "session ended: no message within the idle timeout")
        finally:
            if session is not None and session.active:
                self.batcher.sample_ended()
            if admitted:
                left = self._per_client.get(client, 1) - 1
                if left > 0:
                    self._per_client[client] = left
                else:
                    self._per_client.pop(client, None)
            self.sessions -= 1
            seen.pop(task, None)
            self._idled.discard(task)
            code = context.code()  # None or a grpc.StatusCode once the session was aborted
            record.status = code.name if code not in (None, grpc.StatusCode.OK) else "OK"
            record.error = context.details() or ""
            record.seconds = round(time.monotonic() - started, 3)
            self.metrics.closed(record)

    @staticmethod
    async def _read(context):
        """The next message, parsed here (grpc hands over raw bytes): an undecodable one ends the
        session with ``INVALID_ARGUMENT``, not a traceback and an ``UNKNOWN``."""
        raw = await context.read()
        if raw is grpc.aio.EOF:
            return raw
        if len(raw) > MAX_MESSAGE_BYTES:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"message of {len(raw)} bytes is over the {MAX_MESSAGE_BYTES}-byte limit",
            )
        try:
            return pb.EdgeMessage.FromString(raw)
        except (DecodeError, ValueError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"undecodable message ({len(raw)} bytes)")

    async def _open(self, msg: pb.EdgeMessage, context) -> tuple[pb.Opened, CloudSession, bool]:
        if msg.WhichOneof("kind") != "open":
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "a session starts with Open (model id, T, codec)")
        o = msg.open
        if o.model_id != self.model_id:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"model {short(o.model_id, 16) or '(none)'}… is not served here; this server serves "
                f"{self.model_id[:16]}… (use the same checkpoint on both sides)",
            )
        if not 1 <= o.T <= self.T:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"T={o.T} is outside 1..{self.T} for this model")
        if o.codec and o.codec not in codec.CHOICES:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"unknown codec {short(o.codec)!r}; choose from {', '.join(codec.CHOICES)}",
            )
        try:
            policy = policy_from_pb(o.policy) if o.HasField("policy") else self.policy
        except NeucodexError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad exit policy: {short(str(e), 200)}")
        opened = pb.Opened(
            session=uuid.uuid4().hex,
            model_id=self.model_id,
            T=o.T,
            code_shape=list(self.cloud.code_shape),
            policy=policy_to_pb(policy),
        )
        return opened, CloudSession(self.cloud, policy, o.T, self.ck.info.probs, self.ck.info.context), o.want_logits

    async def _step(self, session: CloudSession, packet: bytes, want_logits: bool, context) -> pb.Answer:
        where = f"frame (sample {session.number}, timestep {session.t})"
        t0 = time.perf_counter()
        try:
            code = session.decode(packet)
        except FrameError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{where}: {e}")
        decode_ms = (time.perf_counter() - t0) * 1000.0
        try:
            r = await self.batcher.step(session, code)
        except Exception as e:  # noqa: BLE001 — one clear status for this session, the server stays up
            await context.abort(grpc.StatusCode.INTERNAL, f"{where}: the cloud model failed: {e}")
        d = r.decision
        if self.delay:
            await asyncio.sleep(self.delay)
        return pb.Answer(
            sample=session.number,
            timestep=d.timestep,
            prediction=d.prediction,
            confidence=d.confidence,
            exit=d.exit,
            logits=d.mean_logits.tolist() if want_logits else [],
            cloud_ms=decode_ms + r.cloud_ms,
            batch=r.batch,
        )


class Server:
    """A running cloud server: ``Server(checkpoint).start()``; ``stop()`` drains and shuts down.

    The gRPC server (``grpc.aio``) runs on an event loop in a thread of its own, so this object
    is used from ordinary synchronous code (and from tests) like any other.
    """

    def __init__(
        self,
        checkpoint: str | Path | Checkpoint,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        device: str = "cpu",
        token: str | None = None,
        tls: tuple[bytes, bytes] | None = None,
        max_batch: int = 32,
        max_wait_ms: float = 2.0,
        max_sessions: int = 128,
        policy: ExitPolicy | None = None,
        delay_ms: float = 0.0,
        idle_timeout: float = 300.0,
        open_timeout: float = 10.0,
        max_per_client: int = 64,
        keepalive: float = 60.0,
        max_connection_age: float | None = None,
        reflection: bool = False,
        threads: int = 1,
    ) -> None:
        counts = {
            "threads": threads,
            "max-batch": max_batch,
            "max-sessions": max_sessions,
            "max-sessions-per-client": max_per_client,
        }
        for flag, value in counts.items():
            if value < 1:
                raise InvalidArgumentError(f"--{flag} must be ≥ 1 (got {value})")
        seconds = {"idle-timeout": idle_timeout, "open-timeout": open_timeout, "keepalive": keepalive}
        for flag, value in seconds.items():
            if not value > 0:
                raise InvalidArgumentError(f"--{flag} must be > 0 seconds (got {value})")
        for flag, value in {"max-wait-ms": max_wait_ms, "delay-ms": delay_ms}.items():
            if not value >= 0:
                raise InvalidArgumentError(f"--{flag} must be ≥ 0 (got {value})")
        ck = open_coinference(checkpoint)
        filter_grpc_logs()
        self.metrics = ServerMetrics()
        self.batcher = Batcher(CloudModel(ck.model, device), max_batch, max_wait_ms / 1000.0, threads)
        self.servicer = CoInferenceServicer(
            ck, self.batcher, policy, delay_ms, idle_timeout, open_timeout, max_per_client, self.metrics, max_sessions
        )
        self.host = host
        address = f"{host}:{port}"
        if port and not port_is_free(host, port):  # asked first: grpcio would log a C++ error line as well
            self.batcher.close()
            raise RuntimeFailure(f"cannot listen on {address} (in use, or not an address of this machine)")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="neucodex-server", daemon=True)
        self._thread.start()
        self._stopped = False
        options = [
            *(o for o in CHANNEL_OPTIONS if o[0] != "grpc.max_receive_message_length"),
            # grpc's own limit, past ours: a message over ours reaches Stream, which refuses it with a
            # status and a session record (grpc's refusal would reach Stream as a plain end of stream)
            ("grpc.max_receive_message_length", 2 * MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),  # a second server on the port fails
            ("grpc.keepalive_time_ms", int(keepalive * 1000)),  # ping idle connections: find dead edges
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),  # edges may ping every 10 s
        ]
        if max_connection_age:  # GOAWAY after this long: clients reconnect and re-balance over replicas
            options += [
                ("grpc.max_connection_age_ms", int(max_connection_age * 1000)),
                ("grpc.max_connection_age_grace_ms", 30_000),
            ]
        try:
            self.port = self._call(self._build(address, options, token, tls, max_sessions, reflection))
        except BaseException:
            self._close_loop()
            raise
        if self.port == 0:
            self._close_loop()
            raise RuntimeFailure(f"cannot listen on {address} (in use, or not an address of this machine)")

    async def _build(self, address, options, token, tls, max_sessions, reflection) -> int:
        torch.set_num_threads(self.batcher.threads)  # this loop thread runs lone frames inline
        self.health = GuardedHealth()  # grpc.health.v1: SERVING once started, NOT_SERVING while draining
        self._server = grpc.aio.server(
            interceptors=[_TokenInterceptor(token)] if token else [],
            options=options,
            # sessions are limited in Stream, health calls by their own budget; this bounds the rest
            maximum_concurrent_rpcs=max_sessions + self.health.budget + SPARE_RPCS,
        )
        stream = grpc.stream_stream_rpc_method_handler(  # no request deserializer: Stream parses (and refuses) itself
            self.servicer.Stream, response_serializer=pb.CloudMessage.SerializeToString
        )
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE_NAME, {"Stream": stream}), self.health.handler())
        )
        if reflection:  # grpcurl / grpc_cli can list and describe the services
            from grpc_reflection.v1alpha import reflection as refl

            names = (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, refl.SERVICE_NAME)
            refl.enable_server_reflection(names, self._server)
        try:
            if tls:
                key, cert = tls
                return self._server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
            return self._server.add_insecure_port(address)
        except RuntimeError:  # grpcio: "Failed to bind to address"
            return 0

    def _call(self, coro, timeout: float | None = None):
        """Run ``coro`` on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def model_id(self) -> str:
        return self.servicer.model_id

    def start(self) -> Server:
        async def start() -> None:
            await self._server.start()
            self._watcher = asyncio.create_task(self.servicer.watch_idle())
            for service in ("", SERVICE_NAME):
                await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)

        self._call(start())
        return self

    def stop(self, grace: float = 10.0, drain_delay: float = 0.0) -> None:
        """Report NOT_SERVING and refuse new sessions; after ``drain_delay`` s (time for health
        checkers and load balancers to notice) let open samples finish (up to ``grace`` s), then
        stop — bounded: whatever grpcio still holds after ``grace`` + 5 s is dropped."""
        if self._stopped:
            return
        self._stopped = True
        self.servicer.draining.set()
        with suppress(TimeoutError):  # bounded: go on regardless
            self._call(self.health.enter_graceful_shutdown(), timeout=5.0)
        time.sleep(drain_delay)
        with suppress(TimeoutError):  # bounded: go on regardless
            self._call(self._server.stop(grace), timeout=grace + 5.0)
        self._close_loop()

    def _close_loop(self) -> None:
        async def cancel_rest() -> None:
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        with suppress(TimeoutError):  # bounded: go on regardless
            self._call(cancel_rest(), timeout=5.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5.0)
        self.batcher.close()

    def wait(self) -> None:
        """Block until the server has stopped."""
        self._thread.join()
