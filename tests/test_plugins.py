"""Bring your own: models and datasets from another installed package, and transforms on a dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neucodex.data import build_dataset
from neucodex.errors import InvalidArgumentError

PLUGIN = """
from neucodex.data import DatasetSpec, build_dataset
from neucodex.models.vgg import vgg_tiny


def my_net(**kw):
    return vgg_tiny(**kw)


def _build(spec, split, **kw):
    return build_dataset("digits", split, T=kw["T"], size=kw["size"], seed=kw["seed"], train_augment=False)


MY_DATA = DatasetSpec("my-digits", "static", 1, 10, 8, "1,797", "none", "built in", _build)
"""


def fake_distribution(root: Path) -> dict:
    """A package 'myplug' installed on PYTHONPATH with both entry points, as pip would leave it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "myplug.py").write_text(PLUGIN)
    info = root / "myplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: myplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[neucodex.models]\nmy-net = myplug:my_net\n\n[neucodex.datasets]\nmy-digits = myplug:MY_DATA\n"
    )
    return {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def neucodex(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "neucodex.cli", *args], env=env, capture_output=True, text=True, timeout=600
    )


def test_plugin_models_and_datasets_reach_the_cli_and_checkpoints(tmp_path):
    env = fake_distribution(tmp_path / "site")
    listed = neucodex(env, "models", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "my-net" in {m["model"] for m in json.loads(listed.stdout)}
    assert "my-digits" in neucodex(env, "datasets").stdout
    run = neucodex(
        env,
        "train",
        "--config",
        "tiny",
        "--set",
        "model.name=my-net",
        "--set",
        "data.name=my-digits",
        "--set",
        "data.size=8",
        "--set",
        "model.T=1",
        "--set",
        "optim.epochs=1",
        "--set",
        "data.limit=200",
        "--set",
        f"out={tmp_path / 'runs'}",
    )
    assert run.returncode == 0, run.stderr
    evaluated = neucodex(env, "evaluate", "--checkpoint", str(tmp_path / "runs" / "tiny" / "backbone"), "--json")
    assert evaluated.returncode == 0, evaluated.stderr  # the checkpoint names my-net: loading finds it


def test_a_broken_plugin_is_one_warning_not_a_crash(tmp_path):
    env = fake_distribution(tmp_path / "site")
    (tmp_path / "site" / "myplug.py").write_text("raise ImportError('needs a GPU driver')\n")
    listed = neucodex(env, "models")
    assert listed.returncode == 0 and "resnet18" in listed.stdout
    assert "plugin 'my-net' (myplug:my_net) failed to load: needs a GPU driver" in listed.stderr


def test_build_dataset_applies_torchvision_v2_transforms():
    v2 = __import__("torchvision.transforms.v2", fromlist=["v2"])
    plain = build_dataset("digits", "test", size=8)
    flipped = build_dataset(
        "digits",
        "test",
        size=8,
        transform=v2.Compose([v2.RandomHorizontalFlip(p=1.0), v2.Lambda(lambda x: x * 2)]),
        target_transform=lambda y: y + 100,
    )
    (x, y), (fx, fy) = plain[3], flipped[3]
    assert torch.equal(fx, torch.flip(x, dims=[-1]) * 2) and fy == y + 100
    assert len(flipped) == len(plain) and flipped.classes == plain.classes


def test_build_dataset_applies_tonic_event_transforms_before_framing(tmp_path):
    from tonic import transforms as tt

    from test_data import write_bin

    rng = np.random.default_rng(0)
    for digit in range(2):
        d = tmp_path / "Train" / str(digit)
        d.mkdir(parents=True)
        for k in range(10):
            n = 300
            ev = zip(
                rng.integers(0, 34, n).tolist(),
                rng.integers(0, 34, n).tolist(),
                rng.integers(0, 2, n).tolist(),
                sorted(rng.integers(0, 300_000, n).tolist()),
                strict=True,
            )
            write_bin(d / f"{k:05d}.bin", list(ev))
    kw = dict(root=tmp_path, T=2, size=34, cache_dir=tmp_path / "cache", train_augment=False)
    plain = build_dataset("nmnist", "train", **kw)
    flipped = build_dataset("nmnist", "train", event_transform=tt.RandomFlipLR(sensor_size=(34, 34, 2), p=1.0), **kw)
    dropped = build_dataset("nmnist", "train", event_transform=tt.DropEvent(p=1.0), **kw)
    x, y = plain[0]
    assert x.sum() > 0
    assert torch.equal(flipped[0][0], torch.flip(x, dims=[-1])) and flipped[0][1] == y
    assert dropped[0][0].sum() == 0
    assert torch.equal(build_dataset("nmnist", "train", **kw)[0][0], x)  # the frame cache stays untransformed
    # the emulated set too: events swapped in polarity land in the other channel
    swap = build_dataset("digits-dvs", "test", T=2, event_transform=lambda ev: _swapped(ev))
    ex, sx = build_dataset("digits-dvs", "test", T=2)[0][0], swap[0][0]
    assert ex.sum() > 0 and torch.equal(sx, ex.flip(1))
    with pytest.raises(InvalidArgumentError, match="event_transform applies to event datasets; digits holds"):
        build_dataset("digits", "test", event_transform=tt.DropEvent(p=0.5))


def _swapped(ev):
    ev["p"] = 1 - ev["p"]
    return ev
