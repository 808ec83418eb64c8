"""Pretrained checkpoints shipped inside the package (the zoo), offline and hash-checked.

Each entry is a checkpoint directory ``pretrained/<name>/`` (fp16 safetensors + model.json);
``index.json`` pins the sha256 of both files, so an entry that was altered after it was added is
refused. Wherever a checkpoint directory is taken, ``zoo:<name>`` names an entry.

A co-inference entry ships only the tensors that differ from its backbone's entry
(``delta.safetensors``; with the head frozen at rb8, 0.8 of 6.4 MB). Its full weights are
rebuilt once into the cache and must hash to the entry's pinned ``sha256``, so the model id
is the same as if the whole file had shipped.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from ..cache import cache_root
from ..errors import NeucodexError, UnknownNameError

PREFIX = "zoo:"
HERE = Path(str(resources.files(__name__)))
INDEX = HERE / "index.json"
WEIGHTS = "model.safetensors"
DELTA = "delta.safetensors"
CHECK_SAMPLES = 200  # a fifth of the demo images: the suite re-measures every entry on these, at a fifth of the cost
WRITABLE = "set NEUCODEX_CACHE to a writable folder"
FROM_BASE = "from_base"  # the delta's metadata key: JSON list of the tensors taken from the base


DEMOS = {
    "cifar10-demo": ("zoo:cifar10-resnet18-v3", "zoo:cifar10-resnet18-v3-rb1-c16s2"),
    "nmnist-demo": ("zoo:nmnist-vgg11", "zoo:nmnist-vgg11-conv1-c8s2"),
    "caltech101-demo": ("zoo:caltech101-resnet18", "zoo:caltech101-resnet18-rb1-c16s2"),
    "cifar10-dvs-emu-demo": ("zoo:cifar10-dvs-emu-vgg11", "zoo:cifar10-dvs-emu-vgg11-conv1-c8s2"),
    "n-caltech101-emu-demo": ("zoo:n-caltech101-emu-vgg11", "zoo:n-caltech101-emu-vgg11-conv1-c8s2"),
}
"""The embedded demo sets and the (backbone, co-inference) entries ``neucodex demo`` runs on each."""
EVENT_DEMOS = {
    "nmnist": "nmnist-demo",
    "cifar10-dvs-emu": "cifar10-dvs-emu-demo",
    "n-caltech101-emu": "n-caltech101-emu-demo",
}
"""Event datasets whose shipped entries the demo runs: on the embedded set, or on the test split at --root."""
TRAINED_DEMOS = ("digits", "digits-dvs")
"""Datasets the demo trains a tiny model on first (nothing shipped)."""


class ZooError(NeucodexError):
    """A zoo entry that is unknown, missing or altered."""


@dataclass(frozen=True)
class ZooEntry:
    name: str
    kind: str  # backbone | coinference
    dataset: str
    model: str
    T: int
    point: str | None
    bottleneck: str | None
    accuracy_run: float | None  # % on its held-out test images, all T, as its run measured it (fp32, before fp16)
    sha256: str  # of model.safetensors: the model id
    json_sha256: str  # of model.json
    source: str  # how it was made (bench/RESULTS.md has the commands)
    demo: dict | None = None  # figures on the embedded demo images when added (the README's)
    base: str | None = None  # the entry whose tensors this one shares (then it ships DELTA, not WEIGHTS)
    delta_sha256: str | None = None  # of DELTA
    check: dict | None = None  # the same figures on CHECK_SAMPLES demo images (stratified): what the tests re-measure
    heldout: dict | None = None  # the weights as shipped on the held-out test images (publish.measure_heldout)
    figures: dict | None = None  # a co-inference entry's report figures on the demo images (publish.measure_figures)

    @property
    def accuracy(self) -> float | None:
        """The held-out accuracy to quote: as shipped where measured, else the run's (all T)."""
        return self.heldout["accuracy_all_t"] if self.heldout else self.accuracy_run

    def to_dict(self) -> dict:
        return asdict(self)


