"""Lazy package attributes (PEP 562): a package names its exports without importing them.

Importing ``neucodex`` or ``neucodex.runtime`` must not import PyTorch, so that the torch-free
edge (:mod:`neucodex.lite`) can live in the same package; each export is imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def exports(package: str, table: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` serving ``{name: ".module"}`` on first access."""

    def __getattr__(name: str) -> object:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(table[name], package), name)

    def __dir__() -> list[str]:
        return sorted(table)

    return __getattr__, __dir__
