"""``neucodex report RUN_DIR``: the reproduction report of a run — tables, energy, latency, plots.

A run directory holds a backbone checkpoint (``backbone/``), one or more co-inference checkpoints
(``coinference-*/``), optionally a sweep (``sweep/results.json``) and a live runtime run
(``runtime.json``, written by ``neucodex demo``). The report evaluates the co-inference checkpoint
(the calibrated one, if any) on test samples, counts bits from real packets, energy from
operation counts with measured firing rates, and latency from measured compute times.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.data import Subset

from . import codec
from .accounting import measure_bits
from .checkpoint import CheckpointError, load_checkpoint, read_meta
from .config import from_dict
from .energy import HARDWARE, RADIOS, count_ops, edge_energy, energy, per_split_point, radio_mj
from .exit import ExitPolicy, evaluate_policy
from .latency import latency_table, measure_timings
from .models import create_model
from .train import load_split, predict, resolve_device, to_model_input

BANDWIDTHS = [1e6, 10e6, 100e6]


def find_checkpoints(run_dir: Path) -> tuple[Path, list[Path]]:
    """(backbone, co-inference checkpoints) under ``run_dir``, or as its ``run.json`` lists them."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"no run directory at {run_dir}")
    if (run_dir / "run.json").is_file():  # a demo run: its checkpoints live in the cache
        listed = json.loads((run_dir / "run.json").read_text())
        return Path(listed["backbone"]), [Path(p) for p in listed["coinference"]]
    found = sorted(p.parent for p in run_dir.glob("*/model.json"))
    coinf = [p for p in found if read_meta(p)["model"].get("coinference")]
    backbones = [p for p in found if p not in coinf]
    if not coinf:
        raise CheckpointError(f"no co-inference checkpoint in {run_dir}: run neucodex finetune (or neucodex demo)")
    if not backbones:
        backbones = [Path(read_meta(coinf[0])["backbone"]["path"])]
    return backbones[0], coinf


def _main_checkpoint(coinf: list[Path]) -> Path:
    calibrated = [p for p in coinf if read_meta(p).get("exit_policy")]
    return (calibrated or coinf)[0]


def _stack(ds) -> torch.Tensor:
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    return to_model_input(x, torch.device("cpu"))


def table1_rows(run_dir: Path, coinf: list[Path]) -> list[dict]:
    """Split point, configuration, T, bits and ratios (all T sent), accuracy and drop per checkpoint/sweep row."""
    rows = []
    for p in coinf:
        m = read_meta(p)["metrics"]
        b = m["bits"]
        rows.append(
            {
                "source": p.name,
                "point": m["point"],
                "bottleneck": m["bottleneck"],
                "T": m["T"],
                "payload_bits": b["payload_bits"],
                "wire_bytes": b["wire_bytes"],
                "vs_spikes": b["vs_spikes"],
                "vs_float32": b["vs_float32"],
                "vs_input": b["vs_input"],
                "accuracy": m["test_accuracy"],
                "backbone_accuracy": m["backbone_test_accuracy"],
                "drop": m["backbone_test_accuracy"] - m["test_accuracy"],
            }
        )
    sweep = run_dir / "sweep" / "results.json"
    if sweep.is_file():
        for r in json.loads(sweep.read_text())["rows"]:
            rows.append(
                {
                    "source": "sweep",
                    **{
                        k: r.get(k)
                        for k in (
                            "point",
                            "bottleneck",
                            "T",
                            "payload_bits",
                            "wire_bytes",
                            "vs_spikes",
                            "vs_float32",
                            "vs_input",
                            "accuracy",
                            "drop",
                        )
                    },
                }
            )
    return rows


