"""Datasets: offline sets, real on-disk formats through the real loaders, clear missing-data errors."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neucodex.data import DatasetMissingError, build_dataset, dataset_spec, list_datasets
from neucodex.data.events import read_bin
from neucodex.errors import InvalidArgumentError, NeucodexError

NMNIST = Path(__file__).resolve().parent / "data" / "nmnist"


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def split_indices(name, **kw):
    return {s: build_dataset(name, s, **kw).indices for s in ("train", "val", "test")}


def test_digits_offline_deterministic_balanced():
    a, b = split_indices("digits"), split_indices("digits")
    assert a == b
    assert [len(a[s]) for s in ("train", "val", "test")] == [1295, 143, 359]
    assert not set(a["train"]) & set(a["test"]) and not set(a["val"]) & set(a["test"])
    test = build_dataset("digits", "test")
    per_class = Counter(build_dataset("digits", "train").base.targets)
    assert Counter(test.targets) == {c: round(0.2 * n) for c, n in per_class.items()}  # 20% of every class
    x, y = build_dataset("digits", "train", size=32, train_augment=False)[0]
    assert x.shape == (1, 32, 32) and 0 <= x.min() and x.max() <= 1 and x.max() > 0.5


def test_digits_dvs_offline():
    ds = build_dataset("digits-dvs", "test", T=4)
    assert ds.indices == build_dataset("digits", "test").indices  # the same split as digits
    x, y = ds[0]
    assert x.shape == (4, 2, 16, 16) and x.sum() > 0
    assert torch.equal(ds[0][0], x)  # deterministic emulation


def cifar_archive(tmp_path: Path, per_class: int = 20) -> Path:
    """A .tar.gz in the real CIFAR-10 JPEG layout (``train/<class>/NNNN.jpg``), from the demo images."""
    import io
    import tarfile
    from importlib import resources

    z = np.load(Path(str(resources.files("neucodex.pretrained"))) / "cifar10-demo.npz")
    path = tmp_path / "cifar10-train-jpg.tar.gz"
    counts: Counter = Counter()
    with tarfile.open(path, "w:gz") as tar:
        for img, label in zip(z["images"], z["labels"], strict=True):
            cls = str(z["classes"][label])
            if counts[cls] == per_class:
                continue
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, "JPEG", quality=95)
            info = tarfile.TarInfo(f"train/{cls}/{counts[cls]:04d}.jpg")
            info.size = len(buf.getvalue())
            tar.addfile(info, io.BytesIO(buf.getvalue()))
            counts[cls] += 1
    return path


def test_cifar10_images_from_an_archive_in_the_real_layout(tmp_path, cache):
    """The imagefolder loader on a .tar.gz of JPEG class folders, as the CIFAR-10 JPEGs come:
    seeded stratified 10% test, then 10% of the rest val; the second read from the cache."""
    root = cifar_archive(tmp_path)
    parts = {s: build_dataset("imagefolder", s, root=root, cache_dir=cache) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [160, 20, 20]
    assert parts["train"].classes[:2] == ["airplane", "automobile"]
    assert Counter(parts["val"].targets) == {k: 2 for k in range(10)}
    again = build_dataset("imagefolder", "val", root=root, cache_dir=cache)  # from the cache
    assert again.indices == parts["val"].indices
    x, _ = again[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1


def test_real_nmnist_recordings(cache):
    """20 real N-MNIST recordings shipped with the tests (tests/data/README.md): read, framed, split."""
    parts = {s: build_dataset("nmnist", s, root=NMNIST, T=5, cache_dir=cache) for s in ("train", "val", "test")}
    every = build_dataset("nmnist", "all", root=NMNIST, T=5, cache_dir=cache)
    assert len(every) == 20 and sum(len(p) for p in parts.values()) == 20
    assert parts["train"].indices == build_dataset("nmnist", "train", root=NMNIST, T=5, cache_dir=cache).indices
    x, y = every[0]
    assert x.shape == (5, 2, 34, 34) and x.sum() > 1000  # thousands of events per recording
    assert torch.equal(every[0][0], x)  # second read: from the frame cache
    events = read_bin(next(NMNIST.glob("Train/0/*.bin")))
    assert 1000 < len(events) < 20_000 and events["x"].max() <= 33 and events["y"].max() <= 33
    assert set(np.unique(events["p"]).tolist()) == {0, 1}  # both polarities


def test_ncaltech101_loader_on_real_recordings(tmp_path, cache):
    """N-Caltech101 uses N-MNIST's 40-bit format: real recordings in its folder layout."""
    root = tmp_path / "nc"
    for digit, cls in enumerate(("accordion", "airplanes", "BACKGROUND_Google")):
        d = root / "NCALTECH101" / "Caltech101" / cls
        d.mkdir(parents=True)
        for k, f in enumerate(sorted(NMNIST.glob(f"Train/{digit}/*.bin"))):
            (d / f"image_{k:04d}.bin").write_bytes(f.read_bytes())
    ds = build_dataset("n-caltech101", "all", root=root, T=3, size=24, cache_dir=cache)
    assert ds.classes == ["accordion", "airplanes"]  # background left out
    assert len(ds) == 4
    x, _ = ds[0]
    assert x.shape == (3, 2, 24, 24) and x.sum() > 0


