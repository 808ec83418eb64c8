"""NeuCODEX's promises: each target judged on the figures given, with the gap when missed."""

from __future__ import annotations

import pytest

from neucodex.promises import check_promises, promises_table


def summary(**over) -> dict:
    """A run's figures that keep every promise; ``over`` breaks some."""
    s = {
        "point": "rb1",
        "accuracy_drop": 1.5,
        "mean_steps": 1.9,
        "payload_bits": 400.0,
        "ratios": {"vs_float32": 2621.44},
        "energy_mj": {
            "45nm": {
                "compute_reduction_vs_edge_only_snn_paper": 0.93,
                "compute_reduction_vs_edge_only_snn": 0.85,
                "break_even_nj_per_bit": 400.0,
            }
        },
        "latency_ms": [
            {"bandwidth_mbps": b, "speedup_vs_edge_only": 3.5, "speedup_vs_cloud_only": 1.2} for b in (1, 10, 100)
        ],
        "cloud_only": {"name": "WebP q70"},
    }
    s.update(over)
    return s


def test_a_run_that_keeps_every_promise():
    checks = check_promises(summary())
    assert len(checks) == 13 and all(c.met for c in checks)
    assert promises_table(checks)[0].strip() == "promises            13 of 13 targets met at this operating point"


@pytest.mark.parametrize(
    ("over", "target", "gap"),
    [
        ({"point": "rb8"}, "an early cut", "a later cut"),
        ({"accuracy_drop": 2.65}, "≤ 2 pp below the backbone", "0.65 pp over"),
        ({"mean_steps": 2.19}, "≤ 2 mean timesteps", "0.19 over"),
        ({"payload_bits": 6729.0}, "≤ 512 payload bits", "13.1x over"),
        ({"ratios": {"vs_float32": 156.0}}, "≥ 2048x fewer bits", "13.1x short"),
    ],
)
def test_each_miss_names_its_gap(over, target, gap):
    checks = check_promises(summary(**over))
    missed = [c for c in checks if not c.met]
    assert len(missed) == 1 and missed[0].target.startswith(target) and missed[0].gap.startswith(gap)


def test_energy_latency_and_radios_are_judged_on_the_figures():
    s = summary()
    s["energy_mj"]["45nm"].update(
        compute_reduction_vs_edge_only_snn_paper=0.876, compute_reduction_vs_edge_only_snn=0.791
    )
    s["energy_mj"]["45nm"]["break_even_nj_per_bit"] = 9.52
    s["latency_ms"][1]["speedup_vs_cloud_only"] = 0.67
    missed = {c.target: c.gap for c in check_promises(s) if not c.met}
    assert missed == {
        "≥ 90% less edge compute than edge-only SNN (SpikeBottleNet's scope, 45nm)": "2.4 pp short",
        "≥ 80% less edge compute than edge-only SNN (full scope, 45nm)": "0.9 pp short",
        "at 10 Mbit/s: faster than cloud-only (WebP q70)": "1.49x slower",
        "edge energy with ble (153 nJ/bit) below edge-only SNN": "16.1x over the break-even",
        "edge energy with wifi (283.17 nJ/bit) below edge-only SNN": "29.7x over the break-even",
    }
