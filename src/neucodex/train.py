"""Training: pretraining a backbone, compression-aware fine-tuning with a bottleneck, evaluation.

SpikeBottleNet §3.6's two steps: train the backbone (SNN with surrogate-gradient BPTT, or its DNN
twin), then insert the bottleneck at a split point and fine-tune the whole model together (no
separate encoder/decoder phase). Deterministic for a seed; resumable per epoch; data-parallel
under ``torchrun`` (DDP, gloo on CPU, NCCL on GPU); bf16 autocast on GPU.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import Dataset
from torch.utils.data import Subset as TorchSubset
from tqdm import tqdm

from .accounting import BitReport, fit_code_models, measure_bits_batches
from .bottleneck import CoInferenceModel
from .checkpoint import CheckpointError, ModelSpec, load_checkpoint, load_weights, save_checkpoint, update_info
from .config import ConfigError, ExperimentConfig, OptimConfig
from .data import dataset_spec
from .energy import dense_ops, is_spikes
from .entropy import ContextModel
from .errors import Interrupted, NeucodexError
from .evaluate import evaluate, final_logits, load_split, loader, resolve_device, to_model_input
from .exit import running_mean
from .models import Backbone, create_model

# --- environment -----------------------------------------------------------------------------


def distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


# --- loss and metrics ------------------------------------------------------------------------


def classification_loss(
    logits: torch.Tensor,
    y: torch.Tensor,
    per_timestep: bool,
    smoothing: float = 0.0,
    weights: list[float] | None = None,
) -> torch.Tensor:
    """CE on the mean output over T, or (TET-style) the mean CE of every cumulative output —
    weighted by ``weights`` (one per timestep) to make early outputs, which early exit acts on,
    count more."""
    if logits.dim() == 2:
        return F.cross_entropy(logits, y, label_smoothing=smoothing)
    if not per_timestep:
        return F.cross_entropy(logits.mean(0), y, label_smoothing=smoothing)
    T = logits.shape[0]
    flat = running_mean(logits).flatten(0, 1)
    ce = F.cross_entropy(flat, y.repeat(T), label_smoothing=smoothing, reduction="none").view(T, -1).mean(1)
    w = torch.ones_like(ce) if weights is None else torch.as_tensor(weights, dtype=ce.dtype, device=ce.device)
    return (ce * w).sum() / w.sum()


def _check_timestep_weights(oc: OptimConfig, T: int, section: str) -> None:
    w = oc.timestep_weights
    if w is None:
        return
    if not oc.per_timestep_loss:
        raise ConfigError(
            f"{section}.timestep_weights weighs the per-timestep loss: set {section}.per_timestep_loss=true"
        )
    if len(w) != T or min(w) < 0 or sum(w) <= 0:
        raise ConfigError(
            f"{section}.timestep_weights must be {T} weights (one per timestep, >= 0, not all 0), got {w}"
        )


def distillation_loss(logits: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's KL from the teacher's softened output to the student's, × τ² (so its gradient
    scale does not depend on τ); over T, at every timestep's cumulative output, as the TET loss.

    Why: a co-inference model is its backbone with a lossy code in the middle; the backbone's own
    output says which wrong classes are near, which one label per image does not.
    """
    if logits.dim() == 3:
        teacher = running_mean(teacher) if teacher.dim() == 3 else teacher.expand_as(logits)  # a DNN: one output
        logits, teacher = running_mean(logits).flatten(0, 1), teacher.flatten(0, 1)
    log_p = F.log_softmax(logits / temperature, -1)
    return F.kl_div(log_p, F.log_softmax(teacher / temperature, -1), log_target=True, reduction="batchmean") * (
        temperature**2
    )


