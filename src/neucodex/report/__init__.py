"""``neucodex report RUN_DIR``: the reproduction report of a run — tables, energy, latency, plots.

``figures`` computes every figure into a typed :class:`~.schema.Report` (``report.json``),
``markdown`` writes ``report.md`` and ``plots`` the PNGs.
"""

from __future__ import annotations

import json
from pathlib import Path

from .figures import analyse, find_checkpoints
from .markdown import markdown
from .plots import plots
from .schema import Report

__all__ = ["Report", "analyse", "find_checkpoints", "markdown", "plots", "write_report"]


def write_report(run_dir: str | Path, **kw) -> Report:
    """Analyse ``run_dir`` and write report.md, report.json and the PNG plots into it."""
    run_dir = Path(run_dir)
    r = analyse(run_dir, **kw)
    (run_dir / "report.md").write_text(markdown(r))
    r.files = [str(run_dir / "report.md"), str(run_dir / "report.json"), *map(str, plots(r, run_dir))]
    (run_dir / "report.json").write_text(json.dumps(r.to_json(), indent=1, default=float))
    return r
