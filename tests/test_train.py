"""Training: loss goes down, checkpoints round-trip bit for bit, resume, clear errors, sweep tables."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import neucodex as nc
from neucodex.bottleneck import CoInferenceModel
from neucodex.checkpoint import CheckpointError, load_checkpoint
from neucodex.config import ConfigError, load_config, presets
from neucodex.data import build_dataset
from neucodex.errors import NeucodexError
from neucodex.evaluate import load_split, loader, predict
from neucodex.sweep import run_sweep, summarize_sweep, sweep_dir
from neucodex.training import classification_loss, finetune, pretrain

from conftest import sigint_as_from_a_terminal

pytestmark = pytest.mark.slow  # trains models or runs servers

TINY = [
    "data.size=16",
    "data.limit=96",
    "model.T=2",
    "model.kwargs={widths: [4, 8, 8]}",
    "optim.epochs=1",
    "optim.batch_size=32",
    "finetune.epochs=1",
    "finetune.batch_size=32",
]


def cfg_for(tmp_path, *extra):
    return load_config("tiny", [f"out={tmp_path}", *TINY, *extra])


def test_a_few_steps_reduce_the_loss():
    model = nc.create_model("vgg-tiny", T=2, in_channels=1, widths=(8, 16, 16)).train().set_step_mode("m")
    digits = build_dataset("digits", "train", train_augment=False)
    x = torch.stack([digits[i][0] for i in range(64)])
    y = torch.tensor([digits[i][1] for i in range(64)])
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    losses = []
    for _ in range(20):
        loss = classification_loss(model(x), y, per_timestep=True)
        model.reset_state()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0] and min(losses[-5:]) < min(losses[:5])


def test_per_timestep_loss_is_mean_of_cumulative_ce():
    logits, y = torch.randn(3, 5, 4), torch.tensor([0, 1, 2, 3, 0])
    expected = sum(F.cross_entropy(logits[: t + 1].mean(0), y) for t in range(3)) / 3
    assert torch.allclose(classification_loss(logits, y, per_timestep=True), expected)
    assert torch.allclose(classification_loss(logits, y, per_timestep=False), F.cross_entropy(logits.mean(0), y))
    weighted = (3 * F.cross_entropy(logits[0], y) + F.cross_entropy(logits.mean(0), y)) / 4  # t=1 counts 3x, t=2 0x
    assert torch.allclose(classification_loss(logits, y, True, weights=[3, 0, 1]), weighted)
    assert torch.allclose(classification_loss(logits, y, True, weights=[2, 2, 2]), expected)


def test_checkpoint_round_trip_is_bit_exact(tmp_path):
    cfg = cfg_for(tmp_path)
    m = pretrain(cfg, progress=False)
    ck = load_checkpoint(m.checkpoint)
    assert ck.model_id == m.model_id and len(ck.model_id) == 64
    assert ck.info.dataset["name"] == "digits" and ck.info.experiment().model.T == 2 and ck.info.model.T == 2
    test = loader(load_split(cfg, "test"), 32, False, 0, 0)
    again, labels = predict(ck.model, test, torch.device("cpu"))
    assert 100 * (again.mean(0).argmax(-1) == labels).float().mean().item() == pytest.approx(m.test_accuracy)
    ck2 = load_checkpoint(m.checkpoint)
    assert torch.equal(predict(ck2.model, test, torch.device("cpu"))[0], again)


def test_resume_continues_where_it_stopped(tmp_path, capsys):
    straight = pretrain(cfg_for(tmp_path, "name=a", "optim.epochs=2"), resume=True, progress=False)
    assert "nothing to resume in" in capsys.readouterr().err  # said, then trained from the start
    first = pretrain(cfg_for(tmp_path, "name=b", "optim.epochs=1"), progress=False)  # "stopped" after one epoch
    resumed = pretrain(cfg_for(tmp_path, "name=b", "optim.epochs=2"), resume=True, progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert resumed.wall_s == pytest.approx(sum(h["wall_s"] for h in resumed.history))  # both runs' time
    assert resumed.wall_s > first.wall_s
    curves = (Path(resumed.checkpoint) / "history.csv").read_text().splitlines()
    assert curves[0].startswith("epoch,train_loss,train_accuracy,val_accuracy") and len(curves) == 3
    if importlib.util.find_spec("tensorboard"):
        assert list((Path(resumed.checkpoint) / "tensorboard").glob("events.out.tfevents.*"))
    a, b = load_checkpoint(straight.checkpoint).model, load_checkpoint(resumed.checkpoint).model
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    assert resumed.model_id == straight.model_id


def test_bad_checkpoints_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at .*expected model.json and model.safetensors"):
        load_checkpoint(tmp_path / "nothing")
    m = pretrain(cfg_for(tmp_path), progress=False)
    d = m.checkpoint
    meta_path = tmp_path / "tiny" / "backbone" / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["model"]["kwargs"]["widths"] = [4, 8, 16]  # a different model than the weights
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not fit the model: .* is \\(8, 8, 3, 3\\)"):
        load_checkpoint(d)
    (tmp_path / "tiny" / "backbone" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="does not match the sha256"):
        load_checkpoint(d)
    meta_path.write_text("{broken")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(d)


def test_cli_bad_checkpoint_is_one_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "neucodex.cli",
            "finetune",
            "--checkpoint",
            str(tmp_path / "x"),
            "--point",
            "conv2",
            "--bottleneck",
            "c8s4",
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"neucodex: error: no checkpoint at {tmp_path / 'x'}: expected model.json and model.safetensors there"
    ]


def test_finetune_and_sweep(tmp_path):
    cfg = cfg_for(tmp_path, "sweep.bottlenecks=[c4s2, c2s4, c2s16]")
    pretrain(cfg, progress=False)
    m = finetune(cfg, cfg.run_dir / "backbone", "conv2", "c4s2", progress=False)
    assert m.bits.payload_bits <= 4 * 2 * 2 * 2  # at most 4x2x2 bits per step (auto picks ≤ bitmap)
    assert m.drop == pytest.approx(m.backbone_test_accuracy - m.test_accuracy)
    assert m.to_dict()["drop"] == m.drop and m.to_dict()["bits"]["payload_bits"] == m.bits.payload_bits
    ck = load_checkpoint(m.checkpoint)
    assert isinstance(ck.model, CoInferenceModel) and ck.model.point == "conv2"

    rows = run_sweep(cfg, cfg.run_dir / "backbone", points=["conv2"], progress=False)
    assert [r["bottleneck"] for r in rows] == ["c4s2k3", "c2s4k3", "c2s16"]
    assert "error" not in rows[0] and "stride 16 is larger" in rows[2]["error"]  # reported, not skipped
    # the backbone is evaluated once per sweep; the figure is the one a lone fine-tune measures
    assert [r["backbone_accuracy"] for r in rows[:2]] == [m.backbone_test_accuracy] * 2
    result = summarize_sweep(sweep_dir(cfg), tolerance=100.0)
    built = [r for r in rows if "error" not in r]
    assert result["best"]["payload_bits"] == min(r["payload_bits"] for r in built)  # all within tolerance
    assert "failed: " in (sweep_dir(cfg) / "results.md").read_text()
    strict = summarize_sweep(sweep_dir(cfg), tolerance=-1000.0)
    assert strict["best"] is None and not any(r["selected"] for r in strict["rows"])
    for ext in ("csv", "json", "md"):
        assert (sweep_dir(cfg) / f"results.{ext}").stat().st_size > 0


def test_config_overrides_and_errors(tmp_path):
    assert {"tiny", "cifar10-cpu", "paper"} <= set(presets())
    cfg = load_config("tiny", ["optim.lr=0.5", "sweep.bottlenecks=[c1s1]"])
    assert cfg.optim.lr == 0.5 and cfg.sweep.bottlenecks == ["c1s1"]
    with pytest.raises(ConfigError, match="unknown field optim.lrr"):
        load_config("tiny", ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="neither a YAML file nor a preset"):
        load_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))


def test_same_command_under_torchrun(tmp_path):
    """Data-parallel (DDP, gloo on CPU): two processes run the ordinary train command."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29533",
            "-m",
            "neucodex.cli",
            "train",
            "--out",
            str(tmp_path),
            "--quiet",
            "--json",
            *[a for s in TINY for a in ("--set", s)],
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert metrics["epochs"] == 1 and load_checkpoint(metrics["checkpoint"]).model_id == metrics["model_id"]


