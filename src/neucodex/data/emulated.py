"""Emulated event datasets: an image set recorded once by the DVS emulator under a real dataset's
protocol, stored as ``.bin`` recordings that the real datasets' reader takes.

``cifar10-dvs-emu`` and ``n-caltech101-emu`` are stand-ins for CIFAR10-DVS and N-Caltech101, which
cannot be had offline here; they are named as emulated everywhere. ``build_emulated`` makes one
(``neucodex datasets build``): deterministic by seed (each recording's noise and threshold
mismatch are seeded by the seed and the image's name, so a build can stop and resume, in any order,
with any number of workers), with a ``manifest.json`` saying how it was made.
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..aer import read_bin, write_bin
from ..errors import InvalidArgumentError
from ..framing import PER_RECORDING
from .base import DatasetMissingError, DatasetSpec, missing, register_dataset
from .dvs import PROTOCOLS, Protocol
from .events import class_folder_split
from .images import IMAGE_SUFFIXES

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Emulated:
    """An emulated dataset: which protocol records which images."""

    name: str
    protocol: str
    source: str  # what --root must hold
    per_class: int | None  # images per class the real dataset has (None: all)
    exclude: tuple[str, ...] = ()


EMULATED: dict[str, Emulated] = {
    "cifar10-dvs-emu": Emulated(
        "cifar10-dvs-emu", "cifar10-dvs", "CIFAR-10 images: class folders, or a .tar/.tar.gz of <class>/<image>", 1000
    ),
    "n-caltech101-emu": Emulated(
        "n-caltech101-emu",
        "n-caltech101",
        "Caltech101 images: 101_ObjectCategories/<class>/*.jpg (a folder holding it, or it)",
        None,
        ("BACKGROUND_Google",),
    ),
}


def _sources(root: Path, exclude: tuple[str, ...]) -> list[tuple[str, str, object]]:
    """``(class, stem, bytes or path)`` of every image under ``root``: class folders, a folder
    holding ``101_ObjectCategories``, or a tar archive of ``…/<class>/<image>``."""
    if root.is_dir():
        if (root / "101_ObjectCategories").is_dir():
            root = root / "101_ObjectCategories"
        found = [
            (d.name.strip(), p.stem, p)
            for d in sorted(root.iterdir())
            if d.is_dir() and d.name.strip() not in exclude
            for p in sorted(d.iterdir())
            if p.suffix.lower() in IMAGE_SUFFIXES
        ]
    elif root.is_file():
        found = []
        with tarfile.open(root) as tar:
            for m in tar:
                parts = Path(m.name).parts
                if m.isfile() and m.name.lower().endswith(IMAGE_SUFFIXES) and len(parts) >= 2:
                    if parts[-2].strip() not in exclude:
                        found.append((parts[-2].strip(), Path(m.name).stem, tar.extractfile(m).read()))  # type: ignore[union-attr]
        found.sort(key=lambda f: (f[0], f[1]))
    else:
        return []
    return found


def _select(found: list, per_class: int | None, seed: int) -> list:
    """``per_class`` images of each class (seeded), or all; in class order."""
    if per_class is None:
        return found
    rng = np.random.default_rng(seed)
    out = []
    for c in sorted({f[0] for f in found}):
        members = [f for f in found if f[0] == c]
        keep = np.sort(rng.permutation(len(members))[:per_class])
        out += [members[i] for i in keep]
    return out


def _record(job: tuple) -> int:
    """One recording written (a worker's task); returns its event count."""
    protocol, data, dest, seed = job
    from PIL import Image

    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
        gray = np.asarray(im.convert("L"))
    events = protocol.record(gray, seed=seed)
    write_bin(dest, events)
    return len(events)


def _seed(seed: int, cls: str, stem: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(f"{cls}/{stem}".encode())) % (1 << 32)


def build_emulated(
    name: str,
    root: str | Path,
    out: str | Path,
    *,
    seed: int = 0,
    per_class: int | None = -1,
    workers: int = 1,
    progress: bool = True,
) -> dict:
    """Record ``root``'s images under ``name``'s protocol into ``out/<class>/<image>.bin``.

    Resumable: recordings already in ``out`` are kept; a build with other settings into the same
    folder is refused. ``per_class``: images per class (-1: the real dataset's count; None: all).
    Returns the manifest.
    """
    if name not in EMULATED:
        raise InvalidArgumentError(f"no emulated dataset {name!r}; choose from {', '.join(EMULATED)}")
    spec = EMULATED[name]
    protocol: Protocol = PROTOCOLS[spec.protocol]
    count = spec.per_class if per_class == -1 else per_class
    root, out = Path(root), Path(out)
    found = _sources(root, spec.exclude)
    if not found:
        raise DatasetMissingError(f"{name}: no images under {root}; --root must be {spec.source}")
    chosen = _select(found, count, seed)
    manifest = {
        "dataset": name,
        "emulated_from": spec.protocol,
        "protocol": asdict(protocol),
        "seed": seed,
        "per_class": count,
        "source": root.name,
        "recordings": len(chosen),
        "classes": sorted({c for c, _, _ in chosen}),
        "format": ".bin (40-bit events: N-MNIST / N-Caltech101)",
    }
    manifest = json.loads(json.dumps(manifest))  # as stored: tuples become lists
    out.mkdir(parents=True, exist_ok=True)
    path = out / MANIFEST
    if path.exists():
        old = json.loads(path.read_text())
        if {k: v for k, v in old.items() if k != "complete"} != manifest:
            raise InvalidArgumentError(
                f"{out} holds a build with other settings ({path}); give another --out, or delete it to rebuild"
            )
    path.write_text(json.dumps({**manifest, "complete": False}, indent=1))
    jobs = []
    for cls, stem, data in chosen:
        dest = out / cls / f"{stem}.bin"
        if not dest.exists():
            dest.parent.mkdir(exist_ok=True)
            jobs.append((protocol, data, dest, _seed(seed, cls, stem)))
    bar = tqdm(
        total=len(chosen),
        initial=len(chosen) - len(jobs),
        desc=f"recording {name}",
        unit="rec",
        disable=not progress or not sys.stderr.isatty(),
    )
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(_record, jobs, chunksize=4):
                bar.update()
    else:
        for job in jobs:
            _record(job)
            bar.update()
    bar.close()
    manifest["complete"] = True
    path.write_text(json.dumps(manifest, indent=1))
    return manifest


def _built(spec: DatasetSpec, root) -> Path:
    """The folder of a finished build, or the error saying how to make it."""
    if root is None:
        raise missing(spec, None, "")
    folder = Path(root)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise missing(spec, folder, "folder not found")
    if not path.is_file():
        raise missing(spec, folder, "no manifest.json: not a build of this dataset")
    manifest = json.loads(path.read_text())
    if manifest.get("dataset") != spec.name:
        raise missing(spec, folder, f"it holds a build of {manifest.get('dataset')}")
    if not manifest.get("complete"):
        raise DatasetMissingError(
            f"{spec.name}: {folder} is an unfinished build; run `neucodex datasets build {spec.name} "
            f"--root IMAGES --out {folder}` again to finish it"
        )
    return folder


def _loader(sensor: tuple[int, int, int] | None):
    def build(
        spec, split, root=None, T=4, size=None, seed=0, cache_dir=None, event_transform=None, train_augment=True,
        augment="crop", **_,
    ):  # fmt: skip
        return class_folder_split(
            spec, _built(spec, root), ".bin", read_bin, sensor, split, T=T, size=size, seed=seed,
            cache_dir=cache_dir, event_transform=event_transform, train_augment=train_augment, augment=augment,
        )  # fmt: skip

    return build


def _register(name: str, classes: int, default_size: int, samples: str, sensor) -> None:
    e = EMULATED[name]
    register_dataset(
        DatasetSpec(
            name,
            "events",
            2,
            classes,
            default_size,
            samples,
            f"ROOT = a folder made by `neucodex datasets build {name}`: <class>/<image>.bin (emulated "
            f"{e.protocol} protocol) and manifest.json",
            f"make it once: neucodex datasets build {name} --root IMAGES --out DIR (IMAGES: {e.source}); "
            "then pass --root DIR",
            _loader(sensor),
            sensor=sensor or PER_RECORDING,
        )
    )


_register("cifar10-dvs-emu", 10, 48, "10,000 emulated (1,000 per class; per-class 90/10 split, 10% val)", (128, 128, 2))
_register("n-caltech101-emu", 101, 64, "8,677 emulated in 101 classes (per-class 90/10 split, 10% val)", None)
