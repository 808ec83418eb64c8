"""Weight averaging: one backbone from the mean of several checkpoints of the same model.

Why: two runs that start from the same weights end in one basin of the loss, and the point
between them generalises better than either end (a uniform "model soup", the average SWA takes
along one run). The inputs each norm sees in the average are not those either end saw, and a
spiking network's firing hangs on them, so the norms' running statistics are re-estimated
(precise BN) before it is measured.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from .checkpoint import CheckpointInfo, load_checkpoint, read_info, save_checkpoint
from .errors import NeucodexError
from .evaluate import evaluate, load_split, loader, resolve_device, with_data
from .training import data_meta, precise_norms, use_amp


def average_state(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of float tensors (computed in float32, stored in each tensor's own
    dtype); integer tensors (norms' batch counters) are taken from the first state."""
    first = states[0]
    return {
        k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v.clone()
        for k, v in first.items()
    }


def _measure(model, ds, split: str, batch_size: int, seed: int, dev: torch.device) -> dict:
    if len(ds) == 0:
        raise NeucodexError(f"the {split} split is empty: the average could not be measured")
    return evaluate(model, loader(ds, batch_size, False, seed, 0), dev)


def average_checkpoints(
    checkpoints: Sequence[str | Path],
    out: str | Path,
    *,
    dataset: str | None = None,
    root: str | None = None,
    norm_samples: int = 2048,
    batch_size: int = 64,
    device: str = "auto",
) -> CheckpointInfo:
    """Average the backbones ``checkpoints`` (directories or ``zoo:NAME``), re-estimate the norms'
    statistics on ``norm_samples`` training samples, measure it on the val and test splits and
    save it to ``out``. The first checkpoint's experiment config names the data."""
    if len(checkpoints) < 2:
        raise NeucodexError("averaging needs at least two checkpoints")
    if norm_samples < 1 or batch_size < 1:
        raise NeucodexError("norm_samples and batch_size must be at least 1")
    infos = [read_info(c) for c in checkpoints]
    for c, info in zip(checkpoints, infos, strict=True):
        if info.is_coinference:
            raise NeucodexError(
                f"{c} is a co-inference checkpoint: average backbones, then fine-tune the cut on the result"
            )
        if info.model.to_dict() != infos[0].model.to_dict():
            raise NeucodexError(f"{c} is a different model from {checkpoints[0]}: only one model's weights average")
    t0 = time.perf_counter()
    cfg = with_data(infos[0].experiment(), dataset, root)
    dev = resolve_device(device)
    models = [load_checkpoint(c).model for c in checkpoints]
    model = models[0].to(dev)
    model.load_state_dict(average_state([m.state_dict() for m in models]))
    del models[1:]
    train = load_split(replace(cfg, data=replace(cfg.data, limit=None)), "train", model.T)
    torch.manual_seed(cfg.seed)  # the crops and flips: the same command gives the same weights
    precise_norms(
        model,
        train,
        samples=norm_samples,
        batch_size=batch_size,
        seed=cfg.seed + 10_000,
        workers=0,
        device=dev,
        amp=use_amp(cfg, dev),
    )
    plain = replace(cfg, data=replace(cfg.data, limit=None, train_augment=False))
    val, test = (_measure(model, load_split(plain, s, model.T), s, batch_size, cfg.seed, dev) for s in ("val", "test"))
    return save_checkpoint(
        out,
        model,
        infos[0].model,
        config=cfg.to_dict(),
        dataset=data_meta(cfg),
        metrics={
            "test_accuracy": test["accuracy"],
            "test_accuracy_at_t": test["accuracy_at_t"],
            "val_accuracy": val["accuracy"],
            "val_accuracy_at_t": val["accuracy_at_t"],
            "averaged_from": [f"{c} ({i.sha256[:16]})" for c, i in zip(checkpoints, infos, strict=True)],
            "norm_samples": norm_samples,
            "wall_s": time.perf_counter() - t0,
        },
    )
