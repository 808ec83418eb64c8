"""What a run leaves after each epoch besides the weights: its curves and the state to resume from."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..checkpoint import CheckpointError

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


def save_train_state(d: Path, opt, sched, epoch: int, history: list) -> None:
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


def load_train_state(d: Path, opt, sched) -> tuple[int, list]:
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
