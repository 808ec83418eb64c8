"""The server under hostile clients: health calls cannot starve sessions, failures are statuses and
one log line (never a traceback, never the token), the log and /metrics are bounded."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2

from h2raw import raw_call
from neucodex.checkpoint import load_checkpoint
from neucodex.evaluate import load_split
from neucodex.runtime import EdgeClient, Server
from neucodex.runtime.process import spawn_server, stop_server

pytestmark = pytest.mark.slow  # runs servers

TOKEN = "s3cretT0kenXYZ"
CHECK, WATCH, LIST = (f"/grpc.health.v1.Health/{m}" for m in ("Check", "Watch", "List"))


def hold_watches(address: str, n: int, service: str = "", channel=None) -> tuple[list, list]:
    """Open ``n`` Watch streams, each on a connection of its own (or all on ``channel``);
    (open streams, refused codes)."""
    open_, refused = [], []
    for _ in range(n):
        ch = channel or grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        call = ch.unary_stream(WATCH)(health_pb2.HealthCheckRequest(service=service).SerializeToString(), timeout=60)
        try:
            next(call)  # the first status: the stream is open and holds its slot
            open_.append((ch, call))
        except grpc.RpcError as e:
            refused.append(e.code())
            if channel is None:
                ch.close()
    return open_, refused


def release(held) -> None:
    for ch, call in held:
        call.cancel()
        ch.close()


def test_token_less_watch_streams_never_take_the_sessions(coinference_checkpoint):
    """2 × --max-sessions Watch streams held open without a token: the health budget refuses what
    is over it at once, and real edges still get every session they ask for — health-checked
    edges over replicas too (a refused Watch reads as "no health service", not "replica down")."""
    ck = load_checkpoint(coinference_checkpoint)
    srv = Server(ck, port=0, token=TOKEN, max_sessions=2, max_per_client=4).start()
    srv.health.budget = srv.health.per_address = 2  # = --max-sessions; every test call comes from 127.0.0.1
    held = []
    try:
        held, refused = hold_watches(srv.address, 2 * srv.health.budget)
        assert len(held) == srv.health.budget and refused == [grpc.StatusCode.UNIMPLEMENTED] * len(refused)
        ds = load_split(ck.info.experiment(), "test", ck.model.T)
        results = []

        def edge(i, target):
            with EdgeClient(ck, target, token=TOKEN, fallback="none") as client:
                results.append(client.infer(ds[i][0]))

        # one edge straight to the server, one balanced over "two replicas" (the same server twice),
        # whose channel health-checks each connection while every health slot is held
        targets = (srv.address, f"{srv.address},{srv.address}")
        threads = [threading.Thread(target=edge, args=(i, t)) for i, t in enumerate(targets)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert [r.status for r in results] == ["ok", "ok"], [r.error for r in results]
        assert srv.health.refused >= len(refused) + 1  # the balanced edge's Watch was refused too
    finally:
        release(held)
        srv.stop(1)


def test_health_limits_per_connection_address_name_size_watch_lifetime_and_list(coinference_checkpoint):
    srv = Server(load_checkpoint(coinference_checkpoint), port=0).start()
    srv.health.watch_lifetime = 1.0
    srv.health.per_address = 3
    held = []
    try:
        with grpc.insecure_channel(srv.address) as one:
            held, refused = hold_watches(srv.address, srv.health.per_connection + 1, channel=one)
            assert len(held) == srv.health.per_connection and refused == [grpc.StatusCode.UNIMPLEMENTED]
            with pytest.raises(grpc.RpcError) as e:  # a Check over the limit: RESOURCE_EXHAUSTED
                one.unary_unary(CHECK)(b"", timeout=10)
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            more, refused = hold_watches(srv.address, 2)  # other connections from the same address
            assert len(more) == srv.health.per_address - srv.health.per_connection and len(refused) == 1
            release(more)
            for _, call in held:
                call.cancel()
        deadline = time.monotonic() + 10
        while srv.health.open and time.monotonic() < deadline:  # cancelled streams give their slots back
            time.sleep(0.05)
        assert srv.health.open == 0
        with grpc.insecure_channel(srv.address) as ch:
            t0 = time.monotonic()
            call = ch.unary_stream(WATCH)(health_pb2.HealthCheckRequest().SerializeToString(), timeout=30)
            assert len(list(call)) == 1 and time.monotonic() - t0 < 10  # ended after its lifetime, status OK
            big = health_pb2.HealthCheckRequest(service="x" * (2 << 20)).SerializeToString()
            for method in (CHECK, WATCH):
                with pytest.raises(grpc.RpcError) as e:
                    (
                        ch.unary_unary(method)(big, timeout=10)
                        if method == CHECK
                        else list(ch.unary_stream(method)(big, timeout=10))
                    )
                assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "over 256 bytes" in e.value.details()
            assert not any(len(k) > 256 for k in srv.health.statuses._server_watchers)  # nothing stored
            listed = health_pb2.HealthListResponse.FromString(ch.unary_unary(LIST)(b"", timeout=10))
            assert listed.statuses["neucodex.v1.CoInference"].status == health_pb2.HealthCheckResponse.SERVING
    finally:
        srv.stop(1)


def scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_hostile_bytes_are_statuses_and_one_line_never_a_traceback_or_the_token(coinference_checkpoint):
    """The red team's byte strings against `neucodex serve`: each client gets INVALID_ARGUMENT or
    RESOURCE_EXHAUSTED, each session record carries that status, the error counter counts it, and
    stderr holds no traceback and never the token."""
    mport = free_port()
    proc, address = spawn_server(coinference_checkpoint, "--token", TOKEN, "--metrics-port", str(mport), "--grace", "1")
    host, port = address.rsplit(":", 1)
    meta = (("authorization", f"Bearer {TOKEN}"),)
    try:
        with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
            raw = ch.stream_stream("/neucodex.v1.CoInference/Stream")
            got = []
            for payload in (b"\x0a\xff\xff\xff\xff\x0f", b"\x0a" + b"\xff" * 8, b"x" * (5 << 20)):
                with pytest.raises(grpc.RpcError) as e:
                    list(raw(iter([payload]), metadata=meta, timeout=20))
                got.append(e.value.code())
            assert got == [grpc.StatusCode.INVALID_ARGUMENT] * 2 + [grpc.StatusCode.RESOURCE_EXHAUSTED]
            for method, body in ((CHECK, b"\x0a\x02\xff\xfe"), (CHECK, b"\xff\xff\xff"), (LIST, b"\x0a\xff")):
                with pytest.raises(grpc.RpcError) as e:
                    ch.unary_unary(method)(body, timeout=10)
                assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        for value in (f"Bearer {TOKEN}".encode() + b"\xff", b"Bearer \xfe" + TOKEN.encode()):
            raw_call(host, int(port), b"/neucodex.v1.CoInference/Stream", [(b"authorization", value)], b"", timeout=2)
        metrics = scrape(mport)
        assert 'neucodex_errors_total{code="INVALID_ARGUMENT"} 2.0' in metrics
        assert 'neucodex_errors_total{code="RESOURCE_EXHAUSTED"} 1.0' in metrics
    finally:
        stop_server(proc)
    err = proc.stderr.read()
    assert "Traceback" not in err and TOKEN not in err, err[-3000:]
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    statuses = sorted(r["status"] for r in records if r.get("event") == "session")
    assert statuses == ["INVALID_ARGUMENT", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"]


def test_session_lines_are_rate_limited_per_client(coinference_checkpoint, caplog):
    import logging

    srv = Server(load_checkpoint(coinference_checkpoint), port=0).start()
    srv.metrics.log_limit.lines = 3
    try:
        with caplog.at_level(logging.INFO, logger="neucodex.server"), grpc.insecure_channel(srv.address) as ch:
            raw = ch.stream_stream("/neucodex.v1.CoInference/Stream")
            for _ in range(10):
                with pytest.raises(grpc.RpcError):
                    list(raw(iter([b"\xff\xff"]), timeout=10))
            time.sleep(0.5)
        lines = [r for r in caplog.records if r.name == "neucodex.server"]
        assert len(lines) == 3 and srv.metrics.log_limit.dropped  # the rest held back, and counted
        assert 'neucodex_errors_total{code="INVALID_ARGUMENT"} 10.0' in _registry_text(srv)
    finally:
        srv.stop(1)


def _registry_text(srv) -> str:
    from prometheus_client import generate_latest

    return generate_latest(srv.metrics.registry).decode()


def test_metrics_endpoint_bounds_slow_clients(coinference_checkpoint):
    """50 slow sockets open on /metrics: its threads stay bounded and a scrape is still answered."""
    srv = Server(load_checkpoint(coinference_checkpoint), port=0).start()
    port = srv.metrics.serve(0)
    socks = []
    try:
        before = threading.active_count()
        for _ in range(50):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\n")  # and never the rest
            socks.append(s)
        time.sleep(0.5)
        assert threading.active_count() - before <= 8
        for s in socks:
            s.close()
        time.sleep(6)  # past the socket timeout: the slots are free again
        assert "neucodex_sessions_total" in scrape(port)
    finally:
        for s in socks:
            s.close()
        srv.metrics.http.shutdown()
        srv.stop(1)