class BlockTaps:
    """The latest outputs of a co-inference model's tail blocks and of the same blocks in its
    backbone, for hint distillation: the MSE between them tells every block after the cut what
    it should emit, where the label alone says only what the last one should.

    Why: at an early cut the tail must relearn from a lossy code, and one label per image is a
    thin signal for six blocks; the frozen backbone's own block outputs are a dense one.
    """

    def __init__(self, student: CoInferenceModel, teacher: Backbone) -> None:
        self.names = self.tail_blocks(student, teacher.split_points)
        self.student: dict[str, torch.Tensor] = {}
        self.teacher: dict[str, torch.Tensor] = {}
        self.hooks = [
            model.stages._modules[n].register_forward_hook(self._keeper(store, n))
            for model, store in ((student, self.student), (teacher, self.teacher))
            for n in self.names
        ]

    @staticmethod
    def tail_blocks(
        student: CoInferenceModel,
        split_points: list[str],
        option: str = "finetune.feature_distill",
        hint: str = " (finetune.distill still applies there)",
    ) -> list[str]:
        """The backbone's blocks after the cut; none (at the last block) is one clear error."""
        names = student.names()
        blocks = [n for n in names[names.index("decoder") + 1 :] if n in split_points]
        if not blocks:
            raise NeucodexError(
                f"{option}: no block of {student.arch} follows the cut at {student.point}; set it to 0{hint}"
            )
        return blocks

    @staticmethod
    def _keeper(store: dict, name: str):
        def keep(_module, _inputs, output):
            store[name] = output

        return keep

    def loss(self) -> torch.Tensor:
        """Mean over the tapped blocks of the MSE from the student's output to the teacher's."""
        return torch.stack([F.mse_loss(self.student[n].float(), self.teacher[n].float()) for n in self.names]).mean()

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()
        self.student.clear()
        self.teacher.clear()


class CodeRate:
    """The code's bits per sample in the current training step under its learned context model,
    for the rate–distortion loss ``task + λ · bits``.

    Why: without a rate term the code fires at whatever rate classification likes; with it the
    loss trades bits against accuracy directly, and the bits it counts are those the ``context``
    codec sends (the model's probabilities, re-counted on the deployed code, are what it codes with).
    """

    def __init__(self, model: CoInferenceModel) -> None:
        self.model = ContextModel(model.code_shape[0])
        self.code: torch.Tensor | None = None
        self.started = False
        self.hook = model.stages.encoder.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, _args: tuple, out: torch.Tensor) -> None:
        if module.training and torch.is_grad_enabled():
            self.code = out

    def bits(self) -> torch.Tensor:
        """Mean expected bits per sample of the last training forward pass (all T sent)."""
        code, self.code = self.code, None
        if code is None:
            raise NeucodexError("finetune.rate_penalty: the encoder produced no code in this step")
        if not self.started:  # from the code's own frequencies, on resume as well
            self.model.to(code.device).init_from(code.detach())
            self.started = True
        return self.model.bits(code).mean()

    def remove(self) -> None:
        self.hook.remove()
        self.code = None


