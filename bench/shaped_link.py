"""The latency model against real runs of the runtime over a shaped link.

    sudo python bench/shaped_link.py CHECKPOINT [--samples 100] [--rtt-ms 20] [--mbps 1,10,100]

Creates a network namespace with the cloud server in it, joined to this one by a veth pair
(private addresses 10.99.0.1/.2, nothing else reachable); the edge → cloud direction is rate-limited
by the kernel's ``tbf`` qdisc; the round trip is added at the application level (the server's
``--delay-ms``; this kernel has no ``netem``). For each bandwidth it streams test samples with the
checkpoint's calibrated early exit, pipelined, and prints the measured mean latency per sample next
to the model's prediction from the same run's measured compute times and bits. Where namespaces
cannot be made (no root, no ``ip``), it says so and exits.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

from neucodex.checkpoint import load_checkpoint
from neucodex.evaluate import load_split
from neucodex.latency import Link, Timings, co_inference_ms
from neucodex.runtime import EdgeClient

NS, HOST_IF, NS_IF = "ncxbench", "ncxb0", "ncxb1"
HOST_IP, NS_IP, PORT = "10.99.0.1", "10.99.0.2", 50077


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def setup() -> None:
    teardown()
    sh("ip", "netns", "add", NS)
    sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF)
    sh("ip", "link", "set", NS_IF, "netns", NS)
    sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", HOST_IF)
    sh("ip", "link", "set", HOST_IF, "up")
    sh("ip", "netns", "exec", NS, "ip", "addr", "add", f"{NS_IP}/24", "dev", NS_IF)
    sh("ip", "netns", "exec", NS, "ip", "link", "set", NS_IF, "up")
    sh("ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up")


def teardown() -> None:
    subprocess.run(["ip", "link", "del", HOST_IF], capture_output=True)
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)


def shape(mbps: float) -> None:
    burst = max(2000, int(mbps * 1e6 / 8 / 250))  # ~4 ms of traffic, at least one full packet
    sh(
        "tc",
        "qdisc",
        "replace",
        "dev",
        HOST_IF,
        "root",
        "tbf",
        "rate",
        f"{mbps}mbit",
        "burst",
        str(burst),
        "latency",
        "500ms",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--rtt-ms", type=float, default=20.0)
    ap.add_argument("--mbps", default="1,10,100")
    args = ap.parse_args()
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tc"):
        print("shaped-link benchmark skipped: needs root and the ip/tc tools to create a network namespace")
        return
    try:
        setup()
    except subprocess.CalledProcessError as e:
        print(f"shaped-link benchmark skipped: cannot create the namespace ({e.stderr.decode().strip()})")
        teardown()
        return
    ck = load_checkpoint(args.checkpoint)
    ds = load_split(ck.info.experiment(), "test", ck.model.T)
    n = min(args.samples, len(ds))
    server = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            NS,
            sys.executable,
            "-m",
            "neucodex.cli",
            "serve",
            "--checkpoint",
            args.checkpoint,
            "--host",
            NS_IP,
            "--port",
            str(PORT),
            "--delay-ms",
            str(args.rtt_ms),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        server.stdout.readline()
        print(
            f"{ck.model.arch} {ck.info.model.point} {ck.info.model.bottleneck}, T={ck.model.T}, {n} test samples, "
            f"RTT {args.rtt_ms:g} ms (application level), edge → cloud shaped by tbf"
        )
        print(
            f"{'Mbit/s':>7} {'pipeline':>8} {'steps':>6} {'bytes/step':>10} {'measured ms':>12} {'model ms':>9} "
            f"{'model/measured':>14} {'unmodelled ms/frame':>19}"
        )
        for mbps in (float(v) for v in args.mbps.split(",")):
            shape(mbps)
            for pipeline in (True, False):
                with EdgeClient(ck, f"{NS_IP}:{PORT}", pipeline=pipeline, timeout=30) as client:
                    client.infer(ds[0][0])  # open the stream, warm up
                    rs = [client.infer(ds[i][0]) for i in range(n)]
                steps = statistics.fmean(r.steps for r in rs)
                # what one frame costs on the wire: the gRPC message plus HTTP/2 (9-byte frame header + 5-byte
                # gRPC prefix) and TCP/IP headers (~66 bytes with options) per frame
                bytes_step = statistics.fmean(r.grpc_bytes for r in rs) / steps + 9 + 5 + 66
                cloud = statistics.fmean(r.cloud_ms / r.steps for r in rs)
                t = Timings(
                    edge_step=statistics.fmean(r.edge_ms / r.steps_computed for r in rs),
                    cloud_step=cloud,
                    edge_full=0.0,
                    cloud_full=0.0,
                )
                predicted = statistics.fmean(
                    co_inference_ms(t, Link(mbps * 1e6, args.rtt_ms), r.steps, bytes_step * 8, 1.0, pipeline)
                    for r in rs
                )
                measured = statistics.fmean(r.latency_ms for r in rs)
                # the round trip per frame the runtime measured, less what the model puts in it
                extra = statistics.fmean(r.rtt_ms for r in rs) - (args.rtt_ms + cloud + bytes_step * 8 / mbps / 1e3)
                print(
                    f"{mbps:>7g} {str(pipeline):>8} {steps:>6.2f} {bytes_step:>10.1f} {measured:>12.2f} "
                    f"{predicted:>9.2f} {predicted / measured:>14.2f} {extra:>19.2f}"
                )
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=30)
        teardown()


if __name__ == "__main__":
    main()