@pytest.mark.parametrize("option", ["code_rate_penalty", "edge_rate_penalty"])
def test_rate_penalties_enter_the_loss(tmp_path, option):
    """One training step from the same start: the penalised loss is CE + λ x a firing rate (of the
    bottleneck code, or of the spikes entering the edge's layers)."""
    cfg = cfg_for(tmp_path, "data.limit=32", "finetune.epochs=1", "finetune.batch_size=32")
    pretrain(cfg, progress=False)
    losses = []
    for penalty in (0.0, 5.0):
        c = cfg_for(
            tmp_path,
            "data.limit=32",
            "finetune.epochs=1",
            "finetune.batch_size=32",
            f"finetune.{option}={penalty}",
        )
        m = finetune(c, cfg.run_dir / "backbone", "conv1", "c8s1", out=tmp_path / f"p{penalty}", progress=False)
        losses.append(m.history[0]["train_loss"])
    assert 0 < losses[1] - losses[0] <= 5.0  # λ x a firing rate in (0, 1]


def test_edge_spikes_are_the_energy_models_syops_per_dense_op_and_the_penalty_thins_them():
    """The penalised rate is what ``energy.count_ops`` counts on the edge (head + encoder, the
    real-input first layer left out), and descending on it alone makes the edge fire less."""
    from neucodex.energy import count_ops
    from neucodex.training import EdgeSpikes

    torch.manual_seed(0)
    model = CoInferenceModel(
        nc.create_model("vgg-tiny", T=2, in_channels=1, widths=(8, 16, 16)), "conv2", "c4s1"
    ).train()
    model.set_step_mode("m")
    x = torch.rand(2, 8, 1, 16, 16)
    edge = EdgeSpikes(model)
    model(x)
    rate = edge.rate()
    model.reset_state()
    ops = [o for o in count_ops(model, x) if o.stage in ("conv1", "conv2", "encoder") and o.rates is not None]
    want = sum(o.dense * sum(o.rates) / len(o.rates) for o in ops) / sum(o.dense for o in ops)
    assert len(ops) == 2 and 0 < rate.item() < 1  # conv2's and the encoder's input spikes
    assert rate.item() == pytest.approx(want, rel=1e-5)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(5):
        model(x)
        loss = edge.rate()
        model.reset_state()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model(x)
    assert edge.rate().item() < 0.8 * rate.item()
    edge.remove()
    model(x)
    assert edge.terms == []  # removed: nothing is kept any more


