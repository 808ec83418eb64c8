"""Samples for the torch-free edge, read with NumPy and Pillow: image folders, image files, .npz.

Image files become ``[C, H, W]`` float32 in [0, 1] at the export's input size through the same
decoder and resize as training's image datasets (:func:`neucodex.pixels.decode_image`, then
8-bit values / 255). Arrays in an ``.npz`` must already be at that size (they are not resized).
Labels come from class folders (``root/<class>/<image>``, classes sorted) or from an ``.npz``'s
``labels``; otherwise none.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import NeucodexError
from ..pixels import decode_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".webp")
DEMO = Path(__file__).resolve().parent.parent / "pretrained" / "cifar10-demo.npz"


class InputError(NeucodexError):
    """The samples given to the edge cannot be read as the export needs them."""


def _image(path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    from PIL import UnidentifiedImageError

    c, h, w = shape
    try:
        arr = decode_image(path, c, (h, w))  # the decoder and resize training's image datasets use
    except (OSError, UnidentifiedImageError) as e:
        raise InputError(f"cannot read image {path}: {e}") from None
    return arr.transpose(2, 0, 1).astype(np.float32) / 255.0


def _npz(path: Path, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read {path} as .npz: {e}") from None
    x = arrays.get("images", arrays.get("x"))
    if x is None:
        raise InputError(f"{path} holds no 'images' (or 'x') array; it has {sorted(arrays) or 'nothing'}")
    labels = arrays.get("labels", arrays.get("y"))
    if x.dtype == np.uint8 and x.ndim == 4 and x.shape[-1] == shape[0]:  # [N, H, W, C] 8-bit images
        x = x.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape):
        raise InputError(
            f"{path}: images of shape {tuple(x.shape[1:])}, the export takes {tuple(shape)} ([C, H, W], or "
            "[H, W, C] uint8); resize them first, or pass them as image files (resized as in training)"
        )
    return np.asarray(x, np.float32), None if labels is None else np.asarray(labels).astype(np.int64)


def read_samples(source: str, shape: tuple[int, int, int]) -> tuple[list[np.ndarray], list[int | None]]:
    """``source``: ``cifar10-demo`` (the embedded images), an ``.npz``, an image, or a folder."""
    path = DEMO if source == "cifar10-demo" else Path(source)
    if not path.exists():
        raise InputError(f"no samples at {source} (give a folder of images, an image file or an .npz)")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        classes = sorted({p.parent.name for p in files}) if all(p.parent != path for p in files) else None
        labels = [classes.index(p.parent.name) if classes else None for p in files]
        return [_image(p, shape) for p in files], labels
    if path.suffix.lower() == ".npz":
        x, y = _npz(path, shape)
        return list(x), [None] * len(x) if y is None else [int(v) for v in y]
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return [_image(path, shape)], [None]
    raise InputError(f"{path} is neither a folder, an image ({', '.join(IMAGE_SUFFIXES)}) nor an .npz")
