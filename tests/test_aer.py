"""Event recordings on disk and their framing, with NumPy only: equal to what Tonic reads and frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tonic.io import read_mnist_file
from tonic.transforms import ToFrame

from neucodex import framing
from neucodex.aer import EVENTS, RecordingError, encode_bin, read_bin, read_recording, write_bin
from neucodex.data.images import resize as torch_resize

REAL = sorted((Path(__file__).parent / "data" / "nmnist" / "Train").glob("*/*.bin"))


def random_events(n: int, w: int, h: int, seed: int = 0, span: int = 300_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, EVENTS)
    ev["x"], ev["y"], ev["p"] = rng.integers(0, w, n), rng.integers(0, h, n), rng.integers(0, 2, n)
    ev["t"] = np.sort(rng.integers(0, span, n))
    return ev


def test_real_recordings_read_as_tonic_reads_them():
    assert len(REAL) == 20
    for path in REAL:
        ours = read_bin(path)
        assert len(ours) > 1000
        assert (ours == read_mnist_file(str(path), dtype=EVENTS)).all()


def test_bin_round_trip_and_tonic_reads_what_we_write(tmp_path):
    ev = random_events(5000, 240, 180)
    write_bin(tmp_path / "r.bin", ev)
    assert (tmp_path / "r.bin").stat().st_size == 5 * len(ev)
    assert (read_bin(tmp_path / "r.bin") == ev).all()
    assert (read_mnist_file(str(tmp_path / "r.bin"), dtype=EVENTS) == ev).all()
    assert not list(tmp_path.glob("*.tmp"))


def test_bin_overflow_markers_as_tonic(tmp_path):
    raw = bytearray(encode_bin(random_events(30, 34, 34)))
    raw[5 * 10 + 1] = 240  # the 11th row becomes a timestamp-overflow marker
    (tmp_path / "o.bin").write_bytes(bytes(raw))
    ours = read_bin(tmp_path / "o.bin")
    assert len(ours) == 29 and (ours == read_mnist_file(str(tmp_path / "o.bin"), dtype=EVENTS)).all()


@pytest.mark.parametrize(
    ("field", "value", "match"), [("x", 300, "0..255"), ("y", 240, "y != 240"), ("t", 1 << 23, "timestamps")]
)
def test_bin_refuses_what_the_format_cannot_hold(field, value, match):
    ev = random_events(4, 34, 34)
    ev[field][-1] = value
    with pytest.raises(RecordingError, match=match):
        encode_bin(ev)


def test_damaged_or_unknown_recordings_say_so(tmp_path):
    (tmp_path / "cut.bin").write_bytes(b"\x01\x02\x03")
    with pytest.raises(RecordingError, match="5-byte events"):
        read_bin(tmp_path / "cut.bin")
    with pytest.raises(RecordingError, match="not an event recording"):
        read_recording(tmp_path / "x.txt")
    (tmp_path / "bad.aedat4").write_bytes(b"not aedat")
    with pytest.raises(RecordingError, match="aedat4"):
        read_recording(tmp_path / "bad.aedat4")


def test_aedat4_read_as_tonic_reads_it(tmp_path):
    dv = pytest.importorskip("dv_processing", reason="dv-processing writes the AEDAT4 test file")
    from tonic.io import read_aedat4

    path = tmp_path / "r.aedat4"
    writer = dv.io.MonoCameraWriter(str(path), dv.io.MonoCameraWriter.EventOnlyConfig("DVS128", (128, 128)))
    store = dv.EventStore()
    for i in range(500):
        store.push_back(1_000 + 37 * i, (i * 7) % 128, (i * 13) % 128, bool(i % 3))
    writer.writeEvents(store)
    del writer
    ours, theirs = read_recording(path), read_aedat4(str(path))
    assert len(ours) == 500
    for a, b in (("x", "x"), ("y", "y"), ("t", "t"), ("p", "on")):
        assert (ours[a] == theirs[b]).all()


@pytest.mark.parametrize("T", [1, 4, 5, 8])
def test_time_bins_equal_tonic_exactly(T):
    for ev, sensor in [(read_bin(REAL[0]), (34, 34, 2)), (random_events(20_000, 128, 128, 1), (128, 128, 2))]:
        theirs = ToFrame(sensor_size=sensor, n_time_bins=T)(ev)
        ours = framing.time_bins(ev, sensor, T)
        assert ours.shape == theirs.shape and (ours == theirs).all()
    assert framing.time_bins(np.zeros(0, EVENTS), (34, 34, 2), T).sum() == 0


def reference_frames(ev: np.ndarray, sensor: tuple[int, int, int], T: int, size: int) -> np.ndarray:
    """Tonic's ToFrame, then PyTorch's pad and resize: the framing training used before NumPy's."""
    w, h, _ = sensor
    frames = torch.from_numpy(ToFrame(sensor_size=sensor, n_time_bins=T)(ev).astype(np.float32))
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    frames = F.pad(frames, (left, side - w - left, top, side - h - top))
    return (torch_resize(frames, size) * (side * side / (size * size))).numpy()


@pytest.mark.parametrize(
    ("sensor", "size"),
    [((34, 34, 2), 34), ((34, 34, 2), 16), ((34, 34, 2), 48), ((128, 128, 2), 48), ((240, 180, 2), 64)],
)
def test_numpy_framing_equals_tonic_and_torch(sensor, size):
    ev = read_bin(REAL[3]) if sensor[0] == 34 else random_events(30_000, sensor[0], sensor[1], 2)
    ours, theirs = framing.to_frames(ev, sensor, 4, size), reference_frames(ev, sensor, 4, size)
    assert ours.shape == theirs.shape == (4, 2, size, size) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-4)
    if size <= min(sensor[:2]):  # shrinking keeps about every counted event (exactly at whole ratios)
        assert ours.sum() == pytest.approx(framing.time_bins(ev, sensor, 4).sum(), rel=0.1)


def test_a_recording_sent_whole_costs_its_aer_bytes_or_less_gzipped(tmp_path):
    from neucodex.aer import stream_sizes
    from neucodex.data import build_dataset, stratified
    from neucodex.data.events import recording_sizes

    sizes = stream_sizes(read_bin(REAL[0]))
    assert sizes["aer_bytes"] == REAL[0].stat().st_size == 5 * sizes["events"]
    assert 0 < sizes["gzip_bytes"] < sizes["aer_bytes"]
    wide = random_events(100, 346, 260)  # wider than the 40-bit format holds: 9-byte packing, gzipped
    assert stream_sizes(wide)["aer_bytes"] == 500 and stream_sizes(wide)["gzip_bytes"] > 0
    root = REAL[0].parent.parent.parent
    ds = stratified(build_dataset("nmnist", "all", root=root, T=2, size=16, cache_dir=tmp_path), 6)
    got = recording_sizes(ds)
    files = sorted(root.glob("Train/*/*.bin"), key=lambda p: (p.parent.name, p.name))
    want = [files[i].stat().st_size for i in ds.indices]
    assert [g["aer_bytes"] for g in got] == want
    assert recording_sizes(build_dataset("digits", "test")) is None
