"""Checkpoints: weights in safetensors plus a JSON of config, data, metrics and a content hash.

A checkpoint is a directory::

    model.safetensors   the weights (and tdBN/BN running statistics)
    model.json          what the model is (builder kwargs, bottleneck), the experiment config, the
                        dataset, metrics, and ``sha256`` of model.safetensors — the model id
    train_state.*       optimiser/scheduler state for resuming (only while training)

This module owns ``model.json``: :class:`ModelSpec` and :class:`CheckpointInfo` are its typed,
validated form, and :func:`save_checkpoint` / :func:`update_info` are its only writers.
Loading never unpickles anything: tensors come from safetensors, everything else from JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .bottleneck import BottleneckConfig, CoInferenceModel
from .config import ConfigError, ExperimentConfig, from_dict
from .errors import NeucodexError
from .models import Backbone, create_model
from .policy import ExitPolicy
from .pretrained import is_zoo, resolve, sha256_file

FORMAT = "neucodex-checkpoint"
VERSION = 1

# Bounds a model description must keep: a tampered model.json must not make us build a giant.
_INT_BOUNDS = {"T": (1, 64), "num_classes": (1, 100_000), "input_size": (1, 1024), "in_channels": (1, 64)}
_MAX_WIDTH = 4096


class CheckpointError(NeucodexError):
    """A checkpoint that is missing, malformed, or does not fit."""


def _int(value: Any, key: str, lo: int, hi: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise CheckpointError(f"{where}: {key} must be an integer in {lo}..{hi}, got {value!r}")
    return value


@dataclass(frozen=True)
class ModelSpec:
    """What a checkpoint's model is: a registered builder, its keywords, and an optional cut."""

    name: str
    kwargs: dict = field(default_factory=dict)
    point: str | None = None
    bottleneck: str | None = None  # canonical name, e.g. c8s2k3

    @property
    def coinference(self) -> bool:
        return self.point is not None

    @property
    def spiking(self) -> bool:
        return bool(self.kwargs.get("spiking", True))

    @property
    def T(self) -> int:
        """Timesteps the model was built for (a DNN twin ignores it)."""
        return int(self.kwargs.get("T", 4))

    @property
    def steps(self) -> int:
        """Timesteps a sample takes: T for an SNN, 1 for a DNN."""
        return self.T if self.spiking else 1

    def with_T(self, T: int) -> ModelSpec:
        return replace(self, kwargs={**self.kwargs, "T": T})

    def with_bottleneck(self, point: str, bottleneck: str | BottleneckConfig) -> ModelSpec:
        cfg = bottleneck if isinstance(bottleneck, BottleneckConfig) else BottleneckConfig.parse(bottleneck)
        return replace(self, point=point, bottleneck=cfg.name)

    def build(self) -> Backbone:
        try:
            model = create_model(self.name, **self.kwargs)
            if self.coinference:
                model = CoInferenceModel(model, self.point, self.bottleneck)
        except (KeyError, TypeError, ValueError, NeucodexError) as e:
            raise CheckpointError(f"checkpoint model description is unusable: {e}") from None
        return model

    def to_dict(self) -> dict:
        cut = {"point": self.point, "bottleneck": self.bottleneck} if self.coinference else None
        return {"name": self.name, "kwargs": self.kwargs, "coinference": cut}

    @classmethod
    def of(cls, model: Backbone, builder_kwargs: dict) -> ModelSpec:
        if isinstance(model, CoInferenceModel):
            return cls(model.arch, builder_kwargs, model.point, model.config.name)
        return cls(model.arch, builder_kwargs)

    @classmethod
    def from_dict(cls, d: Any, where: str = "model.json") -> ModelSpec:
        """Validated: types and sizes are checked before anything is built."""
        if not isinstance(d, dict) or not isinstance(d.get("name"), str) or not isinstance(d.get("kwargs", {}), dict):
            raise CheckpointError(f"{where}: 'model' must be an object with a name and kwargs")
        kwargs = dict(d.get("kwargs", {}))
        for key, (lo, hi) in _INT_BOUNDS.items():
            if key in kwargs:
                _int(kwargs[key], f"model.kwargs.{key}", lo, hi, where)
        for key in ("spiking", "detach_reset"):
            if key in kwargs and not isinstance(kwargs[key], bool):
                raise CheckpointError(f"{where}: model.kwargs.{key} must be true or false, got {kwargs[key]!r}")
        widths = kwargs.get("widths")
        if widths is not None:
            if not isinstance(widths, list | tuple) or not widths:
                raise CheckpointError(f"{where}: model.kwargs.widths must be a list of integers")
            kwargs["widths"] = tuple(_int(w, "model.kwargs.widths[]", 1, _MAX_WIDTH, where) for w in widths)
        cut = d.get("coinference")
        if cut is None:
            return cls(d["name"], kwargs)
        if (
            not isinstance(cut, dict)
            or not isinstance(cut.get("point"), str)
            or not isinstance(cut.get("bottleneck"), str)
        ):
            raise CheckpointError(f"{where}: 'model.coinference' must name a point and a bottleneck")
        try:
            b = BottleneckConfig.parse(cut["bottleneck"])
        except (NeucodexError, ValueError) as e:
            raise CheckpointError(f"{where}: {e}") from None
        _int(b.channels, "bottleneck channels", 1, _MAX_WIDTH, where)
        _int(b.stride, "bottleneck stride", 1, 64, where)
        _int(b.kernel, "bottleneck kernel", 1, 15, where)
        return cls(d["name"], kwargs, cut["point"], b.name)


