"""Experiment configuration: a YAML file (or a preset) with every field overridable."""

from __future__ import annotations

import dataclasses
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
    grad_clip: float | None = None
    label_smoothing: float = 0.0
    code_rate_penalty: float = 0.0  # λ × firing rate of the bottleneck code: fewer spikes, fewer bits


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
    for k, v in data.items():
        default = known[k].default_factory() if known[k].default_factory is not dataclasses.MISSING else None
        kwargs[k] = _build(type(default), v, f"{where}.{k}" if where else k) if dataclasses.is_dataclass(default) else v
    return cls(**kwargs)


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