def test_edge_rate_penalty_is_refused_where_it_cannot_act(tmp_path):
    """A frozen head (nothing it could thin) and a backbone (no edge) are refused in one line."""
    cfg = cfg_for(tmp_path, "data.limit=32", "optim.edge_rate_penalty=1")
    with pytest.raises(ConfigError, match="optim.edge_rate_penalty: only a spiking co-inference model"):
        pretrain(cfg, progress=False)
    pretrain(cfg_for(tmp_path, "data.limit=32"), progress=False)
    frozen = cfg_for(tmp_path, "finetune.edge_rate_penalty=1", "finetune.freeze_head=true")
    with pytest.raises(ConfigError, match="add --set finetune.freeze_head=false"):
        finetune(frozen, cfg.run_dir / "backbone", "conv1", "c8s1", out=tmp_path / "frozen", progress=False)


def test_distillation_loss_is_the_softened_kl_over_every_cumulative_output():
    from neucodex.training import distillation_loss

    s, t, tau = torch.randn(3, 5, 4), torch.randn(3, 5, 4), 2.0
    expected = 0.0
    for k in range(3):
        p_t = F.softmax(t[: k + 1].mean(0) / tau, -1)
        kl = (p_t * (p_t.log() - F.log_softmax(s[: k + 1].mean(0) / tau, -1))).sum(-1).mean()
        expected += kl * tau**2 / 3
    assert torch.allclose(distillation_loss(s, t, tau), torch.as_tensor(expected), atol=1e-6)
    assert distillation_loss(t, t, tau).abs() < 1e-6
    dnn = t[0]  # a DNN teacher's one output stands for every timestep
    assert torch.allclose(distillation_loss(s, dnn, tau), distillation_loss(s, dnn.expand(3, 5, 4), tau))


