"""grpc.health.v1 behind a small budget of its own, so token-less probes cannot starve the sessions.

Health calls carry no token (probes have none), so whoever can reach the port can make them. The
reference servicer counts them against the server's concurrency limit, keeps a condition per
service name it is asked to watch (any size), and logs a traceback for a request it cannot parse.
Here, before the reference servicer (which keeps the statuses) sees a call:

- the call takes one of ``budget`` health slots, at most ``per_connection`` per connection and
  ``per_address`` per client address, or is refused at once; sessions have their own limit
  (``--max-sessions``). A refused ``Check`` gets ``RESOURCE_EXHAUSTED``. A refused ``Watch`` gets
  ``UNIMPLEMENTED``: that is what gRPC's client-side health checking (A17) takes to mean "no
  health service here, the connection is usable", so an edge's balancer keeps a replica whose
  health slots a flood of token-less probes holds (any other code marks the replica down and the
  flood would starve every health-checked edge). A balancer's check is one Watch per connection,
  so edges within the limits are always watched;
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
        self,
        budget: int = 256,
        per_address: int = 64,
        per_connection: int = 2,
        watch_lifetime: float = 300.0,
        max_name: int = MAX_NAME,
    ) -> None:
        self.statuses = health.aio.HealthServicer()
        self.budget, self.per_address, self.per_connection = budget, per_address, per_connection
        self.watch_lifetime, self.max_name = watch_lifetime, max_name
        self.open = 0
        self._held: dict[str, int] = {}  # slots held per connection ("ipv4:IP:PORT") and per address
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
    async def _slot(self, context, refuse: grpc.StatusCode = grpc.StatusCode.RESOURCE_EXHAUSTED):
        connection = context.peer()
        keys = (connection, connection.rsplit(":", 1)[0])  # the connection, and the client's address
        limits = (self.per_connection, self.per_address)
        if self.open >= self.budget or any(self._held.get(k, 0) >= n for k, n in zip(keys, limits, strict=True)):
            self.refused += 1
            await context.abort(
                refuse,
                f"health calls are limited to {self.budget} at once ({self.per_address} per client address, "
                f"{self.per_connection} per connection)",
            )
        self.open += 1
        for k in keys:
            self._held[k] = self._held.get(k, 0) + 1
        try:
            yield
        finally:
            self.open -= 1
            for k in keys:
                left = self._held.get(k, 1) - 1
                if left > 0:
                    self._held[k] = left
                else:
                    self._held.pop(k, None)

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
        async with self._slot(context, refuse=grpc.StatusCode.UNIMPLEMENTED):
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
