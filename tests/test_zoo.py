"""The zoo: shipped checkpoints load offline with their hashes checked, and re-measure as stored."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import neucodex.pretrained as zoo
from neucodex.checkpoint import load_checkpoint
from neucodex.cli import main
from neucodex.data import build_dataset
from neucodex.evaluate import evaluate_checkpoint

ENTRIES = zoo.entries()
TOLERANCE_PP = 0.5  # accuracy on the 1,000 demo images: 5 samples may flip with another CPU's float rounding


def test_the_zoo_ships_a_cifar10_backbone():
    kinds = {(e.dataset, e.kind) for e in ENTRIES}
    assert ("imagefolder", "backbone") in kinds


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_entry_loads_offline_with_its_hash(entry):
    ck = load_checkpoint(f"zoo:{entry.name}")
    assert ck.model_id == entry.sha256
    assert ck.info.model.name == entry.model and ck.info.model.T == entry.T
    assert ck.info.is_coinference == (entry.kind == "coinference")
    if ck.info.is_coinference:
        assert str(ck.info.backbone_path).startswith("zoo:")
        load_checkpoint(ck.info.backbone_path)


@pytest.mark.parametrize("entry", ENTRIES[:1], ids=[e.name for e in ENTRIES[:1]])
@pytest.mark.parametrize("file", ["model.safetensors", "model.json"])
def test_an_altered_entry_is_refused(entry, file, tmp_path, monkeypatch):
    copy = tmp_path / entry.name
    shutil.copytree(zoo.HERE / entry.name, copy)
    data = bytearray((copy / file).read_bytes())
    data[len(data) // 2] ^= 1
    (copy / file).write_bytes(bytes(data))
    monkeypatch.setattr(zoo, "HERE", tmp_path)
    with pytest.raises(zoo.ZooError, match=f"{file} does not match its sha256"):
        load_checkpoint(f"zoo:{entry.name}")


def test_unknown_entry_is_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "neucodex.cli", "evaluate", "--checkpoint", "zoo:nope"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and proc.stderr.startswith("neucodex: error: no zoo entry 'nope'")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_zoo_command_lists_every_entry(capsys):
    assert main(["zoo", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == [e.name for e in ENTRIES]
    for r in rows:
        assert {"name", "kind", "dataset", "model", "T", "point", "bottleneck", "accuracy", "sha256"} <= set(r)
    assert main(["zoo", "--markdown"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 2 + len(ENTRIES) and all(f"`{e.name}`" in "".join(table) for e in ENTRIES)


def test_demo_images_are_100_per_class():
    ds = build_dataset("cifar10-demo", "test")
    labels = np.asarray(ds.targets)
    assert len(ds) == 1000 and np.bincount(labels).tolist() == [100] * 10
    with pytest.raises(Exception, match="only a test split"):
        build_dataset("cifar10-demo", "train")


@pytest.mark.slow
@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.demo], ids=[e.name for e in ENTRIES if e.demo])
def test_evaluate_on_the_demo_images_matches_the_stored_figures(entry):
    r = evaluate_checkpoint(f"zoo:{entry.name}", dataset=entry.demo["dataset"], device="cpu")
    assert r["samples"] == entry.demo["samples"]
    assert r["accuracy"] == pytest.approx(entry.demo["accuracy"], abs=TOLERANCE_PP)
    assert r["accuracy_all_t"] == pytest.approx(entry.demo["accuracy_all_t"], abs=TOLERANCE_PP)
    if entry.demo["payload_bits"] is not None:
        assert r["payload_bits"] == pytest.approx(entry.demo["payload_bits"], rel=0.01)
