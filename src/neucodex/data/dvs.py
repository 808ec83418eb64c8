"""A DVS emulator: static images → event streams, the way CIFAR10-DVS was recorded.

N-MNIST and N-Caltech101 (Orchard et al. 2015) were recorded by an ATIS camera making three
saccades over an image on a monitor; CIFAR10-DVS (Li et al. 2017) by a DVS128 watching the image
move on the monitor along a repeated closed smooth loop. Here the image moves along such a path
(sub-pixel shifts, bilinear); each pixel keeps the log intensity at its last event and emits an ON
(OFF) event each time the log intensity has risen (fallen) by its contrast threshold since, unless
it fired within the refractory period; an event's time is interpolated linearly between the two
intensity samples around its crossing. Optional per-pixel threshold mismatch and background noise
(random events at a rate per pixel) are the only sensor non-idealities: no latency, no leak events,
no bandwidth limit. Output is Tonic's structured ``x, y, t, p`` array, so Tonic's transforms apply.

:data:`PROTOCOLS` holds the real recordings' setups (sensor, image placement, path, duration), so
``Protocol.record(image)`` gives a stand-in recording of an image set (``neucodex datasets build``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage

from ..errors import InvalidArgumentError

EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])


def saccade_path(steps: int, amplitude: float, smooth: bool = False) -> np.ndarray:
    """``[steps, 2]`` (dx, dy) offsets along a triangle (0,0) → (A,0) → (A/2,A) → (0,0), one
    saccade per side; ``smooth``: each saccade starts and stops at rest (cosine velocity profile,
    as a pan-tilt unit moves — the real N-MNIST's events peak mid-saccade)."""
    corners = np.array([[0.0, 0.0], [amplitude, 0.0], [amplitude / 2, amplitude], [0.0, 0.0]])
    s = np.linspace(0, 3, steps)
    k = np.minimum(s.astype(int), 2)
    frac = s - k
    if smooth:
        frac = (1 - np.cos(np.pi * frac)) / 2
    return corners[k] * (1 - frac[:, None]) + corners[k + 1] * frac[:, None]


def loop_path(steps: int, amplitude: float, loops: int = 1) -> np.ndarray:
    """``[steps, 2]`` offsets going ``loops`` times round a circle of diameter ``amplitude`` at an
    even speed, starting and ending at (0, 0): a closed smooth loop, repeated."""
    phase = np.linspace(0, 2 * np.pi * loops, steps)
    r = amplitude / 2
    return np.stack([r * np.sin(phase), r * (1 - np.cos(phase))], axis=1)


@dataclass(frozen=True)
class DVSEmulator:
    threshold: float = 0.2  # log-intensity contrast that triggers an event
    refractory_us: int = 1_000
    noise_hz: float = 0.0  # background events per pixel per second
    duration_us: int = 300_000
    steps: int = 60  # intensity samples along the path
    amplitude: float = 2.0  # saccade size in pixels
    eps: float = 0.05  # log(I + eps): keeps dark pixels finite
    threshold_sigma: float = 0.0  # per-pixel threshold mismatch, relative (seeded per recording)

    def __post_init__(self) -> None:
        if self.threshold <= 0 or self.steps < 2 or self.duration_us <= 0 or self.threshold_sigma < 0:
            raise InvalidArgumentError(
                "DVSEmulator needs threshold > 0, steps ≥ 2, duration_us > 0, threshold_sigma ≥ 0"
            )

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
        theta = np.full(img.shape, self.threshold)
        if self.threshold_sigma > 0:
            theta = np.maximum(theta * (1 + self.threshold_sigma * rng.standard_normal(img.shape)), 0.01)
        ref = levels[0].copy()
        last = np.full(img.shape, -(10**12), dtype=np.int64)
        out: list[tuple[np.ndarray, ...]] = []
        for k in range(1, len(offsets)):
            prev, level, t0, t = levels[k - 1], levels[k], times[k - 1], times[k]
            diff = level - ref
            n_events = np.floor(np.abs(diff) / theta).astype(np.int64)
            fire = (n_events > 0) & (t - last >= self.refractory_us)
            ys, xs = np.nonzero(fire)
            if ys.size:
                counts = n_events[ys, xs]
                sign = np.sign(diff[ys, xs])
                # the j-th crossing of each pixel, timed where the straight line prev → level meets it
                j = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + 1
                start, step, before, after = (
                    np.repeat(a, counts) for a in (ref[ys, xs], sign * theta[ys, xs], prev[ys, xs], level[ys, xs])
                )
                span = after - before
                frac = np.clip((start + step * j - before) / np.where(span == 0, 1, span), 0.0, 1.0)
                ts = t0 + np.round((t - t0) * frac).astype(np.int64)
                out.append((np.repeat(xs, counts), np.repeat(ys, counts), np.repeat(sign > 0, counts), ts))
                ref[ys, xs] += sign * counts * theta[ys, xs]
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


@dataclass(frozen=True)
class Protocol:
    """How a real event dataset was recorded, for the emulator to repeat on a static image.

    The image (grayscale, 8-bit) is scaled to fit ``box`` (W, H) keeping its aspect ratio, centred
    on a black ``sensor`` (W, H), and moved along the path: ``saccades`` (three, a triangle with
    sides ``amplitude`` px) or ``loop`` (``loops`` times round a circle of diameter ``amplitude``).
    ``crop``: keep only the pixels the moving image reaches, with the origin at its top left corner
    (N-Caltech101's recordings are cropped to the image that way; CIFAR10-DVS keeps the full sensor).
    """

    name: str
    sensor: tuple[int, int]
    box: tuple[int, int]
    path: str
    amplitude: float
    emulator: DVSEmulator = field(default_factory=DVSEmulator)
    loops: int = 1
    crop: bool = False

    def __post_init__(self) -> None:
        if self.path not in ("saccades", "loop"):
            raise InvalidArgumentError(f"Protocol.path must be 'saccades' or 'loop', not {self.path!r}")

    def fit(self, width: int, height: int) -> tuple[int, int]:
        """The (W, H) an image of that size is shown at."""
        scale = min(self.box[0] / width, self.box[1] / height)
        return max(1, round(width * scale)), max(1, round(height * scale))

    def place(self, image: np.ndarray) -> np.ndarray:
        """``[H, W]`` uint8 (or ``[H, W, C]``, averaged) → the scene at rest, float in [0, 1]: the
        sensor's view, or the whole image when it over-fills the view (``record`` keeps the view)."""
        img = np.asarray(image)
        if img.ndim == 3:
            img = img.mean(-1)
        pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="L")
        w, h = self.fit(pil.width, pil.height)
        shown = np.asarray(pil.resize((w, h), Image.BILINEAR), np.float64) / 255.0
        canvas = np.zeros((max(h, self.sensor[1]), max(w, self.sensor[0])))
        top, left = (canvas.shape[0] - h) // 2, (canvas.shape[1] - w) // 2
        canvas[top : top + h, left : left + w] = shown
        return canvas

    def offsets(self) -> np.ndarray:
        e = self.emulator
        if self.path == "saccades":
            return saccade_path(e.steps, self.amplitude, smooth=True)
        return loop_path(e.steps, self.amplitude, self.loops)

    def record(self, image: np.ndarray, seed: int = 0) -> np.ndarray:
        """A stand-in recording of ``image`` (8-bit grayscale or RGB ``[H, W(, C)]``)."""
        scene = self.place(image)
        events = self.emulator(scene, path=self.offsets(), seed=seed)
        w, h = self.sensor
        left, top = (scene.shape[1] - w) // 2, (scene.shape[0] - h) // 2
        if left or top:  # an over-filling image: the sensor sees the middle of the scene
            events = events[
                (events["x"] >= left) & (events["x"] < left + w) & (events["y"] >= top) & (events["y"] < top + h)
            ]
            events["x"] -= left
            events["y"] -= top
        if self.crop and len(events):
            img = np.asarray(image)
            w, h = self.fit(img.shape[1], img.shape[0])
            left, top = (self.sensor[0] - w) // 2, (self.sensor[1] - h) // 2
            reach = int(np.ceil(self.amplitude)) + 1
            keep = (
                (events["x"] >= left)
                & (events["x"] < left + w + reach)
                & (events["y"] >= top)
                & (events["y"] < top + h + reach)
            )
            events = events[keep]
            events["x"] -= left
            events["y"] -= top
        return events

    def size(self, image_shape: tuple[int, ...]) -> tuple[int, int]:
        """The (W, H) a recording of an image of that ``[H, W(, C)]`` shape spans."""
        if not self.crop:
            return self.sensor
        w, h = self.fit(image_shape[1], image_shape[0])
        reach = int(np.ceil(self.amplitude)) + 1
        return min(w + reach, self.sensor[0]), min(h + reach, self.sensor[1])


