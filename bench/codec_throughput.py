"""Codec throughput against numpy.packbits/unpackbits, and bits per spike slot against H(p).

For each format: encode and decode time of one packet (one timestep of a C'xH'xW' code), as
throughput in Mbit of spike slots per second, and the ratio to numpy's packbits (encode) and
unpackbits (decode) on the same map, measured in the same run. Rows are float32 in and out
(what a PyTorch edge hands the codec: the binary check is most of it), plus the bitmap with bool
in and uint8 out (a caller holding bits; what the server decodes). Then the payload bits per spike
slot vs firing rate for every format, against the entropy bound H(p), written as a PNG.

    python bench/codec_throughput.py [--shape 64 16 16] [--repeats 50] [--out bench/out]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from neucodex import codec

PLAIN = tuple(f for f in codec.SPIKE_FORMATS if codec.REGISTRY[f].usable(codec.Priors(), 0, 0))
"""The spike formats that need no learned model (the context format is measured by the tests)."""


def per_call(fn, repeats: int) -> float:
    for _ in range(max(5, repeats // 10)):  # warm caches and the CPU's clock before timing
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def entropy_bits(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -p * np.log2(p) - (1 - p) * np.log2(1 - p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=int, nargs=3, default=[64, 16, 16], metavar=("C", "H", "W"))
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    n = int(np.prod(a.shape))

    print(f"one packet = one timestep of a {'x'.join(map(str, a.shape))} spike map ({n} slots)")
    print(
        f"{'rate':>6} {'format':<8} {'bytes':>7} {'enc Mbit/s':>11} {'dec Mbit/s':>11} "
        f"{'enc / packbits':>15} {'dec / unpackbits':>17}"
    )
    for rate in (0.01, 0.05, 0.2):
        x = (rng.random(a.shape) < rate).astype(np.float32)
        flat = x.reshape(-1).astype(np.uint8)
        packed = np.packbits(flat)
        t_pack = per_call(lambda: np.packbits(flat), a.repeats)  # noqa: B023
        t_unpack = per_call(lambda: np.unpackbits(packed)[:n], a.repeats)  # noqa: B023
        print(
            f"{rate:>6} {'packbits':<8} {packed.size:>7} {n / t_pack / 1e6:>11.1f} {n / t_unpack / 1e6:>11.1f} "
            f"{1.0:>15.2f} {1.0:>17.2f}"
        )
        bits = x.astype(bool)
        for fmt, src, dtype in [
            *((f, x, np.float32) for f in ("bitmap", "sparse", "entropy", "auto")),
            ("bitmap", bits, np.uint8),  # bits in, bits out: what the server decodes (uint8, batch converts)
        ]:
            pkt = codec.encode(src, fmt)
            te = per_call(lambda: codec.encode(src, fmt), a.repeats)  # noqa: B023
            td = per_call(lambda: codec.decode_packet(pkt, dtype=dtype), a.repeats)  # noqa: B023
            label = fmt if dtype is np.float32 else f"{fmt}, bool in / uint8 out"
            print(
                f"{'':>6} {label:<8} {len(pkt):>7} {n / te / 1e6:>11.1f} {n / td / 1e6:>11.1f} "
                f"{te / t_pack:>15.2f} {td / t_unpack:>17.2f}"
            )

    rates = np.array([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.99])
    bits = {f: [] for f in PLAIN}
    for p in rates:
        x = (rng.random(a.shape) < p).astype(np.float32)
        for f in PLAIN:
            bits[f].append((len(codec.encode(x, f)) - codec.HEADER_BYTES) * 8 / n)
    print("\npayload bits per spike slot (header excluded) vs firing rate")
    print(f"{'rate':>6} {'H(p)':>7} " + " ".join(f"{f:>8}" for f in PLAIN))
    for i, p in enumerate(rates):
        print(f"{p:>6} {entropy_bits(p):>7.4f} " + " ".join(f"{bits[f][i]:>8.4f}" for f in PLAIN))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a.out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    dense = np.linspace(0.0005, 0.9995, 400)
    ax.plot(dense, entropy_bits(dense), "k--", label="H(p) bound")
    for f in PLAIN:
        ax.plot(rates, bits[f], "o-", label=f)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("firing rate p")
    ax.set_ylabel("payload bits per spike slot")
    ax.set_title(f"neucodex codec, {n} slots per packet")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = a.out / "codec_bits_vs_rate.png"
    fig.savefig(path, dpi=120)
    print(f"\nplot: {path}")


if __name__ == "__main__":
    main()
