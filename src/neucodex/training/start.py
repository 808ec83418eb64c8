"""Where a run starts from and what it leaves alone: other checkpoints' weights, frozen stages,
and a warmed-up bottleneck."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..bottleneck import CoInferenceModel
from ..checkpoint import CheckpointError, ModelSpec, load_checkpoint, load_weights
from ..errors import NeucodexError
from ..models import Backbone
from .hooks import BlockTaps


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
