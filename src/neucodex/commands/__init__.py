"""The ``neucodex`` commands, one module each: ``NAME``, ``HELP``, ``add_arguments(parser)``, ``run(args)``.

Each is a thin layer over the library API; ``neucodex.cli`` assembles them into one parser.
"""

from __future__ import annotations

from . import (
    average,
    calibrate,
    codemodels,
    datasets,
    demo,
    edge,
    energy,
    evaluate,
    export,
    finetune,
    models,
    ratecurve,
    report,
    serve,
    sweep,
    train,
    zoo,
)

COMMANDS = (
    demo,
    models,
    datasets,
    zoo,
    train,
    finetune,
    average,
    sweep,
    calibrate,
    codemodels,
    evaluate,
    serve,
    edge,
    export,
    energy,
    ratecurve,
    report,
)
