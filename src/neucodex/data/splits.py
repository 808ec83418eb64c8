"""Seeded, stratified train / val / test splits (every class split in the same proportions)."""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "val", "test")
ALL = "all"
"""Every sample under the root as one test set (evaluation only: no held-out part is kept back)."""


def stratified_split(
    labels: np.ndarray, test_fraction: float, val_fraction: float, seed: int = 0
) -> dict[str, np.ndarray]:
    """Indices per split: ``test_fraction`` of each class is test, then ``val_fraction`` of
    what remains is val (and ``all``: every index). Each class is shuffled with ``seed``; the
    result is sorted indices."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(len(idx) * test_fraction))
        n_val = int(round((len(idx) - n_test) * val_fraction))
        out["test"].append(idx[:n_test])
        out["val"].append(idx[n_test : n_test + n_val])
        out["train"].append(idx[n_test + n_val :])
    parts = {s: np.sort(np.concatenate(v)) if v else np.zeros(0, int) for s, v in out.items()}
    return {**parts, ALL: np.arange(len(labels))}


def holdout_val(labels: np.ndarray, val_fraction: float, seed: int = 0) -> dict[str, np.ndarray]:
    """For sets with an official test split: carve a stratified val split out of train."""
    parts = stratified_split(labels, 0.0, val_fraction, seed)
    return {"train": parts["train"], "val": parts["val"]}


def stratified_subset(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` indices with as equal a count per class as ``n`` allows, interleaved class by class
    (one of each class in turn) so that every prefix is balanced as well. Seeded.

    Why: a "first N" of a set stored by class is a few classes (the demo's 128 energy samples
    were 100 airplanes and 28 cars); every subset a figure comes from goes through this.
    """
    labels = np.asarray(labels)
    n = min(int(n), len(labels))
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.unique(labels))
    queues = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    out: list[int] = []
    depth = 0
    while len(out) < n:
        for q in queues:
            if depth < len(q) and len(out) < n:
                out.append(int(q[depth]))
        depth += 1
    return np.asarray(out, dtype=np.int64)