def write_bin(path: Path, events: list[tuple[int, int, int, int]]) -> None:
    """N-MNIST / N-Caltech101 format: x 8 bits, y 8 bits, polarity 1 bit, timestamp 23 bits."""
    raw = bytearray()
    for x, y, p, t in events:
        raw += bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])
    path.write_bytes(bytes(raw))


def test_bin_event_format_is_read_exactly(tmp_path):
    events = [(3, 4, 1, 10), (40, 2, 0, 500), (239, 170, 1, 8_000_000)]
    write_bin(tmp_path / "a.bin", events)
    ev = read_bin(tmp_path / "a.bin")
    assert [(int(e["x"]), int(e["y"]), int(e["p"]), int(e["t"])) for e in ev] == events


def test_ncaltech101_from_written_files(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("ant", "bee"):
        d = tmp_path / "NCALTECH101" / "Caltech101" / cls
        d.mkdir(parents=True)
        for k in range(10):
            n = 200
            xs, ys = rng.integers(20, 120, n).tolist(), rng.integers(10, 90, n).tolist()
            ps, ts = rng.integers(0, 2, n).tolist(), sorted(rng.integers(0, 300_000, n).tolist())
            write_bin(d / f"image_{k:04d}.bin", list(zip(xs, ys, ps, ts, strict=True)))
    ds = build_dataset("n-caltech101", "test", root=tmp_path, T=2, size=32, cache_dir=tmp_path / "c")
    assert len(ds) == 2 and sorted(ds.targets) == [0, 1]  # 10% of each class
    x, _ = ds[0]
    assert x.shape == (2, 2, 32, 32)


def test_cifar10_dvs_from_aedat4(tmp_path):
    dv = pytest.importorskip("dv_processing", reason="dv-processing writes the AEDAT4 test files")
    for cls in ("airplane", "automobile"):
        d = tmp_path / "CIFAR10DVS" / cls
        d.mkdir(parents=True)
        for k in range(10):
            writer = dv.io.MonoCameraWriter(
                str(d / f"cifar10_{cls}_{k}.aedat4"), dv.io.MonoCameraWriter.EventOnlyConfig("DVS128", (128, 128))
            )
            store = dv.EventStore()
            for i in range(300):
                store.push_back(1_000 + 100 * i, (i * 7 + k) % 128, (i * 13) % 128, bool(i % 2))
            writer.writeEvents(store)
            del writer
    ds = build_dataset(
        "cifar10-dvs", "train", root=tmp_path, T=4, size=48, cache_dir=tmp_path / "c", train_augment=False
    )
    assert ds.classes == ["airplane", "automobile"]
    x, _ = ds[0]
    assert x.shape == (4, 2, 48, 48)
    # every event counted (Tonic drops the one at the end time); area resizing at 128→48 keeps ~all
    assert x.sum() == pytest.approx(299, rel=0.01)


def write_cifar(root: Path, n_per_batch: int = 20) -> None:
    rng = np.random.default_rng(0)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
            b"labels": [i % 10 for i in range(n_per_batch)],
            b"batch_label": name.encode(),
        }
        (d / name).write_bytes(pickle.dumps(batch, protocol=2))
    (d / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}" for i in range(10)]}, protocol=2))


