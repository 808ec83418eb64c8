"""Samples for the torch-free edge, read with NumPy and Pillow: image folders, image files, .npz,
and event recordings (``.bin``, ``.aedat4``, or a folder of them) for an event model.

Image files become ``[C, H, W]`` float32 in [0, 1] at the export's input size through the same
decoder and resize as training's image datasets (:func:`neucodex.pixels.decode_image`, then
8-bit values / 255). Arrays in an ``.npz`` must already be at that size (they are not resized).
Recordings are framed as training framed them (:mod:`neucodex.framing`: Tonic's time bins on the
sensor the export names, padded, resized) into ``[T, 2, H, W]``.
Labels come from class folders (``root/<class>/<image>``, classes sorted) or from an ``.npz``'s
``labels``; otherwise none.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..aer import SUFFIXES as RECORDING_SUFFIXES
from ..aer import RecordingError, read_recording
from ..errors import NeucodexError
from ..framing import frame_recording
from ..pixels import decode_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".webp")
PRETRAINED = Path(__file__).resolve().parent.parent / "pretrained"


class InputError(NeucodexError):
    """The samples given to the edge cannot be read as the export needs them."""


def _source(source: str, what: str) -> Path:
    """A path, or the name of an embedded demo set (``pretrained/<name>.npz``)."""
    path = Path(source)
    if not path.exists() and (PRETRAINED / f"{source}.npz").is_file():
        path = PRETRAINED / f"{source}.npz"
    if not path.exists():
        sets = ", ".join(sorted(p.stem for p in PRETRAINED.glob("*-demo.npz")))
        raise InputError(f"no samples at {source} (give {what} or an embedded set: {sets})")
    return path


def _image(path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    from PIL import UnidentifiedImageError

    c, h, w = shape
    try:
        arr = decode_image(path, c, (h, w))  # the decoder and resize training's image datasets use
    except (OSError, UnidentifiedImageError) as e:
        raise InputError(f"cannot read image {path}: {e}") from None
    return arr.transpose(2, 0, 1).astype(np.float32) / 255.0


def _arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read {path} as .npz: {e}") from None


def _npz(path: Path, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    arrays = _arrays(path)
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


def _labelled(path: Path, suffixes: tuple[str, ...], what: str) -> tuple[list[Path], list[int | None]]:
    """Files under a folder, labelled by class folder (``root/<class>/<file>``) when all are in one."""
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in suffixes)
    if not files:
        raise InputError(f"{path} holds no {what} ({', '.join(suffixes)})")
    classes = sorted({p.parent.name for p in files}) if all(p.parent != path for p in files) else None
    return files, [classes.index(p.parent.name) if classes else None for p in files]


def _recording(path: Path, sensor, T: int, size: int) -> np.ndarray:
    try:
        return frame_recording(read_recording(path), sensor, T, size)
    except RecordingError as e:
        raise InputError(str(e)) from None


def read_recordings(
    source: str, sensor, T: int, shape: tuple[int, int, int]
) -> tuple[list[np.ndarray], list[int | None]]:
    """``source``: a recording (``.bin``, ``.aedat4``), a folder of them, an ``.npz`` of
    ``[N, T, 2, H, W]`` frames, or an embedded set by name (``nmnist-demo``); recordings become
    ``[T, 2, H, W]`` frames on ``sensor``."""
    path = _source(source, "a folder of .bin/.aedat4 recordings, one, an .npz of frames")
    if path.suffix.lower() == ".npz":
        return read_frames(path, T, shape)
    if sensor is None:
        raise InputError("this export does not say which sensor its recordings come from; pass frames in an .npz")
    if path.is_dir():
        files, labels = _labelled(path, RECORDING_SUFFIXES, "event recordings")
        return [_recording(p, sensor, T, shape[1]) for p in files], labels
    if path.suffix.lower() in RECORDING_SUFFIXES:
        return [_recording(path, sensor, T, shape[1])], [None]
    raise InputError(f"{path} is neither a recording ({', '.join(RECORDING_SUFFIXES)}), a folder of them, nor an .npz")


def read_frames(path: Path, T: int, shape: tuple[int, int, int]) -> tuple[list[np.ndarray], list[int | None]]:
    """An ``.npz`` of event frames ``[N, T, 2, H, W]`` (``frames``/``x``) and optional ``labels``/``y``."""
    arrays = _arrays(path)
    x = arrays.get("frames", arrays.get("x"))
    if x is None or x.ndim != 5 or tuple(x.shape[2:]) != tuple(shape) or x.shape[1] < T:
        got = "no 'frames' (or 'x') array" if x is None else f"shape {tuple(x.shape)}"
        raise InputError(f"{path}: this edge takes event frames [N, T>={T}, {', '.join(map(str, shape))}]; {got}")
    labels = arrays.get("labels", arrays.get("y"))
    return list(np.asarray(x, np.float32)), [None] * len(x) if labels is None else [int(v) for v in labels]


def read_samples(source: str, shape: tuple[int, int, int]) -> tuple[list[np.ndarray], list[int | None]]:
    """``source``: an embedded image set by name (``cifar10-demo``, ``caltech101-demo``), an ``.npz``,
    an image, or a folder."""
    path = _source(source, "a folder of images, an image file, an .npz")
    if path.is_dir():
        files, labels = _labelled(path, IMAGE_SUFFIXES, "image files")
        return [_image(p, shape) for p in files], labels
    if path.suffix.lower() == ".npz":
        x, y = _npz(path, shape)
        return list(x), [None] * len(x) if y is None else [int(v) for v in y]
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return [_image(path, shape)], [None]
    raise InputError(f"{path} is neither a folder, an image ({', '.join(IMAGE_SUFFIXES)}) nor an .npz")
