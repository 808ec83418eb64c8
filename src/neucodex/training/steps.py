"""SpikeBottleNet §3.6's two steps: train the backbone, then insert the bottleneck at a split point
and fine-tune the whole model together (no separate encoder/decoder phase)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torch.utils.data import Subset as TorchSubset
from tqdm import tqdm

from ..accounting import BitReport, fit_code_models, measure_bits_batches
from ..bottleneck import CoInferenceModel
from ..checkpoint import CheckpointError, ModelSpec, load_checkpoint, update_info
from ..config import ConfigError, ExperimentConfig, OptimConfig
from ..data import dataset_spec, stratified
from ..evaluate import evaluate, load_split, loader, resolve_device, to_model_input
from ..exit import running_mean
from ..models import Backbone, create_model
from .env import data_meta, distributed, seed_everything, use_amp
from .hooks import BlockTaps
from .loop import fit
from .losses import check_timestep_weights
from .results import FinetuneResult, TrainResult, collapse_warning
from .start import continue_from, freeze_head, freeze_tail, init_from, warm_bottleneck


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


def scan_init_scale(cfg: ExperimentConfig, scales: list[float], samples: int = 256) -> dict[float, list[float]]:
    """Before a hybrid run: for each ``init_scale``, the val accuracy (%) after t = 1..T of the SNN
    started from ``model.init_from`` at that scale, on ``samples`` val samples stratified by class,
    norms on batch statistics as training starts. Too small a scale leaves the LIF neurons silent,
    too large saturates them; the best scale at t = T is the one to train from."""
    if not cfg.model.init_from:
        raise ConfigError("scanning init_scale needs model.init_from: the DNN twin the SNN starts from")
    if not cfg.model.spiking:
        raise ConfigError("init_scale scales a spiking model's firing; model.spiking is false")
    seed_everything(cfg.seed)
    val = load_split(cfg, "val")
    classes = _num_classes(val)
    x, y = next(iter(loader(stratified(val, samples, cfg.seed), samples, False, cfg.seed, 0)))
    device = resolve_device(cfg.device)
    x, y = to_model_input(x, device), y.to(device)
    accuracy = {}
    for scale in scales:
        model = create_model(cfg.model.name, **_builder_kwargs(cfg, classes))
        init_from(model, cfg.model.init_from, scale)
        model.to(device).train().set_step_mode("m")
        with torch.no_grad():
            logits = model(x)
        model.reset_state()
        accuracy[scale] = [100.0 * (c.argmax(-1) == y).float().mean().item() for c in running_mean(logits)]
    return accuracy


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
    info = update_info(out, config=cfg.to_dict(), dataset=data_meta(cfg), metrics=metrics)
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
    check_timestep_weights(oc, T, "finetune")  # refused now, not after the baselines
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
        extra["code_models"] = models.summary()
    fields = _finish(model, cfg, out, test_ds, result, extra)
    return FinetuneResult(**fields) if fields else None
