"""``neucodex zoo``: the pretrained checkpoints shipped with the package (``zoo:NAME`` anywhere a
checkpoint is taken)."""

from __future__ import annotations

import argparse
import json

NAME = "zoo"
HELP = "list the pretrained checkpoints shipped with the package"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one object per entry")
    p.add_argument("--markdown", action="store_true", help="a Markdown table with the demo figures (as in the README)")
    p.add_argument(
        "--grid", action="store_true", help="the seeds' grid (backbone x dataset) as a Markdown table, from the index"
    )
    p.add_argument("--add", metavar="DIR", help="(maintainers) add a checkpoint directory as fp16 under --name")
    p.add_argument("--name", help="entry name for --add; with --remeasure, --code-models or --figures, only this entry")
    p.add_argument("--source", default="", help="how the checkpoint was made, for --add")
    p.add_argument("--backbone", help="for --add of a co-inference checkpoint: its backbone's zoo entry")
    p.add_argument("--demo-dataset", help="for --add: evaluate the shipped weights on this dataset and store it")
    p.add_argument(
        "--remeasure",
        metavar="ROOT",
        help="(maintainers) re-measure every entry as shipped: on the demo images, and on the held-out test at ROOT",
    )
    p.add_argument(
        "--figures",
        action="store_true",
        help="(maintainers) measure every co-inference entry's (or --name's) report figures on its demo images "
        "(energy, latency: what --grid quotes)",
    )
    p.add_argument(
        "--code-models",
        metavar="ROOT",
        help="(maintainers) count every spiking cut's code models (or --name's) on 10,000 training images at ROOT "
        "and store them in the entry; re-measure after",
    )
    p.add_argument(
        "--demo-images",
        nargs=2,
        metavar=("DATASET", "ROOT"),
        help="(maintainers) write the embedded image demo set DATASET-demo (imagefolder: cifar10-demo): --per-class "
        "images of each class from the held-out test split of DATASET at ROOT",
    )
    p.add_argument(
        "--demo-events",
        nargs=3,
        metavar=("DATASET", "ROOT", "T"),
        help="(maintainers) write the embedded event demo set DATASET-demo: --per-class held-out test recordings "
        "of DATASET at ROOT, framed at T bins (and the dataset's size)",
    )
    p.add_argument(
        "--per-class", type=int, help="for --demo-images / --demo-events: samples per class (default 100 / 10)"
    )
    p.add_argument(
        "--delta-fp32",
        action="store_true",
        help="for --add of a co-inference checkpoint: ship what differs from --backbone in fp32, not fp16",
    )


def run(args: argparse.Namespace) -> None:
    from ..pretrained import entries

    if args.per_class is not None and args.per_class < 1:
        from ..errors import NeucodexError

        raise NeucodexError(f"--per-class must be at least 1, got {args.per_class}")
    if args.demo_images:
        from ..publish import write_demo_images

        dataset, root = args.demo_images
        print(f"wrote {write_demo_images(dataset, root, per_class=args.per_class or 100)}")
        return
    if args.demo_events:
        from ..data.demos import write_event_demo
        from ..errors import NeucodexError

        dataset, root, T = args.demo_events
        if not T.isdigit() or int(T) < 1:
            raise NeucodexError(f"--demo-events: T must be a positive integer, got {T!r}")
        print(f"wrote {write_event_demo(dataset, root, int(T), per_class=args.per_class or 10)}")
        return
    if args.code_models:
        from ..checkpoint import read_info
        from ..pretrained import PREFIX
        from ..publish import refit_code_models

        for e in entries():
            if e.kind == "coinference" and args.name in (None, e.name) and read_info(PREFIX + e.name).model.spiking:
                e = refit_code_models(e, args.code_models)
                print(f"zoo:{e.name}: code models counted; model.json {e.json_sha256[:16]}…")
        return
    if args.grid:
        from ..grid import markdown as grid

        print(grid())
        return
    if args.figures:
        from ..publish import measure_figures

        for e in entries():
            if e.kind == "coinference" and args.name in (None, e.name):
                e = measure_figures(e)
                f = e.figures
                print(
                    f"zoo:{e.name}: edge compute {100 * f['edge_compute_saving_paper']:.1f}% below edge-only "
                    f"(SpikeBottleNet's scope), {f['latency_speedup']['10']:.2f}x faster at 10 Mbit/s"
                )
        return
    if args.remeasure:
        from ..publish import measure_heldout, measure_on_demo

        for e in entries():
            if args.name not in (None, e.name):
                continue
            e = measure_on_demo(e, e.check["dataset"] if e.check else "cifar10-demo")
            e = measure_heldout(e, args.remeasure, e.dataset)
            print(
                f"zoo:{e.name}: held out {e.heldout['accuracy_all_t']:.2f}% all T, "
                f"{e.heldout['accuracy']:.2f}% with exit"
            )
        return
    if args.add:
        from ..errors import NeucodexError
        from ..publish import add_to_zoo

        if not args.name:
            raise NeucodexError("--add needs --name")
        e = add_to_zoo(args.add, args.name, args.source, args.backbone, args.demo_dataset, args.delta_fp32)
        acc = "–" if e.accuracy is None else f"{e.accuracy:.2f}%"
        print(f"added zoo:{e.name} ({e.kind}, accuracy {acc}) sha256 {e.sha256[:16]}…")
        return
    rows = [{**e.to_dict(), "accuracy": e.accuracy} for e in entries()]  # as shipped where measured
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    if args.markdown:
        print(markdown(rows))
        return
    w = max([len("name"), *(len(r["name"]) for r in rows)])
    print(
        f"{'name':<{w}} {'kind':<11} {'dataset':<12} {'model':<14} {'T':>2} {'point':<5} {'bottleneck':<10} "
        f"{'held out':>8}  sha256"
    )
    for r in rows:
        acc = "–" if r["accuracy"] is None else f"{r['accuracy']:.2f}%"
        print(
            f"{r['name']:<{w}} {r['kind']:<11} {r['dataset']:<12} {r['model']:<14} {r['T']:>2} "
            f"{r['point'] or '–':<5} {r['bottleneck'] or '–':<10} {acc:>8}  {r['sha256'][:16]}…"
        )


def markdown(rows: list[dict]) -> str:
    """The zoo as a Markdown table (the README's): the shipped weights on the held-out test images
    and on the demo images, from the index — one source for every entry's figures."""

    def pct(v: float | None) -> str:
        return "–" if v is None else f"{v:.2f}%"

    def num(v: float | None, fmt: str) -> str:
        return "–" if v is None else format(v, fmt)

    out = [
        "| name | kind | point | bottleneck | held out: all T | held out: exit | held out: mean steps "
        "| held out: payload bits | demo: accuracy | demo: mean steps | demo: payload bits | sha256 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        d, h = r.get("demo") or {}, r.get("heldout") or {}
        out.append(
            f"| `{r['name']}` | {r['kind']} | {r['point'] or '–'} | {r['bottleneck'] or '–'} | "
            f"{pct(h.get('accuracy_all_t', r.get('accuracy_run')))}{'' if h else ' (run)'} | "
            f"{pct(h.get('accuracy'))} | "
            f"{num(h.get('mean_steps'), '.2f')} | {num(h.get('payload_bits'), '.0f')} | {pct(d.get('accuracy'))} | "
            f"{num(d.get('mean_steps'), '.2f')} | {num(d.get('payload_bits'), '.0f')} | `{r['sha256'][:12]}…` |"
        )
    return "\n".join(out)
