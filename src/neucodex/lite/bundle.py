"""An exported edge: ``edge.json`` (what an edge needs to know) beside the graph file(s) it names.

``edge.json`` holds the model id the cloud checks, T, the codec format and the learned
per-channel firing probabilities, the input (kind, shape, scaling, and for events the sensor
recordings are framed on), the code shape, the exit
policy, the neuron-state tensors of the ONNX graph, and the SHA-256 of every file it names —
so a missing or altered file is refused with one line before anything runs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import NeucodexError
from ..framing import PER_RECORDING
from ..policy import ExitPolicy

FORMAT = "neucodex-edge"
VERSION = 1
MANIFEST = "edge.json"
ONNX_FILE = "edge.onnx"
NIR_FILE = "edge.nir"


class BundleError(NeucodexError):
    """An exported edge directory is missing, incomplete, altered or not an edge export."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class EdgeBundle:
    """A verified edge export. ``policy`` is the checkpoint's exit policy as the server applies it."""

    directory: Path
    manifest: dict
    model_id: str
    T: int
    kind: str  # static | events
    input_shape: tuple[int, int, int]
    sensor: tuple[int, int, int] | str | None  # events: what recordings are framed on (neucodex.framing)
    code_shape: tuple[int, int, int]
    codec_format: str
    probs: np.ndarray | None
    context_probs: np.ndarray | None
    states: list[tuple[str, str, tuple[int, ...]]]  # (input name, output name, shape without batch)
    policy: ExitPolicy | None

    def path(self, name: str) -> Path:
        return self.directory / name


def _shape(value, key: str, n: int = 3) -> tuple[int, ...]:
    if not (isinstance(value, list) and len(value) == n and all(isinstance(v, int) and v > 0 for v in value)):
        raise BundleError(f"{MANIFEST}: {key} must be {n} positive integers, got {value!r}")
    return tuple(value)


def _sensor(value) -> tuple[int, ...] | str | None:
    if value is None or value == PER_RECORDING:
        return value
    return _shape(value, "input.sensor")


def load_bundle(directory: str | Path, need: str = ONNX_FILE) -> EdgeBundle:
    """Read and verify ``directory/edge.json`` and the file ``need`` it names (hash checked)."""
    d = Path(directory)
    if not d.is_dir():
        raise BundleError(f"no exported edge at {d} (make one with: neucodex export --checkpoint CK --out {d})")
    try:
        m = json.loads((d / MANIFEST).read_text())
    except FileNotFoundError:
        raise BundleError(f"{d} has no {MANIFEST}: not an exported edge (neucodex export writes one)") from None
    except (OSError, ValueError) as e:
        raise BundleError(f"{d / MANIFEST} is not readable JSON: {e}") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise BundleError(f"{d / MANIFEST} is not a neucodex edge manifest")
    if m.get("version") != VERSION:
        raise BundleError(f"{d / MANIFEST} is version {m.get('version')!r}; this edge reads version {VERSION}")
    files = m.get("files")
    if not isinstance(files, dict) or need not in files:
        raise BundleError(f"{d} holds no {need} (export it with --format {Path(need).suffix[1:]})")
    for name, digest in files.items():
        if not isinstance(name, str) or "/" in name or name.startswith("."):
            raise BundleError(f"{MANIFEST}: file name {name!r} is not a plain file name")
        f = d / name
        if not f.is_file():
            raise BundleError(f"{f} is missing (the export is incomplete: run neucodex export again)")
        if sha256(f) != digest:
            raise BundleError(f"{f} does not match the SHA-256 in {MANIFEST} (altered or corrupted: export again)")
    try:
        model_id, T, kind = str(m["model_id"]), m["T"], m["input"]["kind"]
        codec_cfg, states = m["codec"], m["states"]
        if not isinstance(T, int) or not 1 <= T <= 0xFFFF:
            raise BundleError(f"{MANIFEST}: T must be an integer in 1..65535, got {T!r}")
        if kind not in ("static", "events"):
            raise BundleError(f"{MANIFEST}: input kind must be 'static' or 'events', got {kind!r}")
        code_shape = _shape(m["code_shape"], "code_shape")
        probs = codec_cfg.get("channel_probs")
        if probs is not None:
            probs = np.asarray(probs, dtype=np.float64)
            if probs.shape != (code_shape[0],) or not np.all((probs > 0) & (probs < 1)):
                raise BundleError(f"{MANIFEST}: channel_probs must be {code_shape[0]} probabilities in (0, 1)")
        context = codec_cfg.get("context_probs")
        if context is not None:
            context = np.asarray(context, dtype=np.float64)
            if context.shape != (3, code_shape[0]) or not np.all((context > 0) & (context < 1)):
                raise BundleError(
                    f"{MANIFEST}: context_probs must be 3 rows of {code_shape[0]} probabilities in (0, 1)"
                )
        policy = m.get("exit_policy")
        if policy is not None:  # checked field by field, as a checkpoint's
            try:
                policy = ExitPolicy.from_dict(policy)
            except NeucodexError as e:
                raise BundleError(f"{MANIFEST}: {e}") from None
        bundle = EdgeBundle(
            directory=d,
            manifest=m,
            model_id=model_id,
            T=T,
            kind=kind,
            input_shape=_shape(m["input"]["shape"], "input.shape"),
            sensor=_sensor(m["input"].get("sensor")),
            code_shape=code_shape,
            codec_format=str(codec_cfg["format"]),
            probs=probs,
            context_probs=context,
            states=[(s["input"], s["output"], _shape(s["shape"], "states.shape")) for s in states],
            policy=policy,
        )
    except (KeyError, TypeError) as e:
        raise BundleError(f"{MANIFEST} lacks or mistypes field {e}: export again") from None
    return bundle


def write_manifest(directory: Path, manifest: dict, files: list[str]) -> Path:
    """Write ``edge.json`` with the SHA-256 of each of ``files`` (already in ``directory``)."""
    manifest = {"format": FORMAT, "version": VERSION, **manifest}
    manifest["files"] = {name: sha256(directory / name) for name in files}
    path = directory / MANIFEST
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path
