"""The seeds' grid: backbone × dataset, one row per cell, from the zoo index alone.

NeuCODEX evaluates ResNet-18 and VGG-16 on CIFAR-10, Caltech101, CIFAR10-DVS and N-Caltech101.
Each cell here quotes its best shipped spiking backbone (held-out accuracy, as shipped) and its
best co-inference entry: the one that misses the fewest of NeuCODEX's targets, then sends the
fewest held-out payload bits. Bits, drop and the float32 ratio are held-out figures; energy and
latency are the entry's report figures on its demo images (``neucodex zoo --figures``). Cells the
zoo cannot fill yet are listed all the same, with what they miss and the next step.
"""

from __future__ import annotations

from dataclasses import dataclass

from .pretrained import ZooEntry, entries

FAMILIES = {"resnet18": "ResNet-18", "vgg16": "VGG-16", "vgg11": "VGG-11"}
TASKS = {
    "cifar10": "CIFAR-10",
    "caltech101": "Caltech101",
    "cifar10-dvs-emu": "CIFAR10-DVS (emulated)",
    "n-caltech101-emu": "N-Caltech101 (emulated)",
    "nmnist": "N-MNIST (real)",
}
SEED_TASKS = ("cifar10", "caltech101", "cifar10-dvs-emu", "n-caltech101-emu")
SEED_CELLS = [(f, t) for t in SEED_TASKS for f in ("resnet18", "vgg16")]
"""The cells NeuCODEX reports (its event datasets emulated here from the static images)."""

BACKBONE_TARGET = dict(zip((*SEED_TASKS, "nmnist"), (85.0, 70.0, 75.0, 65.0, 97.0), strict=True))
"""The issues' held-out accuracy targets for the spiking backbone of each dataset (%)."""

DROP_PP, VS_FLOAT32, SAVING, SPEEDUP = 2.0, 2048.0, 0.90, 3.0
"""The co-inference targets, NeuCODEX's claims: drop with exit, fewer bits than float32 at the cut,
edge compute saving against edge-only SNN (SpikeBottleNet's scope), latency against edge-only at 10 Mbit/s."""

PAPER = "the abstract (arXiv:2509.19156): claims over all its cells, none per cell"


def family(model: str) -> str:
    """``resnet18-half`` → ``resnet18``: the architecture, whatever its width."""
    return model.split("-")[0]


def task(e: ZooEntry) -> str:
    """The dataset an entry was trained for, named as its demo set is (``cifar10-demo`` → ``cifar10``);
    an entry's loader name (``imagefolder``) does not say which images it was."""
    demo = (e.check or e.demo or {}).get("dataset", e.dataset)
    return demo.removesuffix("-demo")


@dataclass(frozen=True)
class Cell:
    family: str
    task: str
    backbone: ZooEntry | None
    cut: ZooEntry | None
    cut_backbone: ZooEntry | None  # the cut's own backbone (the drop is against it)
    twin: ZooEntry | None = None  # the most accurate DNN twin (T=1) shipped for the cell

    @property
    def drop(self) -> float | None:
        return _drop(self.cut, self.cut_backbone) if self.cut else None

    @property
    def vs_float32(self) -> float | None:
        return _vs_float32(self.cut) if self.cut else None

    def gaps(self) -> list[tuple[str, str]]:
        """Each target this cell misses: (its kind, a key of :data:`NEXT_STEPS`; what and by how much)."""
        out = []
        target = BACKBONE_TARGET.get(self.task)
        acc = self.backbone.accuracy if self.backbone else None
        if acc is None and self.twin:
            out.append(("spiking", "no spiking backbone shipped (its DNN twin is)"))
        elif acc is None:
            out.append(("twin", "no spiking backbone shipped"))
        elif target and acc < target:
            out.append(("backbone", f"backbone {target - acc:.2f} pp below {target:g}%"))
        if self.cut is None:
            return out + [("cut", "no co-inference entry shipped")]
        return out + cut_gaps(self.cut, self.cut_backbone)

    def missed(self) -> list[str]:
        """Each target this cell misses, and by how much."""
        return [text for _, text in self.gaps()]

    def next_step(self) -> str:
        """What would close this cell's first gap, by the kind of gap."""
        gaps = self.gaps()
        return NEXT_STEPS[gaps[0][0]] if gaps else "–"


NEXT_STEPS = {
    "spiking": "train the SNN from the DNN twin (hybrid initialisation)",
    "twin": "train the DNN twin, then the SNN from it (`neucodex train --config <dataset>-<backbone>`)",
    "backbone": "more SNN epochs or distillation from the DNN twin",
    "cut": "`neucodex finetune` at an early cut, with hints, then `neucodex calibrate`",
    "drop": "more fine-tuning with hints (`finetune.feature_distill`) or a wider bottleneck",
    "bits": "rate–distortion fine-tuning (`finetune.rate_penalty`) or a narrower bottleneck",
    "figures": "`neucodex zoo --figures` on the entry",
    "energy": "an earlier cut or fewer timesteps (early exit)",
    "latency": "an earlier cut or fewer timesteps (early exit)",
}
"""What would close each kind of gap."""


