"""Scale-out: edges over several ``neucodex serve`` replicas, one replica killed -9 mid-run.

    python bench/replicas.py CHECKPOINT [--replicas 3] [--edges 32] [--seconds 60] [--kill-at 20] [--stream-age 5]

Every edge is an ``EdgeClient`` (its own channel; ``--server a,b,c`` → gRPC's ``round_robin``,
health-checked) with ``fallback="none"``, so a sample the cloud does not answer is reported
``failed``, never answered locally. The edges stream test samples back to back for ``--seconds``;
at ``--kill-at`` the replica with the most open sessions gets SIGKILL. Printed: the load on each
replica just before the kill (sessions open, sessions opened so far, frames and samples served)
and its spread against the mean; then samples answered, failed and lost (a sample whose ``infer`` never returned),
retries, and how many answers equal offline evaluation of the same policy.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
import urllib.request
from pathlib import Path

import torch

from neucodex.checkpoint import load_checkpoint
from neucodex.evaluate import load_split, loader, predict
from neucodex.runtime import EdgeClient
from neucodex.runtime.process import spawn_server

COUNTERS = (
    "neucodex_sessions_active",
    "neucodex_sessions_total",
    "neucodex_frames_total",
    "neucodex_samples_total",
)


def scrape(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line.startswith(COUNTERS)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--edges", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--kill-at", type=float, default=20.0)
    ap.add_argument("--samples", type=int, default=200, help="distinct test samples cycled through")
    ap.add_argument("--stream-age", type=float, default=5.0, help="edges reopen their stream after this (0: never)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ck = load_checkpoint(args.checkpoint)
    ds = torch.utils.data.Subset(load_split(ck.info.experiment(), "test", ck.model.T), range(args.samples))
    policy = ck.info.policy
    logits, _ = predict(ck.model, loader(ds, 64, False, 0, 0), torch.device("cpu"))
    steps, preds = policy.decide(logits)
    inputs = [ds[i][0] for i in range(len(ds))]

    replicas = [spawn_server(args.checkpoint, "--metrics-port", "0") for _ in range(args.replicas)]
    urls = [proc.stderr.readline().strip().rsplit(" ", 1)[-1] for proc, _ in replicas]  # "metrics on URL"
    for proc, _ in replicas:  # read the session log away: a full pipe would block a replica
        threading.Thread(target=proc.stderr.read, daemon=True).start()
    target = ",".join(address for _, address in replicas)
    stop_at = time.monotonic() + args.seconds
    done: list[tuple[int, object]] = []  # (sample index, result)

    def edge(k: int) -> None:
        with EdgeClient(
            ck, target, fallback="none", timeout=5, retry_deadline=10, stream_age=args.stream_age
        ) as client:
            i = k
            while time.monotonic() < stop_at:
                r = client.infer(inputs[i % len(inputs)])
                done.append((i % len(inputs), r))
                i += args.edges

    threads = [threading.Thread(target=edge, args=(k,), daemon=True) for k in range(args.edges)]
    try:
        t0 = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(max(0.0, t0 + args.kill_at - time.monotonic()))
        load = [scrape(u) for u in urls]
        victim = max(range(args.replicas), key=lambda j: load[j]["neucodex_sessions_active"])
        replicas[victim][0].send_signal(signal.SIGKILL)
        replicas[victim][0].wait(timeout=10)
        answered_at_kill = len(done)
        for t in threads:
            t.join(timeout=max(1.0, stop_at - time.monotonic()) + 60)
        wall = time.monotonic() - t0
    finally:
        for proc, _ in replicas:
            proc.kill()
    print(
        f"{args.replicas} replicas, {args.edges} edges, {args.seconds:g} s, replica {victim} killed -9 at "
        f"{args.kill_at:g} s; model {ck.info.model.name} {ck.info.model.point} {ck.info.model.bottleneck}, "
        f"T={ck.model.T}, the checkpoint's calibrated exit ({policy.measure} {policy.threshold:.3f}); "
        f"edges reopen their stream every {args.stream_age:g} s"
    )
    print(f"{'replica':>7} {'sessions open':>13} {'opened':>7} {'frames':>8} {'samples':>8}   (just before the kill)")
    for j, m in enumerate(load):
        print(
            f"{j:>7} {m['neucodex_sessions_active']:>13.0f} {m['neucodex_sessions_total']:>7.0f} "
            f"{m['neucodex_frames_total']:>8.0f} {m['neucodex_samples_total']:>8.0f}"
            + ("   ← killed" if j == victim else "")
        )
    for key, name in (
        ("neucodex_sessions_active", "sessions open"),
        ("neucodex_sessions_total", "sessions opened"),
        ("neucodex_frames_total", "frames"),
    ):
        values = [m[key] for m in load]
        mean = sum(values) / len(values)
        print(
            f"spread of {name}: min {100 * (min(values) / mean - 1):+.1f}%, max {100 * (max(values) / mean - 1):+.1f}% "
            "of the mean"
        )
    statuses = [r.status for _, r in done]
    lost = sum(t.is_alive() for t in threads)  # each still holds one sample
    same = sum(r.prediction == int(preds[i]) and r.steps == int(steps[i]) for i, r in done if r.status == "ok")
    print(
        f"samples: {len(done)} in {wall:.1f} s ({len(done) / wall:.1f}/s; {answered_at_kill} before the kill); "
        f"ok {statuses.count('ok')}, failed {statuses.count('failed')}, fallback {statuses.count('fallback')}, "
        f"lost {lost} (infer never returned); retries {sum(r.retries for _, r in done)}"
    )
    print(f"answers equal to offline (prediction and exit step): {same} of {statuses.count('ok')}")


if __name__ == "__main__":
    main()
