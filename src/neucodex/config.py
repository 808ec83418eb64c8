"""Experiment configuration: a YAML file (or a preset) with every field overridable."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path

import yaml

from .errors import NeucodexError


class ConfigError(NeucodexError):
    """A configuration file or override that cannot be used."""


@dataclass
class ModelConfig:
    name: str = "vgg-tiny"
    T: int = 4
    spiking: bool = True
    kwargs: dict = field(default_factory=dict)  # more builder options: widths, tau, v_threshold, norm…
    init_from: str | None = None  # a checkpoint of the same model (e.g. its DNN twin) to start from
    init_scale: float = 1.0  # × every norm's weight and bias after init_from (DNN → SNN: fire like ReLU)


@dataclass
class DataConfig:
    name: str = "digits"
    root: str | None = None
    size: int | None = None
    train_augment: bool = True
    augment: str = "crop"  # train augmentation: crop, strong (resized crop, jitter) or nda (event frames)
    download: bool = False
    cache_dir: str | None = None
    limit: int | None = None  # cap on samples per split (quick runs, tests)


@dataclass
class OptimConfig:
    name: str = "adamw"  # adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    epochs: int = 10
    batch_size: int = 64
    warmup_epochs: int = 0
    per_timestep_loss: bool = False  # TET-style: CE of every timestep's cumulative output
    timestep_weights: list[float] | None = None  # with it: each timestep's weight in that loss (None: equal)
    grad_clip: float | None = None
    label_smoothing: float = 0.0
    code_rate_penalty: float = 0.0  # λ × firing rate of the bottleneck code: fewer spikes, fewer bits
    edge_rate_penalty: float = 0.0  # λ × the edge's SyOPs per dense op (head + encoder): less edge compute
    rate_penalty: float = 0.0  # λ × the code's bits per sample under its learned context model (rate–distortion)
    norm_samples: int = 2048  # after every epoch, norms' running statistics from this many samples (0: off)
    # fine-tuning only:
    bottleneck_samples: int = 0  # first train the new bottleneck alone to reproduce the cut's feature (0: off)
    bottleneck_lr_scale: float = 1.0  # the new encoder's and decoder's learning rate × this
    freeze_head: bool = False  # keep the edge head's weights as the backbone's (and skip its backward pass)
    tune_blocks: int = 0  # train only this many blocks after the cut; the rest keep the backbone's weights (0: all)
    distill: float = 0.0  # weight of the KL to the teacher's output (knowledge distillation; 0: off)
    teacher: str | None = None  # pretraining: the checkpoint distill pulls toward (fine-tuning: its backbone)
    distill_temperature: float = 2.0  # softens both outputs before that KL
    feature_distill: float = 0.0  # weight of the MSE from the tail's block outputs to the backbone's (hints; 0: off)
    init_from: str | None = None  # a co-inference checkpoint at the same cut to continue from (e.g. a zoo entry)


@dataclass
class CoInferenceConfig:
    point: str | None = None
    bottleneck: str | None = None  # e.g. "c8s4"


@dataclass
class SweepConfig:
    points: list[str] | None = None  # None: every split point
    bottlenecks: list[str] = field(default_factory=lambda: ["c8s4", "c4s4", "c2s4", "c16s2"])
    T: list[int] | None = None  # None: the model's T
    tolerance: float = 3.0  # accuracy drop allowed, percentage points (SpikeBottleNet: 3%)
    goal: str = "bits"  # how the best partition is picked


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # bf16 autocast on GPU
    cpu_amp: bool = False  # bf16 autocast on CPU too (about 2x on CPUs with AVX512-BF16; training only)
    workers: int = 0
    out: str = "runs"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    finetune: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=5))
    coinference: CoInferenceConfig = field(default_factory=CoInferenceConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / self.name


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown field {where + '.' if where else ''}{unknown[0]}; fields here: {', '.join(known)}")
    kwargs = {}
    hints = typing.get_type_hints(cls)
    for k, v in data.items():
        key = f"{where}.{k}" if where else k
        default = known[k].default_factory() if known[k].default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            kwargs[k] = _build(type(default), v, key)
        else:
            kwargs[k] = _typed(v, hints[k], key)
    obj = cls(**kwargs)
    for k, (lo, hi) in _RANGES.items():
        section, _, name = k.rpartition(".")
        if type(obj).__name__ == section and getattr(obj, name) is not None and not lo <= getattr(obj, name) <= hi:
            raise ConfigError(f"{where + '.' if where else ''}{name} must be in {lo}..{hi}, got {getattr(obj, name)}")
    return obj


_RANGES = {
    "ModelConfig.T": (1, 64),
    "ModelConfig.init_scale": (1e-3, 1e3),
    "DataConfig.size": (1, 4096),
    "DataConfig.limit": (1, 10**9),
    "OptimConfig.lr": (0.0, 100.0),
    "OptimConfig.weight_decay": (0.0, 10.0),
    "OptimConfig.momentum": (0.0, 1.0),
    "OptimConfig.epochs": (0, 100_000),
    "OptimConfig.batch_size": (1, 1 << 20),
    "OptimConfig.warmup_epochs": (0, 100_000),
    "OptimConfig.label_smoothing": (0.0, 1.0),
    "OptimConfig.code_rate_penalty": (0.0, 1e6),
    "OptimConfig.edge_rate_penalty": (0.0, 1e6),
    "OptimConfig.rate_penalty": (0.0, 1e6),
    "OptimConfig.norm_samples": (0, 10**9),
    "OptimConfig.bottleneck_samples": (0, 10**9),
    "OptimConfig.bottleneck_lr_scale": (0.0, 1e4),
    "OptimConfig.distill": (0.0, 1.0),
    "OptimConfig.distill_temperature": (1e-2, 100.0),
    "OptimConfig.feature_distill": (0.0, 1e6),
    "OptimConfig.tune_blocks": (0, 10**6),
    "SweepConfig.tolerance": (-1e6, 100.0),
    "ExperimentConfig.workers": (0, 1024),
}
"""Ranges of numeric fields: a value outside is refused with the key's name."""


def _typed(value: typing.Any, hint: typing.Any, key: str) -> typing.Any:
    """``value`` checked against the field's annotation (ints accepted where floats are)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _typed(value, inner[0], key) if len(inner) == 1 else value
    want = origin or hint
    if want is float and isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
        list: isinstance(value, list),
        dict: isinstance(value, dict),
    }.get(want, True)
    if not ok:
        name = {
            bool: "true or false",
            int: "an integer",
            float: "a number",
            str: "a string",
            list: "a list",
            dict: "a mapping",
        }[want]
        raise ConfigError(f"{key} must be {name}, got {value!r}")
    if want is float:
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
    if want is list and args:
        return [_typed(v, args[0], f"{key}[]") for v in value]
    return value


def from_dict(data: dict) -> ExperimentConfig:
    return _build(ExperimentConfig, data, "")


def presets() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("neucodex.presets").iterdir() if p.name.endswith(".yaml"))


def load_config(source: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """A preset name or a YAML path (default: the ``tiny`` preset), then ``a.b=value`` overrides."""
    source = source or "tiny"
    path = Path(source)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {path} not found")
        text, where = path.read_text(), str(path)
    elif str(source) in presets():
        text, where = (resources.files("neucodex.presets") / f"{source}.yaml").read_text(), f"preset {source}"
    else:
        raise ConfigError(f"{source!r} is neither a YAML file nor a preset ({', '.join(presets())})")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{where} is not valid YAML: {str(e).splitlines()[0]}") from None
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like section.field=value")
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p} is not a section")
        node[leaf] = yaml.safe_load(value)
    return from_dict(data)
