"""Runtime cost on loopback: per-timestep overhead and server throughput with dynamic batching.

    python bench/runtime_throughput.py CHECKPOINT [--samples 64] [--clients 1,8,64] [--threads N]

1. Overhead: one edge, no pipelining, against ``neucodex serve`` in its own process; the round
   trip per frame against the model's own compute (edge head + encoder + encoding, and the
   cloud's decode + decoder + tail) measured in this process, and against the floor of any
   gRPC-Python frame: a bare echo's round trip, measured in the same run, back to back and paced as
   the frames are (its server busy for the model step's time before answering, its client for the
   edge's before sending). Medians (per sample's mean round trip, per frame's compute) over four
   passes of the samples.
2. Throughput: ``neucodex serve`` in its own process, with and without dynamic batching; 1, 8
   and 64 concurrent edges (asyncio, one connection each) replaying pre-encoded packets, so the
   figure is the server's, not the edges' compute. All T steps per sample (the edges send a
   never-exit policy), and separately with the checkpoint's calibrated exit (mean steps shown).
3. Efficiency: the same model's own batched throughput offline, in this process — the same
   packets decoded and run through decoder + tail (``CloudModel.step``, all T) at batch 1 … 64,
   the best batch size kept — against what the server serves at the most edges, all T. Targets
   (issue #37): served ≥ 0.8x offline at 64 edges; per-frame overhead ≤ 0.2 ms above the echo of a
   message of the frames' own size.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import queue
import statistics
import threading
import time

import grpc
import torch

from neucodex import codec
from neucodex.checkpoint import load_checkpoint
from neucodex.data import stratified
from neucodex.evaluate import load_split, with_data
from neucodex.exit import ExitPolicy
from neucodex.runtime import EdgeClient
from neucodex.runtime import neucodex_pb2 as pb
from neucodex.runtime import neucodex_pb2_grpc as pb_grpc
from neucodex.runtime.cloud import CloudModel
from neucodex.runtime.process import spawn_server, stop_server
from neucodex.runtime.protocol import policy_to_pb

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


def _cloud_steps(cloud: CloudModel, pk: list[list[bytes]], passes: int, idle_ms: float = 0.0) -> float:
    """Median ms of one decode + model step over every packet, ``passes`` times; ``idle_ms`` of
    sleep before each step, as a server idles while the edge computes its next frame."""
    frame_ms = []
    for _ in range(passes):
        for sample in pk:
            state = cloud.new_state()
            for p in sample:
                if idle_ms:
                    time.sleep(idle_ms / 1000.0)
                t0 = time.perf_counter()
                _, (state,) = cloud.step(torch.from_numpy(codec.decode(p)), [state])
                frame_ms.append((time.perf_counter() - t0) * 1000)
    return statistics.median(frame_ms)


def overhead(ck_dir: str, ds, n: int, threads: int, passes: int = 4) -> dict:
    """Medians over ``passes`` passes of ``n`` samples: the host's speed moves from second to
    second here, and a mean over a few hundred frames moved by 2x between runs."""
    ck = load_checkpoint(ck_dir)
    cloud = CloudModel(load_checkpoint(ck_dir).model)
    pk = packets_for(ck, ds, n)
    cloud_ms = _cloud_steps(cloud, pk, passes)
    proc, address = serve(ck_dir, "--max-batch", "1", "--threads", str(threads))  # its own process, as deployed
    try:
        with EdgeClient(ck_dir, address, policy=NEVER, pipeline=False) as client:
            client.infer(ds[0][0])  # warm up the stream
            rs = [client.infer(ds[i][0]) for _ in range(passes) for i in range(n)]
    finally:
        stop_server(proc)
    rtt = statistics.median(r.rtt_ms for r in rs)
    edge = statistics.median(r.edge_ms / r.steps_computed for r in rs)
    served = statistics.median(r.cloud_ms / r.steps for r in rs)  # the server's own compute per frame
    return {
        "server_cloud_ms_per_step": served,
        "edge_ms_per_step": edge,
        "cloud_ms_per_step": cloud_ms,
        "cloud_ms_per_step_after_idle": _cloud_steps(cloud, pk, 1, idle_ms=edge),
        "rtt_ms_per_frame": rtt,
        "runtime_overhead_ms": rtt - cloud_ms,
        "overhead_vs_model": (rtt - cloud_ms) / (edge + cloud_ms),
    }


def offline_batched(ck, packets: list[list[bytes]], sizes=(1, 8, 32, 64), seconds: float = 2.0) -> tuple[float, int]:
    """(samples/s, batch size) of the cloud half offline at its best batch size: decode every
    packet, step decoder + tail over all T, as the server does but with no runtime around it."""
    cloud = CloudModel(ck.model)
    best = (0.0, 1)
    for b in sizes:
        done, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            batch = [packets[(done + k) % len(packets)] for k in range(b)]
            states = [cloud.new_state() for _ in batch]
            for t in range(ck.model.T):
                codes = torch.cat([torch.from_numpy(codec.decode(p[t])) for p in batch])
                _, states = cloud.step(codes, states)
            done += b
        best = max(best, (done / (time.perf_counter() - t0), b))
    return best


def _spin(ms: float) -> None:
    """Keep this thread busy for ``ms`` (a model step or an edge's compute, without the model)."""
    t0 = time.perf_counter()
    while (time.perf_counter() - t0) * 1000.0 < ms:
        pass


def _echo_server(hold_ms: float, ports) -> None:
    """A bare grpc.aio bidirectional echo in its own process, as ``neucodex serve`` is: each message
    is held ``hold_ms`` on the event loop's thread (as a lone frame's model step is) and written back."""

    async def echo(_, context):
        while (m := await context.read()) is not grpc.aio.EOF:
            _spin(hold_ms)
            await context.write(m)

    async def run() -> None:
        server = grpc.aio.server()
        handler = grpc.stream_stream_rpc_method_handler(echo)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {"S": handler}),))
        ports.put(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        await server.wait_for_termination()

    asyncio.run(run())


def echo_floor(n: int = 1000, size: int = 40, hold_ms: float = 0.0, pause_ms: float = 0.0) -> float:
    """Median round trip (ms) of a bare gRPC-Python echo of a ``size``-byte message on loopback, less
    ``hold_ms`` — an aio server in its own process using ``context.read``/``write`` as ours does, a
    sync client reading in its own thread as ``EdgeClient`` does: what any frame costs before the
    model or our code. ``hold_ms``/``pause_ms`` pace it as a real exchange is paced (the server busy
    for the model step, the client for the edge's compute before each send): a core that waited
    ~10 ms wakes slower than one that never stopped, and the back-to-back echo does not pay that."""
    ctx = multiprocessing.get_context("spawn")  # grpc and fork do not mix
    ports = ctx.Queue()
    server = ctx.Process(target=_echo_server, args=(hold_ms, ports), daemon=True)
    server.start()
    try:
        requests: queue.Queue = queue.Queue()
        with grpc.insecure_channel(f"127.0.0.1:{ports.get(timeout=60)}") as ch:
            call = ch.stream_stream("/bench.Echo/S")(iter(requests.get, None))
            times = []
            for _ in range(n):
                _spin(pause_ms)
                t0 = time.perf_counter()
                requests.put(b"x" * size)
                next(call)
                times.append((time.perf_counter() - t0) * 1000.0 - hold_ms)
            requests.put(None)
            call.cancel()
    finally:
        server.kill()
        server.join()
    return statistics.median(times[n // 10 :])


async def _replay(address: str, model_id: str, T: int, samples: list[list[bytes]], policy, steps: list[int]) -> None:
    """One lightweight edge on its own connection: send a frame, wait for its answer, end the
    sample on exit. ``policy`` is sent in ``Open`` (None: the server's calibrated exit)."""
    async with grpc.aio.insecure_channel(address) as ch:
        call = pb_grpc.CoInferenceStub(ch).Stream()
        opened = pb.Open(model_id=model_id, T=T, codec="auto")
        if policy is not None:
            opened.policy.CopyFrom(policy_to_pb(policy))
        await call.write(pb.EdgeMessage(open=opened))
        await call.read()  # Opened
        for s, sample in enumerate(samples):
            for t, packet in enumerate(sample):
                await call.write(pb.EdgeMessage(frame=pb.Frame(sample=s, timestep=t, packet=packet)))
                if (await call.read()).answer.exit:
                    steps.append(t + 1)
                    break
        await call.done_writing()


async def _edges(address: str, model_id: str, T: int, jobs, policy, steps: list[int]) -> float:
    t0 = time.perf_counter()
    await asyncio.gather(*(_replay(address, model_id, T, j, policy, steps) for j in jobs))
    return time.perf_counter() - t0


def throughput(
    address: str, model_id: str, T: int, packets: list[list[bytes]], clients: int, seconds: float, policy
) -> tuple[float, float]:
    """(samples/s, mean timesteps per sample) of ``clients`` concurrent edges against one server."""
    per = max(1, len(packets) // clients)
    reps = 1
    loop = asyncio.new_event_loop()
    while True:  # repeat the workload until it runs for at least `seconds`
        steps: list[int] = []
        jobs = [packets[(k * per) % len(packets) :][:per] * reps for k in range(clients)]
        wall = loop.run_until_complete(_edges(address, model_id, T, jobs, policy, steps))
        if wall >= seconds or reps >= 64:
            return len(steps) / wall, statistics.fmean(steps)
        reps *= 2


def serve(checkpoint: str, *flags: str):
    """``neucodex serve`` in its own process, its stderr (one log line per session) read away:
    a full pipe would block the server's writes."""
    proc, address = spawn_server(checkpoint, *flags)
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    return proc, address


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="checkpoint directory or zoo:NAME")
    ap.add_argument("--dataset", help="samples from this dataset (e.g. cifar10-demo for a zoo entry)")
    ap.add_argument("--root", help="the dataset's files")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--clients", default="1,8,64")
    ap.add_argument("--seconds", type=float, default=3.0, help="least wall time per throughput point")
    ap.add_argument("--overhead-only", action="store_true", help="part 1 only: overhead and the gRPC floor")
    ap.add_argument("--threads", type=int, default=1, help="the server's --threads and the offline figure's")
    ap.add_argument("--max-batch", type=int, default=32, help="the server's --max-batch")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ck = load_checkpoint(args.checkpoint)
    ds = stratified(
        load_split(with_data(ck.info.experiment(), args.dataset, args.root), "test", ck.model.T), args.samples
    )
    o = overhead(args.checkpoint, ds, min(args.samples, 32), args.threads)
    spec = ck.info.model
    print(f"model {spec.name} {spec.point} {spec.bottleneck}, T={ck.model.T}, code {ck.model.code_shape}")
    print(
        f"per timestep: edge compute {o['edge_ms_per_step']:.2f} ms, cloud compute {o['cloud_ms_per_step']:.2f} ms, "
        f"round trip {o['rtt_ms_per_frame']:.2f} ms → runtime overhead {o['runtime_overhead_ms']:.2f} ms "
        f"= {o['overhead_vs_model']:.2f}x the model's own compute per step; the server's own account of its "
        f"compute per frame: {o['server_cloud_ms_per_step']:.2f} ms (round trip minus it: "
        f"{o['rtt_ms_per_frame'] - o['server_cloud_ms_per_step']:.2f} ms); the same step offline after "
        f"{o['edge_ms_per_step']:.2f} ms idle (as a server waits for the edge): "
        f"{o['cloud_ms_per_step_after_idle']:.2f} ms"
    )
    packets = packets_for(ck, ds, args.samples)
    size = round(
        statistics.fmean(
            len(pb.EdgeMessage(frame=pb.Frame(sample=1, timestep=t, packet=p)).SerializeToString())
            for sample in packets
            for t, p in enumerate(sample)
        )
    )
    floor = echo_floor(size=size)
    paced = echo_floor(n=300, size=size, hold_ms=o["cloud_ms_per_step"], pause_ms=o["edge_ms_per_step"])
    print(
        f"gRPC floor: a bare bidirectional echo of {size} bytes (the frames' mean size) on loopback, its server in "
        f"its own process: {floor:.2f} ms per round trip back to back; {paced:.2f} ms paced as the frames are (the "
        f"server busy {o['cloud_ms_per_step']:.2f} ms before each answer, the client {o['edge_ms_per_step']:.2f} ms "
        "before each send; the hold not counted) → our overhead above them: "
        f"{o['runtime_overhead_ms'] - floor:+.2f} / {o['runtime_overhead_ms'] - paced:+.2f} ms per frame "
        f"(target ≤ 0.2); counting the server's compute as it reports it: "
        f"{o['rtt_ms_per_frame'] - o['server_cloud_ms_per_step'] - paced:+.2f} ms above the paced echo"
    )
    if args.overhead_only:
        return
    offline, best_b = offline_batched(ck, packets)
    print(
        f"offline, decoder + tail over the same packets, all T, {args.threads} thread(s): {offline:.1f} samples/s "
        f"(best batch {best_b})"
    )
    print(
        f"{'edges':>5} | all T={ck.model.T} steps (never-exit policy): {'batching off':>12} {'on':>7} {'on/off':>6}"
        f" | with the calibrated exit, batching on: samples/s (mean steps)"
    )
    for c in (int(v) for v in args.clients.split(",")):
        row = {}
        for batching in (False, True):
            flags = [] if batching else ["--no-batching"]
            proc, address = serve(
                args.checkpoint,
                "--max-sessions",
                "256",
                "--max-sessions-per-client",
                "256",
                "--threads",
                str(args.threads),
                "--max-batch",
                str(args.max_batch),
                *flags,
            )
            try:
                point = (address, ck.model_id, ck.model.T, packets, c, args.seconds)
                row[batching] = throughput(*point, NEVER)
                if batching:
                    row["exit"] = throughput(*point, None)
            finally:
                stop_server(proc)
        (off, _), (on, _), (ex, ex_steps) = row[False], row[True], row["exit"]
        print(f"{c:>5} | {'':>38}{off:>12.1f} {on:>7.1f} {on / off:>6.2f} | {ex:.1f} ({ex_steps:.2f})")
        served = on
    print(
        f"efficiency at {c} edges, all T, batching on: {served:.1f} / {offline:.1f} = {served / offline:.2f}x "
        "the offline batched throughput (target ≥ 0.8x at 64 edges)"
    )


if __name__ == "__main__":
    main()
