"""The seeds' grid: every cell listed, the right entries chosen, every miss named with its size."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import neucodex.pretrained as zoo
from neucodex import grid
from neucodex.cli import main
from neucodex.pretrained import ZooEntry

ROOT = Path(__file__).resolve().parents[1]


def entry(name: str, kind: str = "backbone", model: str = "resnet18-half", T: int = 4, **kw) -> ZooEntry:
    base = dict(
        name=name, kind=kind, dataset="imagefolder", model=model, T=T, point=None, bottleneck=None,
        accuracy_run=None, sha256="0" * 64, json_sha256="0" * 64, source="test",
        check={"dataset": "cifar10-demo"},
    )  # fmt: skip
    return ZooEntry(**{**base, **kw})


def cut(name: str, base: str, accuracy: float, bits: float, figures: dict | None = None) -> ZooEntry:
    heldout = {"accuracy": accuracy, "accuracy_all_t": accuracy, "payload_bits": bits}
    return entry(name, "coinference", point="rb1", base=base, heldout=heldout, figures=figures)


def figures(saving: float, speedup: float, float32_bits: float = 1e6) -> dict:
    return {
        "float32_bits": float32_bits,
        "edge_compute_saving": saving - 0.05,
        "edge_compute_saving_paper": saving,
        "latency_speedup": {"1": speedup, "10": speedup, "100": speedup},
    }


BB = entry("c-r18", heldout={"accuracy_all_t": 84.0})


def test_every_seed_cell_is_listed_even_when_the_zoo_has_nothing_for_it():
    cells = grid.cells([])
    assert [(c.family, c.task) for c in cells] == grid.SEED_CELLS
    assert all(c.missed() == ["no spiking backbone shipped", "no co-inference entry shipped"] for c in cells)
    assert all(c.next_step().startswith("train the DNN twin") for c in cells)


def test_the_backbone_is_the_best_spiking_one_and_a_dnn_twin_never_counts():
    ann = entry("c-r18-ann", T=1, heldout={"accuracy_all_t": 90.0})
    old = entry("c-r18-old", heldout={"accuracy_all_t": 80.0})
    cell = grid.cells([ann, old, BB])[0]
    assert cell.backbone.name == "c-r18" and cell.twin.name == "c-r18-ann"
    alone = grid.cells([ann])[0]
    assert alone.backbone is None and alone.missed()[0] == "no spiking backbone shipped (its DNN twin is)"
    assert alone.next_step().startswith("train the SNN from the DNN twin")
    assert cell.missed()[0] == "backbone 1.00 pp below 85%"


def test_the_cut_missing_fewest_targets_wins_before_the_one_with_fewest_bits():
    small = cut("c-r18-small", "c-r18", 80.0, 100.0, figures(0.95, 4.0))  # drop 4 pp: misses one target
    good = cut("c-r18-good", "c-r18", 83.0, 400.0, figures(0.95, 4.0))  # meets all four
    cell = grid.cells([BB, small, good])[0]
    assert cell.cut.name == "c-r18-good" and cell.drop == pytest.approx(1.0)
    assert cell.vs_float32 == pytest.approx(2500.0)
    assert cell.missed() == ["backbone 1.00 pp below 85%"]


def test_every_missed_target_says_by_how_much():
    c = cut("c-r18-c", "c-r18", 80.0, 1000.0, figures(0.85, 2.5))
    assert grid.cut_misses(c, BB) == [
        "drop 2.00 pp over 2",
        "bits 2.0x too many for 2048x below float32",
        "edge compute saving 5.0 pp short",
        "latency 2.50x, not 3x",
    ]
    assert grid.cut_misses(replace(c, figures=None), BB)[-1].startswith("energy and latency not measured")


def test_a_cell_is_keyed_by_the_dataset_its_demo_set_names_not_its_loader():
    nm = entry("n-vgg11", model="vgg11-half", T=8, dataset="nmnist", check={"dataset": "nmnist-demo"})
    assert grid.task(nm) == "nmnist" and grid.task(BB) == "cifar10"
    cells = grid.cells([nm])
    assert (cells[-1].family, cells[-1].task) == ("vgg11", "nmnist")


def test_the_zoo_command_prints_the_grid(capsys):
    main(["zoo", "--grid"])
    out = capsys.readouterr().out
    assert out.startswith("| backbone | dataset |")
    assert out.count("\n") == 3 + len(grid.cells())


def test_the_results_and_readme_grid_tables_are_the_index():
    """bench/RESULTS.md opens with the grid and the README quotes it: both are `neucodex zoo --grid`."""
    table = grid.markdown()
    assert table in (ROOT / "bench" / "RESULTS.md").read_text(), "regenerate RESULTS' grid with `neucodex zoo --grid`"
    assert table in (ROOT / "README.md").read_text(), "regenerate the README's grid with `neucodex zoo --grid`"


@pytest.mark.slow
def test_measured_figures_are_stored_in_the_index(tmp_path, monkeypatch):
    """The report's figures of a shipped event cut, measured on its demo recordings, land in the index."""
    from neucodex.publish import measure_figures

    index = tmp_path / "index.json"
    index.write_text(zoo.INDEX.read_text())
    monkeypatch.setattr(zoo, "INDEX", index)
    e = replace(zoo.entry("nmnist-vgg11-conv1-c8s2"), figures=None)
    e = measure_figures(e)
    f = zoo.entry(e.name).figures
    assert f == e.figures and f["samples"] == 100 and f["dataset"] == "nmnist-demo"
    assert 0.9 < f["edge_compute_saving"] <= 1.0 and f["latency_speedup"]["10"] > 1.0
    assert f["float32_bits"] == 32 * 17 * 17 * 32  # conv1's 32 channels at 17x17 (half-width VGG-11), float32


def test_figures_of_a_backbone_are_refused():
    from neucodex.publish import measure_figures

    with pytest.raises(zoo.ZooError, match="not a co-inference entry"):
        measure_figures(zoo.entry("nmnist-vgg11"))


@pytest.mark.parametrize(
    ("accuracy", "bits", "step"),
    [(83.0, 1000.0, "rate–distortion fine-tuning"), (80.0, 400.0, "more fine-tuning with hints"), (83.0, 400.0, "–")],
)
def test_the_next_step_answers_the_first_gap(accuracy, bits, step):
    good = entry("c-r18", heldout={"accuracy_all_t": 86.0})
    cell = grid.cells([good, cut("c-r18-c", "c-r18", accuracy + 2.0, bits, figures(0.95, 4.0))])[0]
    assert cell.next_step().startswith(step)
