"""The package's shape: a small public surface that loads on first use, and no import cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import cachesweeper

PACKAGE = Path(cachesweeper.__file__).parent


def loaded_by(statement: str) -> set[str]:
    """The package modules a fresh interpreter holds after ``statement``."""
    listing = "sorted(m for m in sys.modules if m.partition('.')[0] == 'cachesweeper')"
    script = f"import sys; {statement}; print({listing})"
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    return set(ast.literal_eval(output))


def test_importing_the_settings_loads_nothing_else() -> None:
    assert loaded_by("import cachesweeper.conf") == {"cachesweeper", "cachesweeper.conf"}


def test_every_public_name_resolves() -> None:
    for name in cachesweeper.__all__:
        assert callable(getattr(cachesweeper, name)), name


def test_unknown_names_are_attribute_errors() -> None:
    try:
        cachesweeper.nonexistent  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as error:
        assert "nonexistent" in str(error)
    else:
        raise AssertionError("no AttributeError")


def module_imports() -> dict[str, set[str]]:
    """Each module's package imports made when it is imported (not inside functions)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        tree = ast.parse(path.read_text())
        imported: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cachesweeper"):
                module = node.module or ""
                for alias in node.names:
                    candidate = f"{module}.{alias.name}"
                    is_module = (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(
                        ".py"
                    ).exists() or (PACKAGE.parent / candidate.replace(".", "/")).is_dir()
                    imported.add(candidate if is_module else module)
        imported.discard("cachesweeper")  # the package itself imports nothing eagerly
        graph[name] = imported
    return graph


def test_no_import_cycle() -> None:
    graph = module_imports()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = " -> ".join([*path[path.index(module) :], module])
            raise AssertionError(f"import cycle: {cycle}")
        if module in done:
            return
        for imported in sorted(graph.get(module, ())):
            visit(imported, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