def _index() -> dict[str, ZooEntry]:
    if not INDEX.is_file():
        return {}
    return {d["name"]: ZooEntry(**d) for d in json.loads(INDEX.read_text())["entries"]}


def entries() -> list[ZooEntry]:
    return sorted(_index().values(), key=lambda e: e.name)


def is_zoo(ref: str | Path) -> bool:
    return str(ref).startswith(PREFIX)


def entry(name: str) -> ZooEntry:
    index = _index()
    if name not in index:
        raise UnknownNameError(f"no zoo entry {name!r}; available: {', '.join(sorted(index)) or 'none'}")
    return index[name]


def resolve(ref: str | Path) -> Path:
    """``zoo:<name>`` → its directory, every file checked against the index; a path as it is."""
    if not is_zoo(ref):
        return Path(ref)
    e = entry(str(ref)[len(PREFIX) :])
    d = HERE / e.name
    _check(e.name, d / "model.json", e.json_sha256)
    if e.base is None:
        _check(e.name, d / WEIGHTS, e.sha256)
        return d
    _check(e.name, d / DELTA, e.delta_sha256)
    return _rebuilt(e, d)


def _check(name: str, path: Path, want: str | None) -> None:
    if not path.is_file():
        raise ZooError(f"zoo entry {name} is missing {path.name}: reinstall neucodex")
    if sha256_file(path) != want:
        raise ZooError(f"zoo entry {name}: {path.name} does not match its sha256 in the index (altered); reinstall")


def _rebuilt(e: ZooEntry, shipped: Path) -> Path:
    """The directory in the cache holding ``e``'s full weights (base tensors + delta), built once."""
    try:
        out = cache_root() / "zoo" / f"{e.name}-{e.sha256[:16]}"
    except OSError as err:  # the message names the path
        raise ZooError(f"cannot write zoo:{e.name}'s weights in the cache ({err}); {WRITABLE}") from None
    if (out / WEIGHTS).is_file() and sha256_file(out / WEIGHTS) == e.sha256:
        if (out / "model.json").is_file() and sha256_file(out / "model.json") == e.json_sha256:
            return out
    from safetensors import safe_open
    from safetensors.numpy import load_file, save

    base = load_file(str(resolve(PREFIX + e.base) / WEIGHTS))
    with safe_open(str(shipped / DELTA), "np") as f:
        shared = json.loads((f.metadata() or {}).get(FROM_BASE, "[]"))
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if any(k not in base for k in shared):
        raise ZooError(f"zoo entry {e.name} needs tensors zoo:{e.base} does not have: reinstall neucodex")
    data = save({**{k: base[k] for k in shared}, **tensors})
    if hashlib.sha256(data).hexdigest() != e.sha256:
        raise ZooError(f"zoo entry {e.name}: its weights rebuilt on zoo:{e.base} do not match its sha256; reinstall")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, content in ((WEIGHTS, data), ("model.json", (shipped / "model.json").read_bytes())):
            tmp = out / f"{name}.{os.getpid()}.tmp"
            tmp.write_bytes(content)
            tmp.replace(out / name)
    except OSError as err:
        raise ZooError(f"cannot write zoo:{e.name}'s weights under {out} ({err}); {WRITABLE}") from None
    return out


def split_on_base(tensors: dict, base: dict) -> tuple[dict, list[str]]:
    """(the tensors that differ from ``base``, the names taken from it unchanged) — numpy arrays."""
    import numpy as np

    shared = sorted(
        k for k, v in tensors.items() if k in base and base[k].dtype == v.dtype and np.array_equal(base[k], v)
    )
    return {k: v for k, v in tensors.items() if k not in shared}, shared


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_index(items: list[ZooEntry]) -> None:
    INDEX.write_text(json.dumps({"entries": [e.to_dict() for e in sorted(items, key=lambda e: e.name)]}, indent=1))
