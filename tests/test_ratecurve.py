"""Cloud-only codec baselines from real files, and the rate–accuracy curve beside co-inference."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neucodex.baselines import CodecPoint, best_within, decode_image, encode_image, round_trip
from neucodex.ratecurve import markdown, split_label


def demo_images(n: int = 20) -> torch.Tensor:
    z = np.load(Path(str(resources.files("neucodex.pretrained"))) / "cifar10-demo.npz")
    return torch.from_numpy(z["images"][:n]).permute(0, 3, 1, 2).float() / 255.0


@pytest.mark.parametrize(
    "codec, quality, pil_format", [("png", None, "PNG"), ("jpeg", 30, "JPEG"), ("webp", 30, "WEBP")]
)
def test_byte_counts_are_those_of_real_files(codec, quality, pil_format):
    """Each file opens as what it claims, and the counted bytes are the file's length."""
    images = demo_images(8)
    decoded, mean_bytes = round_trip(images, codec, quality)
    raw = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    files = [encode_image(img, codec, quality) for img in raw]
    assert mean_bytes == pytest.approx(np.mean([len(f) for f in files]))
    assert all(Image.open(io.BytesIO(f)).format == pil_format for f in files)
    assert decoded.shape == images.shape and 0 <= decoded.min() and decoded.max() <= 1
    if codec == "png":  # lossless: the cloud gets exactly the 8-bit image
        assert torch.equal(decoded, images)
        assert np.array_equal(decode_image(files[0], 3), raw[0])
    else:
        assert not torch.equal(decoded, images) and mean_bytes < 32 * 32 * 3


def test_lower_quality_sends_fewer_bytes():
    images = demo_images(10)
    sizes = [round_trip(images, "jpeg", q)[1] for q in (10, 50, 90)]
    assert sizes[0] < sizes[1] < sizes[2]


def test_best_within_takes_the_fewest_bytes_inside_the_drop():
    pts = [CodecPoint("jpeg", 10, 300, 70.0), CodecPoint("jpeg", 50, 800, 79.5), CodecPoint("png", None, 2400, 80.0)]
    assert best_within(pts, 80.0, 0.5).quality == 50
    assert best_within(pts, 80.0, 20).quality == 10
    assert best_within(pts, 90.0, 0.5) is None


@pytest.mark.parametrize(
    "given, expected",
    [
        ("lambda5e-5=runs/rd/a/coinference-rb1-c16s2k3-T4", ("lambda5e-5", "runs/rd/a/coinference-rb1-c16s2k3-T4")),
        ("zoo:cifar10-resnet18-rb4", ("cifar10-resnet18-rb4", "zoo:cifar10-resnet18-rb4")),
        ("runs/a=b/cut", ("cut", "runs/a=b/cut")),  # an '=' inside a path is not a label
    ],
)
def test_a_point_is_labelled_by_its_label_or_its_name(given, expected):
    assert split_label(given) == expected


def test_each_cut_drops_against_its_own_backbone():
    """A cut from another backbone than the codecs' is judged against its own backbone."""
    r = {
        "dataset": "imagefolder",
        "split": "test",
        "samples": 100,
        "backbone": "zoo:b",
        "backbone_accuracy": 85.0,
        "raw_8bit_bits": 24576,
        "codecs": [{"name": "png", "bits": 18000.0, "bytes_per_image": 2250.0, "accuracy": 85.0}],
        "best_codec_within": {"0.5": None},
        "coinference": [
            {
                "label": "old",
                "checkpoint": "zoo:old-rb4",
                "point": "rb4",
                "payload_bits": 300.0,
                "wire_bytes": 90.0,
                "accuracy": 73.0,
                "backbone_accuracy": 82.0,
                "mean_steps": 2.5,
            }
        ],
    }
    row = next(line for line in markdown(r).splitlines() if "zoo:old-rb4" in line)
    assert "| rb4 | 300 | 90 | 73.00 | 82.00 | 9.00 | 2.50 |" in row


@pytest.mark.slow
def test_ratecurve_command_on_a_trained_checkpoint(coinference_checkpoint, tmp_path):
    """The CLI: codec points over the backbone, the co-inference point from real packets, files written."""
    from neucodex.checkpoint import read_info

    backbone = str(read_info(coinference_checkpoint).backbone_path)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "neucodex.cli",
            "ratecurve",
            "--backbone",
            backbone,
            coinference_checkpoint,
            "--limit",
            "50",
            "--qualities",
            "20,80",
            "--out",
            str(tmp_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout)
    assert r["samples"] == 50 and [p["name"] for p in r["codecs"]] == [
        "png",
        "jpeg q20",
        "jpeg q80",
        "webp q20",
        "webp q80",
    ]
    png = r["codecs"][0]
    assert png["accuracy"] == pytest.approx(r["backbone_accuracy"])  # lossless: the backbone's own figure
    (c,) = r["coinference"]
    assert c["payload_bits"] > 0 and 0 <= c["accuracy"] <= 100
    assert (
        c["label"] == Path(coinference_checkpoint).name and c["point"] == read_info(coinference_checkpoint).model.point
    )
    assert (tmp_path / "rate_accuracy.png").stat().st_size > 1000 and "cloud-only png" in (
        tmp_path / "ratecurve.md"
    ).read_text()
    bad = subprocess.run(
        [sys.executable, "-m", "neucodex.cli", "ratecurve", "--backbone", backbone, "--qualities", "0,500"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "1..100" in bad.stderr
