"""The rate–accuracy curve: co-inference checkpoints against cloud-only inference on real image files.

Each co-inference point is (payload bits per sample with early exit, accuracy with exit), measured
from real packets; each baseline point is (the real bytes of a PNG / JPEG / WebP file × 8, the
backbone's accuracy on the decoded file). All on the same samples, stratified by class.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from .baselines import QUALITIES, best_within, codec_curve
from .checkpoint import load_checkpoint, read_info
from .data import stratified
from .errors import NeucodexError
from .evaluate import evaluate_checkpoint, load_split, with_data

DROPS = (0.5, 1.0, 2.0)
"""Accuracy drops (pp) at which the best codec point is reported."""


def split_label(point: str) -> tuple[str, str]:
    """``LABEL=CHECKPOINT`` → (label, checkpoint); a bare checkpoint is labelled by its zoo name or
    directory name. Runs of one recipe all end in the same directory name, hence the label."""
    label, sep, ck = point.partition("=")
    if sep and label and not any(c in label for c in "/:\\"):
        return label, ck
    return Path(point).name.replace("zoo:", ""), point


def rate_curve(
    backbone: str,
    checkpoints: list[str],
    *,
    dataset: str | None = None,
    root: str | None = None,
    split: str = "test",
    limit: int | None = None,
    qualities=QUALITIES,
    progress: bool = False,
) -> dict:
    """Every figure of the curve as a dict (``ratecurve.json``)."""
    info = read_info(backbone)
    if info.is_coinference:
        raise NeucodexError(f"--backbone {backbone} holds a co-inference model; give the backbone the cuts came from")
    cfg = with_data(info.experiment(), dataset, root)
    cfg = replace(cfg, data=replace(cfg.data, limit=None, train_augment=False))
    bb = load_checkpoint(backbone).model
    ds = stratified(load_split(cfg, split, bb.T), limit)
    xs, ys = zip(*(ds[i] for i in range(len(ds))), strict=True)
    images, labels = torch.stack(xs), torch.tensor(ys)
    say = (
        (lambda p: print(f"  {p.name}: {p.bytes_per_image:.0f} B, {p.accuracy:.2f}%", flush=True)) if progress else None
    )
    reference, points = codec_curve(bb, images, labels, qualities, progress=say)
    coinf = []
    for point in checkpoints:
        label, ck = split_label(point)
        r = evaluate_checkpoint(ck, dataset=dataset, root=root, split=split, limit=limit, device="cpu")
        if r["kind"] != "coinference":
            raise NeucodexError(f"{ck} holds a backbone; the curve's points are co-inference checkpoints")
        coinf.append(
            {
                "checkpoint": ck,
                "label": label,
                "point": read_info(ck).model.point,
                "model_id": r["model_id"],
                "accuracy": r["accuracy"],
                "accuracy_all_t": r["accuracy_all_t"],
                "mean_steps": r["mean_steps"],
                "payload_bits": r["payload_bits"],
                "wire_bytes": r["wire_bytes"],
                "formats": r.get("formats", {}),
                "backbone_accuracy": r["backbone_accuracy"],
                "ratios": r["ratios"],
            }
        )
        if progress:
            print(f"  {label}: {r['payload_bits']:.0f} bits, {r['accuracy']:.2f}% in {r['mean_steps']:.2f} steps")
    best = {str(d): (p.to_dict() if (p := best_within(points, reference, d)) else None) for d in DROPS}
    return {
        "backbone": backbone,
        "dataset": cfg.data.name,
        "split": split,
        "samples": len(ds),
        "backbone_accuracy": reference,
        "raw_8bit_bits": images[0].numel() * 8,
        "codecs": [p.to_dict() for p in points],
        "best_codec_within": best,
        "coinference": coinf,
    }


def markdown(r: dict) -> str:
    lines = [
        f"# Rate–accuracy: {r['dataset']} {r['split']}, {r['samples']} samples (stratified by class)",
        "",
        f"Backbone `{r['backbone']}` on the original images: {r['backbone_accuracy']:.2f}%. Raw 8-bit input: "
        f"{r['raw_8bit_bits']:,} bits.",
        "",
        "Each co-inference point's drop is against its own backbone on the same samples (a cut may come",
        "from another backbone than the codecs'); each codec point's against the backbone above.",
        "",
        "| sent | cut | bits per sample | on-wire bytes | accuracy % | its backbone % | drop (pp) | mean steps |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in r["coinference"]:
        lines.append(
            f"| co-inference {c['label']} (`{c['checkpoint']}`, exit) | {c['point']} | {c['payload_bits']:.0f} | "
            f"{c['wire_bytes']:.0f} | {c['accuracy']:.2f} | {c['backbone_accuracy']:.2f} | "
            f"{c['backbone_accuracy'] - c['accuracy']:.2f} | {c['mean_steps']:.2f} |"
        )
    for p in r["codecs"]:
        lines.append(
            f"| cloud-only {p['name']} | – | {p['bits']:.0f} | {p['bytes_per_image']:.0f} | {p['accuracy']:.2f} | "
            f"{r['backbone_accuracy']:.2f} | {r['backbone_accuracy'] - p['accuracy']:.2f} | – |"
        )
    lines += ["", "Best cloud-only codec point within a drop of the backbone's accuracy:", ""]
    for d, p in r["best_codec_within"].items():
        lines.append(f"- ≤ {d} pp: " + (f"{p['name']}, {p['bits']:.0f} bits" if p else "none in the grid"))
    return "\n".join(lines) + "\n"


def plot(r: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for codec, marker in (("png", "s"), ("jpeg", "o"), ("webp", "^")):
        pts = sorted((p for p in r["codecs"] if p["codec"] == codec), key=lambda p: p["bits"])
        ax.plot(
            [p["bits"] for p in pts], [p["accuracy"] for p in pts], marker=marker, ms=4, label=f"cloud-only {codec}"
        )
    c = r["coinference"]
    cuts = list(dict.fromkeys(x["point"] for x in c))  # in the order given, not string order (rb16 < rb2)
    for i, cut in enumerate(cuts):
        at = [x for x in c if x["point"] == cut]
        ax.scatter(
            [x["payload_bits"] for x in at],
            [x["accuracy"] for x in at],
            marker="*",
            s=140,
            c=f"C{3 + i}",
            zorder=3,
            label=f"co-inference at {cut} (early exit)",
        )
    for x in c:
        ax.annotate(
            x["label"],
            (x["payload_bits"], x["accuracy"]),
            xytext=(3, 3),
            textcoords="offset points",
            fontsize=6,
        )
    ax.axhline(r["backbone_accuracy"], color="k", ls="--", lw=1, label="backbone, original images")
    ax.axvline(r["raw_8bit_bits"], color="grey", ls=":", lw=1, label="raw 8-bit input")
    ax.set_xscale("log")
    ax.set_xlabel("bits per sample sent (payload; files: real bytes × 8)")
    ax.set_ylabel("accuracy, %")
    ax.set_title(f"rate–accuracy, {r['dataset']} {r['split']} ({r['samples']} samples)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(r: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "ratecurve.json").write_text(json.dumps(r, indent=1, default=float))
    (out / "ratecurve.md").write_text(markdown(r))
    return [out / "ratecurve.json", out / "ratecurve.md", plot(r, out / "rate_accuracy.png")]
