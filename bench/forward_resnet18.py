"""CPU forward time of neucodex's spiking ResNet-18 vs the same net stacked from plain SpikingJelly.

Reference: SpikingJelly's ``SeqToANNContainer(Conv2d, BatchNorm2d)`` + multi-step ``LIFNode``,
the idiom of its own examples, in the same CIFAR ResNet-18 layout. Both at T=4, batch 32,
32x32, eval mode, no grad, measured in one run (median of repeats, after a warm-up).

    python bench/forward_resnet18.py [--batch 32] [--T 4] [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from spikingjelly.activation_based import functional, layer, neuron, surrogate
from torch import nn

import neucodex as nc


def sj_unit(cin: int, cout: int, k: int = 3, s: int = 1) -> nn.Module:
    return layer.SeqToANNContainer(nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout))


def sj_lif() -> nn.Module:
    return neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), detach_reset=True, step_mode="m")


class SJBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(sj_unit(cin, cout, 3, stride), sj_lif(), sj_unit(cout, cout))
        self.short = nn.Identity() if stride == 1 and cin == cout else sj_unit(cin, cout, 1, stride)
        self.act = sj_lif()

    def forward(self, x):
        return self.act(self.branch(x) + self.short(x))


class SJResNet18(nn.Module):
    def __init__(self, T: int, classes: int = 10) -> None:
        super().__init__()
        self.T = T
        blocks, cin = [], 64
        for i, w in enumerate((64, 128, 256, 512)):
            for j in range(2):
                blocks.append(SJBlock(cin, w, 2 if i > 0 and j == 0 else 1))
                cin = w
        self.net = nn.Sequential(sj_unit(3, 64), sj_lif(), *blocks)
        self.head = layer.SeqToANNContainer(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes))

    def forward(self, x):
        return self.head(self.net(x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)))


def timed(fn, x, repeats: int) -> float:
    times = []
    with torch.no_grad():
        fn(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--T", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    x = torch.rand(a.batch, 3, 32, 32)

    ours = nc.create_model("resnet18", T=a.T).eval().set_step_mode("m")
    ref = SJResNet18(a.T).eval()

    def run_ours(inp):
        out = ours(inp)
        ours.reset_state()
        return out

    def run_ref(inp):
        out = ref(inp)
        functional.reset_net(ref)
        return out

    t_ours = timed(run_ours, x, a.repeats)
    t_ref = timed(run_ref, x, a.repeats)
    print(f"spiking ResNet-18, T={a.T}, batch {a.batch}, 32x32, CPU threads={a.threads}")
    print(f"  neucodex              {t_ours * 1e3:8.1f} ms/batch  {a.batch / t_ours:7.1f} img/s")
    print(f"  SpikingJelly stacked  {t_ref * 1e3:8.1f} ms/batch  {a.batch / t_ref:7.1f} img/s")
    print(f"  ratio neucodex / SpikingJelly = {t_ours / t_ref:.3f}")


if __name__ == "__main__":
    main()
