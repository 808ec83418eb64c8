"""``neucodex average``: the mean of two runs' weights, its norms re-estimated, measured and saved."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from neucodex.averaging import average_checkpoints, average_state
from neucodex.checkpoint import load_checkpoint
from neucodex.cli import main
from neucodex.config import load_config
from neucodex.evaluate import load_split, loader, predict
from neucodex.training import pretrain

pytestmark = pytest.mark.slow  # trains two tiny models

TINY = ["data.size=16", "data.limit=96", "model.T=2", "model.kwargs={widths: [4, 8, 8]}", "optim.epochs=1"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two tiny backbones of one model, from different seeds: different weights."""
    runs = []
    for seed in (0, 1):
        cfg = load_config("tiny", [f"out={tmp_path_factory.mktemp('runs')}", f"seed={seed}", *TINY])
        runs.append(pretrain(cfg, progress=False).checkpoint)
    return runs


def test_average_state_is_the_float32_mean_and_keeps_integer_counters():
    a = {"w": torch.tensor([1.0, 2.0], dtype=torch.float16), "n": torch.tensor(3)}
    b = {"w": torch.tensor([2.0, 5.0], dtype=torch.float16), "n": torch.tensor(7)}
    out = average_state([a, b])
    assert out["w"].dtype == torch.float16 and out["w"].tolist() == [1.5, 3.5]
    assert out["n"].item() == 3


def test_the_average_is_saved_measured_and_reproducible(two_runs, tmp_path, capsys):
    info = average_checkpoints(two_runs, tmp_path / "soup", norm_samples=64)
    saved = load_file(str(tmp_path / "soup" / "model.safetensors"))
    ends = [load_file(f"{d}/model.safetensors") for d in two_runs]
    conv = next(k for k in saved if k.endswith("weight") and saved[k].dim() == 4)
    assert not torch.equal(ends[0][conv], ends[1][conv])
    torch.testing.assert_close(saved[conv], (ends[0][conv] + ends[1][conv]) / 2)
    # the norms' statistics are re-estimated for the average, not averaged
    mean = next(k for k in saved if k.endswith("running_mean"))
    assert not torch.allclose(saved[mean], (ends[0][mean] + ends[1][mean]) / 2)
    # its stored test figure is what the saved weights score
    ck = load_checkpoint(tmp_path / "soup")
    cfg = ck.info.experiment()
    cfg = replace(cfg, data=replace(cfg.data, limit=None, train_augment=False))
    logits, labels = predict(ck.model, loader(load_split(cfg, "test"), 32, False, 0, 0), torch.device("cpu"))
    assert 100 * (logits.mean(0).argmax(-1) == labels).float().mean().item() == pytest.approx(
        info.metrics["test_accuracy"]
    )
    assert len(info.metrics["test_accuracy_at_t"]) == 2 and "val_accuracy" in info.metrics
    # the same command gives the same weights
    assert main(["average", *map(str, two_runs), "--out", str(tmp_path / "again"), "--norm-samples", "64"]) == 0
    assert "average of 2: test accuracy" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "again").model_id == info.sha256


def test_bad_inputs_are_one_line(two_runs, coinference_checkpoint, tmp_path):
    def err(*args: str) -> list[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "neucodex.cli", "average", *args, "--out", str(tmp_path / "x")],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2
        return proc.stderr.strip().splitlines()

    assert err(str(two_runs[0])) == ["neucodex: error: averaging needs at least two checkpoints"]
    [line] = err(str(two_runs[0]), str(coinference_checkpoint))
    assert "is a co-inference checkpoint: average backbones" in line
    [line] = err(str(two_runs[0]), "zoo:cifar10-resnet18")
    assert "is a different model from" in line
    [line] = err(str(two_runs[0]), str(tmp_path / "missing"))
    assert line.startswith("neucodex: error: no checkpoint at")
    assert not (tmp_path / "x").exists()