def test_cifar10_pickled_batches(tmp_path):
    write_cifar(tmp_path)
    train = build_dataset("cifar10", "train", root=tmp_path, train_augment=False)
    val = build_dataset("cifar10", "val", root=tmp_path)
    test = build_dataset("cifar10", "test", root=tmp_path)
    assert (len(train), len(val), len(test)) == (90, 10, 20)
    assert train.classes[0] == "c0"
    raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes())
    x, y = test[3]
    expected = torch.from_numpy(raw[b"data"][3].reshape(3, 32, 32).astype(np.float32) / 255)
    assert torch.equal(x, expected) and y == 3


def test_cifar100_pickled_batches(tmp_path):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    rng = np.random.default_rng(1)
    for name, n in (("train", 200), ("test", 100)):
        (d / name).write_bytes(
            pickle.dumps(
                {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"fine_labels": [i % 100 for i in range(n)]}
            )
        )
    (d / "meta").write_bytes(pickle.dumps({b"fine_label_names": [f"f{i}" for i in range(100)]}))
    assert len(build_dataset("cifar100", "test", root=tmp_path)) == 100
    assert len(build_dataset("cifar100", "train", root=tmp_path, size=16)[0][0][0]) == 16


def test_cifar_batch_with_code_is_refused(tmp_path):
    write_cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(DatasetMissingError, match="refusing to load"):
        build_dataset("cifar10", "test", root=tmp_path)


def write_nmnist(folder: Path, digits=(0, 1), per_digit: int = 5) -> None:
    rng = np.random.default_rng(len(str(folder)))
    for digit in digits:
        d = folder / str(digit)
        d.mkdir(parents=True)
        for k in range(per_digit):
            xs, ys = rng.integers(0, 34, 50).tolist(), rng.integers(0, 34, 50).tolist()
            ps, ts = rng.integers(0, 2, 50).tolist(), sorted(rng.integers(0, 300_000, 50).tolist())
            write_bin(d / f"{k:05d}.bin", list(zip(xs, ys, ps, ts, strict=True)))


def test_split_all_is_every_sample_under_the_root(tmp_path):
    """``all`` (evaluation on someone else's data): every sample, not the 10% a split holds out."""
    write_cifar(tmp_path / "cifar")
    assert len(build_dataset("cifar10", "all", root=tmp_path / "cifar")) == 120  # 5 x 20 train + 20 test
    digits = {s: build_dataset("digits", s) for s in ("train", "val", "test", "all")}
    assert len(digits["all"]) == 1797 == sum(len(digits[s]) for s in ("train", "val", "test"))
    assert len(build_dataset("cifar10-demo", "all")) == 1000
    for k in range(3):
        (tmp_path / "imgs" / f"c{k}").mkdir(parents=True)
        for i in range(7):
            Image.fromarray(np.full((8, 8, 3), 30 * k + i, np.uint8)).save(tmp_path / "imgs" / f"c{k}" / f"{i}.png")
    every = build_dataset("imagefolder", "all", root=tmp_path / "imgs", size=8, cache_dir=tmp_path / "c")
    assert len(every) == 21 and sorted(Counter(every.targets).values()) == [7, 7, 7]
    kw = dict(T=2, cache_dir=tmp_path / "c")
    write_nmnist(tmp_path / "nm" / "Train")
    write_nmnist(tmp_path / "nm" / "Test", per_digit=2)
    assert len(build_dataset("nmnist", "all", root=tmp_path / "nm", **kw)) == 14  # Train/ and Test/
    write_nmnist(tmp_path / "only-test")  # <digit>/ folders right under the root: no Train/ needed
    assert build_dataset("nmnist", "all", root=tmp_path / "only-test", **kw).targets == [0] * 5 + [1] * 5
    with pytest.raises(DatasetMissingError, match="Train"):  # the other splits still need Train/
        build_dataset("nmnist", "test", root=tmp_path / "only-test", **kw)
    write_nmnist(tmp_path / "odd" / "Train")
    write_nmnist(tmp_path / "odd" / "Test", digits=(0, 2))
    with pytest.raises(DatasetMissingError, match="different class folders"):
        build_dataset("nmnist", "all", root=tmp_path / "odd", **kw)
    with pytest.raises(NeucodexError, match="unknown split 'everything'; choose from train, val, test, all"):
        build_dataset("digits", "everything")


