"""The training loop: epochs of one model under one optimiser config, checkpointed and resumable."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from ..bottleneck import CoInferenceModel
from ..checkpoint import ModelSpec, load_weights, save_checkpoint
from ..config import ConfigError, ExperimentConfig, OptimConfig
from ..errors import Interrupted, InvalidArgumentError
from ..evaluate import evaluate, final_logits, loader, resolve_device, to_model_input
from ..models import Backbone
from .env import data_meta, distributed, seed_everything, use_amp
from .hooks import BlockTaps, CodeFiring, CodeRate, EdgeSpikes
from .losses import check_timestep_weights, classification_loss, distillation_loss
from .norms import precise_norms
from .optim import make_optimizer, make_schedule
from .state import load_train_state, save_train_state, write_curves


def fit(
    model: Backbone,
    spec: ModelSpec,
    cfg: ExperimentConfig,
    oc: OptimConfig,
    train_ds: Dataset,
    val_ds: Dataset,
    out: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    meta: dict | None = None,
    teacher: Backbone | None = None,
) -> dict:
    """Train ``model`` for ``oc.epochs``; checkpoint into ``out`` after every epoch. With a
    ``teacher`` (and ``oc.distill`` > 0) the loss also pulls the output toward the teacher's."""
    out = Path(out)
    section = "finetune" if oc is cfg.finetune else "optim"
    for split, ds in (("train", train_ds), ("val", val_ds)):
        if len(ds) == 0:  # a tiny build or a small data.limit: every epoch would end in an empty evaluation
            raise InvalidArgumentError(
                f"the {split} split of {cfg.data.name} is empty: too few samples per class for its split; "
                "give more data (or a larger data.limit)"
            )
    if model.spiking:
        check_timestep_weights(oc, model.T, section)
    for name in ("edge_rate_penalty", "rate_penalty"):
        if getattr(oc, name) and not (isinstance(model, CoInferenceModel) and model.spiking):
            raise ConfigError(
                f"{section}.{name}: only a spiking co-inference model being fine-tuned has a spike code and an "
                "edge to thin; set it to 0"
            )
    rank, world = distributed()
    device = resolve_device(cfg.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    model.to(device)
    if teacher is not None:
        teacher.to(device).eval().set_step_mode("m" if teacher.spiking else "s")
    net: nn.Module = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt, start, history = make_optimizer(model, oc), 0, []
    rate = CodeRate(model) if oc.rate_penalty else None
    if rate is not None:  # the entropy model learns with the code, without weight decay
        opt.add_param_group({"params": list(rate.model.parameters()), "lr": oc.lr, "weight_decay": 0.0})
    sched = make_schedule(opt, oc)
    if resume and (out / "train_state.json").exists():
        load_weights(model, load_file(str(out / "model.safetensors")), str(out))
        start, history = load_train_state(out, opt, sched)
    elif resume and rank == 0:
        print(f"neucodex: nothing to resume in {out} (no train_state.json): training from the start", file=sys.stderr)
    amp = use_amp(cfg, device)
    taps = BlockTaps(model, teacher) if teacher is not None and oc.feature_distill else None
    spiking_code = isinstance(model, CoInferenceModel) and model.spiking
    firing = CodeFiring(model) if oc.code_rate_penalty and spiking_code else None
    edge = EdgeSpikes(model) if oc.edge_rate_penalty else None
    hooks = [h for h in (taps, firing, edge, rate) if h is not None]
    val = loader(val_ds, oc.batch_size, False, cfg.seed, cfg.workers)
    t_start = time.perf_counter()
    try:
        for epoch in range(start, oc.epochs):
            seed_everything(cfg.seed + epoch)
            train = loader(train_ds, oc.batch_size, True, cfg.seed + epoch, cfg.workers, world)
            if world > 1:
                train.sampler.set_epoch(epoch)  # type: ignore[union-attr]
            model.train().set_step_mode("m" if model.spiking else "s")
            seen = correct = 0
            loss_sum, bits_sum, t0 = 0.0, 0.0, time.perf_counter()
            bar = tqdm(
                train,
                desc=f"epoch {epoch + 1}/{oc.epochs}",
                leave=False,
                dynamic_ncols=True,
                disable=not progress or rank != 0,
                mininterval=0.1 if sys.stderr.isatty() else 60.0,  # a log file gets a line a minute
            )
            for x, y in bar:
                x, y = to_model_input(x, device), y.to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    logits = net(x)
                    loss = classification_loss(
                        logits.float(), y, oc.per_timestep_loss, oc.label_smoothing, oc.timestep_weights
                    )
                    if teacher is not None and (oc.distill or taps is not None):
                        with torch.no_grad():
                            target = teacher(x).float()
                            teacher.reset_state()
                        if oc.distill:
                            kd = distillation_loss(logits.float(), target, oc.distill_temperature)
                            loss = (1 - oc.distill) * loss + oc.distill * kd
                        if taps is not None:
                            loss = loss + oc.feature_distill * taps.loss()
                    if firing is not None:
                        loss = loss + oc.code_rate_penalty * firing.rate()
                    if edge is not None:
                        loss = loss + oc.edge_rate_penalty * edge.rate()
                    if rate is not None:
                        bits = rate.bits()
                        loss = loss + oc.rate_penalty * bits
                        bits_sum += bits.item() * y.numel()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if oc.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), oc.grad_clip)
                opt.step()
                model.reset_state()
                seen += y.numel()
                correct += (final_logits(logits.detach()).argmax(-1) == y).sum().item()
                loss_sum += loss.item() * y.numel()
                bar.set_postfix(  # shown at the bar's own pace (a log file: once a minute), not every batch
                    loss=f"{loss_sum / seen:.3f}",
                    acc=f"{100 * correct / seen:.1f}",
                    **({"bits": f"{bits_sum / seen:.0f}"} if rate is not None else {}),
                    img_s=f"{seen / (time.perf_counter() - t0):.0f}",
                    refresh=False,
                )
            sched.step()
            _norms(model, train_ds, cfg, oc, device, amp, epoch)
            n = max(seen, 1)
            row = {
                "epoch": epoch + 1,
                "train_loss": loss_sum / n,
                "train_accuracy": 100 * correct / n,
                **({"train_bits": bits_sum / n} if rate is not None else {}),
                "images_per_s": seen * world / (time.perf_counter() - t0),
            }
            if rank == 0:
                row["val_accuracy"] = evaluate(model, val, device)["accuracy"]
                row["wall_s"] = time.perf_counter() - t0
                history.append(row)
                save_checkpoint(
                    out,
                    model,
                    spec,
                    config=cfg.to_dict(),
                    dataset=data_meta(cfg),
                    metrics={"epoch": epoch + 1, "val_accuracy": row["val_accuracy"]},
                    **(meta or {}),
                )
                save_train_state(out, opt, sched, epoch + 1, history)
                write_curves(out, history)
                if progress:
                    tqdm.write(
                        f"epoch {epoch + 1}/{oc.epochs}: loss {row['train_loss']:.4f}, train acc "
                        f"{row['train_accuracy']:.2f}%, val acc {row['val_accuracy']:.2f}%, "
                        + (f"{row['train_bits']:.0f} code bits/sample (model), " if rate is not None else "")
                        + f"{row['images_per_s']:.0f} img/s",
                        file=sys.stderr,
                    )
    except KeyboardInterrupt:
        done = len(history)  # epochs saved so far, resumed ones included
        raise Interrupted(
            f"interrupted in epoch {done + 1} of {oc.epochs}; {done} finished epoch(s) are saved in {out} — "
            "run the same command with --resume to go on"
        ) from None
    if oc.epochs == 0 and rank == 0:  # nothing to train (e.g. a bottleneck warm-up alone): still a checkpoint
        _norms(model, train_ds, cfg, oc, device, amp, 0)
        save_checkpoint(
            out, model, spec, config=cfg.to_dict(), dataset=data_meta(cfg), metrics={"epoch": 0}, **(meta or {})
        )
    for h in hooks:
        h.remove()
    if world > 1:
        dist.barrier()
    # every epoch's time, the resumed runs' included (older states recorded none: this run's time then)
    wall = sum(r.get("wall_s", 0.0) for r in history) if all("wall_s" in r for r in history) else None
    return {"history": history, "wall_s": wall if wall is not None else time.perf_counter() - t_start}


def _norms(model, train_ds, cfg: ExperimentConfig, oc: OptimConfig, device, amp: bool, epoch: int) -> None:
    if oc.norm_samples:
        precise_norms(
            model,
            train_ds,
            samples=oc.norm_samples,
            batch_size=oc.batch_size,
            seed=cfg.seed + 10_000 + epoch,
            workers=cfg.workers,
            device=device,
            amp=amp,
        )
