"""The command line: tables, JSON, and one-line errors with a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from neucodex.cli import main


def test_models_json(capsys):
    assert main(["models", "vgg-tiny", "resnet-tiny", "-T", "4", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["point"] for r in rows if r["model"] == "vgg-tiny"] == ["conv1", "conv2", "conv3"]
    last = rows[-1]
    assert last["model"] == "resnet-tiny" and last["shape"] == [128, 4, 4]
    assert last["spike_bits"] == 128 * 4 * 4 * 4
    assert last["float32_bits"] == 128 * 4 * 4 * 32


def test_models_table(capsys):
    assert main(["models", "vgg-tiny"]) == 0
    out = capsys.readouterr().out
    assert "conv3" in out and "24,346" in out


def test_unknown_model_is_one_line_error():
    proc = subprocess.run([sys.executable, "-m", "neucodex.cli", "models", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "neucodex: error: unknown model 'nope'; available: "
        "resnet-tiny, resnet18, resnet18-half, resnet34, resnet50, vgg-tiny, vgg11, vgg11-half, vgg16, vgg16-half"
    ]
    assert "Traceback" not in proc.stderr


def test_datasets_list_and_load(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in (
        "digits",
        "digits-dvs",
        "cifar10",
        "cifar100",
        "caltech101",
        "cifar10-dvs",
        "n-caltech101",
        "nmnist",
        "imagefolder",
    ):
        assert f"\n{name} " in f"\n{out}"
    assert main(["datasets", "digits", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {s: v["samples"] for s, v in report["splits"].items()} == {"train": 1295, "val": 143, "test": 359}


def test_finetune_flags_set_the_finetune_section():
    from neucodex.cli import build_parser
    from neucodex.commands.common import experiment

    args = build_parser().parse_args(["finetune", "--epochs", "2", "--lr", "0.01", "--batch-size", "8"])
    cfg = experiment(args, optim="finetune")
    assert (cfg.finetune.epochs, cfg.finetune.lr, cfg.finetune.batch_size) == (2, 0.01, 8)
    assert cfg.optim.epochs == 20  # the tiny preset's pretraining epochs are untouched
    args = build_parser().parse_args(["train", "--epochs", "3"])
    assert experiment(args).optim.epochs == 3


def test_report_radio_is_checked_before_any_work(capsys):
    with pytest.raises(SystemExit) as e:
        main(["report", "runs/none", "--radio", "5g"])
    assert e.value.code == 2 and "invalid choice: '5g'" in capsys.readouterr().err


def test_output_into_a_closed_pipe_is_no_traceback():
    proc = subprocess.Popen(
        [sys.executable, "-m", "neucodex.cli", "datasets"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()  # the reader is gone before the first line is written (`| head -0`)
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err


@pytest.mark.parametrize(
    "argv, flag, got",
    [
        (["energy", "--samples", "0"], "--samples", "must be at least 1, got 0"),
        (["models", "--input-size", "-4"], "--input-size", "must be at least 1, got -4"),
        (["datasets", "digits", "--size", "0"], "--size", "must be at least 1, got 0"),
        (["evaluate", "--checkpoint", "X", "--batch-size", "0"], "--batch-size", "must be at least 1, got 0"),
        (["evaluate", "--checkpoint", "X", "--limit", "1.5"], "--limit", "expected a whole number, got '1.5'"),
        (["serve", "--checkpoint", "X", "--max-batch", "0"], "--max-batch", "must be at least 1, got 0"),
        (["calibrate", "--checkpoint", "X", "--min-steps", "0"], "--min-steps", "must be at least 1, got 0"),
    ],
)
def test_counts_and_sizes_below_one_are_refused_before_any_work(argv, flag, got, capsys):
    """Once a traceback (ZeroDivisionError, a conv on a 0x0 input, a DataLoader's ValueError) or
    silently taken as 1 or as the default; now argparse's usage and one error line, exit 2."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"neucodex {argv[0]}: error: argument {flag}: {got}"


def test_an_input_too_small_for_the_model_is_one_line(capsys):
    assert main(["models", "vgg11", "--input-size", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neucodex: error: vgg11: a 4x4 input is too small for its layers (")
