"""The gRPC runtime on loopback: equal to offline evaluation, isolated sessions, clear statuses, no lost samples."""

from __future__ import annotations

import json
import os
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib

import grpc
import numpy as np
import pytest
import torch

from neucodex import codec
from neucodex.accounting import measure_bits
from neucodex.checkpoint import load_checkpoint
from neucodex.cli import main
from neucodex.data import stratified
from neucodex.errors import NeucodexError
from neucodex.evaluate import load_split, loader, predict
from neucodex.exit import ExitPolicy, confidence, evaluate_policy, running_mean
from neucodex.runtime import EdgeClient, RuntimeFailure, Server
from neucodex.runtime import neucodex_pb2 as pb
from neucodex.runtime import neucodex_pb2_grpc as pb_grpc
from neucodex.runtime.process import spawn_server
from neucodex.runtime.protocol import GENERATED, HERE, generate

from conftest import sigint_as_from_a_terminal

pytestmark = pytest.mark.slow  # trains models or runs servers

N = 24


@pytest.fixture(scope="module")
def setup(coinference_checkpoint):
    """The checkpoint, its test samples, and their offline logits."""
    ck = load_checkpoint(coinference_checkpoint)
    ds = stratified(load_split(ck.info.experiment(), "test", ck.model.T), N)  # as `neucodex edge --limit N` takes
    logits, labels = predict(ck.model, loader(ds, N, False, 0, 0), torch.device("cpu"))
    # a threshold inside the spread of confidences, so some samples exit early and some do not
    conf = confidence(running_mean(logits), "max_softmax")
    policy = ExitPolicy("max_softmax", float(np.median(conf[0])))
    return ck, ds, logits, labels, policy


@pytest.fixture
def server(setup):
    srv = Server(setup[0], port=0, token="s3cret").start()
    yield srv
    srv.stop(1)


def offline(setup, policy, indices=range(N)):
    ck, ds, logits, labels, _ = setup
    idx = list(indices)
    r = evaluate_policy(logits[:, idx], labels[idx], policy)
    steps = torch.tensor(r["steps"])
    x = torch.stack([ds[i][0] for i in idx])
    bits = [  # with the learned code models both ends of the runtime use
        measure_bits(
            ck.model, x[j : j + 1], steps=steps[j : j + 1], channel_probs=ck.info.probs, context_probs=ck.info.context
        ).payload_bits
        for j in range(len(idx))
    ]
    return r["predictions"], r["steps"], bits


def test_generated_protocol_is_up_to_date(tmp_path):
    pytest.importorskip("grpc_tools")
    for fresh in generate(tmp_path):
        assert fresh.read_text() == (HERE / fresh.name).read_text(), (
            f"regenerate {fresh.name}: python -m neucodex.runtime.protocol"
        )
    compared = sorted(p.name for p in generate(tmp_path))
    assert compared == sorted(GENERATED) == sorted(p.name for p in HERE.glob("neucodex_pb2*.py"))  # none unchecked


