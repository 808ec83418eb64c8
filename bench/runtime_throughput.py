"""Runtime cost on loopback: per-timestep overhead and server throughput with dynamic batching.

    python bench/runtime_throughput.py CHECKPOINT [--samples 64] [--clients 1,8,64]

1. Overhead: one edge, no pipelining; the round trip per frame against the model's own compute
   (edge head + encoder + encoding, and the cloud's decode + decoder + tail) measured in-process.
2. Throughput: ``neucodex serve`` in its own process, with and without dynamic batching; 1, 8
   and 64 concurrent edges replaying pre-encoded packets (all T steps each, no early exit), so
   the figure is the server's, not the edges' compute. Samples/s and the ratio batching on / off.
"""

from __future__ import annotations

import argparse
import queue
import statistics
import threading
import time
from pathlib import Path

import grpc
import torch

from neucodex import codec
from neucodex.checkpoint import load_checkpoint
from neucodex.evaluate import load_split
from neucodex.exit import ExitPolicy
from neucodex.runtime import EdgeClient, Server
from neucodex.runtime import neucodex_pb2 as pb
from neucodex.runtime import neucodex_pb2_grpc as pb_grpc
from neucodex.runtime.cloud import CloudModel
from neucodex.runtime.process import spawn_server, stop_server

NEVER = ExitPolicy(threshold=2.0)


def packets_for(ck, ds, n: int) -> list[list[bytes]]:
    """Every timestep's packet of the first ``n`` samples, computed once on the edge half."""
    edge = ck.model.edge.set_step_mode("s")
    out = []
    with torch.no_grad():
        for i in range(n):
            x = ds[i][0]
            edge.reset_state()
            steps = [(x[t] if x.dim() == 4 else x).unsqueeze(0) for t in range(ck.model.T)]
            out.append([codec.encode(edge(s)[0], "auto", timestep=t) for t, s in enumerate(steps)])
    edge.reset_state()
    return out


def overhead(ck_dir: Path, ck, ds, n: int) -> dict:
    cloud = CloudModel(load_checkpoint(ck_dir).model)
    pk = packets_for(ck, ds, n)
    t0 = time.perf_counter()
    for sample in pk:
        state = cloud.new_state()
        for p in sample:
            _, (state,) = cloud.step(torch.from_numpy(codec.decode(p)), [state])
    cloud_ms = (time.perf_counter() - t0) * 1000 / (n * ck.model.T)
    srv = Server(ck_dir, port=0, max_batch=1).start()
    try:
        with EdgeClient(ck_dir, srv.address, policy=NEVER, pipeline=False) as client:
            client.infer(ds[0][0])  # warm up the stream
            rs = [client.infer(ds[i][0]) for i in range(n)]
    finally:
        srv.stop(1)
    rtt = statistics.fmean(r.rtt_ms for r in rs)
    edge = statistics.fmean(r.edge_ms / r.steps_computed for r in rs)
    return {
        "edge_ms_per_step": edge,
        "cloud_ms_per_step": cloud_ms,
        "rtt_ms_per_frame": rtt,
        "runtime_overhead_ms": rtt - cloud_ms,
        "overhead_vs_model": (rtt - cloud_ms) / (edge + cloud_ms),
    }


def replay(address: str, model_id: str, T: int, samples: list[list[bytes]], done: list[int]) -> None:
    """One lightweight edge: send each frame, wait for its answer, stop a sample on exit."""
    with grpc.insecure_channel(address) as ch:
        requests: queue.Queue = queue.Queue()
        requests.put(pb.EdgeMessage(open=pb.Open(model_id=model_id, T=T, codec="auto")))
        answers = pb_grpc.CoInferenceStub(ch).Stream(iter(requests.get, None))
        next(answers)  # Opened
        for s, sample in enumerate(samples):
            for t, p in enumerate(sample):
                requests.put(pb.EdgeMessage(frame=pb.Frame(sample=s, timestep=t, packet=p)))
                if next(answers).answer.exit:
                    break
            done.append(1)
        requests.put(None)


def throughput(ck_dir: Path, ck, packets: list[list[bytes]], clients: int, batching: bool, seconds: float) -> float:
    flags = [] if batching else ["--no-batching"]
    proc, address = spawn_server(ck_dir, "--max-sessions", "256", *flags)
    try:
        per = max(1, len(packets) // clients)
        reps = 1
        while True:  # repeat the workload until it runs for at least `seconds`
            done: list[int] = []
            jobs = [packets[(k * per) % len(packets) :][:per] * reps for k in range(clients)]
            threads = [threading.Thread(target=replay, args=(address, ck.model_id, ck.model.T, j, done)) for j in jobs]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            if wall >= seconds or reps >= 64:
                return len(done) / wall
            reps *= 2
    finally:
        stop_server(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--clients", default="1,8,64")
    ap.add_argument("--seconds", type=float, default=3.0, help="least wall time per throughput point")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    ck = load_checkpoint(args.checkpoint)
    ds = load_split(ck.info.experiment(), "test", ck.model.T)
    o = overhead(args.checkpoint, ck, ds, min(args.samples, 32))
    spec = ck.info.model
    print(f"model {spec.name} {spec.point} {spec.bottleneck}, T={ck.model.T}, code {ck.model.code_shape}")
    print(
        f"per timestep: edge compute {o['edge_ms_per_step']:.2f} ms, cloud compute {o['cloud_ms_per_step']:.2f} ms, "
        f"round trip {o['rtt_ms_per_frame']:.2f} ms → runtime overhead {o['runtime_overhead_ms']:.2f} ms "
        f"= {o['overhead_vs_model']:.2f}x the model's own compute per step"
    )
    packets = packets_for(ck, ds, args.samples)
    print(
        f"{'edges':>5} {'batching off':>14} {'batching on':>13} {'on/off':>7}   (samples/s, all T={ck.model.T} steps)"
    )
    for c in (int(v) for v in args.clients.split(",")):
        off = throughput(args.checkpoint, ck, packets, c, False, args.seconds)
        on = throughput(args.checkpoint, ck, packets, c, True, args.seconds)
        print(f"{c:>5} {off:>14.1f} {on:>13.1f} {on / off:>7.2f}")


if __name__ == "__main__":
    main()
