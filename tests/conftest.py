"""Shared fixtures: small real models whose neurons actually fire."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from torch import nn

import neucodex as nc


def assert_same_logits(a: torch.Tensor, b: torch.Tensor, where: str = "") -> None:
    """One timestep at a time and a whole ``[T, B]`` sequence carry the same spikes, but the
    classifier's float sums may round differently: oneDNN blocks a ``[T·B]`` matmul otherwise
    than a ``[B]`` one (1.5e-8 seen on an AMX CPU). A flipped spike moves a logit by far more."""
    assert a.shape == b.shape, where
    torch.testing.assert_close(a, b, rtol=0.0, atol=1e-6, msg=lambda m: f"{where}: {m}")
    assert torch.equal(a.argmax(-1), b.argmax(-1)), where


def sigint_as_from_a_terminal() -> None:
    """``preexec_fn`` for a child that a test interrupts: SIGINT handled as a terminal's Ctrl-C is.
    A suite started in the background by a non-interactive shell (``nohup … &``) hands its children
    SIGINT *ignored*, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def calibrate_bn(model: nc.Backbone, size: int = 32, batch: int = 8) -> nc.Backbone:
    """Fill BN running statistics from one training-mode pass, then switch to eval.

    A fresh model's running stats (mean 0, var 1) leave every LIF silent in eval mode; real
    statistics give realistic firing rates, so the equality tests compare real spike trains.
    """
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative average: one pass sets the statistics
    mode = model.step_mode
    model.train().set_step_mode("m" if model.spiking else "s")
    with torch.no_grad():
        model(torch.rand(batch, model.in_channels, size, size))
    model.reset_state()
    return model.eval().set_step_mode(mode)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


TINY_RUN = [
    "data.size=16",
    "data.limit=600",
    "model.T=3",
    "model.kwargs={widths: [16, 32, 32]}",
    "optim.epochs=6",
    "optim.batch_size=32",
    "finetune.epochs=3",
    "finetune.batch_size=32",
]


@pytest.fixture(scope="session")
def coinference_checkpoint(tmp_path_factory):
    """A small trained co-inference checkpoint on digits (T=3, conv2, c4s2), shared by the session."""
    from neucodex.config import load_config
    from neucodex.training import finetune, pretrain

    torch.manual_seed(0)
    cfg = load_config("tiny", [f"out={tmp_path_factory.mktemp('runs')}", *TINY_RUN])
    pretrain(cfg, progress=False)
    return finetune(cfg, cfg.run_dir / "backbone", "conv2", "c4s2", progress=False).checkpoint


HARDWARE_SKIPS = ("needs a GPU", "needs CUDA")
"""The only skip reasons allowed on CI: hardware a CI machine lacks."""
_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not any(h in reason for h in HARDWARE_SKIPS):
            _skipped.append(f"{report.nodeid}: {reason}")


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


def pytest_sessionfinish(session, exitstatus):
    """On CI (``CI=true``) a skipped test that should run there fails the run: a skip would hide
    exactly the missing dependency or data the fresh clone is meant to catch."""
    if _skipped and _ci() and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _skipped and _ci():
        terminalreporter.write_line(f"CI: {len(_skipped)} test(s) skipped that must run on CI:", red=True)
        for line in _skipped:
            terminalreporter.write_line(f"  {line}", red=True)
