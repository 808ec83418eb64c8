"""One code style: ``ruff format`` and ``ruff check`` are clean (CI runs this with the suite)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ruff(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if exe is None:
        pytest.fail("ruff is not installed: pip install -e '.[test]'")
    return subprocess.run([exe, *args, "src", "tests", "bench"], cwd=ROOT, capture_output=True, text=True)


def test_ruff_format_is_clean():
    proc = ruff("format", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_check_is_clean():
    proc = ruff("check")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_nothing_a_user_gets_points_at_the_developers_shared_folder():
    """Messages, docs and benches name --root/--download or the package's own data, never a
    ``../shared`` path only this project's developers have."""
    files = [
        ROOT / "README.md",
        *(ROOT / "src").rglob("*.py"),
        *(ROOT / "src").rglob("*.yaml"),
        *(ROOT / "bench").glob("*"),
    ]
    hits = [str(f.relative_to(ROOT)) for f in files if f.is_file() and "../shared" in f.read_text(errors="ignore")]
    assert hits == []