@dataclass
class CheckpointInfo:
    """``model.json``, typed. Unknown fields are kept as they are in ``extra``."""

    model: ModelSpec
    sha256: str = ""
    config: dict = field(default_factory=dict)
    dataset: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    backbone: dict | None = None  # {"sha256", "path"} of the backbone a co-inference model came from
    exit_policy: ExitPolicy | None = None
    channel_probs: list[float] | None = None  # learned per-channel firing probabilities of the code
    context_probs: list[list[float]] | None = None  # [3][C]: p(1) after a 0, after a 1, at timestep 0
    extra: dict = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return self.sha256

    @property
    def is_coinference(self) -> bool:
        return self.model.coinference

    @property
    def backbone_path(self) -> Path | str | None:
        """Where the backbone it was fine-tuned from is: a directory, or ``zoo:<name>``."""
        if not self.backbone:
            return None
        return self.backbone["path"] if is_zoo(self.backbone["path"]) else Path(self.backbone["path"])

    @property
    def probs(self) -> np.ndarray | None:
        """The learned channel probabilities as the codec takes them (None: none learned)."""
        return None if self.channel_probs is None else np.asarray(self.channel_probs, np.float64)

    @property
    def context(self) -> np.ndarray | None:
        """The learned context model ``[3, C]`` as the codec's ``context`` format takes it (None: none)."""
        return None if self.context_probs is None else np.asarray(self.context_probs, np.float64)

    @property
    def policy(self) -> ExitPolicy:
        """The stored early-exit policy, or never exit early when none was calibrated."""
        return self.exit_policy or ExitPolicy()

    def experiment(self) -> ExperimentConfig:
        """The experiment config it was trained with (data, seed, batch sizes…)."""
        try:
            return from_dict(self.config)
        except ConfigError as e:
            raise CheckpointError(f"model.json holds an unusable config: {e}") from None

    def to_dict(self) -> dict:
        d = {
            "format": FORMAT,
            "version": VERSION,
            "model": self.model.to_dict(),
            "config": self.config,
            "dataset": self.dataset,
            "metrics": self.metrics,
        }
        if self.backbone is not None:
            d["backbone"] = self.backbone
        if self.exit_policy is not None:
            d["exit_policy"] = self.exit_policy.to_dict()
        if self.channel_probs is not None:
            d["channel_probs"] = list(self.channel_probs)
        if self.context_probs is not None:
            d["context_probs"] = [list(row) for row in self.context_probs]
        return {**d, **self.extra, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, d: Any, where: str = "model.json") -> CheckpointInfo:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise CheckpointError(f"{where} is not a neucodex checkpoint description")
        if d.get("version") != VERSION:
            raise CheckpointError(f"checkpoint version {d.get('version')!r} is not supported (this reads {VERSION})")
        if "model" not in d:
            raise CheckpointError(f"{where} has no 'model' entry: it does not say what the weights are")
        for key in ("config", "dataset", "metrics"):
            if not isinstance(d.get(key, {}), dict):
                raise CheckpointError(f"{where}: '{key}' must be an object")
        backbone = d.get("backbone")
        if backbone is not None and (not isinstance(backbone, dict) or not isinstance(backbone.get("path"), str)):
            raise CheckpointError(f"{where}: 'backbone' must be an object with a path")
        policy = None
        if d.get("exit_policy") is not None:
            try:
                policy = ExitPolicy.from_dict(d["exit_policy"])
            except NeucodexError as e:
                raise CheckpointError(f"{where}: bad exit_policy: {e}") from None
        spec = ModelSpec.from_dict(d["model"], where)
        channels = BottleneckConfig.parse(spec.bottleneck).channels if spec.coinference else None
        probs = d.get("channel_probs")
        if probs is not None:
            ok = isinstance(probs, list) and all(_is_prob(p) for p in probs)
            if not ok or len(probs) != channels:
                raise CheckpointError(f"{where}: channel_probs must be one probability in (0, 1) per code channel")
        known = {"format", "version", "model", "config", "dataset", "metrics", "backbone", "exit_policy"}
        context = d.get("context_probs")
        if context is not None:
            ok = (
                isinstance(context, list)
                and len(context) == 3
                and all(isinstance(row, list) and len(row) == channels for row in context)
                and all(_is_prob(p) for row in context for p in row)
            )
            if not ok:
                raise CheckpointError(
                    f"{where}: context_probs must be 3 rows of one probability in (0, 1) per code channel"
                )
        known |= {"channel_probs", "context_probs", "sha256"}
        return cls(
            spec,
            str(d.get("sha256", "")),
            d.get("config", {}),
            d.get("dataset", {}),
            d.get("metrics", {}),
            backbone,
            policy,
            probs,
            context,
            {k: v for k, v in d.items() if k not in known},
        )


