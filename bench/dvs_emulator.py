"""The DVS emulator against real N-MNIST recordings, and what a recording costs sent whole.

Real: the N-MNIST recordings under --root (class folders of .bin, a folder or a .tar.gz).
Emulated: scikit-learn's 8x8 digits drawn as MNIST draws digits (20x20 in a 28x28 black square),
recorded under the emulator's ``n-mnist`` protocol at each contrast threshold given. Per set:
events per recording (mean ± sd), ON fraction, active pixels, events per active pixel, and how
the events fall over the 300 ms (30 bins of 10 ms; correlation of the two profiles). Then, for
each --emulated build given (``neucodex datasets build``) and the real set: events per recording,
bytes as AER (5 per event), gzipped, and the T-bin frames at the dataset's size as 8-bit counts.

    python bench/dvs_emulator.py --root nmnist-small-train.tar.gz [--thresholds 0.25,0.4,0.6]
        [--emulated cifar10-dvs-emu=DIR ...] [--samples 200]
"""

from __future__ import annotations

import argparse
import tarfile
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from neucodex.aer import read_bin, stream_sizes
from neucodex.data import dataset_spec, stratified_subset
from neucodex.data.dvs import PROTOCOLS, digit_images, recording_statistics


def recordings_under(root: Path) -> list[Path]:
    if root.is_file():
        tmp = Path(tempfile.mkdtemp())
        with tarfile.open(root) as tar:
            tar.extractall(tmp, filter="data")
        root = tmp
    return sorted(root.rglob("*.bin"))


def pick(paths: list[Path], n: int) -> list[Path]:
    """``n`` recordings stratified by class folder (never the first n of a sorted listing)."""
    classes = sorted({p.parent.name for p in paths})
    labels = np.array([classes.index(p.parent.name) for p in paths])
    return [paths[i] for i in stratified_subset(labels, n)]


def sizes_row(name: str, paths: list[Path], T: int, size: int) -> str:
    s = [stream_sizes(read_bin(p)) for p in paths]
    frames = T * 2 * size * size
    aer, gz = np.mean([x["aer_bytes"] for x in s]), np.mean([x["gzip_bytes"] for x in s])
    return (
        f"| {name} | {len(paths)} | {np.mean([x['events'] for x in s]):,.0f} | {aer:,.0f} | {gz:,.0f} "
        f"({aer / gz:.2f}x) | {frames:,} (T={T}, {size}×{size}) |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="real N-MNIST recordings (folder or .tar.gz)")
    p.add_argument("--thresholds", default="0.25,0.4,0.6")
    p.add_argument("--samples", type=int, default=200, help="recordings per set, stratified by class")
    p.add_argument("--emulated", action="append", default=[], help="NAME=DIR of a build, for the size table")
    args = p.parse_args()

    paths = recordings_under(Path(args.root))
    real = recording_statistics([read_bin(p) for p in paths])
    images = digit_images(args.samples)
    print(f"Real N-MNIST: {len(paths)} recordings; emulated: {len(images)} digits (stratified), n-mnist protocol\n")
    print("| set | events / recording | ON fraction | active pixels | events / active pixel | profile corr. |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(
        f"| real N-MNIST | {real['events']:,.0f} ± {real['sd']:,.0f} | {real['on']:.3f} | {real['pixels']:.0f} | "
        f"{real['per_pixel']:.2f} | 1 |"
    )
    base = PROTOCOLS["n-mnist"]
    for th in (float(t) for t in args.thresholds.split(",")):
        proto = replace(base, emulator=replace(base.emulator, threshold=th))
        e = recording_statistics([proto.record(img, seed=k) for k, img in enumerate(images)])
        mark = " (shipped)" if th == base.emulator.threshold else ""
        print(
            f"| emulated, threshold {th:g}{mark} | {e['events']:,.0f} ± {e['sd']:,.0f} | {e['on']:.3f} | "
            f"{e['pixels']:.0f} | {e['per_pixel']:.2f} | {np.corrcoef(e['profile'], real['profile'])[0, 1]:.3f} |"
        )
        if mark:
            shipped = e
    print("\nEvents per 10 ms (% of all), real then emulated (shipped threshold):")
    print(" ".join(f"{v:.1f}" for v in 100 * real["profile"]))
    print(" ".join(f"{v:.1f}" for v in 100 * shipped["profile"]))

    print(
        "\n| recordings | n | events | AER bytes (5 per event) | gzipped bytes (ratio) "
        "| T-bin frames, 8-bit counts (bytes) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    print(sizes_row("real N-MNIST", pick(paths, args.samples), 8, 34))
    for item in args.emulated:
        name, folder = item.split("=", 1)
        spec = dataset_spec(name)
        print(sizes_row(name, pick(sorted(Path(folder).glob("*/*.bin")), args.samples), 8, spec.default_size))


if __name__ == "__main__":
    main()
