"""DVS emulator: no motion no events, a moving bar gives ON ahead and OFF behind, threshold scaling."""

from __future__ import annotations

import numpy as np
import pytest
from tonic.transforms import ToFrame

from neucodex.data import DVSEmulator


def bar(width: int = 32, x0: int = 10, x1: int = 16) -> np.ndarray:
    img = np.zeros((width, width))
    img[:, x0:x1] = 1.0
    return img


def moving(dx_total: float, steps: int = 20) -> np.ndarray:
    return np.stack([np.linspace(0, dx_total, steps), np.zeros(steps)], axis=1)


def test_static_image_gives_no_events():
    img = np.random.default_rng(0).random((16, 16))
    assert len(DVSEmulator()(img, path=np.zeros((30, 2)))) == 0


@pytest.mark.parametrize("direction", [1, -1])
def test_moving_bar_on_ahead_off_behind(direction):
    ev = DVSEmulator(threshold=0.2, refractory_us=0)(bar(), path=moving(4 * direction))
    on, off = ev[ev["p"] == 1], ev[ev["p"] == 0]
    assert len(on) > 0 and len(off) > 0
    # a bright bar moving right brightens pixels ahead (right) and darkens those behind (left)
    assert direction * (on["x"].mean() - off["x"].mean()) > 3
    assert set(np.unique(ev["x"])) <= set(range(6, 21))  # only around the bar's path


def test_more_events_as_threshold_falls():
    img = np.random.default_rng(1).random((16, 16))
    counts = [len(DVSEmulator(threshold=th)(img)) for th in (0.8, 0.4, 0.2, 0.1)]
    assert counts == sorted(counts) and counts[0] < counts[-1]


def test_refractory_and_noise():
    img = bar()
    fast = len(DVSEmulator(refractory_us=0)(img))
    slow = len(DVSEmulator(refractory_us=50_000)(img))
    assert slow < fast
    noisy = DVSEmulator(noise_hz=50.0)(np.zeros((16, 16)), path=np.zeros((10, 2)), seed=3)
    assert len(noisy) > 0 and np.all(np.diff(noisy["t"]) >= 0)


def test_tonic_format_frames():
    ev = DVSEmulator()(bar(16, 5, 9))
    assert ev.dtype.names == ("x", "y", "t", "p")
    frames = ToFrame(sensor_size=(16, 16, 2), n_time_bins=4)(ev)
    assert frames.shape == (4, 2, 16, 16) and frames.sum() > 0