class EdgeSpikes:
    """The edge's synaptic operations per dense operation in the current training step: the firing
    rate of the spikes entering each of the edge's layers (head and encoder), weighted by that
    layer's dense operations — eq. 7's SyOPs over their dense count, so λ × this is a penalty
    proportional to the edge's compute energy.

    Why: at an early cut the edge's energy is its head's spikes, which the backbone never had a
    reason to keep few; the first (real-input) layer costs MACs whatever it is given and is left out.
    """

    def __init__(self, model: CoInferenceModel) -> None:
        edge = model.slice(0, model.names().index("encoder") + 1)
        self.terms: list[tuple[int, torch.Tensor]] = []
        self.hooks = [
            m.register_forward_hook(self._keep)
            for m in edge.modules()
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear)
        ]

    def _keep(self, module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        inp = args[0]
        if module.training and torch.is_grad_enabled() and is_spikes(inp):
            self.terms.append((dense_ops(module, inp, out, 1), inp.float().mean()))

    def rate(self) -> torch.Tensor:
        """The dense-weighted mean input firing rate of the last forward pass; clears it."""
        total = sum(d for d, _ in self.terms)
        value = sum(d * r for d, r in self.terms) / total
        self.terms.clear()
        return value

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()
        self.terms.clear()


# --- optimisation ----------------------------------------------------------------------------


def make_optimizer(model: nn.Module, oc: OptimConfig) -> torch.optim.Optimizer:
    """The optimiser over trainable weights; a new bottleneck's learn ``bottleneck_lr_scale`` × faster
    (they start from random while everything around them is trained)."""
    params: list = [p for p in model.parameters() if p.requires_grad]
    if isinstance(model, CoInferenceModel) and oc.bottleneck_lr_scale != 1.0:
        new = {id(p) for name in ("encoder", "decoder") for p in getattr(model.stages, name).parameters()}
        params = [
            {"params": [p for p in params if id(p) not in new]},
            {"params": [p for p in params if id(p) in new], "lr": oc.lr * oc.bottleneck_lr_scale},
        ]
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


CURVE_FIELDS = ("epoch", "train_loss", "train_accuracy", "val_accuracy", "images_per_s", "wall_s", "train_bits")


def write_curves(out: Path, history: list[dict]) -> None:
    """The training curves as ``history.csv`` beside the checkpoint (one row per epoch), and the
    latest epoch as TensorBoard scalars under ``out/tensorboard`` when TensorBoard is installed."""
    with open(out / "history.csv", "w", newline="") as f:
        w = csv.DictWriter(f, CURVE_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(history)
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return
    row = history[-1]
    with SummaryWriter(str(out / "tensorboard")) as tb:
        for key in CURVE_FIELDS[1:]:
            if row.get(key) is not None:
                tb.add_scalar(key, row[key], row["epoch"])


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
    state = {
        "epoch": epoch,
        "param_groups": sd["param_groups"],
        "scalars": scalars,
        "scheduler": sched.state_dict(),
        "history": history,
    }
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
    if model.spiking:
        _check_timestep_weights(oc, model.T, section)
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
        start, history = _load_train_state(out, opt, sched)
    elif resume and rank == 0:
        print(f"neucodex: nothing to resume in {out} (no train_state.json): training from the start", file=sys.stderr)
    amp = use_amp(cfg, device)
    codes: list[torch.Tensor] = []  # the bottleneck code of the current training step (rate penalty)
    hook = None
    taps = BlockTaps(model, teacher) if teacher is not None and oc.feature_distill else None
    if oc.code_rate_penalty and isinstance(model, CoInferenceModel) and model.spiking:
        hook = model.stages.encoder.register_forward_hook(lambda m, _i, out: codes.append(out) if m.training else None)
    edge = EdgeSpikes(model) if oc.edge_rate_penalty else None
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
                    if codes:
                        loss = loss + oc.code_rate_penalty * torch.cat([c.flatten() for c in codes]).mean()
                        codes.clear()
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
            _precise_norms(model, train_ds, cfg, oc, device, amp, epoch)
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
                    dataset=_data_meta(cfg),
                    metrics={"epoch": epoch + 1, "val_accuracy": row["val_accuracy"]},
                    **(meta or {}),
                )
                _save_train_state(out, opt, sched, epoch + 1, history)
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
        _precise_norms(model, train_ds, cfg, oc, device, amp, 0)
        save_checkpoint(
            out, model, spec, config=cfg.to_dict(), dataset=_data_meta(cfg), metrics={"epoch": 0}, **(meta or {})
        )
    if hook is not None:
        hook.remove()
    if taps is not None:
        taps.remove()
    if edge is not None:
        edge.remove()
    if rate is not None:
        rate.remove()
    if world > 1:
        dist.barrier()
    # every epoch's time, the resumed runs' included (older states recorded none: this run's time then)
    wall = sum(r.get("wall_s", 0.0) for r in history) if all("wall_s" in r for r in history) else None
    return {"history": history, "wall_s": wall if wall is not None else time.perf_counter() - t_start}


def use_amp(cfg: ExperimentConfig, device: torch.device) -> bool:
    """bf16 autocast for training: on a GPU unless ``amp: false``, on a CPU only with ``cpu_amp: true``."""
    return (cfg.amp and device.type == "cuda") or (cfg.cpu_amp and device.type == "cpu")


def _precise_norms(model, train_ds, cfg, oc: OptimConfig, device, amp: bool, epoch: int) -> None:
    if oc.norm_samples:
        stats = loader(train_ds, oc.batch_size, True, cfg.seed + 10_000 + epoch, cfg.workers)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            recalibrate_norms(model, (to_model_input(x, device) for x, _ in stats), oc.norm_samples)


@torch.no_grad()
def recalibrate_norms(model: Backbone, batches, samples: int) -> None:
    """Precise BN: replace every norm's running statistics by the exact average of the batch
    statistics over ``samples`` training samples, with the weights as they now are.

    Why: the moving averages (momentum 0.1) describe the weights of the last ~10 steps, and a
    newly inserted bottleneck's norms start from mean 0 / variance 1. After a short fine-tune the
    decoder's running variance can stay orders of magnitude above its input's, so in eval mode it
    barely fires and the model collapses to one class while training accuracy looks fine.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train().set_step_mode("m" if model.spiking else "s")
    seen = 0
    for x in batches:
        model(x)
        model.reset_state()
        seen += x.shape[1] if x.dim() == 5 else x.shape[0]
        if seen >= samples:
            break
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum


def warm_bottleneck(
    model: CoInferenceModel, batches, samples: int, *, lr: float = 1e-3, amp: bool = False, progress: bool = True
) -> dict:
    """Train only the new encoder and decoder to reproduce the feature at the cut (MSE), for
    ``samples`` training samples; every other weight stays as trained.

    Why: inserted at random, the bottleneck hands the tail noise, and end-to-end fine-tuning
    spends its first epochs (all a CPU budget allows) recovering the backbone. The feature to
    reproduce is the encoder's own input, so no teacher pass is needed and the head runs
    without gradients: far cheaper per sample than a fine-tuning step.
    """
    e = model.names().index("encoder")
    head, code = model.slice(0, e), model.slice(e, e + 2)
    params = list(code.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    model.train().set_step_mode("m" if model.spiking else "s")
    device = params[0].device
    seen, first, last, t0 = 0, None, 0.0, time.perf_counter()
    bar = tqdm(total=samples, desc="bottleneck warm-up", leave=False, disable=not progress or not sys.stderr.isatty())
    for x in batches:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            with torch.no_grad():
                feature = head(x)
            loss = F.mse_loss(code(feature).float(), feature.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.reset_state()
        n = x.shape[1] if x.dim() == 5 else x.shape[0]
        seen, last = seen + n, loss.item()
        first = last if first is None else first
        bar.update(n)
        bar.set_postfix(mse=f"{last:.4f}", refresh=False)
        if seen >= samples:
            break
    bar.close()
    return {"samples": seen, "mse_first": first, "mse_last": last, "wall_s": time.perf_counter() - t0}


def freeze_head(model: CoInferenceModel) -> None:
    """Keep every stage before the encoder as the backbone trained it (no gradients, no updates)."""
    for p in model.slice(0, model.names().index("encoder")).parameters():
        p.requires_grad_(False)


def freeze_tail(model: CoInferenceModel, split_points: list[str], blocks: int) -> None:
    """Keep every stage after the first ``blocks`` blocks behind the decoder as the backbone trained
    it, classifier included: those weights then equal the backbone's, so a zoo delta leaves them
    out (a few hundred kB instead of the whole tail). Their norms' running statistics still follow."""
    tail = BlockTaps.tail_blocks(model, split_points, "finetune.tune_blocks", hint="")
    if blocks >= len(tail):
        raise NeucodexError(
            f"finetune.tune_blocks={blocks}: only {len(tail)} blocks follow the cut at {model.point} "
            f"({', '.join(tail)}); give fewer, or 0 to train them all"
        )
    names = model.names()
    for p in model.slice(names.index(tail[blocks]), len(names)).parameters():
        p.requires_grad_(False)


def _data_meta(cfg: ExperimentConfig) -> dict:
    spec = dataset_spec(cfg.data.name)
    return {
        "name": spec.name,
        "kind": spec.kind,
        "root": cfg.data.root,
        "size": cfg.data.size or spec.default_size,
        "seed": cfg.seed,
    }


def _builder_kwargs(cfg: ExperimentConfig, classes: int, T: int | None = None) -> dict:
    spec = dataset_spec(cfg.data.name)
    return {
        "num_classes": classes,
        "in_channels": spec.channels,
        "input_size": cfg.data.size or spec.default_size,
        "T": T or cfg.model.T,
        "spiking": cfg.model.spiking,
        **cfg.model.kwargs,
    }


def _num_classes(ds: Dataset) -> int:
    base = ds.dataset if isinstance(ds, TorchSubset) else ds
    return len(base.classes)  # type: ignore[attr-defined]


@dataclass
class TrainResult:
    """What a training step produced: the checkpoint, its test figures and the epoch history."""

    checkpoint: str
    model_id: str
    test_accuracy: float
    test_accuracy_at_t: list[float]
    val_accuracy: float | None
    epochs: int
    wall_s: float
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"backbone: test accuracy {self.test_accuracy:.2f}% after {self.epochs} epochs in {self.wall_s:.1f} s "
            f"→ {self.checkpoint}"
        )