ATIS = dict(threshold=0.4, refractory_us=1_000, threshold_sigma=0.03, noise_hz=0.1, duration_us=300_000)
PROTOCOLS: dict[str, Protocol] = {
    # N-MNIST: 28x28 digits on a 34x34 ATIS window, three 100 ms saccades
    "n-mnist": Protocol("n-mnist", (34, 34), (28, 28), "saccades", 5.0, DVSEmulator(steps=48, **ATIS)),
    # N-Caltech101: each image as large as fits 240x180, the same saccades, recordings cropped
    "n-caltech101": Protocol(
        "n-caltech101", (240, 180), (233, 173), "saccades", 5.0, DVSEmulator(steps=48, **ATIS), crop=True
    ),
    # CIFAR10-DVS: the image filling a DVS128's view (its edges outside the view all along the
    # 4-px loop, so no image border crosses the pixels), moved round a closed smooth loop, repeated;
    # threshold ~15% contrast (log 1.15 ≈ 0.14), the DVS128's nominal sensitivity
    "cifar10-dvs": Protocol(
        "cifar10-dvs",
        (128, 128),
        (144, 144),
        "loop",
        4.0,
        DVSEmulator(
            threshold=0.15, refractory_us=1_000, threshold_sigma=0.03, noise_hz=0.2, duration_us=1_200_000, steps=97
        ),
        loops=4,
    ),
}


