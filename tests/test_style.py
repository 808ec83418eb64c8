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


PKG = ROOT / "src" / "neucodex"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Module → the neucodex modules (and ``torch``) it imports at module level. Imports inside
    functions are deliberate lazy loads and do not count."""
    import ast

    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            else:
                continue
            for t in targets:
                while t and t not in modules and t.split(".")[0] != "torch":
                    t = t.rpartition(".")[0]
                if t:
                    deps.add("torch" if t.split(".")[0] == "torch" else t)
        deps.discard(name)
        graph[name] = deps
    return graph


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    """Everything ``start`` reaches in ``graph`` (not itself unless through a cycle)."""
    seen, todo = set(), [start]
    while todo:
        for d in graph.get(todo.pop(), ()):
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def test_imports_go_one_way():
    """No import cycles at module level; ``runtime/`` never imports ``train``; the edge and the
    server do not import each other; the torch-free edge's modules pull in no PyTorch."""
    graph = _import_graph()

    def reach(start: str) -> set[str]:
        return _reach(graph, start)

    cycles = sorted(m for m in graph if m in reach(m))
    assert cycles == [], f"modules in an import cycle: {cycles}"
    runtime = [m for m in graph if m.startswith("neucodex.runtime")]
    assert runtime and all("neucodex.training" not in reach(m) for m in runtime)
    assert "neucodex.runtime.server" not in reach("neucodex.runtime.edge")
    assert "neucodex.runtime.edge" not in reach("neucodex.runtime.server")
    light = [m for m in graph if m.startswith("neucodex.lite")]
    light += ["neucodex", "neucodex.codec", "neucodex.runtime.stream", "neucodex.runtime.protocol"]
    heavy = sorted(m for m in light if "torch" in reach(m))
    assert heavy == [], f"these must import no PyTorch: {heavy}"


def test_readme_layout_names_every_module():
    layout = (ROOT / "README.md").read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    names = sorted(
        p.name + ("/" if p.is_dir() else "")
        for p in PKG.iterdir()
        if not p.name.startswith(("_", ".")) and (p.suffix == ".py" or (p / "__init__.py").exists())
    )
    missing = [n for n in names if n not in layout]
    assert names and missing == [], f"README's Layout does not name {missing}"


def test_folders_import_one_way_too():
    """No loop between folders (packages) at module level: `a/ → b/ → a/` is refused even when no
    single module is in a cycle (a top-level module counts as a folder of its own)."""
    graph = _import_graph()

    def folder(module: str) -> str:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else ""

    edges: dict[str, set[str]] = {}
    for m, deps in graph.items():
        for d in deps:
            if d != "torch" and folder(d) and folder(m) and folder(d) != folder(m):
                edges.setdefault(folder(m), set()).add(folder(d))

    loops = sorted(f for f in edges if f in _reach(edges, f))
    assert loops == [], f"folders in an import loop: {loops}"