def analyse(
    run_dir: str | Path,
    *,
    samples: int | None = None,
    rtt_ms: float = 20.0,
    device_factor: float = 10.0,
    radio: str = "wifi",
    scope: str = "paper",
) -> dict:
    """Every figure of the report, as a dict (what ``report.json`` holds)."""
    run_dir = Path(run_dir)
    backbone_dir, coinf = find_checkpoints(run_dir)
    main_dir = _main_checkpoint(coinf)
    ck, bb = load_checkpoint(main_dir), load_checkpoint(backbone_dir)
    model, backbone = ck.model, bb.model
    cfg = from_dict(ck.meta["config"])
    T = model.T
    test = load_split(cfg, "test", T)
    ds = Subset(test, range(min(len(test), samples or len(test))))
    dev = resolve_device("cpu")
    batch = torch.utils.data.DataLoader(ds, batch_size=len(ds))
    logits, labels = predict(model, batch, dev)
    bb_logits, _ = predict(backbone, batch, dev)
    policy = ExitPolicy.from_dict(ck.meta.get("exit_policy"))
    ev = evaluate_policy(logits, labels, policy)
    steps = torch.tensor(ev["steps"])
    x = _stack(ds)
    bits_exit = measure_bits(model, x, steps=steps)
    bits_all = measure_bits(model, x)

    # energy: the co-inference edge per timestep, the whole SNN, the DNN twin (MACs do not depend on weights)
    kwargs = {**ck.meta["model"]["kwargs"], "spiking": False}
    dnn = create_model(ck.meta["model"]["name"], **kwargs).eval()
    ops_co, ops_bb = count_ops(model, x), count_ops(backbone, x)
    ops_dnn = count_ops(dnn, x)
    radio_p = RADIOS[radio]
    energies, per_sample_mj = {}, {}
    dnn_only = energy(ops_dnn, HARDWARE["45nm"], 1)[2]  # the DNN twin runs at 45 nm in both rows
    for hw in ("45nm", "rolls"):
        prof = HARDWARE[hw]
        per_step = [edge_energy(model, ops_co, "encoder", prof, "full", s).energy_mj for s in range(1, T + 1)]
        compute = sum(per_step[int(s) - 1] for s in steps) / len(steps)
        wire_bits = bits_exit.wire_bytes * 8
        co = compute + radio_mj(wire_bits, radio_p)
        snn_only = energy(ops_bb, prof, T)[2]
        cloud_only = radio_mj(bits_exit.input_bits, radio_p)
        per_sample_mj[hw] = [per_step[int(s) - 1] + radio_mj(b + 8 * codec.HEADER_BYTES * int(s), radio_p)
                             for s, b in zip(steps, bits_exit.per_sample_bits, strict=True)]
        energies[hw] = {
            "co_inference_compute_mj": compute,
            "co_inference_radio_mj": radio_mj(wire_bits, radio_p),
            "co_inference_mj": co,
            "co_inference_all_T_mj": per_step[-1] + radio_mj(bits_all.wire_bytes * 8, radio_p),
            "edge_only_snn_mj": snn_only,
            "edge_only_dnn_mj": dnn_only,
            "cloud_only_mj": cloud_only,
            "reduction_vs_edge_only_snn": 1 - co / snn_only,
            "reduction_vs_edge_only_dnn": 1 - co / dnn_only,
        }
    split_energy = {
        "scope": scope,
        "snn_45nm": per_split_point(backbone, x, HARDWARE["45nm"], scope),
        "snn_rolls": per_split_point(backbone, x, HARDWARE["rolls"], scope),
        "dnn_45nm": per_split_point(dnn, x, HARDWARE["45nm"], scope),
    }

    timings = measure_timings(model, backbone, ds[0][0], dnn)
    latency = latency_table(
        timings,
        BANDWIDTHS,
        rtt_ms,
        input_bits=bits_exit.input_bits,
        T=T,
        exit_steps=bits_exit.timesteps,
        bits_per_step=bits_exit.wire_bytes * 8 / bits_exit.timesteps,
        device_factor=device_factor,
    )
    runtime = json.loads((run_dir / "runtime.json").read_text()) if (run_dir / "runtime.json").is_file() else None
    bb_acc = 100.0 * (bb_logits.mean(0).argmax(-1) == labels).float().mean().item()
    return {
        "run_dir": str(run_dir),
        "checkpoint": str(main_dir),
        "backbone": str(backbone_dir),
        "model": ck.meta["model"],
        "dataset": cfg.data.name,
        "samples": len(ds),
        "T": T,
        "policy": policy.to_dict(),
        "accuracy": {
            "backbone": bb_acc,
            "co_inference_all_T": ev["accuracy_all_T"],
            "co_inference_exit": ev["accuracy"],
            "drop_vs_backbone": bb_acc - ev["accuracy"],
        },
        "mean_steps": ev["mean_steps"],
        "exit_histogram": ev["histogram"],
        "bits": {"exit": bits_exit.to_dict(), "all_T": bits_all.to_dict()},
        "energy": energies,
        "radio": {"name": radio, "nj_per_bit": radio_p.nj_per_bit, "source": radio_p.source},
        "hardware": {k: {"mac_pj": v.mac_pj, "ac_pj": v.ac_pj, "source": v.source} for k, v in HARDWARE.items()},
        "split_energy": split_energy,
        "timings_ms": timings.to_dict(),
        "device_factor": device_factor,
        "latency": latency,
        "table1": table1_rows(run_dir, coinf),
        "per_sample": [{"label": int(labels[i]), "prediction": ev["predictions"][i], "steps": ev["steps"][i],
                        "payload_bits": bits_exit.per_sample_bits[i], "edge_mj_45nm": per_sample_mj["45nm"][i],
                        "edge_mj_rolls": per_sample_mj["rolls"][i]} for i in range(len(ds))],
        "runtime": runtime and runtime.get("summary"),
    }


