"""The ``neucodex`` command: a thin layer over the library API."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import NeucodexError


def _models(args: argparse.Namespace) -> None:
    from .models import create_model, list_models
    from .split import feature_shapes

    names = args.model or list_models()
    rows = []
    for name in names:
        snn = create_model(name, num_classes=args.num_classes, T=args.T,
                           input_size=args.input_size, in_channels=args.in_channels)
        params = sum(p.numel() for p in snn.parameters())
        for point, (c, h, w) in feature_shapes(snn).items():
            n = c * h * w
            rows.append({"model": name, "params": params, "point": point, "shape": [c, h, w],
                         "spike_bits": n * args.T, "float32_bits": n * 32})
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"input {args.in_channels}x{args.input_size}x{args.input_size}, T={args.T}, "
          f"{args.num_classes} classes; bits crossing each cut per sample: binary spikes x T "
          f"(SNN) and float32 (DNN twin)")
    header = f"{'model':<12} {'params':>11}  {'point':<7} {'C x H x W':<15} {'spike bits':>11} {'float32 bits':>13}"
    print(header)
    print("-" * len(header))
    last = None
    for r in rows:
        first = r["model"] != last
        last = r["model"]
        model, params = (r["model"], f"{r['params']:,}") if first else ("", "")
        shape = "x".join(map(str, r["shape"]))
        print(f"{model:<12} {params:>11}  {r['point']:<7} {shape:<15} "
              f"{r['spike_bits']:>11,} {r['float32_bits']:>13,}")


def _datasets(args: argparse.Namespace) -> None:
    import time

    from .data import build_dataset, dataset_spec, list_datasets

    if not args.name:
        for spec in list_datasets():
            classes = spec.classes or "any"
            print(f"{spec.name:<13} {spec.kind:<7} {classes!s:>4} classes, {spec.channels} ch, "
                  f"default {spec.default_size}x{spec.default_size}; {spec.samples}")
            print(f"{'':<13} files: {spec.layout}")
            print(f"{'':<13} get:   {spec.get}")
        return
    spec = dataset_spec(args.name)
    summary = {"dataset": spec.name, "T": args.T, "splits": {}}
    for split in ("train", "val", "test"):
        t0 = time.perf_counter()
        ds = build_dataset(spec.name, split, root=args.root, T=args.T, size=args.size, download=args.download,
                           train_augment=False, cache_dir=args.cache_dir)
        info = {"samples": len(ds), "open_s": round(time.perf_counter() - t0, 3)}
        x, _ = ds[0]
        info["shape"] = list(x.shape)
        if args.full_pass:
            t0 = time.perf_counter()
            active = total = 0.0
            for i in range(len(ds)):
                x, _ = ds[i]
                active += float((x > 0).sum())
                total += x.numel()
            info["pass_s"] = round(time.perf_counter() - t0, 3)
            info["nonzero_fraction"] = active / total
        summary["splits"][split] = info
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    for split, info in summary["splits"].items():
        extra = ""
        if "pass_s" in info:
            extra = f", one pass {info['pass_s']:.2f} s, non-zero fraction {info['nonzero_fraction']:.4f}"
        print(f"{spec.name} {split:<5} {info['samples']:>6} samples of {'x'.join(map(str, info['shape']))}{extra}")


def _experiment(args: argparse.Namespace):
    from .config import load_config

    sets = list(args.set or [])
    for flag, key in (("model", "model.name"), ("dataset", "data.name"), ("root", "data.root"),
                      ("size", "data.size"), ("T", "model.T"), ("epochs", "optim.epochs"), ("lr", "optim.lr"),
                      ("batch_size", "optim.batch_size"), ("limit", "data.limit"), ("seed", "seed"),
                      ("device", "device"), ("out", "out"), ("name", "name")):
        value = getattr(args, flag, None)
        if value is not None:
            sets.append(f"{key}={value}")
    return load_config(args.config, sets)


def _report(args: argparse.Namespace, kind: str, metrics: dict) -> None:
    from .train import summary_line

    if not metrics:  # a non-zero rank under torchrun: rank 0 reports
        return
    print(json.dumps(metrics, indent=1, default=float) if args.json else summary_line(kind, metrics))


def _train(args: argparse.Namespace) -> None:
    from .train import pretrain

    cfg = _experiment(args)
    _report(args, "backbone", pretrain(cfg, resume=args.resume, progress=not args.quiet))


def _finetune(args: argparse.Namespace) -> None:
    from .train import finetune

    cfg = _experiment(args)
    point = args.point or cfg.coinference.point
    spec = args.bottleneck or cfg.coinference.bottleneck
    if not point or not spec:
        raise ValueError("finetune needs --point and --bottleneck (or coinference.point/bottleneck in the config)")
    backbone = args.checkpoint or cfg.run_dir / "backbone"
    metrics = finetune(cfg, backbone, point, spec, T=args.T, resume=args.resume, progress=not args.quiet)
    _report(args, "co-inference", metrics)


def _sweep(args: argparse.Namespace) -> None:
    from .sweep import run_sweep, summarize, sweep_dir

    cfg = _experiment(args)
    if args.bottlenecks:
        cfg.sweep.bottlenecks = args.bottlenecks.split(",")
    tolerance = cfg.sweep.tolerance if args.tolerance is None else args.tolerance
    if not args.merge:
        run_sweep(cfg, args.checkpoint or cfg.run_dir / "backbone", args.point, progress=not args.quiet)
    result = summarize(sweep_dir(cfg), tolerance, args.goal or cfg.sweep.goal)
    if args.json:
        print(json.dumps(result, indent=1, default=float))
    else:
        print((sweep_dir(cfg) / "results.md").read_text(), end="")
        print(f"tables: {sweep_dir(cfg)}/results.{{md,csv,json}}")


def _calibrate(args: argparse.Namespace) -> None:
    from .calibration import calibrate_checkpoint
    from .exit import MEASURES

    measures = args.measure.split(",") if args.measure else list(MEASURES)
    r = calibrate_checkpoint(args.checkpoint, args.target_drop, measures, args.min_steps, args.device)
    if args.json:
        print(json.dumps(r, indent=1, default=float))
        return
    print(f"early exit at T={r['T']}: thresholds chosen on val for an accuracy drop ≤ {r['target_drop']} pp "
          f"against all T; test figures with the same thresholds")
    print(f"{'measure':<12} {'threshold':>9} {'val steps':>9} {'val acc':>8} {'test steps':>10} {'test acc':>8} "
          f"{'all-T acc':>9} {'drop':>6}  exit-step histogram (test)")
    for row in r["rows"]:
        print(f"{row['measure']:<12} {row['threshold']:>9.4f} {row['val_mean_steps']:>9.2f} "
              f"{row['val_accuracy']:>8.2f} {row['test_mean_steps']:>10.2f} {row['test_accuracy']:>8.2f} "
              f"{row['test_accuracy_all_T']:>9.2f} {row['test_drop']:>6.2f}  {row['test_histogram']}")
    print(f"stored in {args.checkpoint}/model.json: {r['chosen']['policy']}; plot: {r['plot']}")


def _policy(args: argparse.Namespace):
    from .exit import ExitPolicy

    if args.threshold is None:
        return None
    return ExitPolicy(args.measure, args.threshold, args.min_steps)


def _read(path: str | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise NeucodexError(f"cannot read the {what} {path}: {e.strerror}") from None


def _serve(args: argparse.Namespace) -> None:
    import signal
    import threading

    from .runtime import Server

    if (args.tls_cert is None) != (args.tls_key is None):
        raise NeucodexError("TLS needs both --tls-cert and --tls-key")
    tls = (_read(args.tls_key, "TLS key"), _read(args.tls_cert, "TLS certificate")) if args.tls_cert else None
    server = Server(args.checkpoint, args.host, args.port, device=args.device, token=args.token, tls=tls,
                    max_batch=1 if args.no_batching else args.max_batch, max_wait_ms=args.max_wait_ms,
                    max_sessions=args.max_sessions, policy=_policy(args), delay_ms=args.delay_ms,
                    idle_timeout=args.idle_timeout).start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"serving model {server.model_id[:16]}… on {server.address}", flush=True)
    stop.wait()
    print("draining open samples …", file=sys.stderr, flush=True)
    server.stop(args.grace)


def _edge(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from .checkpoint import load_checkpoint
    from .config import from_dict
    from .runtime import EdgeClient
    from .runtime.metrics import stream_dataset, summarize, summary_table
    from .train import load_split

    ck = load_checkpoint(args.checkpoint)
    cfg = from_dict(ck.meta["config"])
    if args.dataset or args.root:
        cfg = replace(cfg, data=replace(cfg.data, name=args.dataset or cfg.data.name, root=args.root, limit=None))
    ds = load_split(cfg, args.split, ck.model.T)
    indices = range(min(len(ds), args.limit or len(ds)))
    with EdgeClient(ck, args.server, token=args.token, tls_ca=_read(args.tls_ca, "TLS CA certificate"),
                    codec_format=args.codec, policy=_policy(args), pipeline=not args.no_pipeline,
                    timeout=args.timeout, retry_deadline=args.retry_deadline, fallback=args.fallback) as client:
        results = stream_dataset(client, ds, indices, progress=not args.quiet)
    summary = summarize(results)
    if args.json:
        print(json.dumps({"summary": summary, "samples": [r.to_dict() for r in results]}, default=float))
    else:
        print(summary_table(summary))


def _energy(args: argparse.Namespace) -> None:
    import torch

    from .checkpoint import load_checkpoint, read_meta
    from .config import from_dict
    from .energy import hardware_profile, per_split_point
    from .models import create_model
    from .train import load_split, to_model_input

    profile = hardware_profile(args.profile)
    trained = args.checkpoint is not None
    if trained:
        meta = read_meta(args.checkpoint)
        directory = meta["backbone"]["path"] if meta["model"].get("coinference") else args.checkpoint
        ck = load_checkpoint(directory)
        model, cfg = ck.model, from_dict(ck.meta["config"])
        if args.dnn and model.spiking:
            raise NeucodexError("--dnn with an SNN checkpoint: the counts would be the twin's; drop --checkpoint")
    else:
        model = create_model(args.model, spiking=not args.dnn, T=args.T, input_size=args.input_size,
                             num_classes=args.num_classes, in_channels=args.in_channels)
        cfg = None
    if args.dataset:
        from dataclasses import replace

        from .config import load_config

        base = cfg or load_config("tiny")
        cfg = replace(base, data=replace(base.data, name=args.dataset, size=model.input_size, limit=None))
    if cfg is not None and (args.dataset or trained):
        ds = load_split(cfg, "test", model.T)
        x = to_model_input(torch.stack([ds[i][0] for i in range(min(args.samples, len(ds)))]), torch.device("cpu"))
    else:
        x = torch.rand(args.samples, model.in_channels, model.input_size, model.input_size)
    if model.spiking and not trained:
        model.train()  # batch statistics: an untrained SNN's eval-mode BN leaves every neuron silent
        print("neucodex: note: firing rates of an untrained SNN (batch statistics); pass --checkpoint for a trained "
              "model's", file=sys.stderr)
    rows = per_split_point(model, x, profile, args.scope)
    if args.json:
        print(json.dumps(rows))
        return
    kind = "SNN" if model.spiking else "DNN"
    print(f"edge energy of {model.arch} ({kind}, T={model.T if model.spiking else 1}) up to each split point; "
          f"scope {args.scope}; {profile.name}: MAC {profile.mac_pj} pJ, AC {profile.ac_pj} pJ")
    print(f"{'point':<8} {'MACs':>14} {'ACs':>14} {'energy mJ':>10}")
    for r in rows:
        print(f"{(r['rb'] or r['point']):<8} {r['macs']:>14,.0f} {r['acs']:>14,.0f} {r['energy_mj']:>10.4f}")


def _report_cmd(args: argparse.Namespace) -> None:
    from .report import write_report

    r = write_report(args.run_dir, samples=args.samples, rtt_ms=args.rtt_ms, device_factor=args.device_factor,
                     radio=args.radio, scope=args.scope)
    print(json.dumps(r, default=float) if args.json else (Path(args.run_dir) / "report.md").read_text())
    if not args.json:
        print("files: " + ", ".join(r["files"]))


def _demo(args: argparse.Namespace) -> None:
    from .demo import run_demo, summary_table

    s = run_demo(events=args.events, quick=args.quick, cache_dir=args.cache_dir, out=args.out, quiet=args.json,
                 rtt_ms=args.rtt_ms, device_factor=args.device_factor)
    print(json.dumps(s, default=float) if args.json else summary_table(s))


def _policy_args(p: argparse.ArgumentParser, whose: str) -> None:
    p.add_argument("--threshold", type=float, help=f"early-exit threshold ({whose})")
    p.add_argument("--measure", default="max_softmax", help="max_softmax, entropy or margin")
    p.add_argument("--min-steps", type=int, default=1)


def _experiment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a preset (tiny, cifar10-cpu, paper) or a YAML file (default: tiny)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any field, e.g. optim.lr=0.01")
    p.add_argument("--model")
    p.add_argument("--dataset")
    p.add_argument("--root")
    p.add_argument("--size", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--limit", type=int, help="at most this many samples per split (quick runs)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--out", help="runs directory (default: runs)")
    p.add_argument("--name", help="run name (default: the config's)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="neucodex", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    o = sub.add_parser("demo", help="the whole system end to end on the embedded digits data (start here)")
    o.add_argument("--events", action="store_true", help="digits-dvs event frames instead of images")
    o.add_argument("--quick", action="store_true", help="a small model and few samples (tests)")
    o.add_argument("--cache-dir", help="where trained models are kept and reused (default: $NEUCODEX_CACHE/demo "
                                       "or ~/.cache/neucodex/demo)")
    o.add_argument("--out", default="runs/demo", help="run directory for the report (default: runs/demo)")
    o.add_argument("--rtt-ms", type=float, default=20.0, help="round-trip time of the modelled link")
    o.add_argument("--device-factor", type=float, default=10.0, help="edge CPU this many times slower than this one")
    o.add_argument("--json", action="store_true", help="the summary as JSON (no progress output)")
    o.set_defaults(func=_demo)

    m = sub.add_parser("models", help="list backbones, split points, feature shapes and bits")
    m.add_argument("model", nargs="*", help="model names (default: all)")
    m.add_argument("--input-size", type=int, default=32)
    m.add_argument("--in-channels", type=int, default=3)
    m.add_argument("--num-classes", type=int, default=10)
    m.add_argument("-T", "--T", type=int, default=4, help="timesteps")
    m.add_argument("--json", action="store_true", help="machine-readable output")
    m.set_defaults(func=_models)

    d = sub.add_parser("datasets", help="list datasets, or load one and report its splits")
    d.add_argument("name", nargs="?", help="dataset to load (default: list all)")
    d.add_argument("--root", help="where the dataset's files are (see the list for the layout)")
    d.add_argument("-T", "--T", type=int, default=4, help="timesteps for event frames")
    d.add_argument("--size", type=int, help="image / frame side (default: the dataset's)")
    d.add_argument("--download", action="store_true", help="fetch with torchvision / Tonic where they can")
    d.add_argument("--cache-dir", help="cache for framed events and decoded archives")
    d.add_argument("--full-pass", action="store_true", help="time one pass over each split")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_datasets)

    t = sub.add_parser("train", help="pretrain a backbone (SNN, or its DNN twin with --set model.spiking=false)")
    _experiment_args(t)
    t.add_argument("-T", "--T", type=int, help="timesteps")
    t.add_argument("--resume", action="store_true", help="continue from the run's last epoch")
    t.set_defaults(func=_train)

    f = sub.add_parser("finetune", help="insert a bottleneck at a split point and fine-tune the whole model")
    _experiment_args(f)
    f.add_argument("--checkpoint", help="backbone checkpoint directory (default: <out>/<name>/backbone)")
    f.add_argument("--point", help="split point, e.g. conv2 or rb4")
    f.add_argument("--bottleneck", help="c<channels>[s<stride>][k<kernel>], e.g. c8s4")
    f.add_argument("-T", "--T", type=int, help="timesteps (default: the backbone's)")
    f.add_argument("--resume", action="store_true")
    f.set_defaults(func=_finetune)

    s = sub.add_parser("sweep", help="fine-tune a grid of bottlenecks per split point; select and tabulate")
    _experiment_args(s)
    s.add_argument("--checkpoint", help="backbone checkpoint directory (default: <out>/<name>/backbone)")
    s.add_argument("--point", action="append", help="only this split point (repeatable; one per process)")
    s.add_argument("--bottlenecks", help="comma-separated grid, e.g. c16s2,c8s4")
    s.add_argument("--tolerance", type=float, help="accuracy drop allowed, percentage points (default 3)")
    s.add_argument("--goal", help="how the best partition is chosen (bits)")
    s.add_argument("--merge", action="store_true", help="only rebuild the tables from per-point results")
    s.set_defaults(func=_sweep)

    c = sub.add_parser("calibrate", help="choose the early-exit threshold on the validation split")
    c.add_argument("--checkpoint", required=True, help="checkpoint directory (backbone or co-inference)")
    c.add_argument("--target-drop", type=float, default=0.5, help="accuracy drop allowed vs all T, pp (0.5)")
    c.add_argument("--measure", help="comma-separated: max_softmax,entropy,margin (default: all)")
    c.add_argument("--min-steps", type=int, default=1)
    c.add_argument("--device", default="auto")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_calibrate)

    v = sub.add_parser("serve", help="the cloud: a gRPC server running decoder + tail per session")
    v.add_argument("--checkpoint", required=True, help="co-inference checkpoint directory")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=50051, help="0: any free port (printed)")
    v.add_argument("--token", help="bearer token every call must carry")
    v.add_argument("--tls-cert", help="PEM certificate chain (with --tls-key)")
    v.add_argument("--tls-key", help="PEM private key")
    v.add_argument("--max-batch", type=int, default=32, help="frames run together at most (dynamic batching)")
    v.add_argument("--max-wait-ms", type=float, default=2.0, help="longest wait for more frames to batch")
    v.add_argument("--no-batching", action="store_true", help="run frames one by one")
    v.add_argument("--max-sessions", type=int, default=128, help="concurrent streams accepted")
    v.add_argument("--grace", type=float, default=10.0, help="seconds open samples get to finish on shutdown")
    v.add_argument("--device", default="cpu")
    v.add_argument("--idle-timeout", type=float, default=300.0, help="end sessions silent this long (s)")
    v.add_argument("--delay-ms", type=float, default=0.0, help="add this delay before every answer (emulates a "
                                                                "link's round trip in benchmarks)")
    _policy_args(v, "default: the checkpoint's calibrated policy; clients may send their own")
    v.set_defaults(func=_serve)

    e = sub.add_parser("edge", help="the edge: stream a dataset's samples through the cloud server")
    e.add_argument("--server", required=True, help="HOST:PORT of neucodex serve")
    e.add_argument("--checkpoint", required=True, help="the same co-inference checkpoint the server has")
    e.add_argument("--dataset", help="dataset name (default: the checkpoint's)")
    e.add_argument("--root", help="dataset files (default: the checkpoint's)")
    e.add_argument("--split", default="test", choices=("train", "val", "test"))
    e.add_argument("--limit", type=int, help="only the first this many samples of the split")
    e.add_argument("--token", help="bearer token")
    e.add_argument("--tls-ca", help="PEM CA certificate: connect with TLS")
    e.add_argument("--codec", default="auto", help="bitmap, sparse, entropy or auto")
    e.add_argument("--no-pipeline", action="store_true", help="compute t+1 only after the answer for t")
    e.add_argument("--fallback", default="local", choices=("local", "none"),
                   help="when the cloud is gone: answer on the edge, or report the sample failed")
    e.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an answer")
    e.add_argument("--retry-deadline", type=float, default=5.0, help="seconds to keep retrying a sample")
    e.add_argument("--quiet", action="store_true")
    e.add_argument("--json", action="store_true", help="summary and per-sample metrics as JSON")
    _policy_args(e, "default: the server's")
    e.set_defaults(func=_edge)

    g = sub.add_parser("energy", help="edge energy (mJ) up to each split point: MACs, ACs with firing rates")
    g.add_argument("model", nargs="?", default="resnet18", help="model name (ignored with --checkpoint)")
    g.add_argument("--dnn", action="store_true", help="the DNN twin (MACs only)")
    g.add_argument("--checkpoint", help="trained checkpoint: its firing rates (a co-inference one: its backbone)")
    g.add_argument("--dataset", help="measure firing rates on this dataset's test samples (default: random input)")
    g.add_argument("--samples", type=int, default=16)
    g.add_argument("--scope", default="full", choices=("full", "paper"),
                   help="paper: residual-block convs only, as SpikeBottleNet Table 3")
    g.add_argument("--profile", default="45nm", help="45nm, rolls, or a YAML file with mac_pj and ac_pj")
    g.add_argument("--input-size", type=int, default=32)
    g.add_argument("--in-channels", type=int, default=3)
    g.add_argument("--num-classes", type=int, default=10)
    g.add_argument("-T", "--T", type=int, default=4)
    g.add_argument("--json", action="store_true", help='a list of {"point", "rb", "macs", "acs", "energy_mj"}')
    g.set_defaults(func=_energy)

    r = sub.add_parser("report", help="markdown report and plots of a run directory")
    r.add_argument("run_dir", help="a run with backbone/ and coinference-*/ checkpoints (e.g. runs/tiny)")
    r.add_argument("--samples", type=int, help="test samples to evaluate (default: all)")
    r.add_argument("--rtt-ms", type=float, default=20.0, help="link round-trip time for the latency model")
    r.add_argument("--device-factor", type=float, default=10.0, help="edge compute is this many times slower")
    r.add_argument("--radio", default="wifi", help="wifi, lte or ble (energy per transmitted bit)")
    r.add_argument("--scope", default="paper", choices=("full", "paper"), help="scope of the per-split-point table")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=_report_cmd)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (NeucodexError, ValueError) as e:
        print(f"neucodex: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
