"""A tampered model.json is refused with one line naming what is wrong — never a traceback."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch

from neucodex.checkpoint import load_checkpoint
from neucodex.cli import main
from neucodex.errors import NeucodexError

TAMPER = {
    "no model": lambda m: m.pop("model"),
    "model is a list": lambda m: m.__setitem__("model", []),
    "kwargs is a list": lambda m: m["model"].__setitem__("kwargs", [1, 2]),
    "unknown model name": lambda m: m["model"].__setitem__("name", "nope"),
    "unknown builder keyword": lambda m: m["model"]["kwargs"].__setitem__("frobnicate", 1),
    "num_classes -1": lambda m: m["model"]["kwargs"].__setitem__("num_classes", -1),
    "input_size 1e9": lambda m: m["model"]["kwargs"].__setitem__("input_size", 1e9),
    "in_channels 0": lambda m: m["model"]["kwargs"].__setitem__("in_channels", 0),
    "T 0": lambda m: m["model"]["kwargs"].__setitem__("T", 0),
    "huge widths": lambda m: m["model"]["kwargs"].__setitem__("widths", [10**9] * 3),
    "spiking 'yes'": lambda m: m["model"]["kwargs"].__setitem__("spiking", "yes"),
    "bottleneck c999999999s1": lambda m: m["model"]["coinference"].__setitem__("bottleneck", "c999999999s1"),
    "unknown split point": lambda m: m["model"]["coinference"].__setitem__("point", "rb99"),
    "exit policy with an unknown key": lambda m: m.__setitem__("exit_policy", {"threshold": 0.5, "bogus": 1}),
    "exit policy a string": lambda m: m.__setitem__("exit_policy", "fast"),
    "min_steps '1'": lambda m: m.__setitem__("exit_policy", {"threshold": 0.5, "min_steps": "1"}),
    "threshold 'abc'": lambda m: m.__setitem__("exit_policy", {"threshold": "abc"}),
    "a 10 KB measure name": lambda m: m.__setitem__("exit_policy", {"measure": "x" * 10_000, "threshold": 0.5}),
    "channel probabilities out of (0, 1)": lambda m: m.__setitem__("channel_probs", [2.0] * 4),
    "channel probabilities of the wrong length": lambda m: m.__setitem__("channel_probs", [0.5] * 3),
    "context probabilities out of (0, 1)": lambda m: m.__setitem__("context_probs", [[0.5] * 4, [1.0] * 4, [0.5] * 4]),
    "context probabilities of the wrong shape": lambda m: m.__setitem__("context_probs", [[0.5] * 4] * 2),
    "no sha256": lambda m: m.pop("sha256"),
    "another format": lambda m: m.__setitem__("format", "pickle"),
    "a future version": lambda m: m.__setitem__("version", 99),
    "dataset a list": lambda m: m.__setitem__("dataset", [1]),
    "metrics a string": lambda m: m.__setitem__("metrics", "x"),
}


@pytest.fixture(scope="module")
def original(coinference_checkpoint) -> dict:
    return json.loads((Path(coinference_checkpoint) / "model.json").read_text())


def tampered(src: str, original: dict, mutate, tmp_path: Path) -> Path:
    d = tmp_path / "ck"
    shutil.copytree(src, d)
    m = copy.deepcopy(original)
    mutate(m)
    (d / "model.json").write_text(json.dumps(m))
    return d


@pytest.mark.parametrize("case", list(TAMPER))
def test_a_tampered_model_json_is_one_clear_line(case, coinference_checkpoint, original, tmp_path):
    d = tampered(coinference_checkpoint, original, TAMPER[case], tmp_path)
    with pytest.raises(NeucodexError) as e:
        load_checkpoint(d)
    message = str(e.value)
    assert "\n" not in message and 10 < len(message) < 400, message


def test_the_cli_says_it_in_one_line(coinference_checkpoint, original, tmp_path, capsys):
    d = tampered(coinference_checkpoint, original, TAMPER["threshold 'abc'"], tmp_path)
    assert main(["evaluate", "--checkpoint", str(d)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "threshold must be a number" in err[0]


def test_codemodels_counts_the_code_models_and_changes_only_the_bits(coinference_checkpoint, tmp_path, capsys):
    """``neucodex codemodels`` stores channel and context probabilities counted on training images:
    the weights (model id) stay, the probabilities are valid, and the measured payload with them is
    no larger than without (auto keeps the smallest format)."""
    from neucodex.accounting import measure_bits
    from neucodex.evaluate import load_split, to_model_input

    d = tmp_path / "ck"
    shutil.copytree(coinference_checkpoint, d)
    before = json.loads((d / "model.json").read_text())
    for key in ("channel_probs", "context_probs"):
        before.pop(key, None)
    (d / "model.json").write_text(json.dumps(before))
    assert main(["codemodels", "--checkpoint", str(d), "--samples", "40", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    ck = load_checkpoint(d)
    assert ck.info.sha256 == before["sha256"] and summary["samples"] == 40
    C = ck.model.code_shape[0]
    assert ck.info.context.shape == (3, C) and ((0 < ck.info.context) & (ck.info.context < 1)).all()
    assert 0 < summary["h_context_bits"] <= summary["h_channel_bits"] + 1e-9
    assert ck.info.metrics["code_models"] == summary
    x = torch.stack([s[0] for s in (load_split(ck.info.experiment(), "test", ck.model.T)[i] for i in range(16))])
    x = to_model_input(x, torch.device("cpu"))
    plain = measure_bits(ck.model, x)
    learned = measure_bits(ck.model, x, channel_probs=ck.info.probs, context_probs=ck.info.context)
    assert learned.payload_bits <= plain.payload_bits
    assert main(["codemodels", "--checkpoint", "zoo:cifar10-resnet18-rb4"]) == 2
    assert "shipped read-only" in capsys.readouterr().err
