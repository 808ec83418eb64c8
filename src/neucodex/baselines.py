"""Cloud-only baselines: the input sent as a real image file, counted in its real bytes.

What a camera pipeline would send instead of spikes: PNG (lossless), and JPEG and WebP over a
quality grid. Every file is encoded and decoded by Pillow; the backbone is then evaluated on the
decoded images, so each point is (real bytes per image, accuracy on what the cloud received).
The honest cloud-only row of a rate–accuracy table is the smallest point within a tolerance of
the backbone's accuracy on the original images.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image

from .errors import InvalidArgumentError
from .evaluate import accuracy
from .models import Backbone

CODECS = ("png", "jpeg", "webp")
QUALITIES = (5, 10, 20, 30, 50, 70, 90)
"""The default quality grid of the lossy codecs (Pillow's 1–100 scale)."""


@dataclass(frozen=True)
class CodecPoint:
    """One codec setting over a set of images: mean file bytes and the backbone's accuracy."""

    codec: str
    quality: int | None  # None: lossless (PNG)
    bytes_per_image: float
    accuracy: float

    @property
    def bits(self) -> float:
        return 8 * self.bytes_per_image

    @property
    def name(self) -> str:
        return self.codec if self.quality is None else f"{self.codec} q{self.quality}"

    def to_dict(self) -> dict:
        return {**asdict(self), "bits": self.bits, "name": self.name}


def encode_image(img: np.ndarray, codec: str, quality: int | None = None) -> bytes:
    """A ``[H, W, C]`` uint8 image as a real file's bytes (grey for one channel)."""
    if codec not in CODECS:
        raise InvalidArgumentError(f"unknown image codec {codec!r}; choose from {', '.join(CODECS)}")
    pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
    buf = io.BytesIO()
    if codec == "png":
        pil.save(buf, "PNG", optimize=True)
    elif codec == "jpeg":
        pil.save(buf, "JPEG", quality=int(quality or 75))
    else:
        pil.save(buf, "WEBP", quality=int(quality or 75), method=6)
    return buf.getvalue()


def decode_image(data: bytes, channels: int) -> np.ndarray:
    """The ``[H, W, C]`` uint8 image a file holds."""
    pil = Image.open(io.BytesIO(data))
    arr = np.asarray(pil.convert("L" if channels == 1 else "RGB"))
    return arr[..., None] if arr.ndim == 2 else arr


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[N, C, H, W]`` in [0, 1] → ``[N, H, W, C]`` uint8 (the 8-bit image the camera had)."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def round_trip(images: torch.Tensor, codec: str, quality: int | None) -> tuple[torch.Tensor, float]:
    """(the decoded images as the model takes them, mean file bytes per image)."""
    raw = _to_uint8(images)
    files = [encode_image(img, codec, quality) for img in raw]
    decoded = np.stack([decode_image(f, raw.shape[-1]) for f in files])
    out = torch.from_numpy(decoded).permute(0, 3, 1, 2).float() / 255.0
    return out, float(np.mean([len(f) for f in files]))


@torch.no_grad()
def _accuracy(model: Backbone, images: torch.Tensor, labels: torch.Tensor, batch: int) -> float:
    model.eval().set_step_mode("m" if model.spiking else "s")
    outs = []
    for i in range(0, len(images), batch):
        out = model(images[i : i + batch]).float()
        model.reset_state()
        outs.append(out if out.dim() == 3 else out.unsqueeze(0))
    return accuracy(torch.cat(outs, 1), labels)


def codec_curve(
    model: Backbone,
    images: torch.Tensor,
    labels: torch.Tensor,
    qualities: Sequence[int] = QUALITIES,
    codecs: Sequence[str] = CODECS,
    batch: int = 250,
    progress=None,
) -> tuple[float, list[CodecPoint]]:
    """(the backbone's accuracy on the 8-bit images, every codec point over them).

    ``images``: ``[N, C, H, W]`` in [0, 1] (a dataset's static images), taken at 8 bits per value.
    """
    if images.dim() != 4:
        raise InvalidArgumentError("codec baselines take static images [N, C, H, W]; event input has none")
    eight_bit = (images.clamp(0, 1) * 255).round() / 255  # what a camera holds (CIFAR's images already are)
    reference = _accuracy(model, eight_bit, labels, batch)
    points = []
    settings = [(c, None) if c == "png" else (c, q) for c in codecs for q in ([None] if c == "png" else qualities)]
    for codec, quality in settings:
        decoded, size = round_trip(images, codec, quality)
        points.append(CodecPoint(codec, quality, size, _accuracy(model, decoded, labels, batch)))
        if progress is not None:
            progress(points[-1])
    return reference, points


def best_within(points: Sequence[CodecPoint], reference: float, drop: float) -> CodecPoint | None:
    """The fewest-bytes point whose accuracy is within ``drop`` pp of ``reference`` (None: none)."""
    ok = [p for p in points if reference - p.accuracy <= drop]
    return min(ok, key=lambda p: p.bytes_per_image) if ok else None