def test_caltech101_class_folders(tmp_path):
    rng = np.random.default_rng(0)
    top = tmp_path / "caltech101" / "101_ObjectCategories"
    for cls in ("BACKGROUND_Google", "accordion", "anchor"):
        (top / cls).mkdir(parents=True)
        for k in range(10):
            img = Image.fromarray(rng.integers(0, 256, (30 + k, 40, 3), dtype=np.uint8))
            img.save(top / cls / f"image_{k + 1:04d}.jpg")
    Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).save(top / "anchor" / "image_0099.jpg")  # grey
    cache = tmp_path / "cache"
    splits = {
        s: build_dataset("caltech101", s, root=tmp_path, size=24, cache_dir=cache) for s in ("train", "val", "test")
    }
    assert splits["train"].classes == ["accordion", "anchor"]
    assert sorted(len(splits[s]) for s in splits) == [2, 4, 15]  # 80/20 test, then 10% val
    x, _ = splits["test"][0]
    assert x.shape == (3, 24, 24)
    assert len(list(cache.glob("imagefolder-*.npz"))) == 1  # decoded once, then read from the cache
    (top / "anchor" / "image_0001.jpg").unlink()  # a changed folder is decoded again
    again = sum(len(build_dataset("caltech101", s, root=tmp_path, size=24, cache_dir=cache)) for s in splits)
    assert len(list(cache.glob("imagefolder-*.npz"))) == 2 and again == sum(len(d) for d in splits.values()) - 1


@pytest.mark.parametrize(
    "spec",
    [s for s in list_datasets() if s.name not in ("digits", "digits-dvs") and not s.test_only],
    ids=lambda s: s.name,
)
def test_missing_root_is_clear(spec, tmp_path):
    with pytest.raises(DatasetMissingError) as e:
        build_dataset(spec.name, "train", root=tmp_path / "absent")
    msg = str(e.value)
    assert msg.startswith(f"dataset {spec.name!r}: ") and str(tmp_path / "absent") in msg
    assert spec.layout in msg and "\n" not in msg


