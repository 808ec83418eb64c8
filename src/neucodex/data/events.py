"""Event-stream datasets framed into T bins: N-MNIST, N-Caltech101, CIFAR10-DVS, digits-dvs.

Recordings are read by :mod:`neucodex.aer` (as Tonic's readers read them) and framed by
:mod:`neucodex.framing` (Tonic's ``ToFrame(n_time_bins=T)``, padded to a square, resized to
``size``) into per-polarity event counts ``[T, 2, size, size]``. Framed tensors are cached on
disk (float16 ``.npy``), so a second epoch does not re-read events. Splits: a seeded per-class
90/10 test split (not the 'first N per class' split, which inflates accuracy), then 10% of the
rest as val; the train split is augmented like images (a random shift, a flip where it applies;
``data.augment: nda`` adds rotation, shear and a cutout).
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import framing
from ..aer import read_aedat4, read_bin, stream_sizes
from ..cache import cache_root
from ..errors import InvalidArgumentError
from .base import DatasetSpec, Subset, missing, register_dataset
from .dvs import DVSEmulator
from .images import augmentation, file_key
from .splits import ALL, stratified_split

VAL_FRACTION = 0.1
TEST_FRACTION = 0.1


def to_frames(events: np.ndarray, sensor_size: tuple[int, int, int], T: int, size: int) -> torch.Tensor:
    """Events → ``[T, 2, size, size]`` float event counts (:func:`neucodex.framing.to_frames`)."""
    return torch.from_numpy(framing.to_frames(events, sensor_size, T, size))


class EventFiles(Dataset):
    """Recordings on disk, framed on first access and cached."""

    def __init__(
        self,
        paths: list[Path],
        targets,
        classes: list[str],
        reader: Callable[[Path], np.ndarray],
        sensor_size: tuple[int, int, int] | None,
        T: int,
        size: int,
        cache_dir=None,
        event_transform: Callable | None = None,
    ) -> None:
        self.paths, self.targets, self.classes = paths, [int(t) for t in targets], classes
        self.reader, self.sensor_size, self.T, self.size = reader, sensor_size, T, size
        self.event_transform = event_transform
        self.cache = cache_root(cache_dir) / "frames"
        self.cache.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path = self.paths[i]
        if self.event_transform is not None:  # the cache holds untransformed frames only
            ev, sensor = self._events(path)
            return to_frames(self.event_transform(ev), sensor, self.T, self.size), self.targets[i]
        cached = self.cache / f"{file_key(path, self.T, self.size, self.sensor_size)}.npy"
        if cached.exists():
            return torch.from_numpy(np.load(cached).astype(np.float32)), self.targets[i]
        frames = to_frames(*self._events(path), self.T, self.size)
        tmp = cached.with_suffix(".tmp.npy")
        np.save(tmp, frames.numpy().astype(np.float16))
        tmp.replace(cached)
        return frames, self.targets[i]

    def stream_sizes(self, i: int) -> dict[str, int]:
        """Sample ``i``'s recording as it would be sent whole (:func:`neucodex.aer.stream_sizes`)."""
        return stream_sizes(self.reader(self.paths[i]))

    def _events(self, path: Path) -> tuple[np.ndarray, tuple[int, int, int]]:
        """A recording's events and its sensor size."""
        ev = self.reader(path)
        return (ev, self.sensor_size) if self.sensor_size is not None else framing.crop(ev)


def recording_sizes(ds: Dataset) -> list[dict[str, int]] | None:
    """Per sample of ``ds``, its recording's size sent whole (events, AER bytes, gzipped bytes);
    None when ``ds`` is not read from recordings (or stored sizes, as the embedded demo sets hold)."""
    index = list(range(len(ds)))
    while not hasattr(ds, "stream_sizes"):
        if isinstance(ds, Subset | torch.utils.data.Subset):
            index = [int(ds.indices[i]) for i in index]
            ds = ds.base if isinstance(ds, Subset) else ds.dataset
        elif hasattr(ds, "base"):
            ds = ds.base
        else:
            return None
    return [ds.stream_sizes(i) for i in index]


def _extracted(root: Path, cache_dir) -> Path:
    """A folder to read: ``root`` itself, or an archive extracted once into the cache."""
    if root.is_dir() or not root.is_file():
        return root
    dest = cache_root(cache_dir) / f"extracted-{file_key(root)}"
    if not dest.exists():
        tmp = dest.with_name(dest.name + ".tmp")
        with tarfile.open(root) as tar:
            tar.extractall(tmp, filter="data")
        tmp.replace(dest)
    subdirs = [d for d in dest.iterdir() if d.is_dir()]
    return subdirs[0] if len(subdirs) == 1 else dest


