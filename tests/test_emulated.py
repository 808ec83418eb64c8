"""Emulated event datasets: built from an image set by `neucodex datasets build`, deterministic,
resumable, refused when settings differ, and read back as any event dataset is."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neucodex.aer import read_bin
from neucodex.cli import main
from neucodex.data import DatasetMissingError, build_dataset, build_emulated
from neucodex.data.images import augmentation
from neucodex.errors import InvalidArgumentError

CLASSES = ("cat", "dog", "ship")


def image_folder(root: Path, per_class: int = 5, size: tuple[int, int] = (32, 32)) -> Path:
    rng = np.random.default_rng(0)
    for c in CLASSES:
        (root / c).mkdir(parents=True)
        for k in range(per_class):
            Image.fromarray((rng.random((*size[::-1], 3)) * 255).astype(np.uint8)).save(root / c / f"{k:04d}.png")
    return root


def recordings(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.glob("*/*.bin"))}


def test_build_is_deterministic_resumable_and_loads(tmp_path):
    images = image_folder(tmp_path / "img")
    a = build_emulated("cifar10-dvs-emu", images, tmp_path / "a", per_class=4, progress=False)
    assert a["complete"] and a["recordings"] == 12 and a["classes"] == list(CLASSES)
    first = recordings(tmp_path / "a")
    assert len(first) == 12
    ev = read_bin(tmp_path / "a" / next(iter(first)))
    assert len(ev) > 1000 and ev["x"].max() < 128 and abs(ev["p"].mean() - 0.5) < 0.1
    # resumable: a lost recording is made again, identical; the others are kept
    lost = tmp_path / "a" / next(iter(first))
    lost.unlink()
    build_emulated("cifar10-dvs-emu", images, tmp_path / "a", per_class=4, progress=False)
    assert recordings(tmp_path / "a") == first
    # deterministic by seed, in parallel too; another seed chooses and records otherwise
    build_emulated("cifar10-dvs-emu", images, tmp_path / "b", per_class=4, workers=2, progress=False)
    assert recordings(tmp_path / "b") == first
    build_emulated("cifar10-dvs-emu", images, tmp_path / "c", per_class=4, seed=1, progress=False)
    assert recordings(tmp_path / "c") != first
    with pytest.raises(InvalidArgumentError, match="other settings"):
        build_emulated("cifar10-dvs-emu", images, tmp_path / "a", per_class=4, seed=1, progress=False)
    # read as an event dataset, split per class, framed at T bins
    train = build_dataset("cifar10-dvs-emu", "train", root=tmp_path / "a", T=4, size=24, train_augment=False)
    test = build_dataset("cifar10-dvs-emu", "test", root=tmp_path / "a", T=4, size=24)
    assert len(train) + len(test) <= 12 and sorted(set(train.targets)) == [0, 1, 2]
    x, _ = train[0]
    assert x.shape == (4, 2, 24, 24) and x.sum() > 100
    # `data.augment: nda`: one random affine map and cutout per recording, the same for every bin
    nda = build_dataset("cifar10-dvs-emu", "train", root=tmp_path / "a", T=4, size=24, augment="nda")
    torch.manual_seed(0)
    a, b = nda[0][0], nda[0][0]
    assert a.shape == x.shape and not torch.equal(a, b) and a.sum() > 0
    same = x[:1].repeat(4, 1, 1, 1)
    moved = augmentation(24, True, "nda")(same)
    assert not torch.equal(moved, same) and all(torch.equal(moved[0], moved[t]) for t in range(4))
    with pytest.raises(InvalidArgumentError, match="event frames take augment crop or nda"):
        build_dataset("cifar10-dvs-emu", "train", root=tmp_path / "a", T=4, size=24, augment="strong")


def test_caltech_protocol_from_an_archive_crops_recordings(tmp_path):
    images = image_folder(tmp_path / "101_ObjectCategories", per_class=2, size=(90, 60))
    (images / "BACKGROUND_Google").mkdir()
    Image.new("RGB", (50, 50)).save(images / "BACKGROUND_Google" / "0000.png")
    with tarfile.open(tmp_path / "caltech.tar.gz", "w:gz") as tar:
        tar.add(images, arcname="101_ObjectCategories")
    m = build_emulated("n-caltech101-emu", tmp_path / "caltech.tar.gz", tmp_path / "out", progress=False)
    assert m["recordings"] == 6 and "BACKGROUND_Google" not in m["classes"]
    for path in (tmp_path / "out").glob("*/*.bin"):
        ev = read_bin(path)  # 90x60 shown at 233x155, cropped to it plus the saccades' reach
        assert ev["x"].max() < 233 + 7 and ev["y"].max() < 155 + 7 and ev["x"].max() > 200
    ds = build_dataset("n-caltech101-emu", "train", root=tmp_path / "out", T=2, size=32, train_augment=False)
    assert ds[0][0].shape == (2, 2, 32, 32)


def test_unfinished_missing_and_wrong_builds_say_what_to_do(tmp_path):
    with pytest.raises(DatasetMissingError, match="folder not found"):
        build_dataset("cifar10-dvs-emu", "train", root=tmp_path / "nothing")
    with pytest.raises(DatasetMissingError, match="no --root"):
        build_dataset("n-caltech101-emu", "train")
    (tmp_path / "half").mkdir()
    manifest = {"dataset": "cifar10-dvs-emu", "complete": False}
    (tmp_path / "half" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetMissingError, match="unfinished build.*datasets build cifar10-dvs-emu"):
        build_dataset("cifar10-dvs-emu", "train", root=tmp_path / "half")
    with pytest.raises(DatasetMissingError, match="holds a build of cifar10-dvs-emu"):
        build_dataset("n-caltech101-emu", "train", root=tmp_path / "half")
    with pytest.raises(DatasetMissingError, match="no images under"):
        build_emulated("cifar10-dvs-emu", tmp_path / "half", tmp_path / "out", progress=False)


def test_build_cli(tmp_path, capsys):
    images = image_folder(tmp_path / "img", per_class=2)
    assert main(["datasets", "build", "cifar10-dvs-emu", "--root", str(images), "--out", str(tmp_path / "o")]) == 0
    assert "6 recordings of 3 classes" in capsys.readouterr().out
    assert main(["datasets", "build", "cifar10-dvs"]) == 2
    assert "give one of cifar10-dvs-emu, n-caltech101-emu" in capsys.readouterr().err
    assert main(["datasets", "build", "cifar10-dvs-emu", "--root", str(images)]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["datasets", "cifar10-dvs-emu", "--root", str(tmp_path / "o"), "-T", "2", "--json"]) == 0
    splits = json.loads(capsys.readouterr().out)["splits"]
    assert sum(s["samples"] for s in splits.values()) == 6
    # two recordings per class leave no val split: training says so before its first epoch
    train = ["train", "--config", "cifar10-dvs-emu-ann", "--root", str(tmp_path / "o"), "--out", str(tmp_path / "r")]
    assert main([*train, "--set", "optim.epochs=1"]) == 2
    assert "split of cifar10-dvs-emu is empty" in capsys.readouterr().err


def test_an_event_demo_set_is_held_out_framed_and_sized(tmp_path, monkeypatch):
    """``neucodex zoo --demo-events``: held-out test recordings, one of each class in turn, framed as
    the dataset frames them, with each recording's own size kept for the cloud-only baseline."""
    import neucodex.data.base as base
    import neucodex.data.demos as demos
    from neucodex.data import dataset_spec

    monkeypatch.setattr(demos, "demo_path", lambda name: tmp_path / f"{name}.npz")
    monkeypatch.setattr(base, "_DATASETS", dict(base._DATASETS))  # the set registered here leaves with the test
    monkeypatch.setenv("NEUCODEX_CACHE", str(tmp_path / "cache"))
    images = image_folder(tmp_path / "img", per_class=10)
    build_emulated("cifar10-dvs-emu", images, tmp_path / "emu", per_class=10, progress=False)
    path = demos.write_event_demo("cifar10-dvs-emu", tmp_path / "emu", T=4, size=16, per_class=1)
    test = build_dataset("cifar10-dvs-emu", "test", root=tmp_path / "emu", T=4, size=16)
    demo = build_dataset("cifar10-dvs-emu-demo", "test", T=4)
    assert dataset_spec("cifar10-dvs-emu-demo").test_only and len(demo) == len(test) == 3
    assert sorted(demo.targets) == [0, 1, 2]
    by_label = {test.targets[i]: test[i][0] for i in range(3)}
    for i in range(3):
        x, y = demo[i]
        torch.testing.assert_close(x, by_label[y], rtol=1e-3, atol=1e-2)  # stored as float16
    with np.load(path) as z:
        assert z["frames"].dtype == np.float16 and int(z["T"]) == 4
        stored = sorted(z["aer_bytes"].tolist())
    assert stored == sorted(Path(test.base.paths[j]).stat().st_size for j in test.indices)  # 5 bytes per event
    assert build_dataset("cifar10-dvs-emu-demo", "test", T=2)[0][0].shape == (2, 2, 16, 16)
    with pytest.raises(DatasetMissingError, match="holds frames at T=4"):
        build_dataset("cifar10-dvs-emu-demo", "test", T=8)
    with pytest.raises(DatasetMissingError, match="only a test split"):
        build_dataset("cifar10-dvs-emu-demo", "train", T=4)