@dataclass
class FinetuneResult(TrainResult):
    """A co-inference fine-tune: also the backbone's accuracy at the same T and real-packet bits."""

    point: str = ""
    bottleneck: str = ""
    T: int = 1
    backbone_test_accuracy: float = 0.0
    backbone_val_accuracy: float = 0.0
    val_accuracy_final: float = 0.0
    bits: BitReport | None = None
    code_models: dict | None = None  # the learned entropy models' floors on the training images

    @property
    def drop(self) -> float:
        return self.backbone_test_accuracy - self.test_accuracy

    @property
    def val_drop(self) -> float:
        return self.backbone_val_accuracy - self.val_accuracy_final

    def to_dict(self) -> dict:
        d = asdict(self)
        d["bits"] = self.bits.to_dict() if self.bits else None
        return {**d, "drop": self.drop, "val_drop": self.val_drop}

    def summary(self) -> str:
        b = self.bits
        return (
            f"co-inference: test accuracy {self.test_accuracy:.2f}% after {self.epochs} epochs in "
            f"{self.wall_s:.1f} s (backbone {self.backbone_test_accuracy:.2f}%, drop {self.drop:.2f} pp); "
            f"{b.payload_bits:.0f} payload bits / {b.wire_bytes:.0f} wire bytes per sample, "
            f"{b.vs_spikes or 0:.0f}x vs spikes, {b.vs_float32:.0f}x vs float32, {b.vs_input:.0f}x vs 8-bit input"
            f" → {self.checkpoint}"
        )


