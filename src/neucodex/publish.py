"""Adding a trained checkpoint to the zoo: fp16 weights, a portable model.json, pinned hashes."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save, save_file
from safetensors.torch import load_file as load_torch

from .checkpoint import CheckpointInfo, read_info
from .pretrained import (
    CHECK_SAMPLES,
    DELTA,
    FROM_BASE,
    HERE,
    PREFIX,
    WEIGHTS,
    ZooEntry,
    ZooError,
    entries,
    entry,
    resolve,
    sha256_file,
    split_on_base,
    write_index,
)


def write_weights(out: Path, tensors: dict[str, np.ndarray], base: str | None) -> tuple[str, str | None]:
    """Ship ``tensors`` in ``out``: whole, or (with a ``base`` entry) only what differs from it.

    Returns (sha256 of the whole file — the model id either way, sha256 of the delta or None)."""
    data = save(tensors)
    if base is None:
        (out / WEIGHTS).write_bytes(data)
        return hashlib.sha256(data).hexdigest(), None
    delta, shared = split_on_base(tensors, _base_weights(base))
    save_file(delta, str(out / DELTA), metadata={FROM_BASE: json.dumps(shared)})
    return hashlib.sha256(data).hexdigest(), sha256_file(out / DELTA)


def _base_weights(base: str) -> dict[str, np.ndarray]:
    return load_file(str(resolve(PREFIX + base) / WEIGHTS))


def _shipped(v, keep_fp32: bool) -> np.ndarray:
    """A tensor as the zoo stores it: floating ones fp16 unless ``keep_fp32``."""
    return (v.float() if keep_fp32 else v.half()).numpy() if v.is_floating_point() else v.numpy()


def _holds(base: np.ndarray | None, v: np.ndarray) -> bool:
    """Whether the base holds ``v`` as it ships it: exactly, or as its fp16 rounding — a tensor left
    frozen by a cut fine-tuned from the backbone's fp32 run directory rather than from its zoo entry
    is the base's tensor before the base was rounded, so it is shared too (and runs as the base ships it)."""
    return base is not None and base.shape == v.shape and np.array_equal(v.astype(base.dtype), base)


def add_to_zoo(
    directory: str | Path,
    name: str,
    source: str = "",
    backbone: str | None = None,
    demo_dataset: str | None = None,
    delta_fp32: bool = False,
) -> ZooEntry:
    """Copy a checkpoint into the package as ``zoo:<name>``.

    Floating tensors become fp16 (half the bytes). With ``delta_fp32`` a co-inference entry keeps
    the tensors that differ from its backbone in fp32: a spiking cut fine-tuned from the fp16
    backbone then ships exactly the weights it was measured with (rounding a few hundred kB of
    tuned tensors to fp16 moved such cuts by up to 0.9 pp). The accuracy listed is the checkpoint's own
    test figure; re-measure the shipped weights with ``neucodex evaluate --checkpoint zoo:<name>``.
    The data root is dropped from the config (users pass ``--root``); a co-inference
    checkpoint's backbone must already be in the zoo, named by ``backbone``.
    """
    info = read_info(directory)
    if info.is_coinference:
        if backbone is None:
            raise ZooError("a co-inference checkpoint needs its backbone's zoo entry (--backbone NAME)")
        if entry(backbone).kind != "backbone":
            raise ZooError(f"zoo:{backbone} is not a backbone")
    base = backbone if info.is_coinference else None
    if delta_fp32 and base is None:
        raise ZooError("--delta-fp32 is for a co-inference checkpoint (its delta against --backbone)")
    out = HERE / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    tensors = {k: _shipped(v, delta_fp32) for k, v in load_torch(str(Path(directory) / WEIGHTS)).items()}
    if delta_fp32:  # a tensor the fp16 base holds exactly (a frozen one) goes as fp16: shared, not shipped
        held = _base_weights(base)
        tensors = {k: held[k] if _holds(held.get(k), v) else v for k, v in tensors.items()}
    raw = info.to_dict()
    raw["sha256"], delta_sha256 = write_weights(out, tensors, base)
    raw["config"] = {**raw["config"], "data": {**raw["config"].get("data", {}), "root": None}}
    raw["dataset"] = {**raw["dataset"], "root": None}
    if info.is_coinference:
        raw["backbone"] = {"sha256": entry(backbone).sha256, "path": PREFIX + backbone}
    raw.get("metrics", {}).pop("history", None)
    (out / "model.json").write_text(json.dumps(raw, indent=1, default=str))
    spec = info.model
    acc = info.metrics.get("test_accuracy")
    e = ZooEntry(
        name,
        "coinference" if spec.coinference else "backbone",
        info.dataset.get("name", ""),
        spec.name,
        spec.T,
        spec.point,
        spec.bottleneck,
        acc,
        raw["sha256"],
        sha256_file(out / "model.json"),
        source,
        base=base,
        delta_sha256=delta_sha256,
    )
    write_index([x for x in entries() if x.name != name] + [e])
    if demo_dataset:
        e = measure_on_demo(e, demo_dataset)
    return e


