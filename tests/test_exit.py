"""Early exit: the boundary thresholds, online == offline decisions, calibration, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import neucodex as nc
from neucodex.cli import main
from neucodex.config import load_config
from neucodex.errors import NeucodexError
from neucodex.exit import MEASURES, ExitPolicy, calibrate, confidence, evaluate_policy
from neucodex.training import pretrain

from conftest import calibrate_bn


def fake_logits(T=4, N=200, K=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, K, (N,), generator=g)
    signal = torch.nn.functional.one_hot(labels, K).float() * torch.rand(N, 1, generator=g) * 3
    logits = torch.randn(T, N, K, generator=g) + signal
    return logits, labels


@pytest.mark.parametrize("measure", MEASURES)
def test_confidence_in_unit_interval(measure):
    c = confidence(torch.randn(50, 10) * 5, measure)
    assert c.min() >= 0 and c.max() <= 1 + 1e-6
    assert confidence(torch.tensor([[100.0, 0, 0]]), measure).item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("measure", MEASURES)
def test_threshold_above_one_runs_all_steps(measure):
    logits, labels = fake_logits()
    r = evaluate_policy(logits, labels, ExitPolicy(measure, 1.01))
    assert set(r["steps"]) == {4} and r["mean_steps"] == 4
    assert r["accuracy"] == r["accuracy_all_T"]
    assert r["predictions"] == logits.mean(0).argmax(-1).tolist()


@pytest.mark.parametrize("min_steps", [1, 2, 3])
def test_threshold_zero_exits_at_min_steps(min_steps):
    logits, labels = fake_logits()
    r = evaluate_policy(logits, labels, ExitPolicy("margin", 0.0, min_steps=min_steps))
    assert set(r["steps"]) == {min_steps}
    assert r["predictions"] == logits[:min_steps].sum(0).argmax(-1).tolist()
    assert r["histogram"][min_steps - 1] == 200


@pytest.mark.parametrize("measure", MEASURES)
def test_batched_decisions_equal_a_single_step_loop(measure):
    T = 4
    model = calibrate_bn(nc.create_model("vgg-tiny", T=T), size=32)
    with torch.no_grad():
        model.stages.head[-1].weight.mul_(200.0)  # an untrained head is too timid to tell samples apart
    x = torch.rand(16, 3, 32, 32)
    with torch.no_grad():
        logits = model.set_step_mode("m")(x)
        model.reset_state()
    conf = confidence(logits[: T - 1].mean(0), measure)  # step 1 reaches the head silent: decide later
    mid = np.sort(conf)[7:9].mean()  # between two samples: batch-size float noise cannot flip a decision
    policy = ExitPolicy(measure, float(mid))
    steps, preds = policy.decide(logits)
    model.set_step_mode("s")
    for i in range(16):  # one sample at a time, streaming, as the runtime does
        total, t = None, 0
        with torch.no_grad():
            while True:
                t += 1
                out = model(x[i : i + 1])
                total = out if total is None else total + out
                if policy.check((total / t).numpy(), t, T)[0].item():
                    break
        model.reset_state()
        assert (t, total.argmax(-1).item()) == (steps[i].item(), preds[i].item())
    assert len(set(steps.tolist())) > 1


def test_calibration_meets_the_target_on_its_split():
    logits, labels = fake_logits(N=500)
    for m in MEASURES:
        policy, curve = calibrate(logits, labels, m, target_drop=0.5)
        r = evaluate_policy(logits, labels, policy)
        assert r["accuracy_all_T"] - r["accuracy"] <= 0.5 + 1e-9
        assert r["mean_steps"] == min(
            c["mean_steps"] for c in curve if r["accuracy_all_T"] - c["accuracy"] <= 0.5 + 1e-9
        )


@pytest.mark.parametrize("budget", [1.0, 1.5, 2.5])
def test_calibration_within_a_step_budget_is_the_most_accurate(budget):
    logits, labels = fake_logits(N=500)
    for m in MEASURES:
        policy, curve = calibrate(logits, labels, m, max_steps=budget)
        r = evaluate_policy(logits, labels, policy)
        assert r["mean_steps"] <= budget + 1e-9
        assert r["accuracy"] == max(c["accuracy"] for c in curve if c["mean_steps"] <= budget + 1e-9)
    with pytest.raises(NeucodexError, match="no threshold exits within 1.5 mean timesteps"):
        calibrate(logits, labels, "margin", min_steps=2, max_steps=1.5)


def test_bad_policy():
    with pytest.raises(NeucodexError, match="unknown confidence measure 'x'"):
        ExitPolicy("x")
    with pytest.raises(NeucodexError, match="min_steps"):
        ExitPolicy(min_steps=0)


def test_calibrate_command(tmp_path, capsys):
    cfg = load_config(
        "tiny",
        [
            f"out={tmp_path}",
            "data.size=16",
            "data.limit=120",
            "model.T=3",
            "model.kwargs={widths: [8, 16, 16]}",
            "optim.epochs=2",
        ],
    )
    m = pretrain(cfg, progress=False)
    assert main(["calibrate", "--checkpoint", m.checkpoint, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert {row["measure"] for row in r["rows"]} == set(MEASURES)
    meta = json.loads((tmp_path / "tiny" / "backbone" / "model.json").read_text())
    assert meta["exit_policy"] == r["chosen"]["policy"]
    assert (tmp_path / "tiny" / "backbone" / "exit_tradeoff.png").stat().st_size > 1000
    assert meta["sha256"] == m.model_id  # the weights, and so the model id, are unchanged
    assert main(["calibrate", "--checkpoint", m.checkpoint, "--max-steps", "1.5", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["max_steps"] == 1.5 and all(row["val_mean_steps"] <= 1.5 + 1e-9 for row in r["rows"])
    assert r["chosen"]["val_accuracy"] == max(row["val_accuracy"] for row in r["rows"])


@pytest.mark.parametrize("measure", MEASURES)
def test_one_check_per_batch_equals_one_check_per_session(measure):
    """The server decides a whole batch at once: rows at different timesteps, under different
    policies and T, get exactly the decisions each would get alone."""
    from neucodex.runtime.cloud import CloudSession, record_batch

    torch.manual_seed(0)
    policies = [ExitPolicy(measure, 0.5), ExitPolicy(measure, 0.9, min_steps=2), ExitPolicy(measure, 0.3, max_steps=2)]
    batch = []
    for k in range(9):
        s = CloudSession(None, policies[k % 3], T=3 + k % 2)  # type: ignore[arg-type]
        s.number, s.t, s.sums = k, k % 3, ((torch.randn(10) * 3).numpy() if k % 3 else None)
        batch.append(s)
    logits = torch.randn(9, 10) * 3
    expected = []
    for s, row in zip(batch, logits, strict=True):  # the per-session check, int t, as before batching
        sums = row if s.sums is None else torch.from_numpy(s.sums) + row
        done, conf = s.policy.check((sums / (s.t + 1))[None].numpy(), s.t + 1, s.T)
        expected.append((s.t, int((sums / (s.t + 1)).argmax()), bool(done[0]), float(conf[0])))
    together = record_batch(batch, logits, [[] for _ in batch])
    for d, (t, pred, done, conf) in zip(together, expected, strict=True):
        assert (d.timestep, d.prediction, d.exit) == (t, pred, done) and d.confidence == pytest.approx(conf, abs=1e-6)
    assert {d.exit for d in together} == {True, False}


@pytest.mark.parametrize("measure", MEASURES)
def test_the_server_decides_as_the_policy_at_the_threshold(measure):
    """The server's batched decision is the policy's own check (one NumPy implementation), even with
    the threshold at a row's confidence or a hair (not representable in float32) either side of it;
    a lone session too."""
    import math

    from neucodex.runtime.cloud import CloudSession, record_batch

    torch.manual_seed(1)
    steps = [1, 2, 3, 1, 2, 3]
    before, logits = torch.randn(6, 10) * 3, torch.randn(6, 10) * 3  # the sums so far, this step's logits
    sums = torch.stack([logits[k] + before[k] if t > 1 else logits[k] for k, t in enumerate(steps)])
    means = sums / torch.tensor(steps)[:, None]  # as the server divides
    at = float(confidence(means.numpy(), measure)[2])
    for th in (at, math.nextafter(at, 0.0), math.nextafter(at, 1.0), at + 1e-9, 0.0, 2.0):
        for policy in (ExitPolicy(measure, th), ExitPolicy(measure, th, min_steps=2, max_steps=3)):
            done, conf = policy.check(means.numpy(), np.array(steps), 3)
            batch = []
            for k, t in enumerate(steps):
                s = CloudSession(None, policy, T=3)  # type: ignore[arg-type]
                s.number, s.t, s.sums = k, t - 1, (before[k].numpy() if t > 1 else None)
                batch.append(s)
            rows = record_batch(batch, logits, [[] for _ in steps])
            assert [d.exit for d in rows] == done.tolist()
            assert [d.confidence for d in rows] == conf.tolist()
            lone = CloudSession(None, policy, T=3)  # type: ignore[arg-type]
            lone.number, lone.t, lone.sums = 0, steps[2] - 1, before[2].numpy()
            (d,) = record_batch([lone], logits[2:3], [[]])  # a lone session: no stack
            assert (d.exit, d.confidence) == (bool(done[2]), float(conf[2]))