# --- the two steps ---------------------------------------------------------------------------


def init_from(model: Backbone, checkpoint: str | Path, scale: float = 1.0) -> None:
    """Start from the weights of a checkpoint of the same architecture — typically its DNN twin
    (hybrid training: the SNN inherits the ANN's features and is fine-tuned with surrogate
    gradients). ``scale`` multiplies every norm's weight and bias, so that LIF neurons, which need
    a membrane input above ``v_threshold`` to fire, start firing about where the ReLUs were active.
    """
    ck = load_checkpoint(checkpoint)
    if ck.info.model.name != model.arch:
        raise CheckpointError(f"--set model.init_from: {checkpoint} holds {ck.info.model.name}, not {model.arch}")
    load_weights(model, ck.model.state_dict(), str(checkpoint))
    if scale != 1.0:
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
                    m.weight.mul_(scale)
                    m.bias.mul_(scale)


def continue_from(model: CoInferenceModel, spec: ModelSpec, checkpoint: str | Path) -> None:
    """Start a fine-tune from a co-inference checkpoint with the same backbone and cut (e.g. a
    zoo entry, to train it longer or under another recipe) instead of a new bottleneck."""
    ck = load_checkpoint(checkpoint)
    theirs = ck.info.model
    if not theirs.coinference:
        raise CheckpointError(
            f"--set finetune.init_from: {checkpoint} holds a backbone; give a co-inference checkpoint"
        )
    if (theirs.name, theirs.point, theirs.bottleneck, theirs.T) != (spec.name, spec.point, spec.bottleneck, spec.T):
        raise CheckpointError(
            f"--set finetune.init_from: {checkpoint} is {theirs.name} cut at {theirs.point} with {theirs.bottleneck} "
            f"at T={theirs.T}, not {spec.name} at {spec.point} with {spec.bottleneck} at T={spec.T}"
        )
    load_weights(model, ck.model.state_dict(), str(checkpoint))


def _teacher(spec: ModelSpec, ck) -> Backbone:
    """A frozen copy of the backbone (the co-inference model shares, and trains, the original's
    tail)."""
    teacher = spec.build()
    teacher.load_state_dict(ck.model.state_dict())
    teacher.requires_grad_(False)
    return teacher


def _pretrain_teacher(oc: OptimConfig, model: Backbone) -> Backbone | None:
    """The frozen model a backbone distils from — typically its DNN twin, whose accuracy the SNN
    started from and falls short of (hybrid training with the twin's soft labels)."""
    if not oc.distill and not oc.teacher:
        return None
    if not oc.teacher:
        raise ConfigError("optim.distill needs optim.teacher: the checkpoint to distil from (e.g. its DNN twin)")
    if not oc.distill:
        raise ConfigError("optim.teacher is only used with optim.distill > 0 (the weight of its KL): set both")
    ck = load_checkpoint(oc.teacher)
    teacher = ck.model
    if ck.info.is_coinference:
        raise CheckpointError(f"optim.teacher: {oc.teacher} holds a co-inference model; give a backbone")
    if teacher.num_classes != model.num_classes or (teacher.spiking and teacher.T != model.T):
        raise CheckpointError(
            f"optim.teacher: {oc.teacher} gives {teacher.num_classes} classes at T={teacher.T}, the model "
            f"{model.num_classes} classes at T={model.T}: give a teacher with both the same (a DNN's T may differ)"
        )
    return teacher.requires_grad_(False)