def test_block_taps_give_the_mean_mse_of_every_block_after_the_cut():
    """Hint distillation compares the tail's block outputs with the backbone's, block by block."""
    from neucodex.training import BlockTaps

    torch.manual_seed(0)
    teacher = nc.create_model("vgg-tiny", T=2, in_channels=1, widths=(8, 16, 16)).eval().set_step_mode("m")
    student = CoInferenceModel(
        nc.create_model("vgg-tiny", T=2, in_channels=1, widths=(8, 16, 16)), "conv1", "c4s1"
    ).set_step_mode("m")
    student.load_state_dict(teacher.state_dict(), strict=False)  # same tail weights, a new bottleneck
    taps = BlockTaps(student, teacher)
    assert taps.names == ["conv2", "conv3"]
    x = torch.rand(2, 3, 1, 16, 16)
    with torch.no_grad():
        teacher(x)
        student(x)
    want = [F.mse_loss(taps.student[n], taps.teacher[n]) for n in taps.names]
    assert all(w > 0 for w in want)  # the bottleneck changed what the tail sees
    assert torch.allclose(taps.loss(), torch.stack(want).mean())
    taps.remove()
    with torch.no_grad():
        student(x)
    assert not taps.student  # no hook left behind
    last = CoInferenceModel(nc.create_model("vgg-tiny", T=2, in_channels=1, widths=(8, 16, 16)), "conv3", "c4s1")
    with pytest.raises(NeucodexError, match="no block of vgg-tiny follows the cut at conv3"):
        BlockTaps(last, teacher)


@pytest.mark.parametrize(
    "key, off, on",
    [
        ("distill", 0.0, 1.0),  # the KL to the backbone's output (1.0: that KL alone)
        ("feature_distill", 0.0, 50.0),  # + 50 × the MSE to the backbone's block outputs
    ],
)
def test_distillation_enters_the_finetune_loss(tmp_path, key, off, on):
    cfg = cfg_for(tmp_path, "data.limit=32")
    pretrain(cfg, progress=False)
    losses = []
    for w in (off, on):
        c = cfg_for(tmp_path, "data.limit=32", f"finetune.{key}={w}")
        m = finetune(c, cfg.run_dir / "backbone", "conv1", "c8s1", out=tmp_path / f"{key}{w}", progress=False)
        losses.append(m.history[0]["train_loss"])
    assert losses[0] != losses[1] and all(0 < v < 10 for v in losses)
    if key == "feature_distill":
        assert losses[1] > losses[0]  # the MSE term adds to the loss it trains on
        with pytest.raises(NeucodexError, match="no block of vgg-tiny follows the cut at conv3"):
            finetune(c, cfg.run_dir / "backbone", "conv3", "c8s1", out=tmp_path / "last", progress=False)
        assert not (tmp_path / "last").exists()  # refused before any work


