"""Models and datasets from other installed packages, found through entry points.

A package adds to neucodex by declaring, in its ``pyproject.toml``::

    [project.entry-points."neucodex.models"]
    my-net = "my_pkg.models:my_net"          # a function (**kw) -> Backbone, registered as "my-net"

    [project.entry-points."neucodex.datasets"]
    my-data = "my_pkg.data:MY_DATA_SPEC"     # a neucodex.DatasetSpec

They are loaded the first time a name is looked up or listed, so the CLI (``neucodex models``,
``--set model.name=my-net``) and checkpoint loading see them like the built-in ones. A plugin
that fails to import is skipped with a one-line warning naming it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib.metadata import entry_points

_loaded: set[str] = set()


def load_plugins(group: str, register: Callable[[str, object], None]) -> None:
    """Call ``register(name, object)`` for every entry point of ``group``, once per process."""
    if group in _loaded:
        return
    _loaded.add(group)
    for ep in entry_points(group=group):
        try:
            obj = ep.load()
        except Exception as e:  # noqa: BLE001 — someone else's package: skip it, say which
            print(f"neucodex: warning: plugin {ep.name!r} ({ep.value}) failed to load: {e}", file=sys.stderr)
            continue
        register(ep.name, obj)
