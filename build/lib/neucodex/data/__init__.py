"""Datasets: static images, event streams, the embedded default, and a DVS emulator.

``build_dataset(name, split)`` returns a torch ``Dataset`` of ``(x, label)``: ``x`` is a
``[C, H, W]`` float image in [0, 1] (repeated over T by the model) or ``[T, 2, H, W]`` event
frames. Splits are ``train``, ``val`` and ``test``, seeded and stratified.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from ..errors import InvalidArgumentError
from . import events as _events  # noqa: F401  (registers)
from . import static as _static  # noqa: F401  (registers)
from .base import DatasetMissingError, DatasetSpec, check_split, dataset_spec, list_datasets, register_dataset
from .dvs import DVSEmulator
from .splits import SPLITS, stratified_split


def build_dataset(
    name: str,
    split: str = "train",
    *,
    root: str | Path | None = None,
    T: int = 4,
    size: int | None = None,
    train_augment: bool = True,
    download: bool = False,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> Dataset:
    """A dataset split by name; missing files raise :class:`DatasetMissingError` saying where/how."""
    spec = dataset_spec(name)
    check_split(split)
    if T < 1:
        raise InvalidArgumentError(f"T must be >= 1 (got {T})")
    return spec.builder(
        spec,
        split,
        root=root,
        T=T,
        size=size,
        train_augment=train_augment,
        download=download,
        seed=seed,
        cache_dir=cache_dir,
    )


__all__ = [
    "SPLITS",
    "DVSEmulator",
    "DatasetMissingError",
    "DatasetSpec",
    "build_dataset",
    "dataset_spec",
    "list_datasets",
    "register_dataset",
    "stratified_split",
]
