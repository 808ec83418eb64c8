"""grpc.health.v1 behind a small budget of its own, so token-less probes cannot starve the sessions.

Health calls carry no token (probes have none), so whoever can reach the port can make them. The
reference servicer counts them against the server's concurrency limit, keeps a condition per
service name it is asked to watch (any size), and logs a traceback for a request it cannot parse.
Here, before the reference servicer (which keeps the statuses) sees a call:

- the call takes one of ``budget`` health slots (``per_peer`` per client address) or is refused
  with ``RESOURCE_EXHAUSTED`` at once; sessions have their own limit (``--max-sessions``);
- a service name over ``max_name`` bytes is refused with ``INVALID_ARGUMENT`` before anything is
  stored; so is a request that does not parse (no traceback: requests arrive as raw bytes);
- a ``Watch`` stream ends after ``watch_lifetime`` seconds (clients re-watch), so it cannot hold
  a slot forever;
- ``List`` is answered (a snapshot of every status).
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2

SERVICE = "grpc.health.v1.Health"
PREFIX = f"/{SERVICE}/"
MAX_NAME = 256
"""Longest service name (bytes) a health call may name."""


class GuardedHealth:
    """The health service: statuses kept by grpc's reference servicer, calls admitted here."""

    def __init__(
        self, budget: int = 16, per_peer: int = 4, watch_lifetime: float = 300.0, max_name: int = MAX_NAME
    ) -> None:
        self.statuses = health.aio.HealthServicer()
        self.budget, self.per_peer_limit = budget, per_peer
        self.watch_lifetime, self.max_name = watch_lifetime, max_name
        self.open = 0
        self._per_peer: dict[str, int] = {}
        self.refused = 0  # calls turned away for want of a slot (tests and metrics read it)

    # --- state, as the reference servicer --------------------------------------------------
    async def set(self, service: str, status) -> None:
        await self.statuses.set(service, status)

    async def enter_graceful_shutdown(self) -> None:
        await self.statuses.enter_graceful_shutdown()

    # --- the calls -----------------------------------------------------------------------
    def handler(self) -> grpc.GenericRpcHandler:
        """The service's methods, with raw-bytes requests (parsed here, never by grpc)."""
        out = health_pb2.HealthCheckResponse.SerializeToString
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Check": grpc.unary_unary_rpc_method_handler(self.check, response_serializer=out),
                "Watch": grpc.unary_stream_rpc_method_handler(self.watch, response_serializer=out),
                "List": grpc.unary_unary_rpc_method_handler(
                    self.list, response_serializer=health_pb2.HealthListResponse.SerializeToString
                ),
            },
        )

    @asynccontextmanager
    async def _slot(self, context):
        peer = context.peer().rsplit(":", 1)[0]
        mine = self._per_peer.get(peer, 0)
        if self.open >= self.budget or mine >= self.per_peer_limit:
            self.refused += 1
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"health calls are limited to {self.budget} at once ({self.per_peer_limit} per client)",
            )
        self.open += 1
        self._per_peer[peer] = mine + 1
        try:
            yield
        finally:
            self.open -= 1
            left = self._per_peer.get(peer, 1) - 1
            if left > 0:
                self._per_peer[peer] = left
            else:
                self._per_peer.pop(peer, None)

    async def _request(self, raw: bytes, context) -> health_pb2.HealthCheckRequest:
        if len(raw) > self.max_name + 16:  # a name field's tag and length take at most a few bytes
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"service name over {self.max_name} bytes")
        try:
            req = health_pb2.HealthCheckRequest.FromString(raw)
        except (DecodeError, ValueError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not a HealthCheckRequest (undecodable message)")
        if len(req.service.encode()) > self.max_name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"service name over {self.max_name} bytes")
        return req

    async def check(self, raw: bytes, context):
        async with self._slot(context):
            return await self.statuses.Check(await self._request(raw, context), context)

    async def watch(self, raw: bytes, context) -> None:
        async with self._slot(context):
            req = await self._request(raw, context)
            try:
                await asyncio.wait_for(self.statuses.Watch(req, context), self.watch_lifetime)
            except TimeoutError:
                return  # the stream ends; the client watches again and takes a slot anew

    async def list(self, raw: bytes, context):
        async with self._slot(context):
            try:
                health_pb2.HealthListRequest.FromString(raw)
            except (DecodeError, ValueError):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not a HealthListRequest (undecodable message)")
            statuses = dict(self.statuses._server_status)  # the reference servicer keeps no public view
            return health_pb2.HealthListResponse(
                statuses={k: health_pb2.HealthCheckResponse(status=v) for k, v in statuses.items()}
            )