def _scan(folder: Path, suffix: str, exclude=()) -> tuple[list[Path], list[int], list[str]]:
    dirs = sorted(
        (d for d in folder.iterdir() if d.is_dir() and d.name.strip() not in exclude), key=lambda d: d.name.strip()
    )
    paths, labels = [], []
    for k, d in enumerate(dirs):
        files = sorted(d.glob(f"*{suffix}"))
        paths += files
        labels += [k] * len(files)
    return paths, labels, [d.name.strip() for d in dirs]


def frame_augmentation(split: str, train_augment: bool, size: int, flip: bool, kind: str = "crop") -> Callable | None:
    """The train split's frame augmentation ``kind`` (``crop``: one random shift, and a flip where
    the classes allow it; ``nda`` adds rotation, shear and a cutout), the same for all T bins;
    none elsewhere."""
    if kind == "strong":  # colour jitter has no meaning for per-polarity event counts
        raise InvalidArgumentError("event frames take augment crop or nda (strong is for images)")
    return augmentation(size, flip, kind) if split == "train" and train_augment else None


def _split(
    base: Dataset, split: str, seed: int, test_base: Dataset | None = None, transform: Callable | None = None
) -> Subset:
    if test_base is not None:  # an official test set: val comes out of train
        if split == "test":
            return Subset(test_base, range(len(test_base)), classes=test_base.classes)
        parts = stratified_split(np.asarray(base.targets), 0.0, VAL_FRACTION, seed)
    else:
        parts = stratified_split(np.asarray(base.targets), TEST_FRACTION, VAL_FRACTION, seed)
    return Subset(base, parts[split], transform, classes=base.classes)


def _recordings(spec: DatasetSpec, folder: Path, suffix: str, exclude=()):
    if not folder.is_dir():
        raise missing(spec, folder, "folder not found")
    found = _scan(folder, suffix, exclude)
    if not found[0]:
        raise missing(spec, folder, f"no {suffix} recordings in class folders")
    return found


def class_folder_split(
    spec: DatasetSpec,
    folder: Path,
    suffix: str,
    reader: Callable,
    sensor: tuple[int, int, int] | None,
    split: str,
    *,
    T: int,
    size: int | None,
    seed: int,
    cache_dir,
    event_transform,
    train_augment: bool,
    augment: str = "crop",
    exclude=(),
) -> Subset:
    """One split of recordings in ``folder/<class>/*suffix`` with no official test set: seeded
    per-class test and val fractions, the train split augmented (flips allowed)."""
    size = size or spec.default_size
    found = _recordings(spec, folder, suffix, exclude)
    files = EventFiles(*found, reader, sensor, T, size, cache_dir, event_transform)
    return _split(files, split, seed, transform=frame_augmentation(split, train_augment, size, True, augment))


def _nmnist(
    spec,
    split,
    root=None,
    T=4,
    size=None,
    download=False,
    seed=0,
    cache_dir=None,
    event_transform=None,
    train_augment=True,
    augment="crop",
    **_,
):
    if root is None:
        raise missing(spec, None, "")
    if download and not Path(root).exists():
        from tonic.datasets import NMNIST

        NMNIST(str(root), train=True)
        NMNIST(str(root), train=False)
        root = Path(root) / "NMNIST"
    folder = _extracted(Path(root), cache_dir)
    size = size or spec.default_size

    def files(found) -> EventFiles:
        return EventFiles(*found, read_bin, (34, 34, 2), T, size, cache_dir, event_transform)

    if split == ALL:  # every recording under ROOT: Train/ and Test/, or class folders right under it
        found = [_recordings(spec, folder / p, ".bin") for p in ("Train", "Test") if (folder / p).is_dir()]
        every = files(_joined(spec, folder, found) if found else _recordings(spec, folder, ".bin"))
        return Subset(every, range(len(every)), classes=every.classes)
    base = files(_recordings(spec, folder / "Train", ".bin"))
    test = files(_recordings(spec, folder / "Test", ".bin")) if (folder / "Test").is_dir() else None
    return _split(base, split, seed, test, frame_augmentation(split, train_augment, size, False, augment))


def _joined(spec: DatasetSpec, folder: Path, found: list) -> tuple[list[Path], list[int], list[str]]:
    """Recordings of several parts (Train, Test) as one list; their class folders must agree."""
    classes = found[0][2]
    if any(f[2] != classes for f in found):
        raise missing(spec, folder, "Train/ and Test/ hold different class folders")
    return [p for f in found for p in f[0]], [k for f in found for k in f[1]], classes


