"""What the cloud server tells its operator: one JSON log line per session, Prometheus metrics.

The log goes to the ``neucodex.server`` logger (``neucodex serve`` prints it on stderr): peer,
model id, samples, frames, final status and error, duration — never the token. The metrics
live in a registry of their own (several servers in one process do not collide) and are served
over HTTP by :meth:`ServerMetrics.serve` (``neucodex serve --metrics-port``).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import asdict, dataclass
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

log = logging.getLogger("neucodex.server")


class RateLimit:
    """At most ``lines`` per ``window`` seconds for each key; counts what it held back."""

    def __init__(self, lines: int = 20, window: float = 10.0) -> None:
        self.lines, self.window = lines, window
        self._seen: dict[str, tuple[float, int]] = {}  # key → (window start, lines in it)
        self.dropped: dict[str, int] = {}

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        start, count = self._seen.get(key, (now, 0))
        if now - start > self.window:
            start, count = now, 0
        if len(self._seen) > 10_000:  # many peers: forget the old windows, never grow without bound
            self._seen = {k: v for k, v in self._seen.items() if now - v[0] <= self.window}
        self._seen[key] = (start, count + 1)
        if count < self.lines:
            return True
        self.dropped[key] = self.dropped.get(key, 0) + 1
        return False


_SECRETS = re.compile(r"(?i)(bearer\s+)\S+|b'(?:[^'\\]|\\.)*'|b\"(?:[^\"\\]|\\.)*\"")


class GrpcLogFilter(logging.Filter):
    """grpc's own log records, made safe to keep: one line (no traceback), header values and
    byte strings replaced (an undecodable ``authorization`` header would print the token), and at
    most ``lines`` per ``window`` seconds (a flood of malformed calls must not flood the log)."""

    def __init__(self, lines: int = 20, window: float = 10.0) -> None:
        super().__init__()
        self.limit = RateLimit(lines, window)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.limit.allow("grpc"):
            return False
        record.msg = _SECRETS.sub(lambda m: (m.group(1) or "") + "<dropped>", record.getMessage())[:300]
        record.args = ()
        record.exc_info = record.exc_text = record.stack_info = None
        return True


GRPC_FILTER = GrpcLogFilter()


def filter_grpc_logs() -> None:
    """Put :data:`GRPC_FILTER` on every grpc logger (filters act where a record is made)."""
    names = [n for n in logging.Logger.manager.loggerDict if n == "grpc" or n.startswith("grpc.")]
    for name in {*names, "grpc._cython.cygrpc", "grpc._server", "grpc.aio._server", "grpc._common"}:
        logger = logging.getLogger(name)
        if GRPC_FILTER not in logger.filters:
            logger.addFilter(GRPC_FILTER)


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


METRICS_THREADS = 8
METRICS_TIMEOUT = 5.0


class _QuietHandler(WSGIRequestHandler):
    timeout = METRICS_TIMEOUT  # per socket operation: a slowloris client is dropped

    def log_message(self, *args) -> None:  # scrapes are not news
        pass


class _BoundedServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def __init__(self, *args, **kwargs) -> None:
        self.slots = threading.BoundedSemaphore(METRICS_THREADS)
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: closed at once, no thread
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


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
        self.log_limit = RateLimit()  # session lines per client address

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Expose ``/metrics`` over HTTP on ``host:port`` (0: any free port); returns the port.

        Bounded: at most :data:`METRICS_THREADS` connections are served at once (more are closed
        on arrival) and each socket times out after :data:`METRICS_TIMEOUT` s, so slow or idle
        clients cannot pile up threads."""
        server = make_server(host, port, make_wsgi_app(self.registry), _BoundedServer, _QuietHandler)
        threading.Thread(target=server.serve_forever, name="neucodex-metrics", daemon=True).start()
        self.http = server
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
        peer = record.peer.rsplit(":", 1)[0]
        if self.log_limit.allow(peer):
            held = self.log_limit.dropped.pop(peer, 0)
            log.info(record.line() if not held else record.line()[:-1] + f',"lines_held_back":{held}}}')
