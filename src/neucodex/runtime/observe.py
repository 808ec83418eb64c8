"""What the cloud server tells its operator: one JSON log line per session, Prometheus metrics.

The log goes to the ``neucodex.server`` logger (``neucodex serve`` prints it on stderr): peer,
model id, samples, frames, final status and error, duration — never the token. The metrics
live in a registry of their own (several servers in one process do not collide) and are served
over HTTP by :meth:`ServerMetrics.serve` (``neucodex serve --metrics-port``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("neucodex.server")


@dataclass
class SessionRecord:
    session: str = ""
    peer: str = ""
    model: str = ""
    samples: int = 0
    frames: int = 0
    status: str = "OK"
    error: str = ""
    seconds: float = 0.0

    def line(self) -> str:
        return json.dumps({"event": "session", **asdict(self)}, separators=(",", ":"))


class ServerMetrics:
    """Prometheus metrics of one server (prefix ``neucodex_``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions = Counter("neucodex_sessions", "sessions opened", registry=r)
        self.active = Gauge("neucodex_sessions_active", "sessions open now", registry=r)
        self.frames = Counter("neucodex_frames", "frames answered", registry=r)
        self.samples = Counter("neucodex_samples", "samples finished", registry=r)
        self.exits = Counter("neucodex_exits", "samples finished, by exit timestep (1-based)", ["timestep"], registry=r)
        self.errors = Counter("neucodex_errors", "sessions ended by an error, by gRPC status", ["code"], registry=r)
        self.latency = Histogram(
            "neucodex_frame_seconds",
            "cloud time per frame: decode, queue, decoder + tail",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
            registry=r,
        )
        self.batch = Histogram(
            "neucodex_batch_size", "frames run together", buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r
        )

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Expose ``/metrics`` over HTTP on ``host:port`` (0: any free port); returns the port."""
        server, _ = start_http_server(port, host, registry=self.registry)
        return server.server_port

    def frame(self, cloud_ms: float, batch: int) -> None:
        self.frames.inc()
        self.latency.observe(cloud_ms / 1000.0)
        self.batch.observe(batch)

    def sample(self, steps: int) -> None:
        self.samples.inc()
        self.exits.labels(str(steps)).inc()

    def closed(self, record: SessionRecord) -> None:
        self.active.dec()
        if record.status != "OK":
            self.errors.labels(record.status).inc()
        log.info(record.line())
