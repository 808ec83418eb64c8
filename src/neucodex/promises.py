"""NeuCODEX's promises at one operating point, checked on a run's own figures.

Co-inference is worth deploying only where one cut keeps every promise at once: an early cut, the
backbone's accuracy, few timesteps, a small code, a small edge, a fast answer and a cheap radio.
:func:`check_promises` states each target, the figure measured, and whether it holds (or by how
much it misses), so a demo or a report says it in one place instead of leaving readers to compare
tables. The targets are the CIFAR-10 ones the project set itself; an early cut is one of the
ResNet's first residual blocks (rb1, rb2, rb4) or the VGG's first two convolutions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .profiles import radio_profile

EARLY_CUTS = ("rb1", "rb2", "rb4", "conv1", "conv2")
MAX_DROP_PP = 2.0
MAX_STEPS = 2.0
MIN_VS_FLOAT32 = 2048.0
MAX_PAYLOAD_BITS = 512.0
MIN_SAVING_PAPER = 0.90  # edge compute below edge-only SNN, SpikeBottleNet's scope
MIN_SAVING_FULL = 0.80  # the same, every layer the edge runs
MIN_SPEEDUP_VS_EDGE = 3.0
LATENCY_MBPS = (1.0, 10.0)


@dataclass(frozen=True)
class Check:
    """One target: what it asks, what was measured, whether it holds, and the gap when it does not."""

    target: str
    measured: str
    met: bool
    gap: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _ratio_gap(have: float, want: float, more_is_better: bool) -> str:
    """How far ``have`` is from ``want``: as a factor when it is far, as a difference when close."""
    factor, word = (want / have, "short") if more_is_better else (have / want, "over")
    return f"{factor:.1f}x {word}" if factor >= 1.1 else f"{abs(have - want):.2f} {word}"


def check_promises(summary: dict, hardware: str = "45nm") -> list[Check]:
    """Every target against a demo summary (:func:`neucodex.demo.run_demo`'s dict: the live
    accuracy drop, mean steps and payload bits, the energy under ``hardware``, the latency rows).
    The radio targets use the run's break-even radio cost, so BLE and Wi-Fi are both judged."""
    e = summary["energy_mj"][hardware]
    drop, steps, bits = summary["accuracy_drop"], summary["mean_steps"], summary["payload_bits"]
    vs_f32 = summary["ratios"]["vs_float32"]
    point = summary["point"]
    checks = [
        Check(
            "an early cut (ResNet rb1, rb2, rb4; VGG conv1, conv2)",
            point,
            point in EARLY_CUTS,
            "" if point in EARLY_CUTS else "a later cut (the edge runs more of the network)",
        ),
        Check(
            f"≤ {MAX_DROP_PP:g} pp below the backbone with early exit",
            f"{drop:.2f} pp",
            drop <= MAX_DROP_PP,
            f"{drop - MAX_DROP_PP:.2f} pp over",
        ),
        Check(f"≤ {MAX_STEPS:g} mean timesteps", f"{steps:.2f}", steps <= MAX_STEPS, f"{steps - MAX_STEPS:.2f} over"),
        Check(
            f"≥ {MIN_VS_FLOAT32:g}x fewer bits than float32 at the cut",
            f"{vs_f32:.0f}x",
            vs_f32 >= MIN_VS_FLOAT32,
            _ratio_gap(vs_f32, MIN_VS_FLOAT32, True),
        ),
        Check(
            f"≤ {MAX_PAYLOAD_BITS:g} payload bits per sample",
            f"{bits:,.0f}",
            bits <= MAX_PAYLOAD_BITS,
            _ratio_gap(bits, MAX_PAYLOAD_BITS, False),
        ),
    ]
    for scope, key, want in (
        ("SpikeBottleNet's scope", "compute_reduction_vs_edge_only_snn_paper", MIN_SAVING_PAPER),
        ("full scope", "compute_reduction_vs_edge_only_snn", MIN_SAVING_FULL),
    ):
        have = e[key]
        checks.append(
            Check(
                f"≥ {100 * want:g}% less edge compute than edge-only SNN ({scope}, {hardware})",
                f"{100 * have:.1f}%",
                have >= want,
                f"{100 * (want - have):.1f} pp short",
            )
        )
    rows = {round(r["bandwidth_mbps"], 6): r for r in summary["latency_ms"]}
    for mbps in LATENCY_MBPS:
        r = rows.get(mbps)
        if r is None:
            continue
        vs_edge, vs_cloud = r["speedup_vs_edge_only"], r["speedup_vs_cloud_only"]
        checks.append(
            Check(
                f"at {mbps:g} Mbit/s: ≥ {MIN_SPEEDUP_VS_EDGE:g}x faster than edge-only SNN",
                f"{vs_edge:.2f}x",
                vs_edge >= MIN_SPEEDUP_VS_EDGE,
                f"{MIN_SPEEDUP_VS_EDGE - vs_edge:.2f}x short",
            )
        )
        checks.append(
            Check(
                f"at {mbps:g} Mbit/s: faster than cloud-only ({summary['cloud_only']['name']})",
                f"{vs_cloud:.2f}x",
                vs_cloud > 1.0,
                f"{1 / vs_cloud:.2f}x slower",
            )
        )
    even = e["break_even_nj_per_bit"]
    for radio in ("ble", "wifi"):
        cost = radio_profile(radio).nj_per_bit
        checks.append(
            Check(
                f"edge energy with {radio} ({cost:g} nJ/bit) below edge-only SNN",
                f"break-even {even:.3g} nJ/bit",
                even >= cost,
                f"{cost / even:.1f}x over the break-even" if even > 0 else "co-inference computes more than edge-only",
            )
        )
    return checks


def promises_table(checks: list[Check]) -> list[str]:
    """One line per target: held, or missed by how much."""
    met = sum(c.met for c in checks)
    lines = [f"  promises            {met} of {len(checks)} targets met at this operating point"]
    for c in checks:
        verdict = "met" if c.met else f"missed: {c.gap}"
        lines.append(f"    {'✓' if c.met else '✗'} {c.target}: {c.measured} ({verdict})")
    return lines
