"""Checkpoints: weights in safetensors plus a JSON of config, data, metrics and a content hash.

A checkpoint is a directory::

    model.safetensors   the weights (and tdBN/BN running statistics)
    model.json          what the model is (builder kwargs, bottleneck), the experiment config, the
                        dataset, metrics, and ``sha256`` of model.safetensors — the model id
    train_state.*       optimiser/scheduler state for resuming (only while training)

Loading never unpickles anything: tensors come from safetensors, everything else from JSON.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .bottleneck import CoInferenceModel
from .errors import NeucodexError
from .models import Backbone, create_model

FORMAT = "neucodex-checkpoint"
VERSION = 1


class CheckpointError(NeucodexError):
    """A checkpoint that is missing, malformed, or does not fit."""


@dataclass
class Checkpoint:
    model: Backbone
    meta: dict = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return self.meta["sha256"]


def model_spec(model: Backbone, builder_kwargs: dict) -> dict:
    spec = {"name": model.arch, "kwargs": builder_kwargs, "coinference": None}
    if isinstance(model, CoInferenceModel):
        spec["coinference"] = {"point": model.point, "bottleneck": model.config.name}
    return spec


def build_from_spec(spec: dict) -> Backbone:
    try:
        model = create_model(spec["name"], **spec["kwargs"])
        if spec.get("coinference"):
            model = CoInferenceModel(model, spec["coinference"]["point"], spec["coinference"]["bottleneck"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint model description is unusable: {e}") from None
    return model


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(directory: str | Path, model: Backbone, spec: dict, **meta) -> dict:
    """Write ``model.safetensors`` + ``model.json`` atomically; returns the metadata written."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = d / "model.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(d / "model.safetensors")
    info = {"format": FORMAT, "version": VERSION, "model": spec, **meta, "sha256": sha256_file(d / "model.safetensors")}
    (d / "model.json.tmp").write_text(json.dumps(info, indent=1, default=str))
    (d / "model.json.tmp").replace(d / "model.json")
    return info


def read_meta(directory: str | Path) -> dict:
    d = Path(directory)
    if not (d / "model.json").is_file() or not (d / "model.safetensors").is_file():
        raise CheckpointError(f"no checkpoint at {d}: expected model.json and model.safetensors there")
    try:
        meta = json.loads((d / "model.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{d / 'model.json'} is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{d / 'model.json'} is not a neucodex checkpoint description")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"checkpoint version {meta.get('version')} is not supported (this reads {VERSION})")
    return meta


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model from its description and load the weights; verifies the content hash."""
    d = Path(directory)
    meta = read_meta(d)
    if sha256_file(d / "model.safetensors") != meta.get("sha256"):
        raise CheckpointError(f"{d / 'model.safetensors'} does not match the sha256 in model.json (changed or corrupt)")
    model = build_from_spec(meta["model"])
    try:
        state = load_file(str(d / "model.safetensors"))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{d / 'model.safetensors'} is not readable safetensors ({e})") from None
    load_weights(model, state, str(d))
    return Checkpoint(model.to(device).eval(), meta)


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Strict load with one clear line on any missing, unexpected or mis-shaped tensor."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise CheckpointError(f"weights in {where} do not fit the model ({what}; "
                              f"{len(missing)} missing, {len(unexpected)} unexpected)")
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise CheckpointError(f"weights in {where} do not fit the model: {k} is {tuple(v.shape)}, "
                                  f"model has {tuple(own[k].shape)}")
    model.load_state_dict(state)
