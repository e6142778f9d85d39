"""The package's architecture, checked: stages import only earlier stages, nothing reaches into
another module's private names, and the public API is what `alexandria` says it is."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import alexandria

PACKAGE = Path(alexandria.__file__).parent
# Each package may import from its own rank and below (errors and children are shared by all).
RANKS = {"errors": 0, "children": 0, "sources": 1, "chunking": 2, "embedding": 3, "store": 4,
         "run": 5, "query": 6, "serve": 7, "tools": 8, "cli": 9, "__main__": 9}
MAX_LINES = 600


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def part_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def imports(path: Path) -> list[ast.ImportFrom | ast.Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def imported_modules(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    return [node.module or ""]


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_module_imports_only_its_own_stage_and_the_stages_before_it(path: Path):
    own = part_of(path)
    if own == "__init__":  # the public API re-exports every stage, lazily
        return
    for node in imports(path):
        for name in imported_modules(node):
            parts = name.split(".")
            if parts[0] != "alexandria" or len(parts) < 2:
                continue
            assert RANKS[parts[1]] <= RANKS[own], f"{path.name} imports {name} ({own} is before it)"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_another_modules_private_names(path: Path):
    for node in imports(path):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("alexandria"):
            private = [a.name for a in node.names if a.name.startswith("_")]
            assert not private, f"{path.name} imports {private} from {node.module}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_longer_than_the_limit(path: Path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= MAX_LINES


def test_every_public_name_of_the_api_can_be_imported():
    for name in alexandria.__all__:
        assert getattr(alexandria, name) is not None, name
    from alexandria import export, ingest, plan, repair, search, status  # noqa: F401


def test_importing_the_package_loads_neither_torch_nor_the_store_engines():
    import subprocess
    import sys

    code = ("import sys, alexandria, alexandria.cli; "
            "print(sorted(m for m in ('torch', 'qdrant_edge', 'qdrant_client', 'transformers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