def _drop(cut: ZooEntry, backbone: ZooEntry | None) -> float | None:
    if backbone is None or backbone.accuracy is None or not cut.heldout:
        return None
    return backbone.accuracy - cut.heldout["accuracy"]


def _vs_float32(cut: ZooEntry) -> float | None:
    f, h = cut.figures or {}, cut.heldout or {}
    return f["float32_bits"] / h["payload_bits"] if f and h.get("payload_bits") else None


def cut_gaps(cut: ZooEntry, backbone: ZooEntry | None) -> list[tuple[str, str]]:
    """The co-inference targets ``cut`` misses: (kind, what and by how much)."""
    out = []
    drop, ratio, f = _drop(cut, backbone), _vs_float32(cut), cut.figures
    if drop is not None and drop > DROP_PP:
        out.append(("drop", f"drop {drop - DROP_PP:.2f} pp over {DROP_PP:g}"))
    if ratio is not None and ratio < VS_FLOAT32:
        out.append(("bits", f"bits {VS_FLOAT32 / ratio:.1f}x too many for {VS_FLOAT32:g}x below float32"))
    if not f:
        return out + [("figures", "energy and latency not measured (neucodex zoo --figures)")]
    if f["edge_compute_saving_paper"] < SAVING:
        short = 100 * (SAVING - f["edge_compute_saving_paper"])
        out.append(("energy", f"edge compute saving {short:.1f} pp short"))
    if f["latency_speedup"]["10"] < SPEEDUP:
        out.append(("latency", f"latency {f['latency_speedup']['10']:.2f}x, not {SPEEDUP:g}x"))
    return out


def cut_misses(cut: ZooEntry, backbone: ZooEntry | None) -> list[str]:
    """The co-inference targets ``cut`` misses, each with by how much."""
    return [text for _, text in cut_gaps(cut, backbone)]


def cells(items: list[ZooEntry] | None = None) -> list[Cell]:
    """Every seed cell, then every other (backbone, dataset) the zoo holds, with its best entries:
    the spiking backbone most accurate on its held-out images, and the co-inference entry that
    misses the fewest targets, then sends the fewest held-out payload bits."""
    items = entries() if items is None else items
    by_name = {e.name: e for e in items}
    keys = list(SEED_CELLS)
    keys += sorted({(family(e.model), task(e)) for e in items} - set(keys))
    out = []
    for fam, t in keys:
        here = [e for e in items if family(e.model) == fam and task(e) == t]
        spiking = [e for e in here if e.kind == "backbone" and e.T > 1 and e.accuracy is not None]
        backbone = max(spiking, key=lambda e: e.accuracy, default=None)
        twins = [e for e in here if e.kind == "backbone" and e.T == 1 and e.accuracy is not None]
        cuts = [e for e in here if e.kind == "coinference" and e.heldout and _drop(e, by_name.get(e.base)) is not None]
        cut = min(
            cuts,
            key=lambda e: (len(cut_misses(e, by_name[e.base])), e.heldout["payload_bits"] or 0),
            default=None,
        )
        twin = max(twins, key=lambda e: e.accuracy, default=None)
        out.append(Cell(fam, t, backbone, cut, by_name.get(cut.base) if cut else None, twin))
    return out


def markdown(rows: list[Cell] | None = None) -> str:
    """The grid as a Markdown table (README and bench/RESULTS.md)."""
    rows = cells() if rows is None else rows

    def pct(v: float | None) -> str:
        return "–" if v is None else f"{v:.2f}%"

    out = [
        "| backbone | dataset | spiking backbone, held out | co-inference entry | drop with exit | payload bits "
        "| vs float32 | edge compute saving, SpikeBottleNet's scope / full (45 nm) | latency vs edge-only at "
        "10 Mbit/s | paper | missed (by how much) | next step |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| NeuCODEX | all its cells | – | – | < 2 pp | – | up to 2048x | > 90% | up to 3x | {PAPER} | – | – |",
    ]
    for c in rows:
        bb = f"`{c.backbone.name}` {pct(c.backbone.accuracy)}" if c.backbone else "–"
        cut, f = c.cut, (c.cut.figures if c.cut else None)
        name = f"`{cut.name}`" if cut else "–"
        drop = "–" if c.drop is None else f"{c.drop:.2f} pp"
        bits = "–" if not cut or not cut.heldout.get("payload_bits") else f"{cut.heldout['payload_bits']:,.0f}"
        ratio = "–" if c.vs_float32 is None else f"{c.vs_float32:,.0f}x"
        saving = "–" if not f else f"{f['edge_compute_saving_paper']:.1%} / {f['edge_compute_saving']:.1%}"
        speed = "–" if not f else f"{f['latency_speedup']['10']:.2f}x"
        missed = "; ".join(c.missed()) or "none"
        out.append(
            f"| {FAMILIES.get(c.family, c.family)} | {TASKS.get(c.task, c.task)} | {bb} | {name} | {drop} | {bits} "
            f"| {ratio} | {saving} | {speed} | – | {missed} | {c.next_step()} |"
        )
    return "\n".join(out)
