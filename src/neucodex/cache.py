"""Where neucodex keeps what it derives and can rebuild: decoded datasets, event frames, the
zoo's weights rebuilt from their deltas. Light (no PyTorch), so every layer may use it."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, ``$NEUCODEX_CACHE`` or ~/.cache/neucodex (created)."""
    root = Path(cache_dir or os.environ.get("NEUCODEX_CACHE", Path.home() / ".cache" / "neucodex"))
    root.mkdir(parents=True, exist_ok=True)
    return root