def test_missing_data_on_the_cli():
    proc = subprocess.run(
        [sys.executable, "-m", "neucodex.cli", "datasets", "cifar10", "--root", "/nonexistent"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("neucodex: error: dataset 'cifar10': file not found at /nonexistent")


def test_demo_images_are_held_out_of_every_training_split():
    """No embedded demo image is one the shipped CIFAR-10 entries trained or validated on: the
    pixel digests of those 45,000 images ship with the package (publish.write_train_digests)."""
    from importlib import resources

    from neucodex.publish import TRAIN_DIGESTS, image_digest

    here = Path(str(resources.files("neucodex.pretrained")))
    seen = set(np.load(here / TRAIN_DIGESTS)["digests"].tolist())
    z = np.load(here / "cifar10-demo.npz")
    assert len(seen) == 45_000
    demo = [image_digest(img) for img in z["images"]]
    assert len(set(demo)) == 1000 and not set(demo) & seen
    # the digest sees a one-value change: the check is not vacuous
    changed = z["images"][0].copy()
    changed[0, 0, 0] ^= 1
    assert image_digest(changed) != demo[0]


def test_demo_images_are_stored_interleaved_by_class():
    """Any prefix of the embedded set is balanced: class k is at positions k, k + 10, …"""
    from importlib import resources

    z = np.load(Path(str(resources.files("neucodex.pretrained"))) / "cifar10-demo.npz")
    assert z["labels"].tolist() == [k % 10 for k in range(1000)]


def test_digits_listing_states_the_split_sizes_it_loads():
    spec = dataset_spec("digits")
    for split in ("train", "val", "test"):
        assert f"{split} {len(build_dataset('digits', split)):,}" in spec.samples


def test_another_dataset_does_not_inherit_the_checkpoints_root():
    """A checkpoint's config on other data: the same dataset keeps its root, another one drops it
    (one dataset's files are not another's), and an explicit root always wins."""
    from neucodex.config import load_config
    from neucodex.evaluate import with_data

    cfg = load_config("tiny", ["data.name=imagefolder", "data.root=/data/mine"])
    assert with_data(cfg) is cfg
    assert with_data(cfg, "imagefolder").data.root == "/data/mine"
    assert with_data(cfg, "nmnist").data.root is None and with_data(cfg, "nmnist").data.name == "nmnist"
    assert with_data(cfg, "nmnist", "/data/nm").data.root == "/data/nm"
    assert with_data(cfg, root="/elsewhere").data.name == "imagefolder"


def test_every_subset_a_figure_comes_from_is_balanced_by_class():
    """demo --quick, the report's energy rates and the zoo's checked samples: each a uniform class
    histogram (and every prefix of a stratified subset is as balanced as its length allows)."""
    from neucodex import demo
    from neucodex.data import dataset_labels, stratified, stratified_subset
    from neucodex.pretrained import CHECK_SAMPLES
    from neucodex.report.figures import OPS_SAMPLES

    ds = build_dataset("cifar10-demo", "test")
    for n in (demo.PRETRAINED_QUICK, CHECK_SAMPLES, min(OPS_SAMPLES, len(ds))):
        counts = np.bincount(dataset_labels(stratified(ds, n)), minlength=10)
        assert counts.tolist() == [n // 10] * 10, n
    digits = build_dataset("digits", "test")  # 359 samples, classes of 35-37
    labels = np.asarray(digits.targets)
    sub = stratified_subset(labels, demo.QUICK_SAMPLES)
    for k in range(10, len(sub) + 1, 10):
        assert np.bincount(labels[sub[:k]], minlength=10).tolist() == [k // 10] * 10
    assert stratified_subset(labels, 50, seed=1).tolist() != sub[:50].tolist()  # seeded: another draw
    assert stratified(digits, None) is digits and stratified(digits, 10_000) is digits


def test_strong_augmentation_for_small_image_sets(tmp_path):
    """`data.augment: strong` (Caltech101's recipe): random resized crops and colour jitter on the
    train split only; datasets without it, and unknown names, are refused in one line."""
    rng = np.random.default_rng(0)
    for c in ("ant", "bee"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for k in range(10):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "imgs" / c / f"{k}.png")
    kw = dict(root=tmp_path / "imgs", size=24, cache_dir=tmp_path / "c")
    strong = build_dataset("imagefolder", "train", augment="strong", **kw)
    plain = build_dataset("imagefolder", "train", train_augment=False, **kw)
    torch.manual_seed(0)
    a, b = strong[0][0], strong[0][0]
    assert a.shape == plain[0][0].shape == (3, 24, 24) and not torch.equal(a, b)
    assert build_dataset("imagefolder", "train", augment="nda", **kw)[0][0].shape == (3, 24, 24)
    test = build_dataset("imagefolder", "test", augment="strong", **kw)
    assert torch.equal(test[0][0], build_dataset("imagefolder", "test", **kw)[0][0])
    with pytest.raises(InvalidArgumentError, match="only the crop augmentation"):
        build_dataset("digits", "train", augment="strong")
    assert len(build_dataset("digits", "test", augment="strong")) > 0  # evaluating a strong-trained model anywhere
    with pytest.raises(InvalidArgumentError, match="augment must be one of crop, strong, nda"):
        build_dataset("digits", "train", augment="wild")


class _BlasThreads(torch.utils.data.Dataset):
    """Each item: how many BLAS threads NumPy would use in the process that loads it."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> int:
        from threadpoolctl import threadpool_info

        return max((p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"), default=1)


def test_loader_workers_frame_with_one_blas_thread():
    """W workers × a BLAS pool the machine's size oversubscribe it: each worker gets one thread."""
    pytest.importorskip("threadpoolctl")
    from neucodex.evaluate import loader

    counts = [int(c) for batch in loader(_BlasThreads(), 1, False, 0, workers=1) for c in batch]
    assert counts == [1, 1]