def measure_on_demo(e: ZooEntry, dataset: str) -> ZooEntry:
    """The shipped (fp16) weights on the embedded images — all of them (the README's figures) and
    ``CHECK_SAMPLES`` of them stratified by class (what the test suite re-measures) — stored in the index."""
    from dataclasses import replace

    from .evaluate import evaluate_checkpoint

    keys = ("dataset", "samples", "accuracy", "accuracy_all_t", "accuracy_at_t", "mean_steps", "payload_bits")
    figures = [
        evaluate_checkpoint(PREFIX + e.name, dataset=dataset, device="cpu", limit=n) for n in (None, CHECK_SAMPLES)
    ]
    e = replace(e, demo={k: figures[0][k] for k in keys}, check={k: figures[1][k] for k in keys})
    write_index([x for x in entries() if x.name != e.name] + [e])
    return e


HELDOUT_KEYS = ("dataset", "split", "samples", "accuracy", "accuracy_all_t", "mean_steps", "payload_bits", "wire_bytes")


def measure_heldout(e: ZooEntry, root: str | Path, dataset: str = "imagefolder") -> ZooEntry:
    """The shipped weights on the held-out test split of ``dataset`` at ``root`` (with the entry's
    calibrated exit), stored in the index as ``heldout``: the as-shipped figures the README quotes."""
    from dataclasses import replace

    from .evaluate import evaluate_checkpoint

    r = evaluate_checkpoint(PREFIX + e.name, dataset=dataset, root=str(root), device="cpu")
    e = replace(e, heldout={k: r[k] for k in HELDOUT_KEYS})
    write_index([x for x in entries() if x.name != e.name] + [e])
    return e


def measure_figures(e: ZooEntry, samples: int | None = CHECK_SAMPLES) -> ZooEntry:
    """A co-inference entry's report figures (``neucodex report``'s: bits, energy in both scopes,
    latency against edge-only) on ``samples`` of its demo images stratified by class, as shipped,
    stored in the index as ``figures``: what ``neucodex zoo --grid`` quotes beside the held-out
    accuracy and bits. Firing rates settle well before 200 samples; compute times do not depend on them."""
    import tempfile
    from dataclasses import replace

    from .report.figures import analyse

    if e.kind != "coinference" or not e.base:
        raise ZooError(f"zoo:{e.name} is not a co-inference entry on a zoo backbone: it has no report figures")
    with tempfile.TemporaryDirectory() as tmp:
        run = {"backbone": str(resolve(PREFIX + e.base)), "coinference": [str(resolve(PREFIX + e.name))]}
        (Path(tmp) / "run.json").write_text(json.dumps(run))
        r = analyse(tmp, samples=samples, dataset=e.check["dataset"] if e.check else None, codecs=False)
    b, energy = r.bits["exit"], r.energy["45nm"]
    figures = {
        "dataset": r.dataset,
        "samples": r.samples,
        "payload_bits": b.payload_bits,
        "float32_bits": b.float32_bits,
        "edge_compute_saving": energy.compute_reduction_vs_edge_only_snn,
        "edge_compute_saving_paper": energy.compute_reduction_vs_edge_only_snn_paper,
        "break_even_nj_per_bit": energy.break_even_nj_per_bit,
        "latency_speedup": {f"{x['bandwidth_mbps']:g}": x["speedup_vs_edge_only"] for x in r.latency},
    }
    e = replace(e, figures=figures)
    write_index([x for x in entries() if x.name != e.name] + [e])
    return e


