"""The zoo: shipped checkpoints load offline with their hashes checked, and re-measure as stored."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save

import neucodex.pretrained as zoo
from neucodex.checkpoint import load_checkpoint
from neucodex.cli import main
from neucodex.data import build_dataset
from neucodex.evaluate import evaluate_checkpoint

ENTRIES = zoo.entries()
DELTAS = [e for e in ENTRIES if e.base]
TOLERANCE_PP = 1.0  # accuracy on the 200 checked demo images: 2 samples may flip with another CPU's float rounding


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


def test_the_zoo_fits_in_100_mb():
    shipped = sum(p.stat().st_size for p in zoo.HERE.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert shipped <= 100e6, f"the zoo ships {shipped / 1e6:.1f} MB"


@pytest.mark.parametrize("entry", DELTAS[:1], ids=[e.name for e in DELTAS[:1]])
def test_an_altered_delta_is_refused(entry, tmp_path, monkeypatch):
    copy = tmp_path / entry.name
    shutil.copytree(zoo.HERE / entry.name, copy)
    shutil.copytree(zoo.HERE / entry.base, tmp_path / entry.base)
    data = bytearray((copy / zoo.DELTA).read_bytes())
    data[-1] ^= 1
    (copy / zoo.DELTA).write_bytes(bytes(data))
    monkeypatch.setattr(zoo, "HERE", tmp_path)
    with pytest.raises(zoo.ZooError, match="delta.safetensors does not match its sha256"):
        load_checkpoint(f"zoo:{entry.name}")


@pytest.mark.parametrize("entry", DELTAS[:1], ids=[e.name for e in DELTAS[:1]])
def test_a_delta_entry_is_rebuilt_into_the_cache_with_its_pinned_hash(entry, tmp_path, monkeypatch):
    """The rebuilt weights are the whole fp16 file the entry was made from (same model id), and a
    damaged copy in the cache is rebuilt rather than trusted."""
    monkeypatch.setenv("NEUCODEX_CACHE", str(tmp_path))
    d = zoo.resolve(f"zoo:{entry.name}")
    assert d.parent == tmp_path / "zoo" and zoo.sha256_file(d / zoo.WEIGHTS) == entry.sha256
    assert (zoo.HERE / entry.name / zoo.DELTA).stat().st_size < (d / zoo.WEIGHTS).stat().st_size
    (d / zoo.WEIGHTS).write_bytes(b"damaged")
    assert zoo.sha256_file(zoo.resolve(f"zoo:{entry.name}") / zoo.WEIGHTS) == entry.sha256


def test_processes_rebuilding_one_delta_at_once_all_get_the_pinned_file(tmp_path):
    """Servers started together on a fresh machine race to rebuild the same entry: each must end
    with the whole, hash-checked file and none may see a half-written one."""
    entry = DELTAS[0]
    code = "import sys, neucodex.pretrained as z; d = z.resolve(sys.argv[1]); print(z.sha256_file(d / z.WEIGHTS))"
    env = {**os.environ, "NEUCODEX_CACHE": str(tmp_path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, f"zoo:{entry.name}"], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4 and outs == [entry.sha256] * 4
    assert [f.name for f in (tmp_path / "zoo").iterdir()] == [f"{entry.name}-{entry.sha256[:16]}"]  # no temp left


def test_an_unwritable_cache_is_one_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("NEUCODEX_CACHE", str(blocker))
    with pytest.raises(zoo.ZooError, match="set NEUCODEX_CACHE to a writable folder"):
        zoo.resolve(f"zoo:{DELTAS[0].name}")


def test_write_weights_ships_only_what_differs_from_the_base(tmp_path, monkeypatch):
    from neucodex.publish import write_weights

    base = zoo.entry(DELTAS[0].base)
    tensors = dict(load_file(str(zoo.resolve(f"zoo:{base.name}") / zoo.WEIGHTS)))
    first = sorted(tensors)[0]
    tensors[first] = tensors[first] + np.ones_like(tensors[first])
    tensors["extra"] = np.arange(3, dtype=np.int64)
    sha, delta_sha = write_weights(tmp_path, tensors, base.name)
    with safe_open(str(tmp_path / zoo.DELTA), "np") as f:
        assert sorted(f.keys()) == sorted([first, "extra"]) and delta_sha == zoo.sha256_file(tmp_path / zoo.DELTA)
    assert sha == hashlib.sha256(save(tensors)).hexdigest()


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
    assert main(["zoo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + len(ENTRIES)
    assert len({line.index(" backbone " if " backbone " in line else " coinference ") for line in lines[1:]}) == 1, (
        "the kind column starts at one offset for every name, however long"
    )


def test_demo_images_are_100_per_class():
    ds = build_dataset("cifar10-demo", "test")
    labels = np.asarray(ds.targets)
    assert len(ds) == 1000 and np.bincount(labels).tolist() == [100] * 10
    with pytest.raises(Exception, match="only a test split"):
        build_dataset("cifar10-demo", "train")


def test_the_demo_set_is_written_from_the_held_out_split_interleaved(tmp_path, monkeypatch):
    """What made cifar10-demo.npz (``neucodex zoo --demo-images imagefolder ROOT``), on a tiny image folder:
    images of the test split only (none the train split holds), one of each class in turn."""
    from PIL import Image

    import neucodex.publish as publish

    rng = np.random.default_rng(0)
    for c in ("ant", "bee", "cow"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for k in range(40):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "imgs" / c / f"{k}.png")
    monkeypatch.setattr(publish, "HERE", tmp_path / "pkg")
    (tmp_path / "pkg").mkdir()
    monkeypatch.setenv("NEUCODEX_CACHE", str(tmp_path / "cache"))
    path = publish.write_demo_images("imagefolder", tmp_path / "imgs", per_class=2)
    assert path == tmp_path / "pkg" / "cifar10-demo.npz"
    with np.load(path) as f:
        labels, source = f["labels"].tolist(), f["source_indices"]
    assert labels == [0, 1, 2] * 2
    train = build_dataset("imagefolder", "train", root=tmp_path / "imgs", size=32, train_augment=False)
    assert not set(source.tolist()) & set(train.indices)


def test_a_caltech101_demo_set_is_its_held_out_images_at_the_model_size(tmp_path, monkeypatch):
    """``neucodex zoo --demo-images caltech101 ROOT`` on a tiny folder in Caltech101's layout: the
    images of the test split at 64x64, balanced, and registered as a test-only static dataset."""
    from PIL import Image

    import neucodex.data.base as data_base
    import neucodex.publish as publish
    from neucodex.data import dataset_spec
    from neucodex.data.demos import _register

    rng = np.random.default_rng(0)
    folder = tmp_path / "root" / "caltech101" / "101_ObjectCategories"
    for c in ("ant", "bee", "cow", "BACKGROUND_Google"):
        (folder / c).mkdir(parents=True)
        for k in range(10):
            img = rng.integers(0, 256, (48 + k, 60, 3), dtype=np.uint8)
            Image.fromarray(img).save(folder / c / f"image_{k:04d}.jpg")
    monkeypatch.setattr(publish, "HERE", tmp_path / "pkg")
    (tmp_path / "pkg").mkdir()
    monkeypatch.setenv("NEUCODEX_CACHE", str(tmp_path / "cache"))
    with pytest.raises(zoo.ZooError, match="rarest class"):
        publish.write_demo_images("caltech101", tmp_path / "root", per_class=3)  # 20% of 10: 2 per class
    path = publish.write_demo_images("caltech101", tmp_path / "root", per_class=2, name="tinycal-demo")
    monkeypatch.setattr(data_base, "_DATASETS", dict(data_base._DATASETS))  # registered for this test only
    _register(path)
    spec = dataset_spec("tinycal-demo")
    assert (spec.kind, spec.classes, spec.default_size, spec.test_only) == ("static", 3, 64, True)
    ds = build_dataset("tinycal-demo", "test")
    assert len(ds) == 6 and [ds[i][1] for i in range(6)] == [0, 1, 2] * 2 and ds[0][0].shape == (3, 64, 64)
    with pytest.raises(Exception, match="only a test split"):
        build_dataset("tinycal-demo", "train")
    with pytest.raises(zoo.ZooError, match="event dataset"):
        publish.write_demo_images("nmnist", tmp_path / "root")


def test_a_bad_per_class_is_one_line(capsys):
    assert main(["zoo", "--demo-images", "caltech101", "nowhere", "--per-class", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "neucodex: error: --per-class must be at least 1, got 0"


@pytest.mark.slow
@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_evaluate_on_the_demo_images_matches_the_stored_figures(entry):
    """The shipped weights re-measured on ``CHECK_SAMPLES`` embedded images stratified by class (the
    whole 1,000 cost about 40 s per co-inference entry; the README's figures on all of them were
    measured by the same call): accuracy, mean exit steps and bits as stored."""
    assert entry.check is not None, "re-measure: measure_on_demo"
    whole = len(build_dataset(entry.check["dataset"], "test", T=entry.T))  # an event demo set may hold fewer
    assert entry.check["samples"] == min(zoo.CHECK_SAMPLES, whole), "re-measure: measure_on_demo"
    r = evaluate_checkpoint(f"zoo:{entry.name}", dataset=entry.check["dataset"], device="cpu", limit=zoo.CHECK_SAMPLES)
    assert r["samples"] == entry.check["samples"]
    assert r["accuracy"] == pytest.approx(entry.check["accuracy"], abs=TOLERANCE_PP)
    assert r["accuracy_all_t"] == pytest.approx(entry.check["accuracy_all_t"], abs=TOLERANCE_PP)
    assert r["mean_steps"] == pytest.approx(entry.check["mean_steps"], abs=0.02)  # 4 of 200 samples a step apart
    if entry.check["payload_bits"] is not None:
        assert r["payload_bits"] == pytest.approx(entry.check["payload_bits"], rel=0.01)


@pytest.mark.slow
def test_adding_an_entry_stores_its_figures_on_the_demo_images_and_on_the_checked_few(
    coinference_checkpoint, tmp_path, monkeypatch
):
    """``add_to_zoo`` measures the shipped weights on all the demo images (the README's figures)
    and on the first ``CHECK_SAMPLES`` (the suite's expectation); both land in the index."""
    from neucodex import publish
    from neucodex.checkpoint import read_info

    for module in (zoo, publish):
        monkeypatch.setattr(module, "HERE", tmp_path / "zoo")
    monkeypatch.setattr(zoo, "INDEX", tmp_path / "zoo" / "index.json")
    monkeypatch.setattr(publish, "CHECK_SAMPLES", 20)
    monkeypatch.setenv("NEUCODEX_CACHE", str(tmp_path / "cache"))
    publish.add_to_zoo(read_info(coinference_checkpoint).backbone_path, "tiny", demo_dataset="digits")
    e = publish.add_to_zoo(coinference_checkpoint, "tiny-co", backbone="tiny", demo_dataset="digits")
    assert e.check["samples"] == 20 < e.demo["samples"] and e.check["payload_bits"] > 0
    assert zoo.entry("tiny-co").check == e.check and zoo.entry("tiny").check["payload_bits"] is None
    r = evaluate_checkpoint("zoo:tiny-co", dataset="digits", device="cpu", limit=20)
    assert (r["accuracy"], r["payload_bits"]) == (e.check["accuracy"], e.check["payload_bits"])


def test_a_delta_kept_in_fp32_ships_the_fine_tuned_weights_exactly(coinference_checkpoint, tmp_path, monkeypatch):
    """``--delta-fp32``: a cut fine-tuned from the fp16 backbone entry ships its tuned tensors as
    they were measured (fp32), and what it took unchanged from the backbone is shared, not shipped."""
    import torch
    from safetensors.torch import load_file as load_torch
    from safetensors.torch import save_file as save_torch

    from neucodex import publish
    from neucodex.checkpoint import read_info

    for module in (zoo, publish):
        monkeypatch.setattr(module, "HERE", tmp_path / "zoo")
    monkeypatch.setattr(zoo, "INDEX", tmp_path / "zoo" / "index.json")
    monkeypatch.setenv("NEUCODEX_CACHE", str(tmp_path / "cache"))
    publish.add_to_zoo(read_info(coinference_checkpoint).backbone_path, "tiny")
    with pytest.raises(zoo.ZooError, match="--delta-fp32 is for a co-inference checkpoint"):
        publish.add_to_zoo(read_info(coinference_checkpoint).backbone_path, "tiny-fp32", delta_fp32=True)
    base = load_torch(str(zoo.resolve("zoo:tiny") / zoo.WEIGHTS))
    own = tmp_path / "own"  # as if fine-tuned from zoo:tiny: the frozen tensors are its fp16 values
    shutil.copytree(coinference_checkpoint, own)
    tuned = load_torch(str(own / zoo.WEIGHTS))
    frozen = {k for k, v in tuned.items() if k in base and base[k].shape == v.shape}
    tuned = {k: base[k].to(v.dtype) if k in frozen else v for k, v in tuned.items()}
    save_torch(tuned, str(own / zoo.WEIGHTS))
    assert frozen and len(frozen) < len(tuned)

    e = publish.add_to_zoo(own, "tiny-co", backbone="tiny", delta_fp32=True)
    with safe_open(str(tmp_path / "zoo" / "tiny-co" / zoo.DELTA), "np") as f:
        assert sorted(f.keys()) == sorted(set(tuned) - frozen)
        assert {str(f.get_tensor(k).dtype) for k in f.keys() if tuned[k].is_floating_point()} == {"float32"}
    shipped = load_torch(str(zoo.resolve("zoo:tiny-co") / zoo.WEIGHTS))
    assert zoo.sha256_file(zoo.resolve("zoo:tiny-co") / zoo.WEIGHTS) == e.sha256
    assert all(torch.equal(shipped[k].to(v.dtype), v) for k, v in tuned.items())

    # fine-tuned from the backbone's fp32 run instead: its frozen tensors are the base's before the
    # base was rounded to fp16 (here: nudged below half an fp16 step), and are shared all the same
    nudged = {k: v * (1 + 2**-13) if k in frozen and v.is_floating_point() else v for k, v in tuned.items()}
    assert any(not torch.equal(nudged[k], tuned[k]) for k in frozen)
    save_torch(nudged, str(own / zoo.WEIGHTS))
    publish.add_to_zoo(own, "tiny-co32", backbone="tiny", delta_fp32=True)
    with safe_open(str(tmp_path / "zoo" / "tiny-co32" / zoo.DELTA), "np") as f:
        assert sorted(f.keys()) == sorted(set(tuned) - frozen)
    shipped = load_torch(str(zoo.resolve("zoo:tiny-co32") / zoo.WEIGHTS))
    assert all(torch.equal(shipped[k].to(v.dtype), v) for k, v in tuned.items())


def test_the_readme_zoo_table_is_the_index():
    """Every figure the README's zoo table gives for an entry is the index's, as shipped: the table
    is `neucodex zoo --markdown` verbatim."""
    from pathlib import Path

    from neucodex.commands.zoo import markdown

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = markdown([{**e.to_dict(), "accuracy": e.accuracy} for e in ENTRIES])
    assert table in readme, "regenerate the README's zoo table with `neucodex zoo --markdown`"


def test_every_demo_set_is_embedded_and_its_entries_are_in_the_zoo():
    """The demo's table of embedded sets (also the CLI's choices) names only what ships: each set's
    images or recordings and both its entries, the cut fine-tuned from that backbone."""
    from neucodex.pretrained import DEMOS, EVENT_DEMOS, HERE, entries

    index = {e.name: e for e in entries()}
    assert set(EVENT_DEMOS.values()) <= set(DEMOS)
    for name, (backbone, cut) in DEMOS.items():
        assert (HERE / f"{name}.npz").is_file(), name
        b, c = index[backbone.removeprefix("zoo:")], index[cut.removeprefix("zoo:")]
        assert (b.kind, c.kind, c.base) == ("backbone", "coinference", b.name)
