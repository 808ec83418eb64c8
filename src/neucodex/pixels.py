"""Image files → 8-bit pixel arrays, with Pillow and NumPy only: the one decoder (and resize) that
training's image datasets and the torch-free edge share, so an image reaches the model as the same
tensor on both sides."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def decode_image(data: bytes | Path, channels: int, size: int | tuple[int, int]) -> np.ndarray:
    """One image file (bytes or a path) → ``[H, W, channels]`` uint8, RGB or grayscale, resized
    bilinearly (Pillow) to ``size`` (``(H, W)``, or one side of a square) when it differs."""
    h, w = (size, size) if isinstance(size, int) else size
    src = io.BytesIO(data) if isinstance(data, bytes) else data
    with Image.open(src) as im:
        im = im.convert("RGB" if channels == 3 else "L")
        if im.size != (w, h):
            im = im.resize((w, h), Image.BILINEAR)
        arr = np.array(im, dtype=np.uint8)
    return arr if arr.ndim == 3 else arr[:, :, None]
