"""One writer (issue 22): in the engine, the agents, the pipelines and the review UI only engine/store speaks SQL.

Everything else calls the store's functions, whose names say what they do (`record_clips`, `close_run`), so a
query or a write has one place to be read, tuned and changed.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "agents", "pipelines", "review_ui")
STORE = ROOT / "engine" / "store"


def _imports_sqlalchemy(tree: ast.AST) -> list[int]:
    """Lines of every `import sqlalchemy...` and `from sqlalchemy... import`, at any depth (inside functions too)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        if any(n == "sqlalchemy" or n.startswith("sqlalchemy.") for n in names):
            lines.append(node.lineno)
    return lines


def test_the_guard_finds_imports_at_any_depth():
    source = "import os\ndef f():\n    import sqlalchemy as sa\n    from sqlalchemy.orm import Session\n"
    assert _imports_sqlalchemy(ast.parse(source)) == [3, 4]
    assert _imports_sqlalchemy(ast.parse("from engine.store import sqlalchemy_free\nimport sqlalchemyish\n")) == []


def test_only_the_store_imports_sqlalchemy():
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.is_relative_to(STORE):
                continue
            for line in _imports_sqlalchemy(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                offenders.append(f"{path.relative_to(ROOT)}:{line}")
    assert not offenders, "SQLAlchemy outside engine/store (call a store function instead):\n" + "\n".join(offenders)
