"""Image containers and transforms shared by the static datasets."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ..pixels import decode_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp")


def file_key(*parts: object) -> str:
    """A short stable key for a cache entry from the source file(s) and settings."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Path) and p.exists():
            st = p.stat()
            h.update(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
        else:
            h.update(repr(p).encode())
    return h.hexdigest()[:16]


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """``[..., C, H, W]`` float → ``[..., C, size, size]`` (area for shrinking, bilinear for growing)."""
    if x.shape[-2:] == (size, size):
        return x
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:])
    mode = "area" if min(x.shape[-2:]) >= size else "bilinear"
    kw = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(flat, size=(size, size), mode=mode, **kw).reshape(*lead, x.shape[-3], size, size)


class ImageArray(Dataset):
    """Images held in memory as ``[N, H, W, C]`` (uint8 0..255 or float 0..1) with labels."""

    def __init__(self, images: np.ndarray, targets, classes: list[str], size: int) -> None:
        self.images = images
        self.targets = [int(t) for t in targets]
        self.classes = classes
        self.size = size

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = torch.from_numpy(np.ascontiguousarray(self.images[i])).permute(2, 0, 1)
        x = img.float() / 255.0 if img.dtype == torch.uint8 else img.float()
        return resize(x.unsqueeze(0), self.size)[0], self.targets[i]


class ImageFiles(Dataset):
    """Class-folder image files decoded on access (torchvision ImageFolder convention)."""

    def __init__(self, paths: list[Path], targets, classes: list[str], size: int, channels: int = 3) -> None:
        self.paths = paths
        self.targets = [int(t) for t in targets]
        self.classes = classes
        self.size = size
        self.channels = channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        arr = decode_image(self.paths[i], self.channels, self.size)
        return torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0, self.targets[i]


def scan_class_folders(root: Path, exclude: tuple[str, ...] = ()) -> tuple[list[Path], list[int], list[str]]:
    """``root/<class>/<image>`` → (paths, labels, class names sorted).

    Class names are folder names without surrounding whitespace (some archives, such as the
    shared N-MNIST one, carry a stray carriage return in them)."""
    dirs = sorted(
        (d for d in root.iterdir() if d.is_dir() and d.name.strip() not in exclude), key=lambda d: d.name.strip()
    )
    paths, labels = [], []
    for k, d in enumerate(dirs):
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += files
        labels += [k] * len(files)
    return paths, labels, [d.name.strip() for d in dirs]


def read_image_archive(archive: Path, channels: int, size: int) -> tuple[np.ndarray, list[int], list[str]]:
    """A .tar/.tar.gz of ``…/<class>/<image>`` files, read in one sequential pass."""
    found: list[tuple[str, str, bytes]] = []
    with tarfile.open(archive) as tar:
        for m in tar:
            if not m.isfile() or not m.name.lower().endswith(IMAGE_SUFFIXES):
                continue
            parts = Path(m.name).parts
            if len(parts) < 2:
                continue
            found.append((parts[-2].strip(), m.name, tar.extractfile(m).read()))  # type: ignore[union-attr]
    classes = sorted({c for c, _, _ in found})
    index = {c: k for k, c in enumerate(classes)}
    found.sort(key=lambda f: (index[f[0]], f[1]))
    images = (
        np.stack([decode_image(data, channels, size) for _, _, data in found])
        if found
        else np.zeros((0, size, size, channels), np.uint8)
    )
    return images, [index[c] for c, _, _ in found], classes


AUGMENTS = ("crop", "strong", "nda")
"""Train augmentations by name: ``crop`` (random crop with padding, a flip where classes allow it),
``strong`` (random resized crop, flip, colour jitter: small image sets such as Caltech101) and
``nda`` (event frames: a flip, one random affine map -- shift, rotation, shear -- and a cutout,
the same for all T bins; Li et al., "Neuromorphic Data Augmentation", ECCV 2022)."""


def augmentation(size: int, flip: bool, kind: str = "crop") -> v2.Compose:
    """The train augmentation ``kind`` at ``size`` (:data:`AUGMENTS`)."""
    if kind == "strong":
        steps: list = [v2.RandomResizedCrop(size, scale=(0.35, 1.0), antialias=True)]
    elif kind == "nda":  # event counts: no colour, no resampling of the scale; the lost region is zero
        steps = [v2.RandomAffine(degrees=15, translate=(0.125, 0.125), shear=(-8, 8, -8, 8))]
    else:
        steps = [v2.RandomCrop(size, padding=max(1, size // 8))]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    if kind == "strong":
        steps.append(v2.ColorJitter(0.4, 0.4, 0.4, 0.05))
    elif kind == "nda":
        steps.append(v2.RandomErasing(p=0.5, scale=(0.02, 0.15), value=0))
    return v2.Compose(steps)
