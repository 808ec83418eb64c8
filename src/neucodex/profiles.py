"""Hardware and radio profiles: what an operation and a transmitted bit cost, in a registry by name.

Torch-free, so that a CLI can offer the names as choices before PyTorch loads. Adding a profile is
one :func:`register_hardware` (or :func:`register_radio`) call; the energy figures, the report's
tables and plots, the demo and the CLIs loop over the registries, so it appears everywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from .errors import NeucodexError


@dataclass(frozen=True)
class HardwareProfile:
    """Energy per operation in picojoules: a multiply–accumulate (real-valued input) and an
    accumulate (a synaptic operation on a binary spike); ``label`` names it in tables."""

    name: str
    mac_pj: float
    ac_pj: float
    source: str = ""
    label: str = ""

    @property
    def title(self) -> str:
        return self.label or self.name

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RadioProfile:
    """Marginal transmit energy per bit (nanojoules), excluding idle and tail power."""

    name: str
    nj_per_bit: float
    source: str = ""

    def mj(self, bits: float) -> float:
        """The energy of sending ``bits``, in millijoules."""
        return bits * self.nj_per_bit * 1e-6

    def to_dict(self) -> dict:
        return asdict(self)


HARDWARE: dict[str, HardwareProfile] = {}
RADIOS: dict[str, RadioProfile] = {}


def register_hardware(profile: HardwareProfile) -> HardwareProfile:
    """Add ``profile`` to :data:`HARDWARE` (a name used twice is a mistake, not an override)."""
    if profile.name in HARDWARE:
        raise NeucodexError(f"a hardware profile named {profile.name!r} is already registered")
    HARDWARE[profile.name] = profile
    return profile


def register_radio(profile: RadioProfile) -> RadioProfile:
    """Add ``profile`` to :data:`RADIOS`."""
    if profile.name in RADIOS:
        raise NeucodexError(f"a radio named {profile.name!r} is already registered")
    RADIOS[profile.name] = profile
    return profile


register_hardware(
    HardwareProfile("45nm", 4.6, 0.9, "Horowitz, ISSCC 2014 (32-bit float, 45 nm), as SpikeBottleNet", "45 nm")
)
register_hardware(
    HardwareProfile(
        "rolls", 4.6, 0.077, "ROLLS, Qiao et al. 2015: 77 fJ per SyOP; real-input layers at 45 nm MAC cost", "ROLLS"
    )
)
register_radio(RadioProfile("wifi", 283.17, "Huang et al., MobiSys 2012: Wi-Fi uplink 283.17 mW/Mbps"))
register_radio(RadioProfile("lte", 438.39, "Huang et al., MobiSys 2012: LTE uplink 438.39 mW/Mbps"))
register_radio(RadioProfile("ble", 153.0, "Siekkinen et al., IEEE WCNC Workshops 2012: BLE ≈ 0.153 µJ/bit"))


def hardware_profile(name_or_file: str) -> HardwareProfile:
    """A registered profile (``45nm``, ``rolls``, …) or a YAML file with ``name``, ``mac_pj``, ``ac_pj``."""
    if name_or_file in HARDWARE:
        return HARDWARE[name_or_file]
    path = Path(name_or_file)
    if not path.is_file():
        raise NeucodexError(
            f"unknown hardware profile {name_or_file!r}: use {', '.join(HARDWARE)} or a YAML file "
            "with name, mac_pj, ac_pj"
        )
    try:
        d = yaml.safe_load(path.read_text())
        return HardwareProfile(
            str(d.get("name", path.stem)), float(d["mac_pj"]), float(d["ac_pj"]), str(d.get("source", path))
        )
    except (yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise NeucodexError(f"{path} is not a hardware profile (need mac_pj and ac_pj numbers): {e}") from None


def radio_profile(name: str) -> RadioProfile:
    """A registered radio by name."""
    if name not in RADIOS:
        raise NeucodexError(f"unknown radio {name!r}; choose from {', '.join(RADIOS)}")
    return RADIOS[name]
