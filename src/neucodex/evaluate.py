"""Evaluation: devices, dataset splits, loaders, model input, per-timestep prediction, accuracy.

One owner for what training, calibration, the report, the demo, ``neucodex evaluate`` and the
benchmarks all need to run a checkpoint over data. Nothing here trains.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torch.utils.data import Subset as TorchSubset

from .cache import cache_root
from .config import ExperimentConfig
from .data import build_dataset, dataset_spec, stratified
from .errors import NeucodexError
from .exit import evaluate_policy, running_mean
from .models import Backbone
from .policy import ExitPolicy


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
        augment=d.augment,
        download=d.download,
        seed=cfg.seed,
        cache_dir=d.cache_dir,
    )
    if d.limit is not None and d.limit < len(ds):
        keep = np.random.default_rng(cfg.seed).permutation(len(ds))[: d.limit]
        ds = TorchSubset(ds, sorted(keep.tolist()))
    return ds


def with_data(cfg: ExperimentConfig, dataset: str | None = None, root: str | None = None) -> ExperimentConfig:
    """A checkpoint's experiment on another dataset and/or root. Another dataset without a root
    drops the checkpoint's root: one dataset's files are not another's."""
    if dataset is None and root is None:
        return cfg
    same = dataset is None or dataset == cfg.data.name
    root = root if root is not None else (cfg.data.root if same else None)
    return replace(cfg, data=replace(cfg.data, name=dataset or cfg.data.name, root=root))


def check_fits(model: Backbone, ds: Dataset, name: str, kind: str | None = None) -> None:
    """Refuse, in one line and before any work, samples the model cannot take: another kind
    (images vs event frames), channel count or number of classes than it was built for."""
    spec = dataset_spec(name)
    if kind and spec.kind != kind:
        raise NeucodexError(
            f"dataset {name!r} holds {spec.kind}; the checkpoint was trained on {kind} — pass a --dataset of that kind"
        )
    x = ds[0][0] if len(ds) else None
    if x is not None and x.shape[-3] != model.in_channels:
        raise NeucodexError(
            f"dataset {name!r} gives {x.shape[-3]}-channel samples; the checkpoint's model takes "
            f"{model.in_channels} — pass a --dataset like the one it was trained on"
        )
    classes = getattr(ds, "classes", None)
    if classes and len(classes) != model.num_classes:
        raise NeucodexError(
            f"dataset {name!r} has {len(classes)} classes; the checkpoint's model predicts {model.num_classes} — "
            "pass a --dataset (or a --root of class folders) with the classes it was trained on"
        )