def test_edge_command_equals_offline_evaluation(setup, server, coinference_checkpoint, capsys):
    ck_dir = coinference_checkpoint
    ck, _, _, _, policy = setup
    code = main(
        [
            "edge",
            "--server",
            server.address,
            "--checkpoint",
            str(ck_dir),
            "--limit",
            str(N),
            "--token",
            "s3cret",
            "--threshold",
            repr(policy.threshold),
            "--json",
            "--quiet",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    preds, steps, bits = offline(setup, policy)
    samples = out["samples"]
    assert [s["prediction"] for s in samples] == preds
    assert [s["steps"] for s in samples] == steps
    assert [s["payload_bits"] for s in samples] == bits
    assert 1 <= out["summary"]["mean_steps"] < ck.model.T  # the policy exits early on some samples
    assert all(
        s["status"] == "ok" and s["wire_bytes"] == s["payload_bits"] / 8 + s["steps"] * codec.HEADER_BYTES
        for s in samples
    )


def test_eight_concurrent_edges_each_equal_offline(setup, server):
    ck, ds, _, _, policy = setup
    preds, steps, _ = offline(setup, policy)
    results: dict[int, list] = {}

    def edge(k: int) -> None:
        with EdgeClient(ck, server.address, token="s3cret", policy=policy, pipeline=k % 2 == 0) as client:
            results[k] = [client.infer(ds[i][0]) for i in range(k, N, 8)]

    threads = [threading.Thread(target=edge, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(results) == list(range(8))
    for k, rs in results.items():
        idx = list(range(k, N, 8))
        assert [r.prediction for r in rs] == [preds[i] for i in idx]
        assert [r.steps for r in rs] == [steps[i] for i in idx]
        assert all(r.status == "ok" for r in rs)


def _session(server, ck, frames, token="s3cret", model_id=None):
    """Open a raw session, send ``frames`` (EdgeMessages); return the answers or the RpcError."""
    with grpc.insecure_channel(server.address) as ch:
        stub = pb_grpc.CoInferenceStub(ch)
        msgs = [pb.EdgeMessage(open=pb.Open(model_id=model_id or ck.model_id, T=ck.model.T, codec="auto")), *frames]
        meta = (("authorization", f"Bearer {token}"),) if token else ()
        try:
            return list(stub.Stream(iter(msgs), metadata=meta, timeout=30))
        except grpc.RpcError as e:
            return e


def _frame(t, packet, sample=0):
    return pb.EdgeMessage(frame=pb.Frame(sample=sample, timestep=t, packet=packet))


@pytest.mark.parametrize(
    "case, status, words",
    [
        ("random bytes", grpc.StatusCode.INVALID_ARGUMENT, "bad magic"),
        ("bad crc", grpc.StatusCode.INVALID_ARGUMENT, "CRC32"),
        ("wrong shape", grpc.StatusCode.INVALID_ARGUMENT, "does not match the model"),
        (
            "huge declared shape",
            grpc.StatusCode.INVALID_ARGUMENT,
            "code shape (256, 256, 256) does not match the model",
        ),
        ("header timestep", grpc.StatusCode.INVALID_ARGUMENT, "header says timestep 3, the frame is timestep 0"),
        ("uint8 to an SNN", grpc.StatusCode.INVALID_ARGUMENT, "format uint8 sent, model needs a spike format"),
        ("out of order", grpc.StatusCode.FAILED_PRECONDITION, "out of order"),
        ("wrong model id", grpc.StatusCode.NOT_FOUND, "not served here"),
        ("no token", grpc.StatusCode.UNAUTHENTICATED, "bearer token"),
        ("wrong token", grpc.StatusCode.UNAUTHENTICATED, "bearer token"),
        ("too large", grpc.StatusCode.RESOURCE_EXHAUSTED, "over the 4194304-byte limit"),
    ],
)
def test_bad_sessions_get_a_clear_status_and_the_server_goes_on(setup, server, case, status, words):
    ck, ds, *_ = setup
    shape = ck.model.code_shape
    good = codec.encode(torch.zeros(shape), "bitmap", timestep=0)
    token, model_id, frames = "s3cret", None, [_frame(0, good)]
    if case == "random bytes":
        frames = [_frame(0, os.urandom(40))]
    elif case == "bad crc":
        frames = [_frame(0, good[:-1] + bytes([good[-1] ^ 1]))]
    elif case == "wrong shape":
        frames = [_frame(0, codec.encode(torch.zeros(shape[0] + 1, *shape[1:]), "bitmap"))]
    elif case == "huge declared shape":  # 24 bytes that declare 16 M neurons: refused before any allocation
        head = struct.pack("<cBBBHHHHHI", b"N", 1, 0, 0, 0, 1, 256, 256, 256, 2)
        frames = [_frame(0, head + struct.pack("<I", zlib.crc32(b"\0\0", zlib.crc32(head))) + b"\0\0")]
    elif case == "header timestep":
        frames = [_frame(0, codec.encode(torch.zeros(shape), "bitmap", timestep=3))]
    elif case == "uint8 to an SNN":
        frames = [_frame(0, codec.encode(torch.zeros(shape), "uint8"))]
    elif case == "out of order":
        frames = [_frame(0, good), _frame(2, good)]
    elif case == "too large":
        frames = [_frame(0, bytes(5 << 20))]
    elif case == "wrong model id":
        model_id = "0" * 64
    else:
        token = None if case == "no token" else "guess"
    err = _session(server, ck, frames, token, model_id)
    assert isinstance(err, grpc.RpcError) and err.code() == status and words in err.details()
    ok = _session(server, ck, [_frame(0, good)])  # the server still serves a good session
    assert not isinstance(ok, grpc.RpcError) and ok[1].answer.timestep == 0


def test_client_reports_a_refusal_clearly(setup, server):
    ck, ds, *_ = setup
    with EdgeClient(ck, server.address, token="wrong") as client, pytest.raises(RuntimeFailure, match="UNAUTH"):
        client.infer(ds[0][0])


@pytest.mark.parametrize("fallback", ["local", "none"])
def test_server_killed_mid_stream_never_loses_a_sample(setup, coinference_checkpoint, fallback):
    ck, ds, _, _, policy = setup
    preds, steps, _ = offline(setup, policy)
    proc, address = spawn_server(coinference_checkpoint)
    try:
        with EdgeClient(ck, address, policy=policy, fallback=fallback, timeout=5, retry_deadline=1.0) as client:
            first = client.infer(ds[0][0])
            assert first.status == "ok" and first.prediction == preds[0]
            proc.send_signal(signal.SIGKILL)  # the stream is open; the cloud dies under it
            proc.wait(timeout=10)
            t0 = time.monotonic()
            rs = [client.infer(ds[i][0]) for i in (1, 2)]
            assert time.monotonic() - t0 < 20
    finally:
        proc.kill()
    if fallback == "local":
        assert [r.status for r in rs] == ["fallback"] * 2
        assert [r.prediction for r in rs] == preds[1:3] and [r.steps for r in rs] == steps[1:3]
    else:
        assert [r.status for r in rs] == ["failed"] * 2 and all(r.error for r in rs)
    assert all(r.retries >= 1 and r.payload_bits == 0 for r in rs)


def test_serve_drains_on_sigterm(coinference_checkpoint):
    proc, address = spawn_server(coinference_checkpoint, "--grace", "2")
    proc.send_signal(signal.SIGTERM)
    rc, err = proc.wait(timeout=20), proc.stderr.read()
    assert rc == 0, err
    assert "draining" in err


@pytest.mark.parametrize(
    "argv, words",
    [
        (["serve", "--checkpoint", "/nonexistent"], "no checkpoint at /nonexistent"),
        (["serve", "--checkpoint", "X", "--tls-cert", "c.pem"], "both --tls-cert and --tls-key"),
        (["serve", "--checkpoint", "X", "--threads", "0"], "--threads must be ≥ 1 (got 0)"),
        (["serve", "--checkpoint", "X", "--max-sessions", "-1"], "--max-sessions must be ≥ 1 (got -1)"),
        (["serve", "--checkpoint", "X", "--idle-timeout", "0"], "--idle-timeout must be > 0 seconds (got 0.0)"),
        (["serve", "--checkpoint", "X", "--max-wait-ms", "-1"], "--max-wait-ms must be ≥ 0 (got -1.0)"),
        (["edge", "--server", "127.0.0.1:1", "--checkpoint", "/nonexistent"], "no checkpoint at /nonexistent"),
    ],
)
def test_runtime_cli_errors_are_one_line(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]


def test_the_edge_refuses_data_its_model_cannot_take_before_connecting(coinference_checkpoint, capsys):
    argv = ["edge", "--server", "127.0.0.1:1", "--checkpoint", str(coinference_checkpoint), "--split", "all"]
    assert main([*argv, "--dataset", "cifar10-demo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neucodex: error: dataset 'cifar10-demo' gives 3-channel samples")


def test_serving_a_backbone_is_refused(coinference_checkpoint, capsys):
    backbone = str(load_checkpoint(coinference_checkpoint).info.backbone_path)
    assert main(["serve", "--checkpoint", backbone, "--port", "0"]) == 2
    assert "has no bottleneck" in capsys.readouterr().err


def test_graceful_stop_finishes_the_open_sample(setup):
    ck, ds, *_ = setup
    never = ExitPolicy(threshold=2.0)
    srv = Server(ck, port=0, delay_ms=150).start()  # each answer takes 150 ms: the sample is open when stop comes
    out = {}
    with EdgeClient(ck, srv.address, policy=never, retry_deadline=0.5, fallback="none") as client:
        worker = threading.Thread(target=lambda: out.setdefault("r", client.infer(ds[0][0])))
        worker.start()
        time.sleep(0.2)
        srv.stop(grace=10)
        worker.join(timeout=30)
        after = client.infer(ds[1][0])
    assert out["r"].status == "ok" and out["r"].steps == ck.model.T
    assert after.status == "failed"  # refused after shutdown, reported, not hung


def test_tls_and_token(setup, tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    ck, ds, *_ = setup
    srv = Server(ck, "localhost", 0, token="t", tls=(key.read_bytes(), cert.read_bytes())).start()
    try:
        with EdgeClient(ck, f"localhost:{srv.port}", token="t", tls_ca=cert.read_bytes()) as client:
            assert client.infer(ds[0][0]).status == "ok"
        with EdgeClient(ck, f"localhost:{srv.port}", token="t", retry_deadline=0.3, fallback="none") as plain:
            assert plain.infer(ds[0][0]).status == "failed"  # no TLS: no session
    finally:
        srv.stop(1)


def test_a_silent_session_is_ended(setup):
    ck, *_ = setup
    srv = Server(ck, port=0, idle_timeout=0.5).start()
    try:
        with grpc.insecure_channel(srv.address) as ch:
            requests = [pb.EdgeMessage(open=pb.Open(model_id=ck.model_id, T=ck.model.T, codec="auto"))]
            gate = threading.Event()

            def silent():  # opens, then sends nothing until the test ends
                yield from requests
                gate.wait(20)

            t0 = time.monotonic()
            with pytest.raises(grpc.RpcError) as err:
                list(pb_grpc.CoInferenceStub(ch).Stream(silent(), timeout=20))
            gate.set()
        assert err.value.code() == grpc.StatusCode.CANCELLED and time.monotonic() - t0 < 10
        deadline = time.monotonic() + 10  # the handler's thread is released, not left blocked
        while srv.servicer.sessions and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.servicer.sessions == 0
    finally:
        srv.stop(1)


def test_p95_is_nearest_rank():
    from neucodex.runtime.clientstats import percentile

    assert percentile([1592.36, 1583.80], 95) == 1592.36  # two samples: the larger, never below the mean
    assert percentile(list(range(1, 101)), 95) == 95 and percentile([7.0], 95) == 7.0


def test_edge_exit_codes_without_a_cloud(coinference_checkpoint):
    """Documented: 0 all answered (fallback warns on stderr), 1 some failed, 2 usage errors."""
    base = [
        sys.executable,
        "-m",
        "neucodex.cli",
        "edge",
        "--checkpoint",
        str(coinference_checkpoint),
        "--limit",
        "2",
        "--retry-deadline",
        "0.2",
        "--timeout",
        "1",
        "--quiet",
    ]
    failed = subprocess.run([*base, "--server", "127.0.0.1:1", "--fallback", "none"], capture_output=True, text=True)
    assert failed.returncode == 1 and "2 of 2 samples failed" in failed.stderr
    local = subprocess.run([*base, "--server", "127.0.0.1:1"], capture_output=True, text=True)
    assert local.returncode == 0 and "2 samples answered on the edge" in local.stderr
    garbage = subprocess.run([*base, "--server", "garbage"], capture_output=True, text=True)
    assert garbage.returncode == 2
    assert garbage.stderr.strip() == (
        "neucodex: error: --server 'garbage' is not HOST:PORT (e.g. 127.0.0.1:50051) or a list of them"
    )


def test_a_busy_port_is_one_line_and_never_shared(coinference_checkpoint):
    first = Server(coinference_checkpoint, port=0).start()
    try:
        with pytest.raises(RuntimeFailure, match=f"cannot listen on 127.0.0.1:{first.port} \\(in use"):
            Server(coinference_checkpoint, port=first.port)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "neucodex.cli",
                "serve",
                "--checkpoint",
                str(coinference_checkpoint),
                "--port",
                str(first.port),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
            f"neucodex: error: cannot listen on 127.0.0.1:{first.port} (in use, or not an address of this machine)"
        ]
    finally:
        first.stop(0)


def test_duplicate_authorization_headers_are_refused(setup, server):
    ck, *_ = setup
    with grpc.insecure_channel(server.address) as ch:
        stub = pb_grpc.CoInferenceStub(ch)
        msgs = [pb.EdgeMessage(open=pb.Open(model_id=ck.model_id, T=ck.model.T, codec="auto"))]
        meta = (("authorization", "Bearer guess"), ("authorization", "Bearer s3cret"))
        with pytest.raises(grpc.RpcError) as e:
            list(stub.Stream(iter(msgs), metadata=meta, timeout=30))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_echoed_client_strings_are_bounded(setup, server):
    ck, *_ = setup
    with grpc.insecure_channel(server.address) as ch:
        stub = pb_grpc.CoInferenceStub(ch)
        for open_msg in (
            pb.Open(model_id=ck.model_id, T=ck.model.T, codec="x" * 10_000),
            pb.Open(model_id=ck.model_id, T=ck.model.T, policy=pb.Policy(measure="m" * 10_000)),
            pb.Open(model_id="z" * 10_000, T=ck.model.T),
        ):
            with pytest.raises(grpc.RpcError) as e:
                list(
                    stub.Stream(
                        iter([pb.EdgeMessage(open=open_msg)]),
                        metadata=(("authorization", "Bearer s3cret"),),
                        timeout=30,
                    )
                )
            assert e.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
            assert len(e.value.details()) < 400


def test_a_nan_exit_threshold_is_refused_and_the_server_goes_on(setup, server, coinference_checkpoint, capsys):
    """NaN compares false with every confidence: accepted, it would silently turn early exit off."""
    ck, *_ = setup
    auth = (("authorization", "Bearer s3cret"),)
    with grpc.insecure_channel(server.address) as ch:
        stub = pb_grpc.CoInferenceStub(ch)
        bad = pb.Open(model_id=ck.model_id, T=ck.model.T, policy=pb.Policy(measure="margin", threshold=float("nan")))
        with pytest.raises(grpc.RpcError) as e:
            list(stub.Stream(iter([pb.EdgeMessage(open=bad)]), metadata=auth, timeout=30))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.details() == "bad exit policy: the early-exit threshold must be a number, got nan"
    edge = ["edge", "--server", server.address, "--checkpoint", str(coinference_checkpoint), "--token", "s3cret"]
    assert main([*edge, "--limit", "2", "--quiet", "--fallback", "none", "--json"]) == 0  # it still serves
    assert [r["status"] for r in json.loads(capsys.readouterr().out)["samples"]] == ["ok", "ok"]


def test_token_from_a_file_or_the_environment(setup, server, coinference_checkpoint, tmp_path, monkeypatch, capsys):
    (tmp_path / "token").write_text("s3cret\n")
    base = [
        "edge",
        "--server",
        server.address,
        "--checkpoint",
        str(coinference_checkpoint),
        "--limit",
        "1",
        "--quiet",
        "--fallback",
        "none",
        "--json",
    ]
    assert main([*base, "--token-file", str(tmp_path / "token")]) == 0
    monkeypatch.setenv("NEUCODEX_TOKEN", "s3cret")
    assert main(base) == 0
    monkeypatch.setenv("NEUCODEX_TOKEN", "wrong")
    assert main(base) == 2 and "UNAUTHENTICATED" in capsys.readouterr().err


def test_a_full_server_makes_the_edge_fall_back_not_abort(setup):
    ck, ds, *_ = setup
    srv = Server(ck, port=0, max_sessions=1).start()
    hog = grpc.insecure_channel(srv.address)
    held = queue.Queue()
    opened = pb.EdgeMessage(open=pb.Open(model_id=ck.model_id, T=ck.model.T, codec="auto"))

    def requests():
        yield opened
        yield from iter(held.get, None)

    call = pb_grpc.CoInferenceStub(hog).Stream(requests())
    try:
        next(call)  # the one slot is taken by a session that sends Open and then nothing
        with EdgeClient(ck, srv.address, retry_deadline=0.5, timeout=5) as client:
            r = client.infer(ds[0][0])
        assert r.status == "fallback" and r.retries >= 1 and "RESOURCE_EXHAUSTED" in r.error
    finally:
        held.put(None)
        call.cancel()
        hog.close()
        srv.stop(0)


def test_sigterm_ends_after_an_undecodable_message(coinference_checkpoint):
    proc, address = spawn_server(coinference_checkpoint, "--grace", "1")
    try:
        with grpc.insecure_channel(address) as ch:
            raw = ch.stream_stream("/neucodex.v1.CoInference/Stream")  # no serializer: raw bytes on the wire
            with pytest.raises(grpc.RpcError):
                list(raw(iter([b"\xff\xff"]), timeout=10))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()


def test_standard_health_service_serving_then_not_serving_while_draining(setup):
    """grpc.health.v1 answers without a token (probes carry none): SERVING once started for the
    server and the co-inference service; NOT_SERVING as soon as a stop begins draining."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    srv = Server(setup[0], port=0, token="s3cret").start()
    S = health_pb2.HealthCheckResponse
    with grpc.insecure_channel(srv.address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        for service in ("", "neucodex.v1.CoInference"):
            assert stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status == S.SERVING
        with pytest.raises(grpc.RpcError) as e:
            stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        stopper = threading.Thread(target=srv.stop, kwargs={"grace": 1.0, "drain_delay": 2.0})
        stopper.start()
        time.sleep(0.5)
        assert stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status == S.NOT_SERVING
        stopper.join(30)
    assert not stopper.is_alive()


def test_infer_refuses_a_batch_of_images_instead_of_reading_it_as_frames(setup, server):
    from neucodex.errors import InvalidArgumentError

    ck, ds, *_ = setup
    client = EdgeClient(ck, server.address, token="s3cret")
    try:
        batch = torch.stack([ds[i][0] for i in range(4)])
        with pytest.raises(InvalidArgumentError, match=r"one sample, a \[C, H, W\] image; got shape \(4, "):
            client.infer(batch)
        assert client.infer(ds[0][0]).status == "ok"  # one image still works
    finally:
        client.close()


def hold_open_session(ck, address: str):
    """A raw stream that sends Open and then nothing; returns (call, release)."""
    held = queue.Queue()
    opened = pb.EdgeMessage(open=pb.Open(model_id=ck.model_id, T=ck.model.T, codec="auto"))

    def requests():
        yield opened
        yield from iter(held.get, None)

    call = pb_grpc.CoInferenceStub(grpc.insecure_channel(address)).Stream(requests())
    return call, lambda: (held.put(None), call.cancel())


def test_one_client_cannot_take_every_session(setup):
    ck, ds, *_ = setup
    srv = Server(ck, port=0, max_per_client=2).start()
    calls = [hold_open_session(ck, srv.address) for _ in range(2)]
    try:
        for call, _ in calls:
            next(call)  # both admitted
        with EdgeClient(ck, srv.address, retry_deadline=0.3, timeout=5, fallback="none") as client:
            r = client.infer(ds[0][0])
        assert r.status == "failed" and "limit 2 per client" in r.error
    finally:
        for _, release in calls:
            release()
        srv.stop(1)


def test_an_open_without_frames_is_ended_after_the_open_timeout(setup):
    ck, *_ = setup
    srv = Server(ck, port=0, open_timeout=0.5).start()
    call, release = hold_open_session(ck, srv.address)
    try:
        next(call)
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as e:
            next(call)
        assert e.value.code() == grpc.StatusCode.CANCELLED and time.monotonic() - t0 < 5
    finally:
        release()
        srv.stop(1)


def test_sessions_are_logged_and_counted_in_prometheus_metrics(setup, caplog):
    import urllib.request

    ck, ds, _, _, policy = setup
    srv = Server(ck, port=0, token="s3cret").start()
    port = srv.metrics.serve(0)
    try:
        with caplog.at_level("INFO", logger="neucodex.server"):
            with EdgeClient(ck, srv.address, token="s3cret", policy=policy) as client:
                rs = [client.infer(ds[i][0]) for i in range(3)]
            deadline = time.monotonic() + 5
            while not caplog.records and time.monotonic() < deadline:
                time.sleep(0.05)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        srv.stop(1)
    record = json.loads(caplog.records[0].getMessage())
    assert record["event"] == "session" and record["samples"] == 3 and record["model"] == ck.model_id[:16]
    assert record["frames"] == sum(r.steps for r in rs) and record["peer"].startswith("ipv")
    assert "s3cret" not in caplog.text
    metrics = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line[:1] != "#"}
    assert metrics["neucodex_samples_total"] == 3 and metrics["neucodex_frames_total"] == record["frames"]
    exits = {int(k.split('"')[1]): v for k, v in metrics.items() if k.startswith("neucodex_exits_total{")}
    assert exits == {s: sum(r.steps == s for r in rs) for s in {r.steps for r in rs}}
    assert metrics["neucodex_frame_seconds_count"] == record["frames"]


def test_reflection_lists_the_services(setup):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    srv = Server(setup[0], port=0, reflection=True).start()
    try:
        with grpc.insecure_channel(srv.address) as channel:
            services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    finally:
        srv.stop(1)
    assert {"neucodex.v1.CoInference", "grpc.health.v1.Health"} <= services


def test_replicas_round_robin_and_a_killed_replica_loses_no_sample(setup, coinference_checkpoint):
    import urllib.request

    ck, ds, _, _, policy = setup
    preds, steps, _ = offline(setup, policy)
    replicas = [spawn_server(coinference_checkpoint, "--metrics-port", "0") for _ in range(3)]
    metrics = [proc.stderr.readline().strip().rsplit(" ", 1)[-1] for proc, _ in replicas]  # "metrics on URL"

    def active(url: str) -> float:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        return next(float(line.split()[1]) for line in text.splitlines() if line.startswith("neucodex_sessions_active"))

    target = ",".join(address for _, address in replicas)
    halfway = threading.Barrier(5, timeout=60)
    results: dict[int, list] = {}

    def edge(k: int) -> None:
        with EdgeClient(ck, target, policy=policy, fallback="none", timeout=5, retry_deadline=10) as client:
            rs = [client.infer(ds[i][0]) for i in range(N // 2)]
            halfway.wait()  # every edge has a stream open on some replica
            halfway.wait()  # … and one replica has been killed
            results[k] = rs + [client.infer(ds[i][0]) for i in range(N // 2, N)]

    try:
        threads = [threading.Thread(target=edge, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        halfway.wait()
        load = [active(url) for url in metrics]
        victim = max(range(3), key=lambda j: load[j])
        replicas[victim][0].send_signal(signal.SIGKILL)  # a replica with open streams dies under them
        replicas[victim][0].wait(timeout=10)
        halfway.wait()
        for t in threads:
            t.join(timeout=120)
    finally:
        for proc, _ in replicas:
            proc.kill()
    assert sum(load) == 4  # every edge had its stream open on some replica when one was killed
    assert sorted(results) == [0, 1, 2, 3]
    for rs in results.values():
        assert [r.status for r in rs] == ["ok"] * N
        assert [r.prediction for r in rs] == preds and [r.steps for r in rs] == steps
    assert sum(r.retries for rs in results.values() for r in rs) >= load[victim]  # its edges replayed elsewhere


def test_an_old_stream_is_reopened_so_round_robin_spreads_an_edge_over_replicas(setup):
    """With stream_age the edge closes its stream at a sample boundary once it is that old, and
    gRPC's round_robin puts the next one on the next replica; with 0 it keeps one stream."""
    ck, ds, _, _, policy = setup
    preds, steps, _ = offline(setup, policy)
    servers = [Server(ck, port=0).start() for _ in range(2)]

    def opened_on(server: Server) -> float:
        return server.metrics.registry.get_sample_value("neucodex_sessions_total")

    target = ",".join(s.address for s in servers)
    try:
        opened = []
        for age in (0.0, 1e-6):
            before = [opened_on(s) for s in servers]
            with EdgeClient(ck, target, policy=policy, fallback="none", stream_age=age) as client:
                rs = [client.infer(ds[i][0]) for i in range(N)]
            assert [r.prediction for r in rs] == preds and [r.steps for r in rs] == steps
            opened.append([opened_on(s) - b for s, b in zip(servers, before, strict=True)])
    finally:
        for s in servers:
            s.stop(1)
    assert sorted(opened[0]) == [0, 1]  # one stream for all samples, on one replica
    assert sum(opened[1]) == N and min(opened[1]) >= N // 2 - 1  # a stream per sample, alternating
    with pytest.raises(NeucodexError, match="stream_age must be"):
        EdgeClient(ck, target, stream_age=-1)


def test_many_health_checked_edges_from_one_address_spread_evenly_over_replicas(setup):
    """Eight edges on one address, each health-checking both replicas (more Watch streams than a
    per-address health limit of 4 allowed, which marked replicas down): every sample answered,
    and with a stream per sample each replica opens half the sessions."""
    ck, ds, _, _, policy = setup
    preds, steps, _ = offline(setup, policy)
    servers = [Server(ck, port=0).start() for _ in range(2)]
    target = ",".join(s.address for s in servers)
    results: dict[int, list] = {}

    def edge(k: int) -> None:
        with EdgeClient(ck, target, policy=policy, fallback="none", stream_age=1e-6) as client:
            results[k] = [client.infer(ds[i][0]) for i in range(N)]

    try:
        threads = [threading.Thread(target=edge, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        opened = [s.metrics.registry.get_sample_value("neucodex_sessions_total") for s in servers]
    finally:
        for s in servers:
            s.stop(1)
    assert sorted(results) == list(range(8))
    for rs in results.values():
        assert [r.status for r in rs] == ["ok"] * N, [r.error for r in rs if r.status != "ok"]
        assert [r.prediction for r in rs] == preds and [r.steps for r in rs] == steps
    assert sum(opened) == 8 * N and abs(opened[0] - opened[1]) <= 8  # each edge alternates: ±1 per edge


def test_ctrl_c_in_edge_and_serve_is_one_line(coinference_checkpoint):
    """Ctrl-C one second into a run (the command is working: the link is slow) ends the edge with
    one line and exit 130, and the server with a drain and exit 0 — no traceback, no hang."""
    proc, address = spawn_server(coinference_checkpoint, "--delay-ms", "300", "--grace", "2")
    interrupt_after_1s = (
        "import os, signal, sys, threading\n"
        "from neucodex.cli import main\n"
        "threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    try:
        edge = subprocess.run(
            [sys.executable, "-c", interrupt_after_1s, "edge", "--checkpoint", str(coinference_checkpoint)]
            + ["--server", address, "--limit", "50", "--quiet"],
            capture_output=True,
            text=True,
            timeout=60,
            preexec_fn=sigint_as_from_a_terminal,
        )
    finally:
        proc.send_signal(signal.SIGINT)
        rc, err = proc.wait(timeout=30), proc.stderr.read()
    assert edge.returncode == 130 and edge.stderr.strip().splitlines() == ["neucodex: interrupted (Ctrl-C)"], (
        edge.stderr
    )
    assert rc == 0 and "draining" in err and "Traceback" not in err, err


def test_an_overdue_answer_is_a_retry_then_a_clear_failure_not_a_hang(setup):
    ck, ds, *_ = setup
    srv = Server(ck, port=0, delay_ms=3000).start()  # every answer 3 s late
    try:
        with EdgeClient(ck, srv.address, timeout=0.4, retry_deadline=1.5, fallback="none") as client:
            t0 = time.monotonic()
            r = client.infer(ds[0][0])
        assert r.status == "failed" and "no answer within 0.4 s" in r.error and r.retries >= 1
        assert time.monotonic() - t0 < 5
    finally:
        srv.stop(1)
