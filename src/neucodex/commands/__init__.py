"""The ``neucodex`` commands, one module each: ``NAME``, ``HELP``, ``add_arguments(parser)``, ``run(args)``.

Each is a thin layer over the library API; ``neucodex.cli`` assembles them into one parser.
"""

from __future__ import annotations

from . import (
    calibrate,
    datasets,
    demo,
    edge,
    energy,
    finetune,
    models,
    report,
    serve,
    sweep,
    train,
)

COMMANDS = (demo, models, datasets, train, finetune, sweep, calibrate, serve, edge, energy, report)
