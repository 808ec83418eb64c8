"""The split/configuration search of SpikeBottleNet §3.6.

For each split point and each bottleneck configuration (channels, stride) and T in the grid:
fine-tune from the pretrained backbone and evaluate. Per split point, keep the configuration
with the fewest bits per sample whose accuracy drop against the backbone (at the same T) is
within the tolerance — chosen on the validation split, reported on test. Then pick the best
partition under the goal. One process can run one split point (``points=[...]``), so a scheduler
can spread a sweep over machines; the table is built from whatever per-point results exist.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from .checkpoint import read_info
from .config import ExperimentConfig
from .errors import NeucodexError
from .training import finetune

GOALS = ("bits",)
COLUMNS = [
    "point",
    "bottleneck",
    "T",
    "payload_bits",
    "wire_bytes",
    "vs_spikes",
    "vs_float32",
    "vs_input",
    "backbone_accuracy",
    "accuracy",
    "drop",
    "val_drop",
    "selected",
    "checkpoint",
    "error",
]


def sweep_dir(cfg: ExperimentConfig) -> Path:
    return cfg.run_dir / "sweep"


def run_sweep(
    cfg: ExperimentConfig, backbone_dir: str | Path, points: list[str] | None = None, progress: bool = True
) -> list[dict]:
    """Fine-tune every configuration at ``points`` (default: the config's, else all); one JSON per point."""
    spec = read_info(backbone_dir).model
    all_points = spec.build().split_points
    chosen = points or cfg.sweep.points or all_points
    unknown = [p for p in chosen if p not in all_points]
    if unknown:
        raise NeucodexError(f"{unknown[0]!r} is not a split point of {spec.name}: {', '.join(all_points)}")
    Ts = cfg.sweep.T or [spec.T]
    out = sweep_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    baselines: dict = {}  # the backbone's accuracy per T, evaluated once for the whole grid
    for point in chosen:
        point_rows = []
        for T in Ts:
            for spec in cfg.sweep.bottlenecks:
                try:
                    m = finetune(
                        cfg,
                        backbone_dir,
                        point,
                        spec,
                        T=T,
                        out=out / f"{point}-{spec}-T{T}",
                        progress=progress,
                        baselines=baselines,
                    )
                except NeucodexError as e:  # e.g. a stride larger than this point's feature map
                    point_rows.append({"point": point, "bottleneck": spec, "T": T, "error": str(e)})
                    print(f"neucodex: {point} {spec} T={T} failed: {e}", file=sys.stderr)
                    continue
                if m is None:  # a non-zero rank under torchrun
                    continue
                b = m.bits
                row = {
                    "point": point,
                    "bottleneck": m.bottleneck,
                    "T": T,
                    "payload_bits": b.payload_bits,
                    "wire_bytes": b.wire_bytes,
                    "vs_spikes": b.vs_spikes,
                    "vs_float32": b.vs_float32,
                    "vs_input": b.vs_input,
                    "backbone_accuracy": m.backbone_test_accuracy,
                    "accuracy": m.test_accuracy,
                    "drop": m.drop,
                    "val_drop": m.val_drop,
                    "checkpoint": m.checkpoint,
                    "wall_s": m.wall_s,
                }
                point_rows.append(row)
                if progress:
                    print(
                        f"{point} {row['bottleneck']} T={T}: {row['payload_bits']:.0f} bits "
                        f"({row['vs_spikes']:.0f}x vs spikes), accuracy {row['accuracy']:.2f}% "
                        f"(drop {row['drop']:.2f} pp, val drop {row['val_drop']:.2f} pp)"
                    )
        (out / f"point-{point}.json").write_text(json.dumps(point_rows, indent=1))
        rows += point_rows
    return rows


def summarize_sweep(directory: str | Path, tolerance: float, goal: str = "bits") -> dict:
    """Select per point and overall; write results.{csv,json,md} into ``directory``."""
    if goal not in GOALS:
        raise NeucodexError(f"unknown goal {goal!r}; available: {', '.join(GOALS)}")
    d = Path(directory)
    files = sorted(d.glob("point-*.json"))
    if not files:
        raise NeucodexError(f"no sweep results (point-*.json) in {d}; run `neucodex sweep` first")
    rows = [r for f in files for r in json.loads(f.read_text())]
    best_per_point = {}
    for r in rows:
        r["selected"] = False
        if "error" not in r and r["val_drop"] <= tolerance:
            cur = best_per_point.get(r["point"])
            if cur is None or (r["payload_bits"], r["val_drop"]) < (cur["payload_bits"], cur["val_drop"]):
                best_per_point[r["point"]] = r
    for r in best_per_point.values():
        r["selected"] = True
    best = min(best_per_point.values(), key=lambda r: r["payload_bits"], default=None)
    result = {"tolerance": tolerance, "goal": goal, "rows": rows, "best_per_point": best_per_point, "best": best}
    (d / "results.json").write_text(json.dumps(result, indent=1))
    with open(d / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    (d / "results.md").write_text(markdown_table(rows, tolerance, best))
    return result


def markdown_table(rows: list[dict], tolerance: float, best: dict | None) -> str:
    lines = [
        f"Selected per split point (✓): fewest bits with validation accuracy drop ≤ {tolerance} pp.",
        "",
        "| point | bottleneck | T | bits/sample | wire bytes | × vs spikes | × vs float32 | × vs 8-bit input "
        "| backbone acc % | acc % | drop pp | val drop pp | |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['point']} | {r['bottleneck']} | {r['T']} | failed: {r['error']} |||||||||")
            continue
        lines.append(
            f"| {r['point']} | {r['bottleneck']} | {r['T']} | {r['payload_bits']:.0f} | {r['wire_bytes']:.0f} "
            f"| {r['vs_spikes']:.0f} | {r['vs_float32']:.0f} | {r['vs_input']:.1f} | "
            f"{r['backbone_accuracy']:.2f} | {r['accuracy']:.2f} | {r['drop']:.2f} | {r['val_drop']:.2f} "
            f"| {'✓' if r['selected'] else ''} |"
        )
    if best:
        lines += [
            "",
            f"Best partition (fewest bits): {best['point']} with {best['bottleneck']} at T={best['T']}: "
            f"{best['payload_bits']:.0f} bits per sample, accuracy {best['accuracy']:.2f}% "
            f"(drop {best['drop']:.2f} pp).",
        ]
    return "\n".join(lines) + "\n"