def pretrain(
    cfg: ExperimentConfig, *, resume: bool = False, progress: bool = True, out: Path | None = None
) -> TrainResult | None:
    """Step 1: train the backbone; checkpoint in ``<run>/backbone``; its figures (None off rank 0)."""
    seed_everything(cfg.seed)
    train_ds, val_ds, test_ds = (load_split(cfg, s) for s in ("train", "val", "test"))
    kwargs = _builder_kwargs(cfg, _num_classes(train_ds))
    model = create_model(cfg.model.name, **kwargs)
    if cfg.model.init_from and not (resume and (Path(out or cfg.run_dir / "backbone") / "train_state.json").exists()):
        init_from(model, cfg.model.init_from, cfg.model.init_scale)
    out = Path(out) if out else cfg.run_dir / "backbone"
    teacher = _pretrain_teacher(cfg.optim, model)
    result = fit(
        model,
        ModelSpec.of(model, kwargs),
        cfg,
        cfg.optim,
        train_ds,
        val_ds,
        out,
        resume=resume,
        progress=progress,
        teacher=teacher,
    )
    fields = _finish(model, cfg, out, test_ds, result, extra={})
    return TrainResult(**fields) if fields else None


def collapse_warning(test_accuracy: float, train_accuracy: float | None, classes: int) -> str:
    """Non-empty when a model evaluates near chance while it trained well above it (eval-mode
    collapse): such a checkpoint must not be stored silently."""
    chance = 100.0 / max(classes, 1)
    if train_accuracy is None or test_accuracy > 1.5 * chance or train_accuracy < 2.5 * chance:
        return ""
    return (
        f"test accuracy {test_accuracy:.1f}% is near chance ({chance:.1f}%) while training accuracy was "
        f"{train_accuracy:.1f}%: the model collapses in eval mode; check the norms' running statistics "
        f"(optim.norm_samples) before using it"
    )