def test_a_backbone_distils_from_its_dnn_twin(tmp_path):
    """Pretraining with ``optim.distill`` pulls the SNN toward a named teacher (its DNN twin, one
    output for every timestep); without a teacher, or from a co-inference model, one clear error."""
    twin = cfg_for(tmp_path / "dnn", "model.T=1", "model.spiking=false", "data.limit=32")
    pretrain(twin, progress=False)
    losses = []
    for w in (0.0, 1.0):
        teach = [f"optim.distill={w}", f"optim.teacher={twin.run_dir}/backbone"] if w else []
        c = cfg_for(tmp_path / f"snn{w}", "data.limit=32", *teach)
        losses.append(pretrain(c, progress=False).history[0]["train_loss"])
    assert losses[0] != losses[1] and all(0 < v < 10 for v in losses)
    with pytest.raises(ConfigError, match="optim.distill needs optim.teacher"):
        pretrain(cfg_for(tmp_path / "none", "data.limit=32", "optim.distill=0.5"), progress=False)
    with pytest.raises(ConfigError, match="optim.teacher is only used with optim.distill > 0"):
        pretrain(cfg_for(tmp_path / "w0", "data.limit=32", f"optim.teacher={twin.run_dir}/backbone"), progress=False)
    snn = f"{tmp_path}/snn1.0/tiny/backbone"  # a spiking teacher must run at the student's T
    with pytest.raises(CheckpointError, match="10 classes at T=2, the model 10 classes at T=3"):
        pretrain(cfg_for(tmp_path / "t3", "model.T=3", "optim.distill=0.5", f"optim.teacher={snn}"), progress=False)
    co = finetune(twin, twin.run_dir / "backbone", "conv1", "c8s1", out=tmp_path / "co", progress=False)
    with pytest.raises(CheckpointError, match="holds a co-inference model; give a backbone"):
        pretrain(cfg_for(tmp_path / "x", "data.limit=32", "optim.distill=0.5", f"optim.teacher={co.checkpoint}"))
    with pytest.raises(ConfigError, match="fine-tuning distils from its backbone"):
        finetune(cfg_for(tmp_path, "finetune.teacher=x"), twin.run_dir / "backbone", "conv1", "c8s1", progress=False)


