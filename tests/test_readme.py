"""The README opens with the two commands, and CI runs the second one verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, re.S)][:2]


def test_readme_starts_with_two_commands():
    demo, tests = readme_commands()
    assert "neucodex" in demo and "pip install" in demo
    assert "pytest" in tests and "pip install" in tests


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci


def test_readme_python_blocks_run():
    """The README's Python blocks, in order in one namespace, run as written."""
    text = (ROOT / "README.md").read_text()
    namespace: dict = {}
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 — our own documentation
    assert blocks and any(not k.startswith("__") for k in namespace)  # they ran and defined something