def _fmt(v, spec: str = ".2f") -> str:
    return "–" if v is None else format(v, spec)


def markdown(r: dict) -> str:
    a, b, e = r["accuracy"], r["bits"]["exit"], r["energy"]
    lines = [
        f"# neucodex report: {Path(r['run_dir']).name}",
        "",
        f"Model {r['model']['name']} ({r['model']['coinference']}), T={r['T']}, dataset {r['dataset']}, "
        f"{r['samples']} test samples; checkpoint `{r['checkpoint']}`.",
        "",
        "## Co-inference",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| backbone accuracy | {a['backbone']:.2f}% |",
        f"| co-inference accuracy, all T | {a['co_inference_all_T']:.2f}% |",
        f"| co-inference accuracy, early exit ({r['policy']['measure']} ≥ {r['policy']['threshold']:.4f}) | "
        f"{a['co_inference_exit']:.2f}% (drop {a['drop_vs_backbone']:.2f} pp vs backbone) |",
        f"| mean timesteps | {r['mean_steps']:.2f} of {r['T']} |",
        f"| payload bits per sample | {b['payload_bits']:.1f} |",
        f"| on-wire bytes per sample (codec headers included) | {b['wire_bytes']:.1f} |",
        f"| vs binary spike features over T | {b['vs_spikes']:.1f}x |",
        f"| vs float32 features | {b['vs_float32']:.1f}x |",
        f"| vs raw 8-bit input | {b['vs_input']:.1f}x |",
        "",
    ]
    if r.get("runtime"):
        s = r["runtime"]
        lines += [
            f"Live run over gRPC on loopback ({s['samples']} samples): accuracy {_fmt(s['accuracy'])}%, "
            f"{s['mean_steps']:.2f} timesteps, {s['payload_bits']:.1f} payload bits and {s['wire_bytes']:.1f} "
            f"codec bytes ({s['grpc_bytes']:.1f} gRPC message bytes) per sample, round trip "
            f"{s['rtt_ms']:.2f} ms per frame.",
            "",
        ]
    lines += [
        "## Bits per split point (SpikeBottleNet Table 1 style, all T sent)",
        "",
        "| source | point | bottleneck | T | payload bits | vs spikes | vs float32 | vs input | accuracy | drop |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in r["table1"]:
        lines.append(
            f"| {t['source']} | {t['point']} | {t['bottleneck']} | {t['T']} | {_fmt(t['payload_bits'], '.1f')} "
            f"| {_fmt(t['vs_spikes'], '.1f')} | {_fmt(t['vs_float32'], '.1f')} | {_fmt(t['vs_input'], '.1f')} "
            f"| {_fmt(t['accuracy'])} | {_fmt(t['drop'])} |"
        )
    se = r["split_energy"]
    lines += [
        "",
        f"## Edge energy per split point, mJ (SpikeBottleNet Table 3 style, scope `{se['scope']}`)",
        "",
        "| point | " + " | ".join(x["point"] for x in se["snn_45nm"]) + " |",
        "| --- |" + " --- |" * len(se["snn_45nm"]),
    ]
    for key, label in (("dnn_45nm", "DNN twin, 45 nm"), ("snn_45nm", "SNN, 45 nm"), ("snn_rolls", "SNN, ROLLS")):
        lines.append(f"| {label} | " + " | ".join(f"{x['energy_mj']:.4g}" for x in se[key]) + " |")
    lines += [
        "",
        f"## Edge energy per sample, mJ (full scope; radio {r['radio']['name']}, "
        f"{r['radio']['nj_per_bit']} nJ/bit: {r['radio']['source']})",
        "",
        "| hardware | co-inference (compute + radio) | edge-only SNN | edge-only DNN (45 nm) | cloud-only (radio) "
        "| reduction vs edge-only SNN | vs edge-only DNN |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for hw, x in e.items():
        lines.append(
            f"| {hw} | {x['co_inference_mj']:.4g} ({x['co_inference_compute_mj']:.3g} + "
            f"{x['co_inference_radio_mj']:.3g}) | {x['edge_only_snn_mj']:.4g} | {x['edge_only_dnn_mj']:.4g} | "
            f"{x['cloud_only_mj']:.4g} | {100 * x['reduction_vs_edge_only_snn']:.1f}% | "
            f"{100 * x['reduction_vs_edge_only_dnn']:.1f}% |"
        )
    t = r["timings_ms"]
    lines += [
        "",
        f"## Latency per sample, ms (edge compute x{r['device_factor']:g} device factor, round trip "
        f"{r['latency'][0]['rtt_ms']:g} ms)",
        "",
        f"Measured here: edge {t['edge_step']:.2f} ms and cloud {t['cloud_step']:.2f} ms per timestep, whole "
        f"SNN {t['edge_full']:.2f} ms, DNN twin {_fmt(t['dnn_full'])} ms per sample.",
        "",
        "| Mbit/s | edge-only SNN | edge-only DNN | cloud-only | co-inference all T | co-inference exit, "
        "pipelined | speed-up vs edge-only | vs cloud-only |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for x in r["latency"]:
        lines.append(
            f"| {x['bandwidth_mbps']:g} | {x['edge_only_snn']:.2f} | {_fmt(x['edge_only_dnn'])} | "
            f"{x['cloud_only']:.2f} | {x['co_inference']:.2f} | {x['co_inference_exit_pipelined']:.2f} | "
            f"{x['speedup_vs_edge_only']:.2f}x | {x['speedup_vs_cloud_only']:.2f}x |"
        )
    lines += [
        "",
        "## Plots",
        "",
        "![rate–accuracy](rate_accuracy.png) ![energy](energy_per_split_point.png)",
        "![latency](latency_vs_bandwidth.png) ![exit steps](exit_histogram.png)",
        "",
    ]
    return "\n".join(lines)


def plots(r: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .latency import Link, Timings, cloud_only_ms, co_inference_ms, edge_only_ms

    paths = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        paths.append(out / name)

    fig, ax = plt.subplots(figsize=(6, 4))
    rows = [t for t in r["table1"] if t["payload_bits"] and t["accuracy"] is not None]
    ax.scatter([t["payload_bits"] for t in rows], [t["accuracy"] for t in rows], label="co-inference (all T)")
    for t in rows:
        ax.annotate(f"{t['point']} {t['bottleneck']}", (t["payload_bits"], t["accuracy"]), fontsize=7)
    b = r["bits"]["exit"]
    ax.scatter(
        [b["payload_bits"]], [r["accuracy"]["co_inference_exit"]], marker="*", s=120, c="C3", label="with early exit"
    )
    ax.axhline(r["accuracy"]["backbone"], color="k", ls="--", lw=1, label="backbone")
    if min([t["payload_bits"] for t in rows] + [b["payload_bits"]]) > 0:
        ax.set_xscale("log")
    ax.set_xlabel("payload bits per sample")
    ax.set_ylabel("test accuracy %")
    ax.set_title("rate–accuracy")
    ax.legend(fontsize=8)
    save(fig, "rate_accuracy.png")

    se = r["split_energy"]
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(se["snn_45nm"])), 4))
    pts = [x["point"] for x in se["snn_45nm"]]
    w = 0.27
    for k, (key, label) in enumerate(
        (("dnn_45nm", "DNN 45 nm"), ("snn_45nm", "SNN 45 nm"), ("snn_rolls", "SNN ROLLS"))
    ):
        ax.bar([i + (k - 1) * w for i in range(len(pts))], [x["energy_mj"] for x in se[key]], w, label=label)
    ax.set_xticks(range(len(pts)), pts)
    ax.set_yscale("log")
    ax.set_ylabel("edge energy, mJ")
    ax.set_title(f"edge energy up to each split point (scope {se['scope']})")
    ax.legend(fontsize=8)
    save(fig, "energy_per_split_point.png")

    t = Timings(**r["timings_ms"])
    f, T = r["device_factor"], r["T"]
    rtt = r["latency"][0]["rtt_ms"]
    bws = [10 ** (k / 4) * 1e5 for k in range(21)]  # 0.1 … 1000 Mbit/s
    bits_step = b["wire_bytes"] * 8 / b["timesteps"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([x / 1e6 for x in bws], [edge_only_ms(t, f)] * len(bws), label="edge-only SNN")
    if t.dnn_full is not None:
        ax.plot([x / 1e6 for x in bws], [edge_only_ms(t, f, dnn=True)] * len(bws), label="edge-only DNN")
    ax.plot([x / 1e6 for x in bws], [cloud_only_ms(t, Link(x, rtt), b["input_bits"]) for x in bws], label="cloud-only")
    ax.plot(
        [x / 1e6 for x in bws],
        [co_inference_ms(t, Link(x, rtt), T, bits_step, f, False) for x in bws],
        label="co-inference, all T",
    )
    ax.plot(
        [x / 1e6 for x in bws],
        [co_inference_ms(t, Link(x, rtt), b["timesteps"], bits_step, f) for x in bws],
        label="co-inference, exit + pipeline",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("uplink bandwidth, Mbit/s")
    ax.set_ylabel("latency per sample, ms")
    ax.set_title(f"latency (edge x{f:g}, RTT {rtt:g} ms)")
    ax.legend(fontsize=8)
    save(fig, "latency_vs_bandwidth.png")

    fig, ax = plt.subplots(figsize=(5, 3.5))
    hist = r["exit_histogram"]
    ax.bar(range(1, len(hist) + 1), hist)
    ax.set_xlabel("exit timestep")
    ax.set_ylabel("samples")
    ax.set_title(f"exit steps (mean {r['mean_steps']:.2f} of {T})")
    ax.set_xticks(range(1, len(hist) + 1))
    save(fig, "exit_histogram.png")
    return paths


def write_report(run_dir: str | Path, **kw) -> dict:
    """Analyse ``run_dir`` and write report.md, report.json and the PNG plots into it."""
    run_dir = Path(run_dir)
    r = analyse(run_dir, **kw)
    (run_dir / "report.json").write_text(json.dumps(r, indent=1, default=float))
    (run_dir / "report.md").write_text(markdown(r))
    r["files"] = [str(run_dir / "report.md"), str(run_dir / "report.json"), *map(str, plots(r, run_dir))]
    return r
