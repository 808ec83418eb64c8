"""A DVS emulator: static images → event streams, the way CIFAR10-DVS was recorded.

CIFAR10-DVS (Li et al. 2017) showed each image on a monitor moving along a small saccade path in
front of a DVS camera. Here the image moves along a triangular saccade path (sub-pixel shifts,
bilinear); each pixel keeps the log intensity at its last event and emits an ON (OFF) event each
time the log intensity has risen (fallen) by the contrast threshold since, unless it fired within
the refractory period. Optional background noise adds random events at a rate per pixel.
Output is Tonic's structured ``x, y, t, p`` array, so Tonic's ``ToFrame`` applies unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import InvalidArgumentError

EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])


def saccade_path(steps: int, amplitude: float) -> np.ndarray:
    """``[steps, 2]`` (dx, dy) offsets along a triangle (0,0) → (A,0) → (A/2,A) → (0,0)."""
    corners = np.array([[0.0, 0.0], [amplitude, 0.0], [amplitude / 2, amplitude], [0.0, 0.0]])
    s = np.linspace(0, 3, steps)
    k = np.minimum(s.astype(int), 2)
    frac = (s - k)[:, None]
    return corners[k] * (1 - frac) + corners[k + 1] * frac


@dataclass(frozen=True)
class DVSEmulator:
    threshold: float = 0.2  # log-intensity contrast that triggers an event
    refractory_us: int = 1_000
    noise_hz: float = 0.0  # background events per pixel per second
    duration_us: int = 300_000
    steps: int = 60  # intensity samples along the path
    amplitude: float = 2.0  # saccade size in pixels
    eps: float = 0.05  # log(I + eps): keeps dark pixels finite

    def __post_init__(self) -> None:
        if self.threshold <= 0 or self.steps < 2 or self.duration_us <= 0:
            raise InvalidArgumentError("DVSEmulator needs threshold > 0, steps ≥ 2, duration_us > 0")

    def __call__(self, image: np.ndarray, path: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
        """Events for a grayscale ``[H, W]`` image in [0, 1] (RGB ``[3, H, W]`` is averaged).

        ``path``: ``[steps, 2]`` (dx, dy) offsets; default the saccade triangle.
        """
        img = np.asarray(image, dtype=np.float64)
        if img.ndim == 3:
            img = img.mean(0)
        offsets = saccade_path(self.steps, self.amplitude) if path is None else np.asarray(path, float)
        times = np.linspace(0, self.duration_us, len(offsets)).astype(np.int64)
        rng = np.random.default_rng(seed)
        levels = np.log(self._views(img, offsets) + self.eps)
        ref = levels[0].copy()
        last = np.full(img.shape, -(10**12), dtype=np.int64)
        out: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []
        for k in range(1, len(offsets)):
            level = levels[k]
            t = times[k]
            diff = level - ref
            n_events = np.floor(np.abs(diff) / self.threshold).astype(np.int64)
            fire = (n_events > 0) & (t - last >= self.refractory_us)
            ys, xs = np.nonzero(fire)
            if ys.size:
                counts = n_events[ys, xs]
                pol = (diff[ys, xs] > 0).astype(np.int8)
                out.append((np.repeat(xs, counts), np.repeat(ys, counts), np.repeat(pol, counts), int(t)))
                ref[ys, xs] += np.sign(diff[ys, xs]) * counts * self.threshold
                last[ys, xs] = t
        events = self._collect(out)
        if self.noise_hz > 0:
            events = np.concatenate([events, self._noise(img.shape, rng)])
            events.sort(order="t", kind="stable")
        return events

    @staticmethod
    def _views(img: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """``[steps, H, W]``: the image shifted by each (dx, dy), bilinear, zero outside."""
        h, w = img.shape
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        coords = np.stack([yy[None] - offsets[:, 1, None, None], xx[None] - offsets[:, 0, None, None]])
        return np.clip(ndimage.map_coordinates(img, coords, order=1, mode="constant", cval=0.0), 0.0, 1.0)

    @staticmethod
    def _collect(parts) -> np.ndarray:
        if not parts:
            return np.zeros(0, EVENT_DTYPE)
        ev = np.zeros(sum(len(p[0]) for p in parts), EVENT_DTYPE)
        i = 0
        for xs, ys, ps, t in parts:
            n = len(xs)
            ev["x"][i : i + n], ev["y"][i : i + n], ev["p"][i : i + n], ev["t"][i : i + n] = xs, ys, ps, t
            i += n
        return ev

    def _noise(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        n = rng.poisson(self.noise_hz * self.duration_us * 1e-6 * shape[0] * shape[1])
        ev = np.zeros(n, EVENT_DTYPE)
        ev["x"] = rng.integers(0, shape[1], n)
        ev["y"] = rng.integers(0, shape[0], n)
        ev["t"] = rng.integers(0, self.duration_us, n)
        ev["p"] = rng.integers(0, 2, n)
        return ev
