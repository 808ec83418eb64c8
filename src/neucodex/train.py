"""Training: pretraining a backbone, compression-aware fine-tuning with a bottleneck, evaluation.

SpikeBottleNet §3.6's two steps: train the backbone (SNN with surrogate-gradient BPTT, or its DNN
twin), then insert the bottleneck at a split point and fine-tune the whole model together (no
separate encoder/decoder phase). Deterministic for a seed; resumable per epoch; data-parallel
under ``torchrun`` (DDP, gloo on CPU, NCCL on GPU); bf16 autocast on GPU.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torch.utils.data import Subset as TorchSubset
from tqdm import tqdm

from .accounting import BitReport, measure_bits_batches
from .bottleneck import CoInferenceModel
from .checkpoint import CheckpointError, build_from_spec, load_checkpoint, load_weights, model_spec, save_checkpoint
from .config import ExperimentConfig, OptimConfig
from .data import build_dataset, dataset_spec
from .errors import NeucodexError
from .models import Backbone, create_model

# --- environment -----------------------------------------------------------------------------

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NeucodexError(f"device {name!r} asked for, but no CUDA GPU is available; use --device cpu")
    return dev


def distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


# --- data ------------------------------------------------------------------------------------

def load_split(cfg: ExperimentConfig, split: str, T: int | None = None) -> Dataset:
    d = cfg.data
    ds = build_dataset(d.name, split, root=d.root, T=T or cfg.model.T, size=d.size,
                       train_augment=d.train_augment, download=d.download, seed=cfg.seed, cache_dir=d.cache_dir)
    if d.limit is not None and d.limit < len(ds):
        keep = np.random.default_rng(cfg.seed).permutation(len(ds))[: d.limit]
        ds = TorchSubset(ds, sorted(keep.tolist()))
    return ds


def loader(ds: Dataset, batch_size: int, shuffle: bool, seed: int, workers: int, world: int = 1) -> DataLoader:
    sampler = DistributedSampler(ds, shuffle=shuffle, seed=seed) if world > 1 else None
    g = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      num_workers=workers, generator=g, drop_last=False)


def to_model_input(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Batches of event frames ``[B, T, 2, H, W]`` become ``[T, B, 2, H, W]``."""
    x = x.to(device, non_blocking=True)
    return x.transpose(0, 1).contiguous() if x.dim() == 5 else x


# --- loss and metrics ------------------------------------------------------------------------

def classification_loss(logits: torch.Tensor, y: torch.Tensor, per_timestep: bool, smoothing: float = 0.0):
    """CE on the mean output over T, or (TET-style) the mean CE of every cumulative output."""
    if logits.dim() == 2:
        return F.cross_entropy(logits, y, label_smoothing=smoothing)
    if not per_timestep:
        return F.cross_entropy(logits.mean(0), y, label_smoothing=smoothing)
    T = logits.shape[0]
    cum = logits.cumsum(0) / torch.arange(1, T + 1, device=logits.device).view(T, 1, 1)
    return F.cross_entropy(cum.flatten(0, 1), y.repeat(T), label_smoothing=smoothing)


def final_logits(logits: torch.Tensor) -> torch.Tensor:
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


def evaluate(model: Backbone, data: DataLoader, device: torch.device) -> dict:
    logits, labels = predict(model, data, device)
    cum = logits.cumsum(0) / torch.arange(1, logits.shape[0] + 1).view(-1, 1, 1)
    per_t = [100.0 * (c.argmax(-1) == labels).float().mean().item() for c in cum]
    return {"accuracy": accuracy(logits, labels), "accuracy_at_t": per_t, "samples": int(labels.numel())}


# --- optimisation ----------------------------------------------------------------------------

