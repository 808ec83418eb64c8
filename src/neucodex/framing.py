"""Events → ``[T, 2, size, size]`` frames with NumPy only: the one framing that training, the demo
and the torch-free edge share, so a recording reaches the model as the same tensor everywhere.

Binning is Tonic's ``ToFrame(sensor_size, n_time_bins=T)`` exactly (windows of
``(t_last - t_first) // T`` µs from the first event; like Tonic, events after the last full window
are left out); then the frame is centre-padded to a square and resized keeping the total count:
shrinking is the area average PyTorch's ``interpolate(mode="area")`` computes, growing is its
bilinear (``align_corners=False``), each times the area ratio.
"""

from __future__ import annotations

import numpy as np

PER_RECORDING = "per-recording"
"""A dataset's sensor when each recording has its own extent (N-Caltech101): see :func:`crop`."""


def time_bins(events: np.ndarray, sensor_size: tuple[int, int, int], T: int) -> np.ndarray:
    """``[T, P, H, W]`` event counts per time bin and polarity (Tonic's ``ToFrame(n_time_bins=T)``)."""
    w, h, polarities = sensor_size
    frames = np.zeros((T, polarities, h, w), np.float32)
    if len(events) == 0:
        return frames
    t = events["t"]
    window = (int(t[-1]) - int(t[0])) // T
    starts = np.arange(T, dtype=np.int64) * window + int(t[0])
    lo, hi = np.searchsorted(t, starts), np.searchsorted(t, starts + window)
    p = events["p"].astype(np.int64) if polarities > 1 else np.zeros(len(events), np.int64)
    for k in range(T):
        s = slice(lo[k], hi[k])
        np.add.at(frames, (k, p[s], events["y"][s], events["x"][s]), 1)
    return frames


def _area(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]``: PyTorch's adaptive average pooling windows as a matrix."""
    m = np.zeros((n_out, n_in), np.float32)
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def _bilinear(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]``: PyTorch's bilinear interpolation (``align_corners=False``) as a matrix."""
    m = np.zeros((n_out, n_in), np.float32)
    scale = np.float32(n_in) / np.float32(n_out)
    for i in range(n_out):
        src = max(np.float32(scale * np.float32(i + 0.5) - 0.5), np.float32(0.0))
        i0 = min(int(src), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        frac = np.float32(src - i0)
        m[i, i0] += 1 - frac
        m[i, i1] += frac
    return m


def resize(frames: np.ndarray, size: int) -> np.ndarray:
    """``[..., H, W]`` → ``[..., size, size]`` as :func:`neucodex.data.images.resize` does it
    (area when shrinking, bilinear when growing), without the count scaling."""
    h, w = frames.shape[-2:]
    if (h, w) == (size, size):
        return frames
    mode = _area if min(h, w) >= size else _bilinear
    rows, cols = mode(h, size), mode(w, size)
    return np.einsum("ih,...hw,jw->...ij", rows, frames.astype(np.float32), cols, optimize=True).astype(np.float32)


def crop(events: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
    """A recording with its origin moved to its events' top left corner, and the sensor that
    just holds them (N-Caltech101's recordings vary in size; Tonic frames each so)."""
    events = events.copy()
    events["x"] -= events["x"].min(initial=0)
    events["y"] -= events["y"].min(initial=0)
    return events, (int(events["x"].max(initial=0)) + 1, int(events["y"].max(initial=0)) + 1, 2)


def frame_recording(events: np.ndarray, sensor, T: int, size: int) -> np.ndarray:
    """A recording as its dataset frames it: ``sensor`` is ``(W, H, P)`` or :data:`PER_RECORDING`."""
    if sensor == PER_RECORDING:
        events, sensor = crop(events)
    return to_frames(events, tuple(sensor), T, size)


def to_frames(events: np.ndarray, sensor_size: tuple[int, int, int], T: int, size: int) -> np.ndarray:
    """Events → ``[T, 2, size, size]`` float32 counts: binned, centre-padded to a square, resized
    keeping about the total count (each output pixel holds the events that fell in its area;
    exactly at whole ratios, where PyTorch's area windows do not overlap)."""
    frames = time_bins(events, sensor_size, T)
    w, h, _ = sensor_size
    side = max(h, w)
    if (h, w) != (side, side):
        top, left = (side - h) // 2, (side - w) // 2
        frames = np.pad(frames, ((0, 0), (0, 0), (top, side - h - top), (left, side - w - left)))
    return resize(frames, size) * np.float32(side * side / (size * size))
