"""The report's figures, typed: what ``report.json`` holds, and what markdown, plots and the demo read.

One dataclass per group of figures; :meth:`Report.to_json` writes plain JSON and
:meth:`Report.from_json` reads it back into the same objects (a report can be re-rendered without
re-measuring it). Per-profile figures are keyed by the hardware registry's names
(:data:`neucodex.profiles.HARDWARE`), so a registered profile appears in every table and plot.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..accounting import BitReport
from ..baselines import CodecPoint
from ..energy import CoInferenceEnergy
from ..latency import Timings
from ..profiles import HardwareProfile, RadioProfile


@dataclass
class Accuracy:
    """Accuracy (%) on the report's samples."""

    backbone: float
    co_inference_all_T: float
    co_inference_exit: float
    drop_vs_backbone: float  # backbone − co-inference with exit, pp


@dataclass
class SplitEnergy:
    """Edge energy up to every split point (SpikeBottleNet Table 3), per hardware profile."""

    scope: str
    snn: dict[str, list[dict]]  # profile → one row per split point
    dnn: dict[str, list[dict]]  # the DNN twin, likewise


@dataclass
class CloudOnly:
    """What cloud-only inference sends per sample in the latency and energy tables: the smallest
    image file at least as accurate as co-inference with exit, or the raw 8-bit input."""

    name: str
    bits: float
    accuracy: float | None  # the backbone on what the cloud decoded; None: raw input (the backbone's own)
    source: str


@dataclass
class FrameOverhead:
    ms: float
    source: str


@dataclass
class Report:
    """Every figure of ``neucodex report``."""

    run_dir: str
    checkpoint: str
    backbone: str
    model: dict
    dataset: str
    samples: int
    T: int
    policy: dict
    accuracy: Accuracy
    mean_steps: float
    exit_histogram: list[int]
    bits: dict[str, BitReport]  # "exit", "all_T"
    energy: dict[str, CoInferenceEnergy]  # profile → figures
    radio: RadioProfile
    hardware: dict[str, HardwareProfile]
    split_energy: SplitEnergy
    timings_ms: Timings
    frame_overhead: FrameOverhead
    device_factor: float
    latency: list[dict]  # one row per bandwidth (latency.latency_table)
    table1: list[dict]  # bits per split point, one row per checkpoint or sweep row
    cloud_only: CloudOnly
    codecs: list[CodecPoint] = field(default_factory=list)  # the codec curve on the same samples
    per_sample: list[dict] = field(default_factory=list)
    runtime: dict | None = None  # the live run's summary, when the run directory has one
    event_stream: dict | None = None  # event input: mean recording sizes (events, AER, gzip, frame bits)
    files: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["accuracy"] = asdict(self.accuracy)
        d["bits"] = {k: v.to_dict() for k, v in self.bits.items()}
        d["energy"] = {k: v.to_dict() for k, v in self.energy.items()}
        d["radio"] = self.radio.to_dict()
        d["hardware"] = {k: v.to_dict() for k, v in self.hardware.items()}
        d["split_energy"] = asdict(self.split_energy)
        d["timings_ms"] = self.timings_ms.to_dict()
        d["frame_overhead"] = asdict(self.frame_overhead)
        d["cloud_only"] = asdict(self.cloud_only)
        d["codecs"] = [p.to_dict() for p in self.codecs]
        return d

    @classmethod
    def from_json(cls, d: dict) -> Report:
        d = dict(d)
        d["accuracy"] = Accuracy(**d["accuracy"])
        d["bits"] = {k: _bits(v) for k, v in d["bits"].items()}
        d["energy"] = {k: CoInferenceEnergy(**v) for k, v in d["energy"].items()}
        d["radio"] = RadioProfile(**d["radio"])
        d["hardware"] = {k: HardwareProfile(**v) for k, v in d["hardware"].items()}
        d["split_energy"] = SplitEnergy(**d["split_energy"])
        d["timings_ms"] = Timings(**d["timings_ms"])
        d["frame_overhead"] = FrameOverhead(**d["frame_overhead"])
        d["cloud_only"] = CloudOnly(**d["cloud_only"])
        d["codecs"] = [CodecPoint(p["codec"], p["quality"], p["bytes_per_image"], p["accuracy"]) for p in d["codecs"]]
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


def _bits(d: dict) -> BitReport:
    """A :class:`BitReport` from its ``to_dict`` (the ratios are derived again; per-sample lists
    are not stored)."""
    return BitReport(**{f.name: d[f.name] for f in fields(BitReport) if f.name in d})
