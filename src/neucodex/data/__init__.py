"""Datasets: static images, event streams, the embedded default, and a DVS emulator.

``build_dataset(name, split)`` returns a torch ``Dataset`` of ``(x, label)``: ``x`` is a
``[C, H, W]`` float image in [0, 1] (repeated over T by the model) or ``[T, 2, H, W]`` event
frames. Splits are ``train``, ``val`` and ``test``, seeded and stratified.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from torch.utils.data import Dataset

from ..errors import InvalidArgumentError
from . import demos as _demos  # noqa: F401  (registers)
from . import emulated as _emulated  # noqa: F401  (registers)
from . import events as _events  # noqa: F401  (registers)
from . import static as _static  # noqa: F401  (registers)
from .base import (
    DatasetMissingError,
    DatasetSpec,
    check_split,
    dataset_labels,
    dataset_spec,
    list_datasets,
    register_dataset,
    stratified,
)
from .dvs import PROTOCOLS, DVSEmulator, Protocol
from .emulated import EMULATED, build_emulated
from .images import AUGMENTS
from .splits import SPLITS, stratified_split, stratified_subset


def build_dataset(
    name: str,
    split: str = "train",
    *,
    root: str | Path | None = None,
    T: int = 4,
    size: int | None = None,
    train_augment: bool = True,
    augment: str = "crop",
    download: bool = False,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    transform: Callable | None = None,
    target_transform: Callable | None = None,
    event_transform: Callable | None = None,
) -> Dataset:
    """A dataset split by name; missing files raise :class:`DatasetMissingError` saying where/how.

    ``augment`` names the train split's augmentation: ``crop`` (every dataset) or ``strong``
    (random resized crop, flip, colour jitter; image folders and Caltech101). Other splits, and a
    train split without augmentation, ignore it: a checkpoint trained with ``strong`` evaluates anywhere.

    ``transform`` is applied to each sample's input as the dataset gives it — a ``[C, H, W]``
    float image in [0, 1], or ``[T, 2, H, W]`` event frames — after the built-in resizing and
    augmentation (torchvision v2 transforms take both); ``target_transform`` to its label.
    ``event_transform`` (event datasets only) is applied to each recording's events — Tonic's
    structured ``x, y, t, p`` array — before they are framed into T bins, so Tonic's event
    transforms (``Denoise``, ``DropEvent``, ``RandomFlipLR``, ``TimeJitter``, …) apply unchanged;
    it must keep events inside the recording's sensor. Recordings are then read and framed again
    on every access (a random transform differs per epoch) instead of coming from the frame cache.
    """
    spec = dataset_spec(name)
    check_split(split)
    if augment not in AUGMENTS:
        raise InvalidArgumentError(f"augment must be one of {', '.join(AUGMENTS)} (got {augment!r})")
    if T < 1:
        raise InvalidArgumentError(f"T must be >= 1 (got {T})")
    extra = {}
    if augment != "crop" and split == "train" and train_augment:  # only an augmented train split uses it
        if "augment" not in inspect.signature(spec.builder).parameters:
            raise InvalidArgumentError(f"dataset {name} has only the crop augmentation (augment={augment!r} asked)")
        extra["augment"] = augment
    if event_transform is not None:
        if spec.kind != "events":
            raise InvalidArgumentError(
                f"event_transform applies to event datasets; {name} holds {spec.kind} (use transform=)"
            )
        extra["event_transform"] = event_transform
    ds = spec.builder(
        spec,
        split,
        root=root,
        T=T,
        size=size,
        train_augment=train_augment,
        download=download,
        seed=seed,
        cache_dir=cache_dir,
        **extra,
    )
    return Transformed(ds, transform, target_transform) if transform or target_transform else ds


class Transformed(Dataset):
    """A dataset with a user's transform on each input (and label): ``build_dataset(transform=…)``."""

    def __init__(self, base: Dataset, transform: Callable | None, target_transform: Callable | None) -> None:
        self.base, self.transform, self.target_transform = base, transform, target_transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int):
        x, y = self.base[i]
        return (
            self.transform(x) if self.transform else x,
            self.target_transform(y) if self.target_transform else y,
        )

    def __getattr__(self, name: str):  # classes, targets, … of the wrapped dataset
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)


__all__ = [
    "SPLITS",
    "DVSEmulator",
    "EMULATED",
    "PROTOCOLS",
    "Protocol",
    "build_emulated",
    "DatasetMissingError",
    "DatasetSpec",
    "build_dataset",
    "dataset_labels",
    "dataset_spec",
    "list_datasets",
    "register_dataset",
    "stratified",
    "stratified_split",
    "stratified_subset",
]