def one_blas_thread(_worker: int = 0) -> None:
    """A loader worker's NumPy (event framing, decoding) gets one BLAS thread: W workers each with
    a pool as large as the machine oversubscribe it (an H200 host's 16 cores framed N-Caltech101
    about 25x slower in the first epoch that way). Without threadpoolctl, nothing changes."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1)


def loader(ds: Dataset, batch_size: int, shuffle: bool, seed: int, workers: int, world: int = 1) -> DataLoader:
    sampler = DistributedSampler(ds, shuffle=shuffle, seed=seed) if world > 1 else None
    g = torch.Generator().manual_seed(seed)
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        worker_init_fn=one_blas_thread if workers else None,
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


def data_key(cfg: ExperimentConfig, split: str, limit: int | None, samples: int) -> str:
    """Which samples an evaluation ran on: the data config, split, limit and seed, and the root's
    path, size and modification time (other files at the same path are other samples)."""
    root = None
    if cfg.data.root and Path(cfg.data.root).exists():
        st = Path(cfg.data.root).resolve().stat()
        root = [str(Path(cfg.data.root).resolve()), st.st_size, st.st_mtime_ns]
    what = {"data": asdict(cfg.data), "root": root, "split": split, "limit": limit, "seed": cfg.seed, "n": samples}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


class LogitsCache:
    """A model's per-timestep logits on a set of samples, kept so they are computed once: the
    backbone's evaluate stores them and a co-inference entry's evaluate on the same samples reads
    them (its drop against the backbone) instead of running the backbone again. Keyed by the
    model's weights (``model_id``) and :func:`data_key`; a stale or unreadable file is recomputed."""

    def __init__(self, model_id: str, key: str, cache_dir: str | Path | None = None) -> None:
        self.path = cache_root(cache_dir) / "logits" / f"{model_id[:24]}-{key[:24]}.pt"

    def load(self, labels: torch.Tensor) -> torch.Tensor | None:
        try:
            saved = torch.load(self.path, weights_only=True)
        except Exception:  # noqa: BLE001 — missing, partial or foreign: computed anew
            return None
        ok = isinstance(saved, dict) and torch.equal(saved.get("labels", torch.empty(0)), labels)
        return saved["logits"] if ok else None

    def store(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save({"logits": logits, "labels": labels}, tmp)
        tmp.replace(self.path)  # never a half-written file under the real name


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    dataset: str | None = None,
    root: str | None = None,
    split: str = "test",
    limit: int | None = None,
    policy: ExitPolicy | None = None,
    device: str = "auto",
    batch_size: int = 64,
    progress: bool = False,
) -> dict:
    """A backbone or co-inference checkpoint on a split of any dataset and root.

    Co-inference: accuracy with the exit policy (the checkpoint's calibrated one unless
    ``policy``), with all T, and of its backbone on the same samples; bits from real packets
    for the timesteps each sample sends; the three compression ratios.
    """
    from .accounting import combine, measure_bits
    from .checkpoint import load_checkpoint, read_info

    for name, value in (("limit", limit), ("batch_size", batch_size)):
        if value is not None and value < 1:
            raise NeucodexError(f"{name} must be at least 1 (got {value})")
    info = read_info(checkpoint)
    cfg = with_data(info.experiment(), dataset, root)
    cfg = replace(cfg, data=replace(cfg.data, limit=None, train_augment=False))
    ck = load_checkpoint(checkpoint)
    dev = resolve_device(device)
    ds = load_split(cfg, split, ck.model.T)
    if len(ds) == 0:
        raise NeucodexError(f"split {split!r} of {cfg.data.name} has no samples")
    check_fits(ck.model, ds, cfg.data.name, info.dataset.get("kind"))
    ds = stratified(ds, limit, cfg.seed)
    batches = loader(ds, batch_size, False, cfg.seed, 0)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="evaluating", leave=False, dynamic_ncols=True, disable=not sys.stderr.isatty())
    model = ck.model.to(dev)
    policy = policy or info.policy
    key = data_key(cfg, split, limit, len(ds))
    backbone, backbone_cache = None, None
    if info.is_coinference and info.backbone_path is not None:
        try:
            bb = load_checkpoint(info.backbone_path)
            backbone, backbone_cache = bb.model.to(dev), LogitsCache(bb.model_id, key)
        except NeucodexError:
            pass  # moved or deleted: its accuracy stays null rather than guessed
    have_backbone = backbone_cache is not None and backbone_cache.path.exists()
    outs, labels, reports, codes, bb_outs = [], [], [], [], []
    keep = (
        model.stages.encoder.register_forward_hook(lambda _m, _i, out: codes.append(out))
        if info.is_coinference
        else None
    )
    try:
        for x, y in batches:
            logits, _ = predict(model, [(x, y)], dev)  # the code it sends is kept on the way: the edge runs once
            outs.append(logits)
            labels.append(y)
            if backbone is not None and not have_backbone:  # the same batch: decoded once
                bb_outs.append(predict(backbone, [(x, y)], dev)[0])
            if info.is_coinference:
                steps = torch.from_numpy(policy.decide(logits.numpy())[0])
                x = to_model_input(x, torch.device("cpu")).to(dev)
                code = codes.pop()
                reports.append(
                    measure_bits(model, x, steps=steps, channel_probs=info.probs, context_probs=info.context, code=code)
                )
    finally:
        if keep is not None:
            keep.remove()
    logits, labels = torch.cat(outs, 1), torch.cat(labels)
    ev = evaluate_policy(logits, labels, policy)
    k = logits.shape[-1]
    preds = torch.tensor(ev["predictions"])
    per_class = {int(c): 100.0 * (preds[labels == c] == c).float().mean().item() for c in labels.unique()}
    result = {
        "checkpoint": str(checkpoint),
        "model_id": ck.model_id,
        "kind": "coinference" if info.is_coinference else "backbone",
        "dataset": cfg.data.name,
        "split": split,
        "samples": int(labels.numel()),
        "T": int(logits.shape[0]),
        "classes": k,
        "policy": policy.to_dict(),
        "accuracy": ev["accuracy"],
        "accuracy_all_t": ev["accuracy_all_T"],
        "accuracy_at_t": accuracy_at_t(logits, labels),
        "mean_steps": ev["mean_steps"],
        "exit_histogram": ev["histogram"],
        "backbone_accuracy": ev["accuracy_all_T"],
        "payload_bits": None,
        "wire_bytes": None,
        "ratios": {"vs_spikes": None, "vs_float32": None, "vs_input": None},
        "per_class": per_class,
    }
    if info.is_coinference:
        bits = combine(reports)
        result.update(
            payload_bits=bits.payload_bits,
            wire_bytes=bits.wire_bytes,
            formats=bits.formats,
            ratios={"vs_spikes": bits.vs_spikes, "vs_float32": bits.vs_float32, "vs_input": bits.vs_input},
        )
        result["backbone_accuracy"] = None
        if backbone_cache is not None:
            bb_logits = backbone_cache.load(labels) if have_backbone else None
            if bb_logits is None:
                bb_logits = (
                    torch.cat(bb_outs, 1)
                    if bb_outs
                    else predict(backbone, loader(ds, batch_size, False, cfg.seed, 0), dev)[0]
                )
                backbone_cache.store(bb_logits, labels)
            result["backbone_accuracy"] = accuracy(bb_logits, labels)
    else:
        LogitsCache(ck.model_id, key).store(logits, labels)  # for its co-inference entries' evaluate
    return result