@pytest.mark.parametrize(
    "override, words",
    [
        ("optim.lr=abc", "optim.lr must be a number, got 'abc'"),
        ("optim.epochs=2.5", "optim.epochs must be an integer"),
        ("model.T=0", "model.T must be in 1..64"),
        ("finetune.label_smoothing=2", "finetune.label_smoothing must be in 0.0..1.0"),
        ("finetune.distill=1.5", "finetune.distill must be in 0.0..1.0"),
        ("optim.timestep_weights=[1, 2]", "optim.timestep_weights must be 4 weights (one per timestep"),
        ("optim.per_timestep_loss=3", "optim.per_timestep_loss must be true or false"),
        ("sweep.bottlenecks=[1, 2]", "sweep.bottlenecks[] must be a string"),
    ],
)
def test_config_values_are_typed_on_the_cli(tmp_path, override, words):
    proc = subprocess.run(
        [sys.executable, "-m", "neucodex.cli", "train", "--set", override, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("neucodex: error: ")
    assert words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def _decoder_firing(checkpoint, cfg) -> dict:
    """Decoder firing rate and accuracy on training images, in train mode and in eval mode."""
    model = load_checkpoint(checkpoint).model
    x, y = next(iter(loader(load_split(cfg, "train", 4), 256, False, 0, 0)))
    seen = {}
    model.stages.decoder[-1].register_forward_hook(lambda m, i, o: seen.__setitem__("rate", o.float().mean().item()))
    out = {}
    for mode in ("train", "eval"):
        (model.train() if mode == "train" else model.eval()).set_step_mode("m")
        with torch.no_grad():
            logits = model(x)
        model.reset_state()
        out[mode] = (seen["rate"], 100 * (logits.mean(0).argmax(-1) == y).float().mean().item())
    return out


@pytest.mark.parametrize("norm_samples", [0, 2048])
def test_a_short_finetune_does_not_collapse_in_eval_mode(tmp_path, norm_samples):
    """Regression: a new bottleneck's norms start at mean 0 / var 1; after a few steps their moving
    averages still sit far above the decoder's real input variance, so in eval mode the decoder
    stops firing (0.000% vs 5% in training on digits) and the model predicts one class. Precise BN
    (optim.norm_samples) re-estimates them; with it off the collapse is back."""
    cfg = cfg_for(
        tmp_path,
        "data.limit=600",
        "optim.epochs=12",
        "finetune.epochs=2",
        "model.kwargs={widths: [16, 32, 64]}",
        f"optim.norm_samples={norm_samples}",
        f"finetune.norm_samples={norm_samples}",
    )
    pretrain(cfg, progress=False)
    m = finetune(cfg, cfg.run_dir / "backbone", "conv2", "c4s2", progress=False)
    r = _decoder_firing(m.checkpoint, cfg)
    (train_rate, train_acc), (eval_rate, eval_acc) = r["train"], r["eval"]
    if norm_samples:
        assert 0.5 * train_rate <= eval_rate <= 2 * train_rate
        assert eval_acc >= train_acc - 15 and m.test_accuracy > 30  # tracks training, far above chance
    else:
        assert eval_rate < 0.1 * train_rate  # the collapse this guards against


def test_collapse_is_said_loudly():
    from neucodex.training import collapse_warning

    assert "collapses in eval mode" in collapse_warning(11.0, 62.0, 10)
    assert collapse_warning(57.0, 62.0, 10) == "" and collapse_warning(11.0, 15.0, 10) == ""


def test_finetune_recipe_warm_up_frozen_head_and_faster_bottleneck(tmp_path):
    """finetune.bottleneck_samples trains the new bottleneck alone (its feature MSE goes down),
    freeze_head keeps the edge head bit-identical to the backbone's, bottleneck_lr_scale gives the
    encoder and decoder their own learning rate; epochs=0 still stores a checkpoint."""
    from neucodex.training import make_optimizer

    cfg = cfg_for(tmp_path, "finetune.epochs=0", "finetune.bottleneck_samples=400", "finetune.freeze_head=true")
    pretrain(cfg, progress=False)
    m = finetune(cfg, cfg.run_dir / "backbone", "conv2", "c4s2", progress=False)
    ck = load_checkpoint(m.checkpoint)
    w = ck.info.extra["bottleneck_warmup"]
    assert w["samples"] >= 400 and w["mse_last"] < w["mse_first"]
    before = load_checkpoint(cfg.run_dir / "backbone").model.state_dict()
    after = ck.model.state_dict()
    head = [k for k in before if k.startswith(("stages.conv1.", "stages.conv2.")) and "running" not in k]
    assert head and all(torch.equal(before[k], after[k]) for k in head)
    oc = cfg_for(tmp_path, "finetune.bottleneck_lr_scale=10").finetune
    opt = make_optimizer(ck.model, oc)
    assert sorted(g["lr"] for g in opt.param_groups) == pytest.approx([oc.lr, 10 * oc.lr])


def test_tune_blocks_keeps_the_later_blocks_and_so_the_zoo_delta_small(tmp_path):
    """finetune.tune_blocks=1 at conv1 trains the bottleneck and conv2 only: conv3 and the classifier
    stay bit-identical to the backbone's, so a zoo delta leaves them out; asking for as many blocks
    as follow the cut (or any at the last one) is one clear error before any work."""
    from neucodex.pretrained import split_on_base

    cfg = cfg_for(tmp_path, "data.limit=64", "finetune.tune_blocks=1")
    pretrain(cfg, progress=False)
    m = finetune(cfg, cfg.run_dir / "backbone", "conv1", "c4s1", out=tmp_path / "t1", progress=False)
    before = load_checkpoint(cfg.run_dir / "backbone").model.state_dict()
    after = load_checkpoint(m.checkpoint).model.state_dict()
    weights = [k for k in before if "running" not in k and "num_batches" not in k]
    kept = [k for k in weights if not k.startswith(("stages.conv1.", "stages.conv2."))]
    assert kept and all(torch.equal(before[k], after[k]) for k in kept)
    assert any(not torch.equal(before[k], after[k]) for k in weights if k.startswith("stages.conv2."))
    half = {k: v.half().numpy() if v.is_floating_point() else v.numpy() for k, v in before.items()}
    delta, shared = split_on_base(
        {k: v.half().numpy() if v.is_floating_point() else v.numpy() for k, v in after.items()}, half
    )
    assert set(kept) <= set(shared) and not set(kept) & set(delta)
    for n, words in (
        (2, "only 2 blocks follow the cut at conv1"),
        (1, "no block of vgg-tiny follows the cut at conv3"),
    ):
        point = "conv1" if n == 2 else "conv3"
        c = cfg_for(tmp_path, "data.limit=64", f"finetune.tune_blocks={n}")
        with pytest.raises(NeucodexError, match=words):
            finetune(c, cfg.run_dir / "backbone", point, "c4s1", out=tmp_path / f"x{n}", progress=False)
        assert not (tmp_path / f"x{n}").exists()


def test_finetune_continues_from_a_coinference_checkpoint(tmp_path):
    """finetune.init_from starts from a co-inference checkpoint's weights (a zoo entry, say) at the
    same cut; a backbone or another cut there is one clear error."""
    cfg = cfg_for(tmp_path)
    pretrain(cfg, progress=False)
    first = finetune(cfg, cfg.run_dir / "backbone", "conv2", "c4s2", out=tmp_path / "first", progress=False)
    again = cfg_for(tmp_path, "finetune.epochs=0", "finetune.norm_samples=0", f"finetune.init_from={first.checkpoint}")
    m = finetune(again, cfg.run_dir / "backbone", "conv2", "c4s2", out=tmp_path / "again", progress=False)
    a, b = load_checkpoint(first.checkpoint), load_checkpoint(m.checkpoint)
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    assert b.info.extra["init_from"] == first.checkpoint and m.test_accuracy == pytest.approx(first.test_accuracy)
    with pytest.raises(CheckpointError, match="cut at conv2 with c4s2k3 .* not vgg-tiny at conv1 with c4s2k3"):
        finetune(again, cfg.run_dir / "backbone", "conv1", "c4s2", out=tmp_path / "x", progress=False)
    bad = cfg_for(tmp_path, "finetune.epochs=0", f"finetune.init_from={cfg.run_dir / 'backbone'}")
    with pytest.raises(CheckpointError, match="holds a backbone; give a co-inference checkpoint"):
        finetune(bad, cfg.run_dir / "backbone", "conv2", "c4s2", out=tmp_path / "y", progress=False)


def test_ctrl_c_in_train_is_one_line_and_keeps_the_saved_epochs(tmp_path):
    import signal
    import time

    sets = [a for kv in [f"out={tmp_path}", *TINY[:4], "optim.epochs=1000"] for a in ("--set", kv)]
    p = subprocess.Popen(
        [sys.executable, "-m", "neucodex.cli", "train", "--config", "tiny", *sets, "--quiet"],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_as_from_a_terminal,
    )
    state = tmp_path / "tiny" / "backbone" / "train_state.json"
    deadline = time.time() + 300
    while not state.exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=120)[1]
    lines = [line for line in err.splitlines() if line.strip()]
    # 130, or ended by SIGINT itself (-2; a shell shows that as 130 too): seen once, in a fresh-clone CI run
    # under load, after the same one line; not reproduced alone (cause not found)
    assert p.returncode in (130, -signal.SIGINT) and len(lines) == 1, err
    assert "interrupted in epoch" in lines[0] and "--resume" in lines[0] and "Traceback" not in err
    assert load_checkpoint(tmp_path / "tiny" / "backbone").info.metrics["epoch"] >= 1


def test_rate_term_is_the_context_models_bits_and_its_gradient_is_exact():
    """The rate term is −log2 of each code bit under p[context, channel], summed; its gradient
    with respect to a spike is the bits it changes: its own and the next step's (whose context it is)."""
    from neucodex.entropy import ContextModel

    torch.manual_seed(0)
    m = ContextModel(2)
    with torch.no_grad():
        m.logits.copy_(torch.randn(3, 2))
    code = (torch.rand(3, 1, 2, 2, 2) < 0.4).float().requires_grad_(True)
    bits = m.bits(code)
    p = torch.sigmoid(m.logits.detach())

    # by hand, position by position
    s = code.detach()
    want = 0.0
    for t in range(3):
        for c in range(2):
            for i in range(4):
                bit = s[t, 0, c].flatten()[i]
                pc = p[2, c] if t == 0 else p[int(s[t - 1, 0, c].flatten()[i]), c]
                want += -float(torch.log2(pc if bit else 1 - pc))
    assert bits.shape == (1,) and bits.item() == pytest.approx(want, rel=1e-5)
    bits.sum().backward()
    # d bits / d s[t] = log2((1-p)/p) of its own bit + its effect as the next step's context
    t, c, i = 1, 1, 2
    pos = (t, 0, c, i // 2, i % 2)
    prev = int(s[0, 0, c].flatten()[i])
    own = float(torch.log2((1 - p[prev, c]) / p[prev, c]))
    nxt = int(s[2, 0, c].flatten()[i])
    dp = p[1, c] - p[0, c]  # d p_next / d s[t]
    pn = p[int(s[1, 0, c].flatten()[i]), c]
    effect = float(-(nxt / pn - (1 - nxt) / (1 - pn)) * dp / np.log(2.0))
    assert code.grad[pos].item() == pytest.approx(own + effect, rel=1e-4)
    assert m.logits.grad is not None and torch.isfinite(m.logits.grad).all()


def test_rate_penalty_trades_bits_for_loss_and_stores_the_context_model(tmp_path):
    """finetune.rate_penalty: the loss grows by λ × the modelled bits, the code sends fewer bits
    than without it, and the checkpoint keeps the context model both ends code with."""
    cfg = cfg_for(tmp_path, "data.limit=64", "finetune.epochs=2")
    pretrain(cfg, progress=False)
    runs = {}
    for lam in (0.0, 0.05):
        c = cfg_for(tmp_path, "data.limit=64", "finetune.epochs=2", f"finetune.rate_penalty={lam}")
        runs[lam] = finetune(c, cfg.run_dir / "backbone", "conv1", "c8s1", out=tmp_path / f"r{lam}", progress=False)
    on = runs[0.05]
    assert "train_bits" not in runs[0.0].history[0] and on.history[0]["train_bits"] > 0
    assert on.history[-1]["train_bits"] < on.history[0]["train_bits"]  # the code learns to send less
    assert on.bits.payload_bits < runs[0.0].bits.payload_bits
    info = load_checkpoint(on.checkpoint).info
    assert info.context.shape == (3, 8) and ((info.context > 0) & (info.context < 1)).all()
    assert 0 < on.code_models["h_context_bits"] <= on.code_models["h_channel_bits"]
    with pytest.raises(ConfigError, match="optim.rate_penalty: only a spiking co-inference model"):
        pretrain(cfg_for(tmp_path, "data.limit=32", "optim.rate_penalty=1"), progress=False)


def test_scan_init_scale_reports_each_scale_from_the_twin_and_trains_nothing(tmp_path):
    """``neucodex train --scan-init-scale``: the SNN started from its DNN twin at each scale, val
    accuracy after every timestep; a near-zero scale leaves every neuron silent, so every sample
    gets the same answer (chance on a class-balanced subset). No run directory is written."""
    from neucodex.training import scan_init_scale

    twin = cfg_for(tmp_path / "dnn", "model.T=1", "model.spiking=false", "data.limit=64")
    pretrain(twin, progress=False)
    snn = cfg_for(tmp_path / "snn", f"model.init_from={twin.run_dir}/backbone")
    acc = scan_init_scale(snn, [1e-3, 1.0, 8.0], samples=20)
    assert list(acc) == [1e-3, 1.0, 8.0] and all(len(a) == 2 and all(0 <= v <= 100 for v in a) for a in acc.values())
    assert acc[1e-3] == pytest.approx([10.0, 10.0])  # 2 per class of 10: one answer for all is right on 2 of 20
    assert not (tmp_path / "snn").exists()
    with pytest.raises(ConfigError, match="needs model.init_from"):
        scan_init_scale(cfg_for(tmp_path), [1.0])
    cli = [sys.executable, "-m", "neucodex.cli", "train", "--config", "tiny", *[f"--set={s}" for s in TINY]]
    run = subprocess.run(
        [*cli, f"--set=model.init_from={twin.run_dir}/backbone", "--scan-init-scale", "1,8", "--scan-samples", "20"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "init_scale 1:" in run.stdout and "init_scale 8:" in run.stdout and "best at t = T:" in run.stdout
    bad = subprocess.run([*cli, "--scan-init-scale", "4,x"], capture_output=True, text=True)
    assert bad.returncode == 2 and "takes numbers in 0.001..1000" in bad.stderr.splitlines()[-1]