def digit_images(n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` of scikit-learn's 8x8 digits (stratified by class) drawn as MNIST draws digits — 20x20
    in a 28x28 black square, 8-bit: what the ``n-mnist`` protocol is checked on against real N-MNIST."""
    from sklearn.datasets import load_digits

    from .splits import stratified_subset

    d = load_digits()
    out = []
    for k in stratified_subset(d.target, n, seed):
        im = Image.fromarray((d.images[k] * 255 / 16).astype(np.uint8)).resize((20, 20), Image.BICUBIC)
        canvas = np.zeros((28, 28), np.uint8)
        canvas[4:24, 4:24] = np.asarray(im)
        out.append(canvas)
    return out


def recording_statistics(recordings: list[np.ndarray], duration_us: int = 300_000, bins: int = 30) -> dict:
    """What a set of recordings looks like: events per recording (mean, sd), ON fraction, active
    pixels, events per active pixel, and the share of events in each of ``bins`` time bins."""
    counts = np.array([len(e) for e in recordings])
    pixels = np.array([len(np.unique(e["x"].astype(np.int64) * 4096 + e["y"])) for e in recordings])
    profile = sum(np.histogram(e["t"], bins=bins, range=(0, duration_us))[0] for e in recordings)
    return {
        "events": counts.mean(),
        "sd": counts.std(),
        "on": float(np.mean([e["p"].mean() for e in recordings])),
        "pixels": pixels.mean(),
        "per_pixel": (counts / np.maximum(pixels, 1)).mean(),
        "profile": profile / max(profile.sum(), 1),
    }
