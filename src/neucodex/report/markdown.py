"""The report as markdown: ``report.md``."""

from __future__ import annotations

from pathlib import Path

from ..energy import CoInferenceEnergy
from .schema import Report


def saving(reduction: float) -> str:
    """A reduction against a reference, in words: "93.1% less", or "43.6x more" when it costs more."""
    if reduction >= 0:
        return f"{100 * reduction:.1f}% less"
    return f"{1 - reduction:.1f}x more"


def head_share(e: CoInferenceEnergy) -> str | None:
    """The saving the cut and early exit bring alone, with the backbone's own head firing, when a
    fine-tuned head fires otherwise: a sparser head is reported apart from the split. None below a
    tenth of a point (a frozen head differs only by its recalibrated norms and fp16 rounding)."""
    full, paper = e.compute_reduction_backbone_head, e.compute_reduction_backbone_head_paper
    if abs(full - e.compute_reduction_vs_edge_only_snn) < 1e-3:
        return None
    return (
        f"the cut and early exit alone (the backbone's own head firing): {saving(full)} "
        f"({saving(paper)} in SpikeBottleNet's scope); the difference is how the fine-tuned head fires"
    )


def _fmt(v, spec: str = ".2f") -> str:
    return "–" if v is None else format(v, spec)


def markdown(r: Report) -> str:
    a, b, e, c = r.accuracy, r.bits["exit"], r.energy, r.cloud_only
    cut = r.model.get("coinference") or {}
    lines = [
        f"# neucodex report: {Path(r.run_dir).name}",
        "",
        "| run | |",
        "| --- | --- |",
        f"| model | {r.model['name']} |",
        f"| split point | {cut.get('point', '–')} |",
        f"| bottleneck | {cut.get('bottleneck', '–')} |",
        f"| timesteps T | {r.T} |",
        f"| dataset | {r.dataset}, {r.samples} test samples |",
        f"| checkpoint | `{r.checkpoint}` |",
        "",
        "## Co-inference",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| backbone accuracy | {a.backbone:.2f}% |",
        f"| co-inference accuracy, all T | {a.co_inference_all_T:.2f}% |",
        f"| co-inference accuracy, early exit ({r.policy['measure']} ≥ {r.policy['threshold']:.4f}) | "
        f"{a.co_inference_exit:.2f}% (drop {a.drop_vs_backbone:.2f} pp vs backbone) |",
        f"| mean timesteps | {r.mean_steps:.2f} of {r.T} |",
        f"| payload bits per sample | {b.payload_bits:.1f} |",
        f"| on-wire bytes per sample (codec headers included) | {b.wire_bytes:.1f} |",
        f"| vs binary spike features over T | {_fmt(b.vs_spikes, '.1f')}x |",
        f"| vs float32 features | {b.vs_float32:.1f}x |",
        f"| vs raw 8-bit input | {b.vs_input:.1f}x |",
        f"| cloud-only sends | {c.name}: {c.bits:.0f} bits per sample ({c.source}) |",
        "",
    ]
    if r.event_stream:
        s = r.event_stream
        lines += [
            f"Event input: a recording holds {s['events']:.0f} events on average — {s['aer_bits']:.0f} bits as AER "
            f"(5 bytes per event; co-inference sends {s['aer_bits'] / max(b.payload_bits, 1e-9):.1f}x fewer payload "
            f"bits), {s['gzip_bits']:.0f} bits gzipped ({s['gzip_bits'] / max(b.payload_bits, 1e-9):.1f}x), "
            f"{s['frame_bits']:.0f} bits as the T-bin frames in 8-bit counts "
            f"({s['frame_bits'] / max(b.payload_bits, 1e-9):.1f}x).",
            "",
        ]
    if r.runtime:
        s = r.runtime
        lines += [
            f"Live run over gRPC on loopback ({s['samples']} samples): accuracy {_fmt(s['accuracy'])}%, "
            f"{s['mean_steps']:.2f} timesteps, {s['payload_bits']:.1f} payload bits and {s['wire_bytes']:.1f} "
            f"codec bytes ({s['grpc_bytes']:.1f} gRPC message bytes) per sample, round trip "
            f"{s['rtt_ms']:.2f} ms per frame.",
            "",
        ]
    if r.codecs:
        lines += [
            "## Rate–accuracy against cloud-only image files (the same samples)",
            "",
            "| sent | bits per sample | accuracy % | drop vs backbone (pp) |",
            "| --- | --- | --- | --- |",
            f"| co-inference, early exit (payload) | {b.payload_bits:.0f} | {a.co_inference_exit:.2f} | "
            f"{a.drop_vs_backbone:.2f} |",
            *(
                f"| cloud-only {p.name} (file) | {p.bits:.0f} | {p.accuracy:.2f} | {a.backbone - p.accuracy:.2f} |"
                for p in r.codecs
            ),
            "",
        ]
    lines += [
        "## Bits per split point (SpikeBottleNet Table 1 style, all T sent)",
        "",
        "| source | point | bottleneck | T | payload bits | vs spikes | vs float32 | vs input | accuracy | drop |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in r.table1:
        lines.append(
            f"| {t['source']} | {t['point']} | {t['bottleneck']} | {t['T']} | {_fmt(t['payload_bits'], '.1f')} "
            f"| {_fmt(t['vs_spikes'], '.1f')} | {_fmt(t['vs_float32'], '.1f')} | {_fmt(t['vs_input'], '.1f')} "
            f"| {_fmt(t['accuracy'])} | {_fmt(t['drop'])} |"
        )
    se = r.split_energy
    points = next(iter(se.snn.values()))
    lines += [
        "",
        f"## Edge energy per split point, mJ (SpikeBottleNet Table 3 style, scope `{se.scope}`)",
        "",
        "| point | " + " | ".join(x["point"] for x in points) + " |",
        "| --- |" + " --- |" * len(points),
    ]
    for kind, table in (("DNN twin", se.dnn), ("SNN", se.snn)):
        for hw, rows in table.items():
            label = f"{kind}, {r.hardware[hw].title}"
            lines.append(f"| {label} | " + " | ".join(f"{x['energy_mj']:.4g}" for x in rows) + " |")
    lines += [
        "",
        f"## Edge energy per sample, mJ (full scope; radio {r.radio.name}, "
        f"{r.radio.nj_per_bit} nJ/bit: {r.radio.source}; cloud-only sends {c.name})",
        "",
        "| hardware | co-inference (compute + radio) | edge-only SNN | edge-only DNN | cloud-only (radio) "
        "| compute only vs edge-only SNN | same, SpikeBottleNet's scope | with radio vs edge-only SNN "
        "| vs edge-only DNN | break-even radio, nJ/bit |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for hw, x in e.items():
        lines.append(
            f"| {r.hardware[hw].title} | {x.co_inference_mj:.4g} ({x.co_inference_compute_mj:.3g} + "
            f"{x.co_inference_radio_mj:.3g}) | {x.edge_only_snn_mj:.4g} | {x.edge_only_dnn_mj:.4g} | "
            f"{x.cloud_only_mj:.4g} | {saving(x.compute_reduction_vs_edge_only_snn)} | "
            f"{saving(x.compute_reduction_vs_edge_only_snn_paper)} | "
            f"{saving(x.reduction_vs_edge_only_snn)} | {saving(x.reduction_vs_edge_only_dnn)} | "
            f"{x.break_even_nj_per_bit:.3g} |"
        )
    for hw, x in e.items():
        share = head_share(x)
        if share:
            lines += ["", f"On {r.hardware[hw].title} {share}."]
    t = r.timings_ms
    lines += [
        "",
        f"## Latency per sample, ms (edge compute x{r.device_factor:g} device factor, round trip "
        f"{r.latency[0]['rtt_ms']:g} ms)",
        "",
        f"Measured here: edge {t.edge_step:.2f} ms and cloud {t.cloud_step:.2f} ms per timestep, whole "
        f"SNN {t.edge_full:.2f} ms, DNN twin {_fmt(t.dnn_full)} ms per sample. The runtime's own "
        f"cost per frame, {r.frame_overhead.ms:.2f} ms: {r.frame_overhead.source}. Cloud-only sends {c.name}.",
        "",
        "| Mbit/s | edge-only SNN | edge-only DNN | cloud-only | cloud-only, raw 8-bit | co-inference all T "
        "| co-inference exit, pipelined | speed-up vs edge-only | vs cloud-only |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for x in r.latency:
        lines.append(
            f"| {x['bandwidth_mbps']:g} | {x['edge_only_snn']:.2f} | {_fmt(x['edge_only_dnn'])} | "
            f"{x['cloud_only']:.2f} | {x['cloud_only_raw']:.2f} | {x['co_inference']:.2f} | "
            f"{x['co_inference_exit_pipelined']:.2f} | {x['speedup_vs_edge_only']:.2f}x | "
            f"{x['speedup_vs_cloud_only']:.2f}x |"
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