def refit_code_models(e: ZooEntry, root: str | Path, samples: int | None = 10_000) -> ZooEntry:
    """Count a shipped spiking cut's code models on ``samples`` training images at ``root`` and
    write them into its ``model.json`` (its weights, model id and accuracy stay; its bits change,
    so re-measure it after)."""
    from dataclasses import replace

    from .codemodels import count_code_models

    models = count_code_models(PREFIX + e.name, samples, root=str(root), device="cpu")
    path = HERE / e.name / "model.json"
    raw = json.loads(path.read_text())
    raw["channel_probs"] = models.channel_probs.tolist()
    raw["context_probs"] = models.context_probs.tolist()
    raw.setdefault("metrics", {})["code_models"] = models.summary()
    CheckpointInfo.from_dict(raw, str(path))  # still a valid description, checked before it is written
    path.write_text(json.dumps(raw, indent=1, default=str))
    e = replace(e, json_sha256=sha256_file(path))
    write_index([x for x in entries() if x.name != e.name] + [e])
    return e


def write_demo_images(
    dataset: str, root: str | Path, per_class: int = 100, seed: int = 0, name: str | None = None
) -> Path:
    """The embedded demo set ``name`` (default ``<dataset>-demo``; the CIFAR-10 JPEGs' is
    ``cifar10-demo``): the first ``per_class`` images of each class in the *test* split of
    ``dataset`` at ``root``, which no training step sees, at the dataset's size, stored interleaved
    by class (one of each class in turn), so any prefix of it is balanced too."""
    import numpy as np

    from .data import build_dataset, dataset_spec

    spec = dataset_spec(dataset)
    if spec.kind != "static":
        raise ZooError(f"{dataset} is an event dataset: write its demo set with --demo-events")
    test = build_dataset(dataset, "test", root=root, size=spec.default_size, train_augment=False, seed=seed)
    labels = np.asarray(test.targets)
    counts = np.bincount(labels, minlength=len(test.classes))
    if counts.min() < per_class:
        raise ZooError(
            f"{dataset}'s test split holds {counts.min()} images of its rarest class; ask for fewer per class"
        )
    keep = np.stack([np.flatnonzero(labels == c)[:per_class] for c in range(len(test.classes))], 1).reshape(-1)
    base = test.base
    if not hasattr(base, "images"):
        raise ZooError(f"{dataset} at {root} is too large to hold decoded: a demo set is made from a smaller one")
    path = HERE / f"{name or ('cifar10-demo' if dataset == 'imagefolder' else dataset + '-demo')}.npz"
    np.savez_compressed(
        path,
        images=np.stack([base.images[test.indices[i]] for i in keep]),
        labels=labels[keep],
        classes=np.asarray(test.classes),
        source_indices=np.asarray([test.indices[i] for i in keep]),
        dataset=np.asarray(dataset),
    )
    return path


TRAIN_DIGESTS = "cifar10-train-digests.npz"
"""8-byte BLAKE2b digests of the pixels of every image the shipped CIFAR-10 entries trained or
validated on: the held-out claim of the demo images is checkable without the training data."""


def image_digest(img) -> int:
    """An 8-byte BLAKE2b digest of a uint8 image's pixels (and shape), as an unsigned integer."""
    import hashlib

    import numpy as np

    a = np.ascontiguousarray(img, dtype=np.uint8)
    h = hashlib.blake2b(a.tobytes(), digest_size=8, person=b"neucodex")
    h.update(str(a.shape).encode())
    return int.from_bytes(h.digest(), "little")


def write_train_digests(root: str | Path, seed: int = 0) -> Path:
    """The digests of the train and val splits of ``imagefolder`` at ``root`` (seed ``seed``), sorted."""
    import numpy as np

    from .data import build_dataset

    digests = []
    for split in ("train", "val"):
        ds = build_dataset("imagefolder", split, root=root, size=32, train_augment=False, seed=seed)
        digests += [image_digest(ds.base.images[i]) for i in ds.indices]
    path = HERE / TRAIN_DIGESTS
    np.savez_compressed(path, digests=np.sort(np.asarray(digests, dtype=np.uint64)), seed=seed)
    return path
