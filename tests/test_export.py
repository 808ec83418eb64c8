"""Edge export (ONNX, NIR) and the torch-free edge: the same spikes, packets and answers as PyTorch."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import neucodex as nc
from neucodex import codec
from neucodex.bottleneck import CoInferenceModel
from neucodex.checkpoint import ModelSpec, load_checkpoint, save_checkpoint
from neucodex.cli import main
from neucodex.evaluate import load_split
from neucodex.export import ExportError, edge_graph, export_edge, run_reference
from neucodex.lite import OnnxEdge, load_bundle
from neucodex.lite.bundle import MANIFEST, ONNX_FILE, BundleError
from neucodex.runtime import EdgeClient
from neucodex.runtime.process import spawn_server, stop_server

from conftest import calibrate_bn

BLOCK_TORCH = "import sys; [sys.modules.__setitem__(m, None) for m in ('torch', 'spikingjelly', 'tonic')]; "


@pytest.fixture(scope="module")
def resnet_checkpoint(tmp_path_factory) -> Path:
    """An untrained spiking ResNet co-inference model with real BN statistics (neurons fire)."""
    torch.manual_seed(1)
    kwargs = {"T": 3, "input_size": 16, "widths": (8, 16, 16, 16)}
    model = CoInferenceModel(nc.create_model("resnet-tiny", **kwargs), "rb2", "c4s2")
    calibrate_bn(model, size=16)
    d = tmp_path_factory.mktemp("resnet") / "ck"
    save_checkpoint(d, model, ModelSpec.of(model, kwargs), dataset={"kind": "static"})
    return d


@pytest.fixture(scope="module", params=["vgg", "resnet"])
def exported(request, coinference_checkpoint, resnet_checkpoint, tmp_path_factory):
    ck = load_checkpoint(coinference_checkpoint if request.param == "vgg" else resnet_checkpoint)
    out = export_edge(ck, ["onnx", "nir"], tmp_path_factory.mktemp("export") / request.param)
    return ck, out


def inputs(ck, n: int) -> torch.Tensor:
    """The trained checkpoint's own test images (on noise its encoder hardly fires: 5 spikes in 16
    samples, seen); calibrated random input for the untrained ResNet."""
    if ck.info.dataset.get("name"):
        ds = load_split(ck.info.experiment(), "test", ck.model.T)
        return torch.stack([ds[i][0] for i in range(n)])
    return torch.rand(n, *edge_graph(ck.model).input_shape)


def pytorch_codes(ck, x: torch.Tensor) -> list[np.ndarray]:
    edge = ck.model.eval().edge.set_step_mode("s")
    edge.reset_state()
    with torch.no_grad():
        codes = [edge(x).numpy() for _ in range(ck.info.model.steps)]
    edge.reset_state()
    return codes


def test_onnx_and_reference_reproduce_the_pytorch_spikes_and_packets(exported):
    ck, out = exported
    x = inputs(ck, 16)
    want = pytorch_codes(ck, x)
    onnx_edge, state = OnnxEdge(out), {}
    onnx_edge.reset(batch=16)
    same_spikes = same_packets = packets = 0
    for t, code in enumerate(want):
        got = onnx_edge.step(x.numpy())
        ref = run_reference(edge_graph(ck.model), x.numpy(), state)
        assert got.shape == code.shape and set(np.unique(got)) <= {0.0, 1.0}
        same_spikes += int((got == code).sum())
        assert (ref == code).mean() >= 0.999
        for a, b in zip(code, got, strict=True):
            packets += 1
            same_packets += codec.encode(a, timestep=t) == codec.encode(b, timestep=t)
    # real spike trains, not all silent or all firing: at least a spike per sample on average
    assert sum(int(c.sum()) for c in want) >= len(x) and float(np.mean(want)) < 0.9
    assert same_spikes / sum(c.size for c in want) >= 0.999
    assert same_packets / packets >= 0.95  # a packet differs if any one of its spikes does


def test_nir_graph_runs_in_snntorch_with_the_same_spikes(exported):
    nir = pytest.importorskip("nir")
    import_from_nir = pytest.importorskip("snntorch.import_nir").import_from_nir
    ck, out = exported
    with contextlib.redirect_stdout(io.StringIO()):  # snnTorch prints its threshold rescaling
        net = import_from_nir(nir.read(str(out / "edge.nir")))
    x = inputs(ck, 16)
    want = pytorch_codes(ck, x)
    with torch.no_grad():
        got = [net(x) for _ in want]
    got = [g[0] if isinstance(g, tuple) else g for g in got]
    same = sum(int((g.numpy() == w).sum()) for g, w in zip(got, want, strict=True))
    assert same / sum(w.size for w in want) >= 0.999


def test_edge_manifest_says_what_an_edge_needs(exported):
    ck, out = exported
    b = load_bundle(out)
    assert b.model_id == ck.model_id and b.T == ck.info.model.steps
    assert b.code_shape == tuple(ck.model.code_shape) and b.codec_format == "auto"
    assert len(b.states) == len(edge_graph(ck.model).of_kind("lif"))
    assert json.loads((out / MANIFEST).read_text())["onnx"]["opset"] == 17


def test_export_refusals_are_one_line(coinference_checkpoint, tmp_path, capsys):
    backbone = Path(coinference_checkpoint).parent / "backbone"
    with pytest.raises(ExportError, match="only a co-inference checkpoint"):
        export_edge(backbone, "onnx", tmp_path / "a")
    with pytest.raises(ExportError, match="unknown export format 'tflite'"):
        export_edge(coinference_checkpoint, "tflite", tmp_path / "b")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["export", "--checkpoint", str(coinference_checkpoint), "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot create --out" in err[0]


def test_altered_or_incomplete_exports_are_refused(exported, tmp_path):
    _, out = exported
    bad = shutil.copytree(out, tmp_path / "bad")
    (bad / ONNX_FILE).write_bytes((bad / ONNX_FILE).read_bytes()[:-1] + b"\0")
    with pytest.raises(BundleError, match="does not match the SHA-256"):
        load_bundle(bad)
    (bad / ONNX_FILE).unlink()
    with pytest.raises(BundleError, match="is missing"):
        load_bundle(bad)
    with pytest.raises(BundleError, match="has no edge.json"):
        load_bundle(tmp_path)


def run_lite_edge(*args: str) -> subprocess.CompletedProcess:
    code = BLOCK_TORCH + "from neucodex.lite.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_torch_free_edge_equals_the_pytorch_edge_against_a_real_server(coinference_checkpoint, tmp_path):
    ck = load_checkpoint(coinference_checkpoint)
    out = export_edge(ck, "onnx", tmp_path / "edge")
    ds = load_split(ck.info.experiment(), "test", ck.model.T)
    n = 24  # digits test images as the PyTorch edge sees them, written as an .npz for the lite edge
    xs = np.stack([ds[i][0].numpy() for i in range(n)])
    ys = np.array([int(ds[i][1]) for i in range(n)])
    np.savez(tmp_path / "samples.npz", x=xs, y=ys)
    proc, address = spawn_server(coinference_checkpoint)
    try:
        with EdgeClient(ck, address, fallback="none") as client:
            want = [client.infer(torch.from_numpy(x), int(y)) for x, y in zip(xs, ys, strict=True)]
        run = run_lite_edge(
            "--model", str(out), "--server", address, "--input", str(tmp_path / "samples.npz"), "--json"
        )
    finally:
        stop_server(proc)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)["samples"]
    assert [r["status"] for r in got] == ["ok"] * n
    same = sum(g["prediction"] == w.prediction and g["steps"] == w.steps for g, w in zip(got, want, strict=True))
    assert same / n >= 0.95
    assert abs(np.mean([g["payload_bits"] for g in got]) - np.mean([w.payload_bits for w in want])) < 0.05 * max(
        1.0, np.mean([w.payload_bits for w in want])
    )


def test_torch_free_edge_bad_input_is_one_line(exported, tmp_path):
    _, out = exported
    run = run_lite_edge("--model", str(tmp_path / "nothing"), "--server", "127.0.0.1:1")
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "no exported edge at" in run.stderr
    run = run_lite_edge("--model", str(out), "--server", "127.0.0.1:1", "--input", str(tmp_path / "none.npz"))
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "no samples at" in run.stderr
    run = run_lite_edge("--model", str(out), "--server", "not-an-address")
    assert run.returncode == 2 and "is not HOST:PORT" in run.stderr


def test_the_torch_free_edge_reads_an_image_as_training_does(tmp_path):
    """One image pipeline: non-square images that need resizing (40×48 and 20×12 → 32×32) reach the
    model as the same tensor through the training dataset (imagefolder) and the torch-free edge's
    reader; an .npz at another size is refused in one line instead of silently resized differently."""
    from PIL import Image

    from neucodex.lite.inputs import InputError, read_samples

    rng = np.random.default_rng(0)
    for k, (cls, (w, h)) in enumerate([("cat", (40, 48)), ("dog", (20, 12)), ("cat", (33, 31)), ("dog", (48, 40))]):
        (tmp_path / "imgs" / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / "imgs" / cls / f"{k}.png")
    ds = nc.build_dataset(
        "imagefolder", "train", root=tmp_path / "imgs", size=32, train_augment=False, cache_dir=tmp_path / "cache"
    )
    ds = ds.dataset if hasattr(ds, "dataset") else ds
    xs, labels = read_samples(str(tmp_path / "imgs"), (3, 32, 32))
    train = sorted((tuple(ds[i][0].numpy().ravel()[:8]), ds[i][0].numpy(), ds[i][1]) for i in range(len(ds)))
    lite = sorted((tuple(x.ravel()[:8]), x, y) for x, y in zip(xs, labels, strict=True))
    assert len(train) == len(lite) == 4
    for (_, a, ya), (_, b, yb) in zip(train, lite, strict=True):
        assert a.shape == b.shape == (3, 32, 32) and ya == yb
        assert np.array_equal(a, b)
    np.savez(tmp_path / "big.npz", images=rng.integers(0, 256, (2, 40, 40, 3), dtype=np.uint8))
    with pytest.raises(InputError, match=r"images of shape \(3, 40, 40\), the export takes \(3, 32, 32\)"):
        read_samples(str(tmp_path / "big.npz"), (3, 32, 32))


def test_the_torch_free_edge_reads_every_embedded_set_by_name():
    """Each shipped demo set is an --input by name (images at their own size, recordings as
    frames), labels interleaved by class; an unknown name is refused in one line listing the sets."""
    from neucodex.lite.inputs import InputError, read_recordings, read_samples

    for name, shape, classes in (("cifar10-demo", (3, 32, 32), 10), ("caltech101-demo", (3, 64, 64), 101)):
        xs, labels = read_samples(name, shape)
        assert xs[0].shape == shape and xs[0].dtype == np.float32 and 0.0 <= xs[0].min() <= xs[0].max() <= 1.0
        assert labels[:classes] == list(range(classes))
    frames, labels = read_recordings("nmnist-demo", None, 8, (2, 34, 34))
    assert (
        len(frames) == len(labels) == 100
        and frames[0].shape == (8, 2, 34, 34)
        and sorted(set(labels)) == list(range(10))
    )
    with pytest.raises(InputError, match=r"no samples at mnist-demo .*embedded set: caltech101-demo, cifar10-demo"):
        read_samples("mnist-demo", (3, 32, 32))


NMNIST = Path(__file__).parent / "data" / "nmnist"


def test_the_torch_free_edge_frames_recordings_as_training_does(tmp_path):
    """One event pipeline: real N-MNIST recordings (fixed 34x34 sensor) and N-Caltech101-style ones
    (each cropped to its own extent) reach the model as the same frames through the training
    datasets and the torch-free edge's reader, which needs neither PyTorch nor Tonic."""
    from neucodex.aer import EVENTS, write_bin
    from neucodex.framing import PER_RECORDING
    from neucodex.lite.inputs import InputError, read_recordings

    ds = nc.build_dataset("nmnist", "all", root=NMNIST, T=4, size=16, cache_dir=tmp_path / "c")
    xs, ys = read_recordings(str(NMNIST), (34, 34, 2), 4, (2, 16, 16))
    assert len(xs) == len(ds) == 20 and ys == ds.targets
    for k in (0, 7, 19):
        np.testing.assert_allclose(xs[k], ds[k][0].numpy(), rtol=1e-3, atol=1e-3)  # the cache holds fp16
    rng = np.random.default_rng(0)
    for cls in ("ant", "bee"):
        (tmp_path / "NCALTECH101" / "Caltech101" / cls).mkdir(parents=True)
        for k in range(10):
            ev = np.zeros(400, EVENTS)
            ev["x"], ev["y"] = rng.integers(30, 30 + rng.integers(60, 200), 400), rng.integers(5, 150, 400)
            ev["p"], ev["t"] = rng.integers(0, 2, 400), np.sort(rng.integers(0, 300_000, 400))
            write_bin(tmp_path / "NCALTECH101" / "Caltech101" / cls / f"image_{k:04d}.bin", ev)
    ds = nc.build_dataset("n-caltech101", "all", root=tmp_path, T=2, size=24, cache_dir=tmp_path / "c")
    xs, ys = read_recordings(str(tmp_path / "NCALTECH101" / "Caltech101"), PER_RECORDING, 2, (2, 24, 24))
    assert ys == ds.targets
    for k in range(20):
        np.testing.assert_allclose(xs[k], ds[k][0].numpy(), rtol=1e-3, atol=1e-3)
    with pytest.raises(InputError, match="which sensor"):
        read_recordings(str(NMNIST), None, 4, (2, 16, 16))
    np.savez(tmp_path / "f.npz", frames=np.zeros((3, 4, 2, 8, 8), np.float32))
    with pytest.raises(InputError, match=r"event frames \[N, T>=4, 2, 16, 16\]"):
        read_recordings(str(tmp_path / "f.npz"), (34, 34, 2), 4, (2, 16, 16))
    code = BLOCK_TORCH + (
        "from neucodex.lite.inputs import read_recordings; "
        f"xs, ys = read_recordings({str(NMNIST)!r}, (34, 34, 2), 4, (2, 16, 16)); print(len(xs), sorted(set(ys)))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.split()[0] == "20", run.stderr


@pytest.mark.slow
def test_torch_free_edge_streams_event_recordings_against_a_real_server(tmp_path):
    """An event co-inference model exported; the torch-free edge reads the real N-MNIST recordings
    themselves (the export names the sensor) and gets the PyTorch edge's answers from the server."""
    torch.manual_seed(2)
    kwargs = {"T": 4, "in_channels": 2, "input_size": 16, "widths": (8, 16, 16)}
    model = CoInferenceModel(nc.create_model("vgg-tiny", **kwargs), "conv1", "c4s2")
    ds = nc.build_dataset("nmnist", "all", root=NMNIST, T=4, size=16, cache_dir=tmp_path / "c")
    frames = torch.stack([ds[i][0] for i in range(len(ds))])
    calibrate_bn(model.set_step_mode("m"), size=16)
    with torch.no_grad():  # real statistics from the recordings, so the encoder fires
        model.train().set_step_mode("m")(frames.transpose(0, 1))
        model.reset_state()
    model.eval().set_step_mode("s")
    meta = {"kind": "events", "name": "nmnist", "size": 16, "sensor": [34, 34, 2]}
    save_checkpoint(tmp_path / "ck", model, ModelSpec.of(model, kwargs), dataset=meta)
    ck = load_checkpoint(tmp_path / "ck")
    out = export_edge(ck, "onnx", tmp_path / "edge")
    assert json.loads((out / MANIFEST).read_text())["input"]["sensor"] == [34, 34, 2]
    proc, address = spawn_server(tmp_path / "ck")
    try:
        with EdgeClient(ck, address, fallback="none") as client:
            want = [client.infer(frames[i], int(ds.targets[i])) for i in range(len(ds))]
        run = run_lite_edge("--model", str(out), "--server", address, "--input", str(NMNIST / "Train"), "--json")
    finally:
        stop_server(proc)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)["samples"]
    assert [r["status"] for r in got] == ["ok"] * len(ds)
    assert sum(w.payload_bits for w in want) > 0
    same = sum(g["prediction"] == w.prediction and g["steps"] == w.steps for g, w in zip(got, want, strict=True))
    assert same / len(ds) >= 0.9