def make_optimizer(model: nn.Module, oc: OptimConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if oc.name == "sgd":
        return torch.optim.SGD(params, lr=oc.lr, momentum=oc.momentum, weight_decay=oc.weight_decay, nesterov=True)
    if oc.name == "adamw":
        return torch.optim.AdamW(params, lr=oc.lr, weight_decay=oc.weight_decay)
    raise NeucodexError(f"unknown optimiser {oc.name!r}; choose adamw or sgd")


def make_schedule(opt: torch.optim.Optimizer, oc: OptimConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine to zero over the remaining epochs (stepped per epoch)."""
    def factor(epoch: int) -> float:
        if epoch < oc.warmup_epochs:
            return (epoch + 1) / oc.warmup_epochs
        span = max(1, oc.epochs - oc.warmup_epochs)
        return 0.5 * (1 + math.cos(math.pi * (epoch - oc.warmup_epochs) / span))
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _save_train_state(d: Path, opt, sched, epoch: int, history: list) -> None:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{k}"] = v
    save_file(tensors, str(d / "train_state.safetensors"))
    state = {"epoch": epoch, "param_groups": sd["param_groups"], "scalars": scalars,
             "scheduler": sched.state_dict(), "history": history}
    (d / "train_state.json").write_text(json.dumps(state, default=float))


def _load_train_state(d: Path, opt, sched) -> tuple[int, list]:
    try:
        state = json.loads((d / "train_state.json").read_text())
        tensors = load_file(str(d / "train_state.safetensors"))
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot resume from {d}: training state unreadable ({e})") from None
    opt_state: dict = {}
    for key, v in tensors.items():
        _, idx, name = key.split(".", 2)
        opt_state.setdefault(int(idx), {})[name] = v
    for key, v in state["scalars"].items():
        idx, name = key.split(".", 1)
        opt_state.setdefault(int(idx), {})[name] = v
    try:
        opt.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"cannot resume from {d}: optimiser state does not fit ({e})") from None
    sched.load_state_dict(state["scheduler"])
    # Learning rates from this run's schedule (it may have more epochs than the stopped one).
    for group, base, factor in zip(opt.param_groups, sched.base_lrs, sched.lr_lambdas, strict=True):
        group["lr"] = base * factor(sched.last_epoch)
    return int(state["epoch"]), state["history"]


def fit(
    model: Backbone,
    spec: dict,
    cfg: ExperimentConfig,
    oc: OptimConfig,
    train_ds: Dataset,
    val_ds: Dataset,
    out: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    meta: dict | None = None,
) -> dict:
    """Train ``model`` for ``oc.epochs``; checkpoint into ``out`` after every epoch."""
    out = Path(out)
    rank, world = distributed()
    device = resolve_device(cfg.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    model.to(device)
    net: nn.Module = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt, start, history = make_optimizer(model, oc), 0, []
    sched = make_schedule(opt, oc)
    if resume and (out / "train_state.json").exists():
        load_weights(model, load_file(str(out / "model.safetensors")), str(out))
        start, history = _load_train_state(out, opt, sched)
    amp = cfg.amp and device.type == "cuda"
    codes: list[torch.Tensor] = []  # the bottleneck code of the current training step (rate penalty)
    hook = None
    if oc.code_rate_penalty and isinstance(model, CoInferenceModel) and model.spiking:
        hook = model.stages.encoder.register_forward_hook(
            lambda m, _i, out: codes.append(out) if m.training else None)
    val = loader(val_ds, oc.batch_size, False, cfg.seed, cfg.workers)
    t_start = time.perf_counter()
    for epoch in range(start, oc.epochs):
        seed_everything(cfg.seed + epoch)
        train = loader(train_ds, oc.batch_size, True, cfg.seed + epoch, cfg.workers, world)
        if world > 1:
            train.sampler.set_epoch(epoch)  # type: ignore[union-attr]
        model.train().set_step_mode("m" if model.spiking else "s")
        seen = correct = 0
        loss_sum, t0 = 0.0, time.perf_counter()
        bar = tqdm(train, desc=f"epoch {epoch + 1}/{oc.epochs}", leave=False, dynamic_ncols=True,
                   disable=not progress or rank != 0 or not sys.stderr.isatty())
        for x, y in bar:
            x, y = to_model_input(x, device), y.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = net(x)
                loss = classification_loss(logits.float(), y, oc.per_timestep_loss, oc.label_smoothing)
                if codes:
                    loss = loss + oc.code_rate_penalty * torch.cat([c.flatten() for c in codes]).mean()
                    codes.clear()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if oc.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), oc.grad_clip)
            opt.step()
            model.reset_state()
            seen += y.numel()
            correct += (final_logits(logits.detach()).argmax(-1) == y).sum().item()
            loss_sum += loss.item() * y.numel()
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}",
                            img_s=f"{seen / (time.perf_counter() - t0):.0f}")
        sched.step()
        n = max(seen, 1)
        row = {"epoch": epoch + 1, "train_loss": loss_sum / n, "train_accuracy": 100 * correct / n,
               "images_per_s": seen * world / (time.perf_counter() - t0)}
        if rank == 0:
            row["val_accuracy"] = evaluate(model, val, device)["accuracy"]
            history.append(row)
            save_checkpoint(out, model, spec, config=cfg.to_dict(), dataset=_data_meta(cfg),
                            metrics={"epoch": epoch + 1, "val_accuracy": row["val_accuracy"]}, **(meta or {}))
            _save_train_state(out, opt, sched, epoch + 1, history)
            if progress:
                tqdm.write(f"epoch {epoch + 1}/{oc.epochs}: loss {row['train_loss']:.4f}, train acc "
                           f"{row['train_accuracy']:.2f}%, val acc {row['val_accuracy']:.2f}%, "
                           f"{row['images_per_s']:.0f} img/s", file=sys.stderr)
    if hook is not None:
        hook.remove()
    if world > 1:
        dist.barrier()
    return {"history": history, "wall_s": time.perf_counter() - t_start}


def _data_meta(cfg: ExperimentConfig) -> dict:
    spec = dataset_spec(cfg.data.name)
    return {"name": spec.name, "kind": spec.kind, "root": cfg.data.root, "size": cfg.data.size or spec.default_size,
            "seed": cfg.seed}


def _builder_kwargs(cfg: ExperimentConfig, classes: int, T: int | None = None) -> dict:
    spec = dataset_spec(cfg.data.name)
    return {"num_classes": classes, "in_channels": spec.channels, "input_size": cfg.data.size or spec.default_size,
            "T": T or cfg.model.T, "spiking": cfg.model.spiking, **cfg.model.kwargs}


def _num_classes(ds: Dataset) -> int:
    base = ds.dataset if isinstance(ds, TorchSubset) else ds
    return len(base.classes)  # type: ignore[attr-defined]


# --- the two steps ---------------------------------------------------------------------------

def pretrain(cfg: ExperimentConfig, *, resume: bool = False, progress: bool = True, out: Path | None = None) -> dict:
    """Step 1: train the backbone; checkpoint in ``<run>/backbone``; returns its metrics."""
    seed_everything(cfg.seed)
    train_ds, val_ds, test_ds = (load_split(cfg, s) for s in ("train", "val", "test"))
    kwargs = _builder_kwargs(cfg, _num_classes(train_ds))
    model = create_model(cfg.model.name, **kwargs)
    out = Path(out) if out else cfg.run_dir / "backbone"
    result = fit(model, model_spec(model, kwargs), cfg, cfg.optim, train_ds, val_ds, out, resume=resume,
                 progress=progress)
    return _finish(model, cfg, out, test_ds, result, extra={})


def _finish(model: Backbone, cfg: ExperimentConfig, out: Path, test_ds: Dataset, result: dict, extra: dict) -> dict:
    """Evaluate on test, write the final checkpoint metrics, print the summary line."""
    rank, _ = distributed()
    if rank != 0:
        return {}
    device = resolve_device(cfg.device)
    test = loader(test_ds, cfg.optim.batch_size, False, cfg.seed, cfg.workers)
    ev = evaluate(model, test, device)
    history = result["history"]
    metrics = {"test_accuracy": ev["accuracy"], "test_accuracy_at_t": ev["accuracy_at_t"],
               "val_accuracy": history[-1]["val_accuracy"] if history else None, "epochs": len(history),
               "wall_s": result["wall_s"], "history": history, **extra}
    meta = json.loads((out / "model.json").read_text())
    info = save_checkpoint(out, model, meta["model"], config=cfg.to_dict(), dataset=_data_meta(cfg), metrics=metrics,
                           **{k: v for k, v in meta.items() if k not in ("format", "version", "model", "config",
                                                                          "dataset", "metrics", "sha256")})
    metrics["checkpoint"] = str(out)
    metrics["model_id"] = info["sha256"]
    return metrics


def _with_T(spec: dict, T: int) -> dict:
    return {**spec, "kwargs": {**spec["kwargs"], "T": T}}


def finetune(
    cfg: ExperimentConfig,
    backbone_dir: str | Path,
    point: str,
    bottleneck: str,
    *,
    T: int | None = None,
    out: Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Step 2: insert the bottleneck after ``point`` and fine-tune everything together.

    Reports the backbone's and the co-inference model's test accuracy at the same T, the drop,
    and bits per sample measured from real packets on the test split.
    """
    seed_everything(cfg.seed)
    ck = load_checkpoint(backbone_dir)
    if ck.meta["model"].get("coinference"):
        raise CheckpointError(f"{backbone_dir} already holds a co-inference model; fine-tune from a backbone")
    T = T or ck.meta["model"]["kwargs"]["T"]
    spec = _with_T(ck.meta["model"], T)
    backbone = build_from_spec(spec)
    backbone.load_state_dict(ck.model.state_dict())
    cfg = replace(cfg, model=replace(cfg.model, T=T))
    train_ds, val_ds, test_ds = (load_split(cfg, s, T) for s in ("train", "val", "test"))
    device = resolve_device(cfg.device)
    test = loader(test_ds, cfg.finetune.batch_size, False, cfg.seed, cfg.workers)
    val = loader(val_ds, cfg.finetune.batch_size, False, cfg.seed, cfg.workers)
    base_test = evaluate(backbone.to(device), test, device)["accuracy"]
    base_val = evaluate(backbone, val, device)["accuracy"]
    model = CoInferenceModel(backbone, point, bottleneck)
    out = Path(out) if out else cfg.run_dir / f"coinference-{point}-{model.config.name}-T{T}"
    coinf_spec = {**spec, "coinference": {"point": point, "bottleneck": model.config.name}}
    result = fit(model, coinf_spec, cfg, cfg.finetune, train_ds, val_ds, out, resume=resume, progress=progress,
                 meta={"backbone": {"sha256": ck.model_id, "path": str(backbone_dir)}})
    bits = measure_bits_batches(model, (to_model_input(x, device) for x, _ in test))
    val_acc = evaluate(model, val, device)["accuracy"]
    extra = {"point": point, "bottleneck": model.config.name, "T": T, "backbone_test_accuracy": base_test,
             "backbone_val_accuracy": base_val, "val_accuracy_final": val_acc, "bits": bits.to_dict()}
    metrics = _finish(model, cfg, out, test_ds, result, extra)
    if metrics:
        metrics["drop"] = base_test - metrics["test_accuracy"]
        metrics["val_drop"] = base_val - val_acc
    return metrics


def summary_line(kind: str, m: dict) -> str:
    s = f"{kind}: test accuracy {m['test_accuracy']:.2f}% after {m['epochs']} epochs in {m['wall_s']:.1f} s"
    if "drop" in m:
        b = BitReport(**{k: v for k, v in m["bits"].items() if k in BitReport.__dataclass_fields__})
        s += (f" (backbone {m['backbone_test_accuracy']:.2f}%, drop {m['drop']:.2f} pp); "
              f"{b.payload_bits:.0f} payload bits / {b.wire_bytes:.0f} wire bytes per sample, "
              f"{b.vs_spikes or 0:.0f}x vs spikes, {b.vs_float32:.0f}x vs float32, {b.vs_input:.0f}x vs 8-bit input")
    return s + f" → {m['checkpoint']}"
