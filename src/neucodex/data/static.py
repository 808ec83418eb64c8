"""Static image datasets: digits (embedded), CIFAR-10/100, Caltech101, any image folder."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset
from tqdm import tqdm

from ..cache import cache_root
from ..pixels import decode_image
from .base import DatasetSpec, Subset, missing, register_dataset
from .images import (
    ImageArray,
    ImageFiles,
    augmentation,
    file_key,
    read_image_archive,
    scan_class_folders,
)
from .splits import ALL, holdout_val, stratified_split

VAL_FRACTION = 0.1


def _split(base: Dataset, parts: dict, split: str, size: int, train_augment: bool, flip: bool, augment: str = "crop"):
    transform = augmentation(size, flip, augment) if (split == "train" and train_augment) else None
    return Subset(base, parts[split], transform, getattr(base, "classes", None))


# --- digits: scikit-learn's 1,797 real 8x8 handwritten digits, shipped inside the package ---


def digits_images(size: int) -> tuple[ImageArray, dict[str, np.ndarray]]:
    """The 1,797 digits as ``[1, size, size]`` images in [0, 1], and their split indices."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images / 16.0).astype(np.float32)[..., None]  # [N, 8, 8, 1]
    parts = stratified_split(d.target, 0.2, VAL_FRACTION)
    return ImageArray(images, d.target, [str(k) for k in range(10)], size), parts


def _digits(spec, split, root=None, size=None, train_augment=True, **_):
    size = size or spec.default_size
    base, parts = digits_images(size)
    return _split(base, parts, split, size, train_augment, flip=False)


register_dataset(
    DatasetSpec(
        "digits",
        "static",
        1,
        10,
        16,
        "1,797 (train 1,295 / val 143 / test 359)",
        "nothing: scikit-learn ships it",
        "always available offline",
        _digits,
    )
)


# --- CIFAR-10 / CIFAR-100: the official pickled python batches ---


class _ArrayUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles of dicts of numpy arrays; refuse anything else (no code runs)."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset batch")


def _read_batch(path: Path) -> dict:
    with open(path, "rb") as f:
        d = _ArrayUnpickler(f, encoding="latin1").load()
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


