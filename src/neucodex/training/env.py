"""What a training run runs on: its processes, seeds and precision, and the data it records."""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist

from ..config import ExperimentConfig
from ..data import dataset_spec


def distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def use_amp(cfg: ExperimentConfig, device: torch.device) -> bool:
    """bf16 autocast for training: on a GPU unless ``amp: false``, on a CPU only with ``cpu_amp: true``."""
    return (cfg.amp and device.type == "cuda") or (cfg.cpu_amp and device.type == "cpu")


def data_meta(cfg: ExperimentConfig) -> dict:
    spec = dataset_spec(cfg.data.name)
    return {
        "name": spec.name,
        "kind": spec.kind,
        "root": cfg.data.root,
        "size": cfg.data.size or spec.default_size,
        "seed": cfg.seed,
        "sensor": list(spec.sensor) if isinstance(spec.sensor, tuple) else spec.sensor,
    }
