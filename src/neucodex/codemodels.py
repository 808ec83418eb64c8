"""``neucodex codemodels``: count a co-inference checkpoint's learned entropy models on its training
images and store them in its ``model.json``.

``neucodex finetune`` does this at the end of every run; this is for checkpoints made before the
context model existed (or counted on fewer images): the per-channel probabilities (``entropy``
format) and the probabilities conditioned on the neuron's previous bit (``context`` and
``context-ac``). The weights, and so the model id and its accuracy, do not change; only the bits do.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from .accounting import CodeModels, fit_code_models
from .checkpoint import load_checkpoint, read_info, update_info
from .data import stratified
from .errors import NeucodexError
from .evaluate import check_fits, load_split, resolve_device, to_model_input, with_data

BATCH = 100


def count_code_models(
    ck_dir: str | Path,
    samples: int | None = 10_000,
    *,
    dataset: str | None = None,
    root: str | None = None,
    device: str = "auto",
) -> CodeModels:
    """The code models of a spiking co-inference checkpoint, counted in eval mode (as deployed) on
    ``samples`` of its training images, stratified by class and without augmentation (all: None)."""
    info = read_info(ck_dir)
    if not info.is_coinference or not info.model.spiking:
        raise NeucodexError(f"{ck_dir} holds no spike code: code models are for spiking co-inference checkpoints")
    ck = load_checkpoint(ck_dir)
    cfg = with_data(ck.info.experiment(), dataset, root)
    cfg = replace(cfg, data=replace(cfg.data, limit=None, train_augment=False))
    train = load_split(cfg, "train", ck.model.T)
    check_fits(ck.model, train, cfg.data.name, ck.info.dataset.get("kind"))
    ds = stratified(train, samples)
    dev = resolve_device(device)
    batches = torch.utils.data.DataLoader(ds, batch_size=BATCH)
    return fit_code_models(ck.model.to(dev), (to_model_input(x, dev) for x, _ in batches))


def store_code_models(ck_dir: str | Path, models: CodeModels) -> None:
    """Write ``models`` into the checkpoint's ``model.json`` (its metrics keep the floors)."""
    info = read_info(ck_dir)
    update_info(
        ck_dir,
        channel_probs=models.channel_probs.tolist(),
        context_probs=models.context_probs.tolist(),
        metrics={**info.metrics, "code_models": models.summary()},
    )
