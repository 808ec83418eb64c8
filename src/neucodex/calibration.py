"""``neucodex calibrate``: pick the early-exit threshold of a checkpoint on its validation split."""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import load_checkpoint, update_info
from .errors import NeucodexError
from .evaluate import check_fits, load_split, loader, predict, resolve_device, with_data
from .exit import calibrate, evaluate_policy
from .policy import MEASURES, ExitPolicy
from .pretrained import is_zoo


def checkpoint_logits(
    ck_dir: str | Path, split: str, device: str = "auto", dataset: str | None = None, root: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-timestep logits ``[T, N, K]`` and labels of a checkpoint on a split of its own dataset
    (or of ``dataset`` / ``root``)."""
    ck = load_checkpoint(ck_dir)
    cfg = with_data(ck.info.experiment(), dataset, root)
    ds = load_split(cfg, split, ck.model.T)
    check_fits(ck.model, ds, cfg.data.name, ck.info.dataset.get("kind"))
    data = loader(ds, cfg.optim.batch_size, False, cfg.seed, cfg.workers)
    dev = resolve_device(device)
    return predict(ck.model.to(dev), data, dev)


def calibrate_checkpoint(
    ck_dir: str | Path,
    target_drop: float = 0.5,
    measures=MEASURES,
    min_steps: int = 1,
    device: str = "auto",
    plot: bool = True,
    dataset: str | None = None,
    root: str | None = None,
    max_steps: float | None = None,
) -> dict:
    """Calibrate every measure on val, evaluate on test, plot, and store the best policy in model.json:
    the fewest steps within ``target_drop``, or, with a step budget ``max_steps``, the most accurate."""
    if is_zoo(ck_dir):
        raise NeucodexError(f"{ck_dir} is shipped read-only: copy its directory (neucodex zoo) and calibrate the copy")
    val_logits, val_labels = checkpoint_logits(ck_dir, "val", device, dataset, root)
    test_logits, test_labels = checkpoint_logits(ck_dir, "test", device, dataset, root)
    rows, curves = [], {}
    for m in measures:
        policy, curve = calibrate(val_logits, val_labels, m, target_drop, min_steps, max_steps)
        val = evaluate_policy(val_logits, val_labels, policy)
        test = evaluate_policy(test_logits, test_labels, policy)
        curves[m] = curve
        rows.append(
            {
                "measure": m,
                "threshold": policy.threshold,
                "policy": policy.to_dict(),
                "val_mean_steps": val["mean_steps"],
                "val_accuracy": val["accuracy"],
                "val_accuracy_all_T": val["accuracy_all_T"],
                "test_mean_steps": test["mean_steps"],
                "test_accuracy": test["accuracy"],
                "test_accuracy_all_T": test["accuracy_all_T"],
                "test_drop": test["accuracy_all_T"] - test["accuracy"],
                "test_histogram": test["histogram"],
            }
        )
    if max_steps is None:
        best = min(rows, key=lambda r: (r["val_mean_steps"], -r["val_accuracy"]))
    else:
        best = max(rows, key=lambda r: (r["val_accuracy"], -r["val_mean_steps"]))
    d = Path(ck_dir)
    update_info(
        d,
        exit_policy=ExitPolicy.from_dict(best["policy"]),
        exit_calibration={"target_drop": target_drop, "max_steps": max_steps, "split": "val", "rows": rows},
    )
    result = {
        "T": int(val_logits.shape[0]),
        "target_drop": target_drop,
        "max_steps": max_steps,
        "rows": rows,
        "chosen": best,
    }
    if plot:
        result["plot"] = str(plot_curves(curves, rows, int(val_logits.shape[0]), d / "exit_tradeoff.png"))
    return result


def plot_curves(curves: dict, rows: list[dict], T: int, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for m, curve in curves.items():
        pts = sorted((c["mean_steps"], c["accuracy"]) for c in curve)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], ".-", label=m, alpha=0.8)
    for r in rows:
        ax.plot(r["val_mean_steps"], r["val_accuracy"], "k*", markersize=10)
    ax.set_xlabel("mean timesteps per sample (validation)")
    ax.set_ylabel("accuracy % (validation)")
    ax.set_xlim(0.9, T + 0.1)
    ax.set_title("early exit: accuracy vs timesteps (★ calibrated)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