def _finish(model: Backbone, cfg: ExperimentConfig, out: Path, test_ds: Dataset, result: dict, extra: dict) -> dict:
    """Evaluate on test and store the final metrics in the checkpoint (rank 0 only; else {})."""
    rank, _ = distributed()
    if rank != 0:
        return {}
    device = resolve_device(cfg.device)
    test = loader(test_ds, cfg.optim.batch_size, False, cfg.seed, cfg.workers)
    ev = evaluate(model, test, device)
    history = result["history"]
    fields = {
        "test_accuracy": ev["accuracy"],
        "test_accuracy_at_t": ev["accuracy_at_t"],
        "val_accuracy": history[-1]["val_accuracy"] if history else None,
        "epochs": len(history),
        "wall_s": result["wall_s"],
        "history": history,
    }
    metrics = {**fields, **{k: (v.to_dict() if isinstance(v, BitReport) else v) for k, v in extra.items()}}
    warning = collapse_warning(ev["accuracy"], history[-1]["train_accuracy"] if history else None, model.num_classes)
    if warning:
        metrics["warning"] = warning
        print(f"neucodex: WARNING: {warning} ({out})", file=sys.stderr)
    info = update_info(out, config=cfg.to_dict(), dataset=_data_meta(cfg), metrics=metrics)
    return {**fields, **extra, "checkpoint": str(out), "model_id": info.sha256}


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
    baselines: dict | None = None,
) -> FinetuneResult | None:
    """Step 2: insert the bottleneck after ``point`` and fine-tune everything together.

    Reports the backbone's and the co-inference model's test accuracy at the same T, the drop,
    and bits per sample measured from real packets on the test split. ``baselines``: a dict
    kept across calls on the same backbone and config (a sweep), so the backbone's own test and
    validation accuracy at each T is evaluated once, not once per configuration.
    """
    seed_everything(cfg.seed)
    ck = load_checkpoint(backbone_dir)
    if ck.info.is_coinference:
        raise CheckpointError(f"{backbone_dir} already holds a co-inference model; fine-tune from a backbone")
    T = T or ck.info.model.T
    spec = ck.info.model.with_T(T)
    backbone = spec.build()
    backbone.load_state_dict(ck.model.state_dict())
    cfg = replace(cfg, model=replace(cfg.model, T=T))
    train_ds, val_ds, test_ds = (load_split(cfg, s, T) for s in ("train", "val", "test"))
    device = resolve_device(cfg.device)
    test = loader(test_ds, cfg.finetune.batch_size, False, cfg.seed, cfg.workers)
    val = loader(val_ds, cfg.finetune.batch_size, False, cfg.seed, cfg.workers)
    model = CoInferenceModel(backbone, point, bottleneck)  # shares the backbone's modules, changes none
    oc = cfg.finetune
    if oc.teacher:
        raise ConfigError("finetune.teacher: fine-tuning distils from its backbone; leave finetune.teacher unset")
    _check_timestep_weights(oc, T, "finetune")  # refused now, not after the baselines
    if oc.edge_rate_penalty and oc.freeze_head:
        raise ConfigError(
            "finetune.edge_rate_penalty thins the edge head's spikes, but finetune.freeze_head keeps the head "
            "as the backbone's: add --set finetune.freeze_head=false"
        )
    if oc.feature_distill:
        BlockTaps.tail_blocks(model, backbone.split_points)  # refused now, not after the baselines
    if oc.tune_blocks:
        freeze_tail(model, backbone.split_points, oc.tune_blocks)  # refused now as well
    backbone.to(device)
    baselines = {} if baselines is None else baselines
    key = (ck.model_id, T)
    if key not in baselines:
        baselines[key] = (evaluate(backbone, test, device)["accuracy"], evaluate(backbone, val, device)["accuracy"])
    base_test, base_val = baselines[key]
    out = Path(out) if out else cfg.run_dir / f"coinference-{point}-{model.config.name}-T{T}"
    meta = {"backbone": {"sha256": ck.model_id, "path": str(backbone_dir)}}
    if oc.init_from and not (resume and (out / "train_state.json").exists()):
        continue_from(model, spec.with_bottleneck(point, model.config), oc.init_from)
        meta["extra"] = {"init_from": oc.init_from}
    if oc.freeze_head:
        freeze_head(model)
    if oc.bottleneck_samples and not (resume and (out / "train_state.json").exists()):
        model.to(device)
        batches = (
            to_model_input(x, device)
            for epoch in range(1 + oc.bottleneck_samples // max(1, len(train_ds)))
            for x, _ in loader(train_ds, oc.batch_size, True, cfg.seed + epoch, cfg.workers)
        )
        amp = use_amp(cfg, device)
        w = warm_bottleneck(model, batches, oc.bottleneck_samples, amp=amp, progress=progress)
        meta.setdefault("extra", {})["bottleneck_warmup"] = w
        if progress:
            tqdm.write(
                f"bottleneck warm-up: {w['samples']} samples, feature MSE {w['mse_first']:.4f} → "
                f"{w['mse_last']:.4f}, {w['wall_s']:.0f} s",
                file=sys.stderr,
            )
    result = fit(
        model,
        spec.with_bottleneck(point, model.config),
        cfg,
        cfg.finetune,
        train_ds,
        val_ds,
        out,
        resume=resume,
        progress=progress,
        meta=meta,
        teacher=_teacher(spec, ck) if oc.distill or oc.feature_distill else None,
    )
    models = None
    if model.spiking:  # learned entropy models: counted on the training images, as deployed
        plain = loader(
            load_split(replace(cfg, data=replace(cfg.data, train_augment=False)), "train", T),
            cfg.finetune.batch_size,
            False,
            cfg.seed,
            cfg.workers,
        )
        models = fit_code_models(model, (to_model_input(x, device) for x, _ in plain))
        update_info(out, channel_probs=models.channel_probs.tolist(), context_probs=models.context_probs.tolist())
    bits = measure_bits_batches(
        model,
        (to_model_input(x, device) for x, _ in test),
        channel_probs=None if models is None else models.channel_probs,
        context_probs=None if models is None else models.context_probs,
    )
    val_acc = evaluate(model, val, device)["accuracy"]
    extra = {
        "point": point,
        "bottleneck": model.config.name,
        "T": T,
        "backbone_test_accuracy": base_test,
        "backbone_val_accuracy": base_val,
        "val_accuracy_final": val_acc,
        "bits": bits,
    }
    if models is not None:
        extra["code_models"] = {
            "h_context_bits": models.h_context_bits,
            "h_channel_bits": models.h_channel_bits,
            "samples": models.samples,
        }
    fields = _finish(model, cfg, out, test_ds, result, extra)
    return FinetuneResult(**fields) if fields else None