register_dataset(
    DatasetSpec(
        "nmnist",
        "events",
        2,
        10,
        34,
        "whatever recordings are present (full set: 60,000 train / 10,000 test)",
        "ROOT (a folder or .tar.gz) holding Train/<digit>/NNNNN.bin, optionally Test/<digit>/NNNNN.bin "
        "(40-bit events, 34x34 ATIS); without Test a seeded 90/10 split is held out; split 'all' also takes "
        "<digit>/NNNNN.bin right under ROOT",
        "pass --download to fetch it with Tonic, or --root at a folder or .tar.gz of the recordings",
        _nmnist,
        sensor=(34, 34, 2),
    )
)


def _ncaltech101(
    spec,
    split,
    root=None,
    T=4,
    size=None,
    download=False,
    seed=0,
    cache_dir=None,
    event_transform=None,
    train_augment=True,
    augment="crop",
    **_,
):
    if root is None:
        raise missing(spec, None, "")
    folder = Path(root) / "NCALTECH101" / "Caltech101"
    if download and not folder.exists():
        from tonic.datasets import NCALTECH101

        NCALTECH101(str(root))
    return class_folder_split(
        spec, folder, ".bin", read_bin, None, split, T=T, size=size, seed=seed, cache_dir=cache_dir,
        event_transform=event_transform, train_augment=train_augment, augment=augment,
        exclude=("BACKGROUND_Google",),
    )  # fmt: skip


register_dataset(
    DatasetSpec(
        "n-caltech101",
        "events",
        2,
        101,
        64,
        "8,246 in 101 classes (seeded per-class 90/10 split, 10% val)",
        "ROOT/NCALTECH101/Caltech101/<class>/image_NNNN.bin (Tonic's layout; BACKGROUND_Google left out)",
        "pass --download to fetch it with Tonic, or extract Caltech101.zip from the N-Caltech101 archive there",
        _ncaltech101,
        sensor=framing.PER_RECORDING,
    )
)


def _cifar10dvs(
    spec,
    split,
    root=None,
    T=4,
    size=None,
    download=False,
    seed=0,
    cache_dir=None,
    event_transform=None,
    train_augment=True,
    augment="crop",
    **_,
):
    if root is None:
        raise missing(spec, None, "")
    folder = Path(root) / "CIFAR10DVS"
    if download and not folder.exists():
        from tonic.datasets import CIFAR10DVS

        CIFAR10DVS(str(root))
    return class_folder_split(
        spec, folder, ".aedat4", read_aedat4, (128, 128, 2), split, T=T, size=size, seed=seed,
        cache_dir=cache_dir, event_transform=event_transform, train_augment=train_augment, augment=augment,
    )  # fmt: skip


register_dataset(
    DatasetSpec(
        "cifar10-dvs",
        "events",
        2,
        10,
        48,
        "10,000 (1,000 per class; seeded per-class 90/10 split, 10% val)",
        "ROOT/CIFAR10DVS/<class>/cifar10_<class>_N.aedat4 (Tonic's layout, 128x128 DVS)",
        "pass --download to fetch it with Tonic, or extract CIFAR10DVS.zip and its class zips there",
        _cifar10dvs,
        sensor=(128, 128, 2),
    )
)


class EmulatedEvents(Dataset):
    """A static image dataset seen through the DVS emulator, framed into T bins (in memory;
    with an ``event_transform`` the events are kept and framed again on every access)."""

    def __init__(
        self, images: Dataset, emulator: DVSEmulator, T: int, size: int, event_transform: Callable | None = None
    ) -> None:
        self.images, self.emulator, self.T, self.size = images, emulator, T, size
        self.event_transform = event_transform
        self.targets = list(images.targets)
        self.classes = images.classes
        self._frames: dict[int, torch.Tensor] = {}
        self._events: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        sensor = (self.size, self.size, 2)  # the images come at ``size``
        if self.event_transform is not None:
            if i not in self._events:
                self._events[i] = self.emulator(self.images[i][0].numpy(), seed=i)
            return to_frames(self.event_transform(self._events[i].copy()), sensor, self.T, self.size), self.targets[i]
        if i not in self._frames:
            self._frames[i] = to_frames(self.emulator(self.images[i][0].numpy(), seed=i), sensor, self.T, self.size)
        return self._frames[i], self.targets[i]


def _digits_dvs(spec, split, root=None, T=4, size=None, event_transform=None, **_):
    from .static import digits_images

    size = size or spec.default_size
    images, parts = digits_images(size)
    events = EmulatedEvents(images, DVSEmulator(), T, size, event_transform)
    return Subset(events, parts[split], classes=images.classes)


register_dataset(
    DatasetSpec(
        "digits-dvs",
        "events",
        2,
        10,
        16,
        "1,797 (the digits split: train 1,294 / val 143 / test 360)",
        "nothing: emulated from scikit-learn's digits",
        "always available offline",
        _digits_dvs,
    )
)
