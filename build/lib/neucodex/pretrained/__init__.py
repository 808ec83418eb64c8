"""Pretrained checkpoints shipped inside the package (the zoo), offline and hash-checked.

Each entry is a checkpoint directory ``pretrained/<name>/`` (fp16 safetensors + model.json);
``index.json`` pins the sha256 of both files, so an entry that was altered after it was added is
refused. Wherever a checkpoint directory is taken, ``zoo:<name>`` names an entry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from ..errors import NeucodexError, UnknownNameError

PREFIX = "zoo:"
HERE = Path(str(resources.files(__name__)))
INDEX = HERE / "index.json"


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
    accuracy: float | None  # % on its held-out test images (all T, fp16 weights as shipped)
    sha256: str  # of model.safetensors: the model id
    json_sha256: str  # of model.json
    source: str  # how it was made (bench/RESULTS.md has the commands)
    demo: dict | None = None  # figures on the embedded demo images when added: the regression expectation

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
    """``zoo:<name>`` → its directory, both files checked against the index; a path as it is."""
    if not is_zoo(ref):
        return Path(ref)
    e = entry(str(ref)[len(PREFIX) :])
    d = HERE / e.name
    for file, want in (("model.safetensors", e.sha256), ("model.json", e.json_sha256)):
        if not (d / file).is_file():
            raise ZooError(f"zoo entry {e.name} is missing {file}: reinstall neucodex")
        if sha256_file(d / file) != want:
            raise ZooError(f"zoo entry {e.name}: {file} does not match its sha256 in the index (altered); reinstall")
    return d


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_index(items: list[ZooEntry]) -> None:
    INDEX.write_text(json.dumps({"entries": [e.to_dict() for e in sorted(items, key=lambda e: e.name)]}, indent=1))
