"""Event recordings on disk, with NumPy only (the torch-free edge reads them too).

Two formats, the real datasets':

- ``.bin`` — N-MNIST / N-Caltech101 (Orchard et al. 2015): 5 bytes (40 bits) per event, x (8 bits),
  y (8 bits), polarity (1 bit) and a 23-bit timestamp in µs. Read as Tonic's ``read_mnist_file``
  reads it (rows with y = 240 are the format's timestamp-overflow markers and carry no event).
- ``.aedat4`` — what Tonic's CIFAR10-DVS holds; read with the ``aedat`` decoder, as Tonic does.

Events are Tonic's structured array with fields ``x, y, t, p``, so Tonic's transforms apply.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from .errors import NeucodexError

EVENTS = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])
BIN_BYTES_PER_EVENT = 5
BIN_MAX_T = (1 << 23) - 1
BIN_OVERFLOW_Y = 240
SUFFIXES = (".bin", ".aedat4")


class RecordingError(NeucodexError):
    """An event recording cannot be read or written in the format asked for."""


def read_bin(path: str | Path) -> np.ndarray:
    """A 40-bit ``.bin`` recording → events (what ``tonic.io.read_mnist_file`` returns)."""
    try:
        raw = np.fromfile(path, dtype=np.uint8).astype(np.int64)
    except OSError as e:
        raise RecordingError(f"cannot read {path}: {e}") from None
    if raw.size % BIN_BYTES_PER_EVENT:
        raise RecordingError(f"{path}: {raw.size} bytes is not a whole number of 5-byte events; not a .bin recording")
    x, y = raw[0::5], raw[1::5]
    t = ((raw[2::5] & 127) << 16) | (raw[3::5] << 8) | raw[4::5]
    overflow = np.flatnonzero(y == BIN_OVERFLOW_Y)
    if overflow.size:  # each marker adds 2^13 µs to every later timestamp (Tonic's reading of it)
        t = t + np.searchsorted(overflow, np.arange(t.size), side="right") * (1 << 13)
    keep = y != BIN_OVERFLOW_Y
    ev = np.zeros(int(keep.sum()), EVENTS)
    ev["x"], ev["y"], ev["t"], ev["p"] = x[keep], y[keep], t[keep], (raw[2::5][keep] & 128) >> 7
    return ev


def encode_bin(events: np.ndarray) -> bytes:
    """Events → the 40-bit format's bytes (x, y < 256, y ≠ 240, 0 ≤ t < 2^23 µs)."""
    x, y, t, p = (np.asarray(events[k], np.int64) for k in ("x", "y", "t", "p"))
    if x.size and (x.min() < 0 or x.max() > 255 or y.min() < 0 or y.max() > 255 or (y == BIN_OVERFLOW_Y).any()):
        raise RecordingError("the .bin format holds x, y in 0..255 with y != 240; crop or shift the events first")
    if t.size and (t.min() < 0 or t.max() > BIN_MAX_T):
        raise RecordingError(f"the .bin format holds timestamps 0..{BIN_MAX_T} µs; these span {t.min()}..{t.max()}")
    raw = np.empty((x.size, 5), np.uint8)
    raw[:, 0], raw[:, 1] = x, y
    raw[:, 2] = ((p != 0).astype(np.int64) << 7) | (t >> 16)
    raw[:, 3], raw[:, 4] = (t >> 8) & 255, t & 255
    return raw.tobytes()


def write_bin(path: str | Path, events: np.ndarray) -> None:
    """Write a ``.bin`` recording atomically (a partial file never has the final name)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(encode_bin(events))
    tmp.replace(path)


def read_aedat4(path: str | Path) -> np.ndarray:
    """An ``.aedat4`` recording's first event stream → events (``aedat`` decoder, as Tonic reads it)."""
    try:
        import aedat
    except ImportError:
        raise RecordingError(f"reading {path} needs the 'aedat' package: pip install aedat") from None
    try:
        decoder = aedat.Decoder(str(path))
        ids = [k for k, s in decoder.id_to_stream().items() if s["type"] == "events"]
        if not ids:
            raise RecordingError(f"{path} holds no event stream")
        packets = [p["events"] for p in decoder if p["stream_id"] == min(ids)]
    except RecordingError:
        raise
    except Exception as e:  # the decoder raises its own errors on a damaged file
        raise RecordingError(f"cannot read {path} as .aedat4: {e}") from None
    raw = np.concatenate(packets) if packets else np.zeros(0, [("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("on", "?")])
    ev = np.zeros(len(raw), EVENTS)
    ev["t"], ev["x"], ev["y"] = raw["t"], raw["x"], raw["y"]
    ev["p"] = raw[raw.dtype.names[-1]]
    return ev


def stream_sizes(events: np.ndarray) -> dict[str, int]:
    """What sending a recording itself would cost: its events, as the 40-bit AER stream (5 bytes per
    event, timestamps from the first event) and that stream gzipped (level 9)."""
    ev = events.copy()
    if len(ev):
        ev["t"] -= ev["t"][0]
    try:
        raw = encode_bin(ev)
    except RecordingError:  # a sensor wider than 256 or a long recording: 9 bytes per event instead
        raw = np.rec.fromarrays(
            [ev["x"].astype("<u2"), ev["y"].astype("<u2"), ev["t"].astype("<u4"), ev["p"].astype("u1")]
        ).tobytes()
    return {"events": len(ev), "aer_bytes": BIN_BYTES_PER_EVENT * len(ev), "gzip_bytes": len(gzip.compress(raw, 9))}


def read_recording(path: str | Path) -> np.ndarray:
    """A recording by its suffix: ``.bin`` or ``.aedat4``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".bin":
        return read_bin(path)
    if suffix == ".aedat4":
        return read_aedat4(path)
    raise RecordingError(f"{path}: not an event recording ({', '.join(SUFFIXES)})")
