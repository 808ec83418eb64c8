"""What every dataset is: a spec in a registry, a clear error when files are missing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import NeucodexError, UnknownNameError
from ..plugins import load_plugins
from .splits import ALL, SPLITS


class DatasetMissingError(NeucodexError):
    """The files of a dataset are not where they were looked for."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str  # "static" ([C, H, W] images) or "events" ([T, 2, H, W] frames)
    channels: int
    classes: int
    default_size: int
    samples: str  # how many, in words
    layout: str  # where and how the files are expected under ROOT
    get: str  # how to obtain them
    builder: Callable[..., Dataset] = field(repr=False, compare=False)
    # event datasets read from recordings: the sensor (W, H, P) they are framed on, or
    # "per-recording" (each recording cropped to its events); None: no recordings to read
    sensor: tuple[int, int, int] | str | None = None
    test_only: bool = False  # an embedded held-out set: only the test split (and 'all')


_DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    _DATASETS[spec.name] = spec
    return spec


PLUGIN_GROUP = "neucodex.datasets"


def _register_plugin(name: str, spec: object) -> None:
    if isinstance(spec, DatasetSpec) and spec.name not in _DATASETS:  # a built-in name is never replaced
        _DATASETS[spec.name] = spec


def list_datasets() -> list[DatasetSpec]:
    load_plugins(PLUGIN_GROUP, _register_plugin)
    return [_DATASETS[k] for k in sorted(_DATASETS)]


def dataset_spec(name: str) -> DatasetSpec:
    load_plugins(PLUGIN_GROUP, _register_plugin)
    if name not in _DATASETS:
        raise UnknownNameError(f"unknown dataset {name!r}; available: {', '.join(sorted(_DATASETS))}")
    return _DATASETS[name]


def missing(spec: DatasetSpec, path: Path | None, what: str) -> DatasetMissingError:
    """One-line error: which dataset, the exact path, the layout expected, how to get it."""
    where = "no --root given" if path is None else f"{what} at {path}"
    return DatasetMissingError(f"dataset {spec.name!r}: {where} — expected {spec.layout}; {spec.get}")


def check_split(split: str) -> None:
    if split not in (*SPLITS, ALL):
        raise NeucodexError(f"unknown split {split!r}; choose from {', '.join((*SPLITS, ALL))}")


class Subset(Dataset):
    """Items ``indices`` of a base dataset, with a transform applied per item."""

    def __init__(self, base: Dataset, indices, transform: Callable | None = None, classes: list[str] | None = None):
        self.base = base
        self.indices = [int(i) for i in indices]
        self.transform = transform
        self.classes = classes

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = self.base[self.indices[i]]
        return (self.transform(x) if self.transform else x), y

    @property
    def targets(self) -> list[int]:
        labels = getattr(self.base, "targets", None)
        if labels is not None:
            return [int(labels[i]) for i in self.indices]
        return [int(self.base[i][1]) for i in self.indices]


def dataset_labels(ds: Dataset) -> list[int]:
    """Every sample's label, without loading the samples where the dataset keeps its targets."""
    if isinstance(ds, torch.utils.data.Subset):
        base = dataset_labels(ds.dataset)
        return [base[i] for i in ds.indices]
    labels = getattr(ds, "targets", None)
    if labels is not None:
        return [int(t) for t in labels]
    return [int(ds[i][1]) for i in range(len(ds))]


def stratified(ds: Dataset, n: int | None, seed: int = 0) -> Dataset:
    """``n`` samples of ``ds`` stratified by class and interleaved (all of it when ``n`` is None
    or not smaller): what every quick run, energy estimate and stored check takes."""
    from .splits import stratified_subset

    if n is None or n >= len(ds):
        return ds
    return torch.utils.data.Subset(ds, stratified_subset(np.asarray(dataset_labels(ds)), n, seed).tolist())
