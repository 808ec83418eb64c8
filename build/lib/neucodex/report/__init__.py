"""``neucodex report RUN_DIR``: the reproduction report of a run — tables, energy, latency, plots.

``figures`` computes every figure (``report.json``), ``markdown`` writes ``report.md`` and
``plots`` the PNGs.
"""

from __future__ import annotations

import json
from pathlib import Path

from .figures import analyse, find_checkpoints
from .markdown import markdown
from .plots import plots

__all__ = ["analyse", "find_checkpoints", "markdown", "plots", "write_report"]


def write_report(run_dir: str | Path, **kw) -> dict:
    """Analyse ``run_dir`` and write report.md, report.json and the PNG plots into it."""
    run_dir = Path(run_dir)
    r = analyse(run_dir, **kw)
    (run_dir / "report.json").write_text(json.dumps(r, indent=1, default=float))
    (run_dir / "report.md").write_text(markdown(r))
    r["files"] = [str(run_dir / "report.md"), str(run_dir / "report.json"), *map(str, plots(r, run_dir))]
    return r
