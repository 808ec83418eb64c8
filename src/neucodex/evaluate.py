"""Evaluation: devices, dataset splits, loaders, model input, per-timestep prediction, accuracy.

One owner for what training, calibration, the report, the demo, ``neucodex evaluate`` and the
benchmarks all need to run a checkpoint over data. Nothing here trains.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torch.utils.data import Subset as TorchSubset

from .config import ExperimentConfig
from .data import build_dataset
from .errors import NeucodexError
from .exit import running_mean
from .models import Backbone


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise NeucodexError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NeucodexError(f"device {name!r} asked for, but no CUDA GPU is available; use --device cpu")
    return dev


def load_split(cfg: ExperimentConfig, split: str, T: int | None = None) -> Dataset:
    """One split of the config's dataset; ``data.limit`` keeps a seeded random subset."""
    d = cfg.data
    ds = build_dataset(
        d.name,
        split,
        root=d.root,
        T=T or cfg.model.T,
        size=d.size,
        train_augment=d.train_augment,
        download=d.download,
        seed=cfg.seed,
        cache_dir=d.cache_dir,
    )
    if d.limit is not None and d.limit < len(ds):
        keep = np.random.default_rng(cfg.seed).permutation(len(ds))[: d.limit]
        ds = TorchSubset(ds, sorted(keep.tolist()))
    return ds


def loader(ds: Dataset, batch_size: int, shuffle: bool, seed: int, workers: int, world: int = 1) -> DataLoader:
    sampler = DistributedSampler(ds, shuffle=shuffle, seed=seed) if world > 1 else None
    g = torch.Generator().manual_seed(seed)
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        generator=g,
        drop_last=False,
    )


def to_model_input(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Batches of event frames ``[B, T, 2, H, W]`` become ``[T, B, 2, H, W]``."""
    x = x.to(device, non_blocking=True)
    return x.transpose(0, 1).contiguous() if x.dim() == 5 else x


def final_logits(logits: torch.Tensor) -> torch.Tensor:
    """The prediction's logits: the mean over T (an SNN's ``[T, B, K]``) or as they are (a DNN's)."""
    return logits.mean(0) if logits.dim() == 3 else logits


@torch.no_grad()
def predict(model: Backbone, data: DataLoader, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-timestep logits ``[T, N, K]`` (``[1, N, K]`` for a DNN) and labels, in eval mode."""
    model.eval().set_step_mode("m" if model.spiking else "s")
    outs, labels = [], []
    for x, y in data:
        out = model(to_model_input(x, device)).float().cpu()
        model.reset_state()
        outs.append(out if out.dim() == 3 else out.unsqueeze(0))
        labels.append(y)
    return torch.cat(outs, 1), torch.cat(labels)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy (%) of the mean output over all timesteps."""
    return 100.0 * (logits.mean(0).argmax(-1) == labels).float().mean().item()


def accuracy_at_t(logits: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """Top-1 accuracy (%) of the running mean after t = 1 … T timesteps."""
    return [100.0 * (c.argmax(-1) == labels).float().mean().item() for c in running_mean(logits)]


def evaluate(model: Backbone, data: DataLoader, device: torch.device) -> dict:
    logits, labels = predict(model, data, device)
    return {
        "accuracy": accuracy(logits, labels),
        "accuracy_at_t": accuracy_at_t(logits, labels),
        "samples": int(labels.numel()),
    }