def _cifar(folder: str, files: dict[str, list[str]], meta: tuple[str, str], label_key: str):
    def build(spec: DatasetSpec, split, root=None, size=None, train_augment=True, download=False, seed=0, **_):
        if root is None:
            raise missing(spec, None, "")
        base_dir = Path(root) / folder
        if download and not base_dir.exists():
            from torchvision import datasets

            getattr(datasets, spec.name.upper())(root, download=True)
        parts = {"test": ["test"], ALL: ["train", "test"]}.get(split, ["train"])
        paths = [base_dir / f for part in parts for f in files[part]]
        absent = [p for p in paths + [base_dir / meta[0]] if not p.exists()]
        if absent:
            raise missing(spec, absent[0], "file not found")
        try:
            batches = [_read_batch(p) for p in paths]
            names = _read_batch(base_dir / meta[0])[meta[1]]
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, OSError) as e:
            raise missing(spec, base_dir, f"unreadable batch ({e})") from None
        data = np.concatenate([b["data"] for b in batches]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        labels = np.concatenate([np.asarray(b[label_key]) for b in batches])
        size = size or spec.default_size
        base = ImageArray(np.ascontiguousarray(data, dtype=np.uint8), labels, list(names), size)
        if split in ("test", ALL):
            return _split(base, {split: np.arange(len(labels))}, split, size, train_augment, flip=True)
        return _split(base, holdout_val(labels, VAL_FRACTION, seed), split, size, train_augment, flip=True)

    return build


register_dataset(
    DatasetSpec(
        "cifar10",
        "static",
        3,
        10,
        32,
        "60,000 (50,000 train of which 10% val; 10,000 test)",
        "ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} (the python version)",
        "pass --download to fetch it with torchvision, or extract cifar-10-python.tar.gz from "
        "https://www.cs.toronto.edu/~kriz/cifar.html into ROOT",
        _cifar(
            "cifar-10-batches-py",
            {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
            ("batches.meta", "label_names"),
            "labels",
        ),
    )
)

register_dataset(
    DatasetSpec(
        "cifar100",
        "static",
        3,
        100,
        32,
        "60,000 (50,000 train of which 10% val; 10,000 test)",
        "ROOT/cifar-100-python/{train, test, meta} (the python version)",
        "pass --download to fetch it with torchvision, or extract cifar-100-python.tar.gz from "
        "https://www.cs.toronto.edu/~kriz/cifar.html into ROOT",
        _cifar("cifar-100-python", {"train": ["train"], "test": ["test"]}, ("meta", "fine_label_names"), "fine_labels"),
    )
)


# --- Caltech101 and any class-per-folder image set ---


FOLDER_CACHE_BYTES = 4 << 30
"""Image folders up to this many decoded bytes are decoded once and cached; larger ones stream."""


def _folder_or_archive(spec: DatasetSpec, path: Path, size: int, channels: int, cache_dir, exclude=()):
    if path.is_dir():
        paths, labels, classes = scan_class_folders(path, exclude)
        if not paths:
            raise missing(spec, path, "no images in class folders")
        if len(paths) * size * size * channels > FOLDER_CACHE_BYTES:
            return ImageFiles(paths, labels, classes, size, channels)
        # keyed by every file's path, size and mtime: an added, removed or changed image re-decodes
        listing = [(str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
        cache = cache_root(cache_dir) / f"imagefolder-{file_key(path.resolve(), size, channels, listing)}.npz"
        if cache.exists():
            images = np.load(cache, allow_pickle=False)["images"]
        else:
            quiet = not sys.stderr.isatty()
            images = np.stack([decode_image(p, channels, size) for p in tqdm(paths, "decoding", disable=quiet)])
            np.savez(cache, images=images)
        return ImageArray(images, labels, classes, size)
    if path.is_file():
        cache = cache_root(cache_dir) / f"imagefolder-{file_key(path, size, channels)}.npz"
        if cache.exists():
            z = np.load(cache, allow_pickle=False)
            images, labels, classes = z["images"], z["labels"], list(z["classes"])
        else:
            images, labels, classes = read_image_archive(path, channels, size)
            if not labels:
                raise missing(spec, path, "no images in class folders inside the archive")
            np.savez(cache, images=images, labels=np.asarray(labels), classes=np.asarray(classes))
        return ImageArray(images, labels, [c for c in classes if c not in exclude], size)
    raise missing(spec, path, "nothing found")


def _caltech101(
    spec, split, root=None, size=None, train_augment=True, download=False, seed=0, cache_dir=None, augment="crop", **_
):
    if root is None:
        raise missing(spec, None, "")
    folder = Path(root) / "caltech101" / "101_ObjectCategories"
    if download and not folder.exists():
        from torchvision import datasets

        datasets.Caltech101(root, download=True)
    if not folder.is_dir():
        raise missing(spec, folder, "folder not found")
    size = size or spec.default_size
    base = _folder_or_archive(spec, folder, size, 3, cache_dir, exclude=("BACKGROUND_Google",))
    parts = stratified_split(np.asarray(base.targets), 0.2, VAL_FRACTION, seed)
    return _split(base, parts, split, size, train_augment, flip=True, augment=augment)


register_dataset(
    DatasetSpec(
        "caltech101",
        "static",
        3,
        101,
        64,
        "8,677 in 101 classes (seeded stratified 80/20 test split, 10% val)",
        "ROOT/caltech101/101_ObjectCategories/<class>/image_NNNN.jpg (BACKGROUND_Google is left out)",
        "pass --download to fetch it with torchvision, or extract 101_ObjectCategories.tar.gz there",
        _caltech101,
    )
)


def _imagefolder(
    spec, split, root=None, size=None, train_augment=True, seed=0, cache_dir=None, channels=3, augment="crop", **_
):
    if root is None:
        raise missing(spec, None, "")
    size = size or spec.default_size
    base = _folder_or_archive(spec, Path(root), size, channels, cache_dir)
    parts = stratified_split(np.asarray(base.targets), 0.1, VAL_FRACTION, seed)
    return _split(base, parts, split, size, train_augment, flip=True, augment=augment)


register_dataset(
    DatasetSpec(
        "imagefolder",
        "static",
        3,
        0,
        32,
        "any (seeded stratified 10% test, then 10% val)",
        "ROOT = a folder, or a .tar/.tar.gz archive, of <class>/<image> files (torchvision ImageFolder)",
        "point --root at your images (a folder or a .tar.gz of <class>/<image> files)",
        _imagefolder,
    )
)