def _is_prob(p: Any) -> bool:
    return isinstance(p, int | float) and not isinstance(p, bool) and 0 < p < 1


@dataclass
class Checkpoint:
    model: Backbone
    info: CheckpointInfo

    @property
    def model_id(self) -> str:
        return self.info.sha256


def _write_info(d: Path, info: CheckpointInfo) -> None:
    (d / "model.json.tmp").write_text(json.dumps(info.to_dict(), indent=1, default=str))
    (d / "model.json.tmp").replace(d / "model.json")


def save_checkpoint(directory: str | Path, model: Backbone, spec: ModelSpec, **fields: Any) -> CheckpointInfo:
    """Write ``model.safetensors`` + ``model.json`` atomically; ``fields`` are CheckpointInfo's."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = d / "model.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(d / "model.safetensors")
    info = CheckpointInfo(spec, sha256_file(d / "model.safetensors"), **fields)
    _write_info(d, info)
    return info


def update_info(directory: str | Path, **fields: Any) -> CheckpointInfo:
    """Change fields of ``model.json`` (metrics, exit policy, …); the weights and their id stay."""
    d = Path(directory)
    info = read_info(d)
    extra = {k: fields.pop(k) for k in list(fields) if k not in CheckpointInfo.__dataclass_fields__}
    info = replace(info, **fields, extra={**info.extra, **extra})
    _write_info(d, info)
    return info


def read_info(directory: str | Path) -> CheckpointInfo:
    """``model.json`` of a checkpoint directory or of a zoo entry (``zoo:<name>``)."""
    d = resolve(directory)
    if not (d / "model.json").is_file() or not (d / "model.safetensors").is_file():
        raise CheckpointError(f"no checkpoint at {d}: expected model.json and model.safetensors there")
    try:
        raw = json.loads((d / "model.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{d / 'model.json'} is not valid JSON ({e})") from None
    return CheckpointInfo.from_dict(raw, str(d / "model.json"))


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model from its description and load the weights; verifies the content hash.

    ``directory`` may name a zoo entry, ``zoo:<name>`` (shipped with the package, offline)."""
    d = resolve(directory)
    info = read_info(d)
    if sha256_file(d / "model.safetensors") != info.sha256:
        raise CheckpointError(f"{d / 'model.safetensors'} does not match the sha256 in model.json (changed or corrupt)")
    model = info.model.build()
    try:
        state = load_file(str(d / "model.safetensors"))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{d / 'model.safetensors'} is not readable safetensors ({e})") from None
    load_weights(model, state, str(d))
    return Checkpoint(model.to(device).eval(), info)


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Strict load with one clear line on any missing, unexpected or mis-shaped tensor."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise CheckpointError(
            f"weights in {where} do not fit the model ({what}; {len(missing)} missing, {len(unexpected)} unexpected)"
        )
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise CheckpointError(
                f"weights in {where} do not fit the model: {k} is {tuple(v.shape)}, model has {tuple(own[k].shape)}"
            )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
