"""The report's plots (PNG, matplotlib's Agg backend)."""

from __future__ import annotations

from pathlib import Path

from .schema import Report

CODEC_MARKERS = {"png": "s", "jpeg": "o", "webp": "^"}


def plots(r: Report, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from ..latency import Link, cloud_only_ms, co_inference_ms, edge_only_ms

    paths = []

    plain = FuncFormatter(lambda v, _: f"{v:g}")  # 30, not 3×10¹

    def outside_legend(ax):  # never over the data
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        paths.append(out / name)

    fig, ax = plt.subplots(figsize=(8, 4))
    rows = [t for t in r.table1 if t["payload_bits"] and t["accuracy"] is not None]
    ax.scatter([t["payload_bits"] for t in rows], [t["accuracy"] for t in rows], label="co-inference (all T)")
    for t in rows:
        ax.annotate(
            f"{t['point']} {t['bottleneck']}",
            (t["payload_bits"], t["accuracy"]),
            xytext=(3, 3),
            textcoords="offset points",
            fontsize=7,
        )
    b = r.bits["exit"]
    ax.scatter([b.payload_bits], [r.accuracy.co_inference_exit], marker="*", s=120, c="C3", label="with early exit")
    for codec, marker in CODEC_MARKERS.items():
        pts = sorted((p for p in r.codecs if p.codec == codec), key=lambda p: p.bits)
        if pts:
            ax.plot(
                [p.bits for p in pts], [p.accuracy for p in pts], marker=marker, ms=4, lw=1, label=f"cloud-only {codec}"
            )
    ax.axhline(r.accuracy.backbone, color="k", ls="--", lw=1, label="backbone")
    if min([t["payload_bits"] for t in rows] + [b.payload_bits]) > 0:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 100, 200, 500: labels in any range
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(x=0.2, y=0.1)  # point labels stay inside the frame
    ax.set_xlabel("bits per sample sent (payload; image files: real bytes × 8)")
    ax.set_ylabel("test accuracy, %")
    ax.set_title("rate–accuracy")
    outside_legend(ax)
    save(fig, "rate_accuracy.png")

    se = r.split_energy
    bars = [(f"DNN {r.hardware[hw].title}", rows) for hw, rows in se.dnn.items()]
    bars += [(f"SNN {r.hardware[hw].title}", rows) for hw, rows in se.snn.items()]
    pts = [x["point"] for x in bars[0][1]]
    fig, ax = plt.subplots(figsize=(max(7, 0.5 * len(pts) * len(bars) / 3 + 2), 4))
    w = 0.8 / len(bars)
    for k, (label, table) in enumerate(bars):
        xs = [i + (k - (len(bars) - 1) / 2) * w for i in range(len(pts))]
        ax.bar(xs, [x["energy_mj"] for x in table], w, label=label)
        for xpos, x in zip(xs, table, strict=True):
            if x["energy_mj"] <= 0:  # nothing to draw on a log axis: say it
                ax.text(xpos, 0.02, "0", ha="center", va="bottom", fontsize=7, transform=ax.get_xaxis_transform())
    ax.set_xticks(range(len(pts)), pts)
    ax.set_yscale("log")
    ax.set_xlabel("split point (edge runs input … this point)")
    ax.set_ylabel("edge energy, mJ")
    ax.set_title(f"edge energy up to each split point (scope {se.scope})")
    outside_legend(ax)
    save(fig, "energy_per_split_point.png")

    t = r.timings_ms
    f, T = r.device_factor, r.T
    rtt = r.latency[0]["rtt_ms"]
    bws = [10 ** (k / 4) * 1e5 for k in range(21)]  # 0.1 … 1000 Mbit/s
    bits_step = b.wire_bytes * 8 / b.timesteps
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot([x / 1e6 for x in bws], [edge_only_ms(t, f)] * len(bws), label="edge-only SNN")
    if t.dnn_full is not None:
        ax.plot([x / 1e6 for x in bws], [edge_only_ms(t, f, dnn=True)] * len(bws), label="edge-only DNN")
    cloud = r.cloud_only
    ax.plot(
        [x / 1e6 for x in bws],
        [cloud_only_ms(t, Link(x, rtt), cloud.bits) for x in bws],
        label=f"cloud-only, {cloud.name}",
    )
    ax.plot(
        [x / 1e6 for x in bws],
        [co_inference_ms(t, Link(x, rtt), T, bits_step, f, False) for x in bws],
        label="co-inference, all T",
    )
    ax.plot(
        [x / 1e6 for x in bws],
        [co_inference_ms(t, Link(x, rtt), b.timesteps, bits_step, f) for x in bws],
        label="co-inference, exit + pipeline",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("uplink bandwidth, Mbit/s")
    ax.set_ylabel("latency per sample, ms")
    ax.xaxis.set_major_formatter(plain)
    ax.yaxis.set_major_formatter(plain)
    ax.set_title(f"latency (edge x{f:g}, RTT {rtt:g} ms)")
    outside_legend(ax)
    save(fig, "latency_vs_bandwidth.png")

    fig, ax = plt.subplots(figsize=(5, 3.5))
    hist = r.exit_histogram
    ax.bar(range(1, len(hist) + 1), hist)
    ax.set_xlabel("exit timestep")
    ax.set_ylabel("samples")
    ax.set_title(f"exit steps (mean {r.mean_steps:.2f} of {T})")
    ax.set_xticks(range(1, len(hist) + 1))
    save(fig, "exit_histogram.png")
    return paths
