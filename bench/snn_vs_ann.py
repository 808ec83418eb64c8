"""The spiking network against its DNN twin doing the same convolutions, in one run.

The SNN at T timesteps on a batch of B runs the convolutions of the DNN twin on B×T images; the
rest is what spiking costs (LIF, tdBN over time). Printed for eval (no grad) and for a training
step (forward + backward), with the fused LIF and with SpikingJelly's own LIF, as ratios against
the twin measured in the same run: the three run in turn within each repeat, so a drift of the
machine's speed touches all of them alike (median of repeats after a warm-up).

    python bench/snn_vs_ann.py [--checkpoint zoo:cifar10-resnet18-v3] [--batch 100] [--repeats 5] [--amp]

``--amp`` runs both under bf16 autocast, as the CPU training presets do (``cpu_amp: true``): the LIF
then takes and gives bf16 in the kernel itself.

Targets (issue #37): SNN / DNN ≤ 1.15x in eval and ≤ 1.25x in training, with the fused LIF.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from neucodex.checkpoint import load_checkpoint
from neucodex.models import create_model, lif


def timed(fns: dict[str, object], repeats: int) -> dict[str, float]:
    """Median ms of each function, run in turn within each repeat, after one warm-up each."""
    for fn in fns.values():
        fn()  # warm-up (and the kernel's first load)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) * 1000.0 for name, ts in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="zoo:cifar10-resnet18-v3", help="a spiking backbone (its real firing)")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--amp", action="store_true", help="bf16 autocast, as the CPU training presets run")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    ck = load_checkpoint(a.checkpoint)
    snn, T = ck.model, ck.model.T
    kwargs = {**ck.info.model.kwargs, "spiking": False}
    dnn = create_model(ck.info.model.name, **kwargs)
    x = torch.rand(a.batch, snn.in_channels, snn.input_size, snn.input_size)
    xt = x.repeat(T, 1, 1, 1)  # the twin sees B×T images: the same convolutions

    def run(model, inp, train: bool):
        def step():
            model.train(train).set_step_mode("m" if model.spiking else "s")
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.amp):
                if train:
                    out = model(inp)
                else:
                    with torch.no_grad():
                        model(inp)
            if train:
                out.float().mean().backward()
                model.zero_grad(set_to_none=True)
            model.reset_state()

        return step

    def reference(step):
        def run_reference():
            real = lif._kernel
            lif._kernel = lambda: None  # SpikingJelly's LIF for the reference figure
            try:
                step()
            finally:
                lif._kernel = real

        return run_reference

    rows = []
    for mode in ("eval", "train"):
        train = mode == "train"
        fns = {"dnn": run(dnn, xt, train), "ref": reference(run(snn, x, train))}
        if lif.fused_available():
            fns["fused"] = run(snn, x, train)
        ms = timed(fns, a.repeats)
        rows.append((mode, ms["dnn"], ms.get("fused", float("nan")), ms["ref"]))
    print(
        f"{ck.info.model.name} from {a.checkpoint}, T={T}, batch {a.batch} (twin: {a.batch * T}), "
        f"{a.threads} threads, {'bf16 autocast' if a.amp else 'float32'}, median of {a.repeats}"
    )
    print("| mode | DNN twin ms | SNN fused ms | SNN SpikingJelly LIF ms | fused / twin | SpikingJelly / twin |")
    print("| --- | --- | --- | --- | --- | --- |")
    for mode, d, f, r in rows:
        print(f"| {mode} | {d:.0f} | {f:.0f} | {r:.0f} | {f / d:.2f}x | {r / d:.2f}x |")


if __name__ == "__main__":
    main()
