"""Scale-out: edges over several ``neucodex serve`` replicas, one replica killed -9 mid-run (or none).

    python bench/replicas.py CHECKPOINT [--replicas 3] [--edges 32] [--seconds 60] [--kill-at 20|0] [--stream-age 2]

Every edge is an ``EdgeClient`` (its own channel; ``--server a,b,c`` → gRPC's ``round_robin``,
health-checked) with ``fallback="none"``, so a sample the cloud does not answer is reported
``failed``, never answered locally. The edges stream test samples back to back for ``--seconds``;
at ``--kill-at`` the replica with the most open sessions gets SIGKILL (``--kill-at 0``: no kill).
Every replica's counters are scraped each ``--window`` seconds. Printed: the frames each replica
served in each window and over the whole run (before and after the kill), with their spread
against the mean of the live replicas — the even-load target is every replica within ±15%; then
samples answered, failed and lost (a sample whose ``infer`` never returned), retries, and how many
answers equal offline evaluation of the same policy.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
import urllib.request
from collections import Counter

import torch

from neucodex.checkpoint import load_checkpoint
from neucodex.data import stratified
from neucodex.evaluate import load_split, loader, predict, with_data
from neucodex.runtime import EdgeClient
from neucodex.runtime.process import spawn_server

COUNTERS = ("neucodex_sessions_active", "neucodex_frames_total")


def scrape(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line.startswith(COUNTERS)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="checkpoint directory or zoo:NAME")
    ap.add_argument("--dataset", help="samples from this dataset (e.g. cifar10-demo for a zoo entry)")
    ap.add_argument("--root", help="the dataset's files")
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--edges", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--kill-at", type=float, default=20.0, help="seconds in; 0: no replica is killed")
    ap.add_argument("--window", type=float, default=10.0, help="seconds between scrapes of the replicas' counters")
    ap.add_argument("--samples", type=int, default=200, help="distinct test samples cycled through")
    ap.add_argument("--stream-age", type=float, default=2.0, help="edges reopen their stream after this (0: never)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ck = load_checkpoint(args.checkpoint)
    ds = stratified(
        load_split(with_data(ck.info.experiment(), args.dataset, args.root), "test", ck.model.T), args.samples
    )
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
    live = set(range(args.replicas))
    marks: list[tuple[float, dict[int, float]]] = []  # (time, frames served so far by each live replica)
    victim, kill_mark, answered_at_kill = None, None, None

    def mark() -> None:
        marks.append((time.monotonic() - t0, {j: scrape(urls[j])["neucodex_frames_total"] for j in sorted(live)}))

    try:
        t0 = time.monotonic()
        for t in threads:
            t.start()
        mark()
        while time.monotonic() < stop_at:
            now = time.monotonic() - t0
            next_kill = args.kill_at if args.kill_at and victim is None else float("inf")
            time.sleep(max(0.0, min(marks[-1][0] + args.window, next_kill, args.seconds) - now))
            mark()
            if victim is None and args.kill_at and time.monotonic() - t0 >= args.kill_at:
                sessions = {j: scrape(urls[j])["neucodex_sessions_active"] for j in live}
                victim = max(sessions, key=sessions.get)
                replicas[victim][0].send_signal(signal.SIGKILL)
                replicas[victim][0].wait(timeout=10)
                live.discard(victim)
                kill_mark, answered_at_kill = len(marks) - 1, len(done)
        for t in threads:
            t.join(timeout=max(1.0, stop_at - time.monotonic()) + 60)
        wall = time.monotonic() - t0
    finally:
        for proc, _ in replicas:
            proc.kill()
    kill = f"replica {victim} killed -9 at {args.kill_at:g} s" if victim is not None else "no kill"
    print(
        f"{args.replicas} replicas, {args.edges} edges, {args.seconds:g} s, {kill}; model {ck.info.model.name} "
        f"{ck.info.model.point} {ck.info.model.bottleneck}, T={ck.model.T}, the checkpoint's calibrated exit "
        f"({policy.measure} {policy.threshold:.3f}); edges reopen their stream every {args.stream_age:g} s"
    )

    def spread(a: int, b: int) -> tuple[dict[int, float], float]:
        """Frames each replica live at mark ``b`` served between marks ``a`` and ``b``; the worst spread (%)."""
        served = {j: marks[b][1][j] - marks[a][1][j] for j in marks[b][1]}
        mean = sum(served.values()) / len(served)
        return served, max(abs(v / mean - 1) for v in served.values()) * 100 if mean else float("inf")

    print(f"{'window':>13} " + " ".join(f"{'replica ' + str(j):>10}" for j in range(args.replicas)) + "  worst spread")
    rows = [(a, a + 1) for a in range(len(marks) - 1)]
    phases = (
        [(0, kill_mark, "before kill"), (kill_mark, len(marks) - 1, "after kill")]
        if kill_mark
        else [(0, len(marks) - 1, "whole run")]
    )
    worst = []
    for a, b, *name in rows + phases:
        if b == a:
            continue
        served, w = spread(a, b)
        label = name[0] if name else f"{marks[a][0]:.0f}–{marks[b][0]:.0f} s"
        cells = " ".join(f"{served[j]:>10.0f}" if j in served else f"{'–':>10}" for j in range(args.replicas))
        print(f"{label:>13} {cells}  ±{w:.1f}%")
        if name:
            worst.append(w)
    print(
        f"even load (every live replica within ±15% of the mean in each phase): {'yes' if max(worst) <= 15 else 'no'}"
    )
    statuses = [r.status for _, r in done]
    lost = sum(t.is_alive() for t in threads)  # each still holds one sample
    same = sum(r.prediction == int(preds[i]) and r.steps == int(steps[i]) for i, r in done if r.status == "ok")
    print(
        f"samples: {len(done)} in {wall:.1f} s ({len(done) / wall:.1f}/s"
        + (f"; {answered_at_kill} before the kill); " if victim is not None else "); ")
        + f"ok {statuses.count('ok')}, failed {statuses.count('failed')}, fallback {statuses.count('fallback')}, "
        f"lost {lost} (infer never returned); retries {sum(r.retries for _, r in done)}"
    )
    print(f"answers equal to offline (prediction and exit step): {same} of {statuses.count('ok')}")
    errors = Counter(r.error[:160] for _, r in done if r.status != "ok")
    for error, n in errors.most_common(5):
        print(f"  {n} × {error}")


if __name__ == "__main__":
    main()
