"""Embedded demo sets: held-out images or recordings of a dataset, shipped in the package.

Every ``pretrained/<name>-demo.npz`` is registered as dataset ``<name>-demo`` (test split only):
- images (``cifar10-demo``, ``caltech101-demo``): 8-bit ``[N, H, W, 3]`` at the dataset's size,
  written by ``neucodex zoo --demo-images DATASET ROOT`` (``publish.write_demo_images``);
- recordings (``nmnist-demo``, ``cifar10-dvs-emu-demo``): framed as training frames them (T bins
  at the model's size; integer counts stored as uint8, resized ones as float16 as the frame cache
  holds them) with each recording's size sent whole (events, AER bytes, gzipped bytes), so the
  report's cloud-only baseline stays the real event stream; written by ``neucodex zoo
  --demo-events DATASET ROOT T`` (:func:`write_event_demo`).
Both hold test-split samples only, stratified by class and interleaved, so the demo and the zoo's
checks run offline on data no training step saw.
"""

from __future__ import annotations

from functools import partial
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .base import DatasetMissingError, DatasetSpec, Subset, dataset_spec, register_dataset
from .images import ImageArray
from .splits import ALL

SUFFIX = "-demo.npz"


def demo_path(name: str) -> Path:
    return Path(str(resources.files("neucodex.pretrained"))) / f"{name}.npz"


class EventDemo(Dataset):
    """Frames ``[N, T, 2, S, S]`` with labels and the recordings' stored sizes."""

    def __init__(self, path: Path) -> None:
        z = np.load(path, allow_pickle=False)
        self.frames, self.targets = z["frames"], [int(v) for v in z["labels"]]
        self.classes = [str(c) for c in z["classes"]]
        self.sizes = {k: z[k] for k in ("events", "aer_bytes", "gzip_bytes")}
        self.T, self.size = int(z["T"]), int(z["size"])

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.frames[i].astype(np.float32)), self.targets[i]

    def stream_sizes(self, i: int) -> dict[str, int]:
        return {k: int(v[i]) for k, v in self.sizes.items()}


def _test_only(spec: DatasetSpec, split: str) -> None:
    if split not in ("test", ALL):
        raise DatasetMissingError(
            f"dataset {spec.name!r} has only a test split ({spec.samples}; 'all' is the same); "
            f"it has no {split!r} split"
        )


def _images(path: Path, spec: DatasetSpec, split, root=None, size=None, **_):
    _test_only(spec, split)
    with np.load(path, allow_pickle=False) as z:
        base = ImageArray(z["images"], z["labels"], [str(c) for c in z["classes"]], size or spec.default_size)
    return Subset(base, range(len(base)), None, base.classes)


def _frames(path: Path, spec: DatasetSpec, split, root=None, T=4, size=None, **_):
    _test_only(spec, split)
    ds = EventDemo(path)
    if T > ds.T or (size or ds.size) != ds.size:
        raise DatasetMissingError(
            f"dataset {spec.name!r} holds frames at T={ds.T}, {ds.size}x{ds.size}; asked for T={T}, size {size}"
        )
    return Subset(ds, range(len(ds)), (lambda x: x[:T]) if T < ds.T else None, ds.classes)


def _register(path: Path) -> None:
    with np.load(path, allow_pickle=False) as z:
        if "images" in z.files:
            _, size, _, channels = z["images"].shape
            n, classes = len(z["labels"]), len(z["classes"])
            described = f"{n:,} (test only: {n // classes} per class, held out of every training step)"
            register_dataset(
                DatasetSpec(path.stem, "static", channels, classes, size, described,
                            "nothing: shipped inside the package", "always available offline", partial(_images, path),
                            test_only=True)
            )  # fmt: skip
            return
        source, n, T, size = str(z["dataset"]), len(z["labels"]), int(z["T"]), int(z["size"])
        classes = len(z["classes"])
    register_dataset(
        DatasetSpec(
            path.stem,
            "events",
            2,
            classes,
            size,
            f"{n:,} (test only: held-out {source} recordings, stratified by class, framed at T={T})",
            "nothing: shipped inside the package",
            "always available offline",
            partial(_frames, path),
            test_only=True,
        )
    )


def write_event_demo(
    dataset: str, root: str | Path, T: int, size: int | None = None, per_class: int = 10, seed: int = 0
) -> Path:
    """``<dataset>-demo.npz`` in the package: ``per_class`` recordings of each class of ``dataset``'s
    test split at ``root`` (seeded, interleaved by class), framed at ``T`` and ``size``."""
    from . import build_dataset
    from .events import recording_sizes
    from .splits import stratified_subset

    spec = dataset_spec(dataset)
    size = size or spec.default_size
    test = build_dataset(dataset, "test", root=root, T=T, size=size, train_augment=False, seed=seed)
    labels = np.asarray(test.targets)
    n = per_class * len(test.classes)
    keep = stratified_subset(labels, n, seed)
    part = Subset(test, keep, classes=test.classes)
    frames = np.stack([part[i][0].numpy() for i in range(len(part))])
    integral = bool(np.all(frames == np.round(frames)) and frames.max(initial=0) <= 255)
    sizes = recording_sizes(part)
    if sizes is None:
        raise DatasetMissingError(f"{dataset} is not read from recordings: no event demo set to make of it")
    path = demo_path(f"{dataset}-demo")
    np.savez_compressed(
        path,
        frames=frames.astype(np.uint8 if integral else np.float16),
        labels=labels[keep],
        classes=np.asarray(test.classes),
        dataset=np.asarray(dataset),
        T=np.asarray(T),
        size=np.asarray(size),
        **{k: np.asarray([s[k] for s in sizes]) for k in ("events", "aer_bytes", "gzip_bytes")},
    )
    _register(path)
    return path


for _path in sorted(Path(str(resources.files("neucodex.pretrained"))).glob(f"*{SUFFIX}")):
    _register(_path)
