"""The layering of ARCHITECTURE.md holds: each package imports only the layers below it,
and the I/O-free cores import no trio, no socket and no clock."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "meshcore"

# package -> meshcore packages it may import (besides itself and the base modules).
BASE = {"_types", "errors", "config"}
ALLOWED: dict[str, set[str]] = {
    "wire": set(),
    "security": {"wire"},
    "swim": {"wire", "security"},
    "antientropy": {"wire", "security"},
    "kv": {"wire", "security", "antientropy"},
    "sim": {"wire", "security", "swim", "antientropy", "kv"},
    "runtime": {"wire", "security", "swim", "antientropy", "kv"},
    "node": {"wire", "security", "swim", "antientropy", "kv", "runtime"},
    "cli": {"wire", "security", "swim", "antientropy", "kv", "runtime", "node"},
}
IO_FREE = {"wire", "security", "swim", "antientropy", "kv"}
IO_MODULES = {"trio", "socket", "time", "asyncio", "threading", "selectors", "sqlite3",
              "subprocess", "trio_websocket"}


def _imports(path: Path, root: Path = ROOT) -> list[tuple[str, int]]:
    """Absolute module names imported by a file (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = path.relative_to(root.parent).with_suffix("").parts[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            name = node.module or ""
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ((node.module,) if node.module else ()))
                if not node.module:  # `from . import x` imports submodules
                    found += [(f"{name}.{a.name}", node.lineno) for a in node.names]
                    continue
            found.append((name, node.lineno))
    return found


def _violations(path: Path, root: Path = ROOT) -> list[str]:
    rel = path.relative_to(root).parts
    package = rel[0] if len(rel) > 1 else None
    if package not in ALLOWED:
        return []
    where = path.relative_to(root.parent)
    problems = []
    for name, line in _imports(path, root):
        parts = name.split(".")
        if package in IO_FREE and parts[0] in IO_MODULES:
            problems.append(f"{where}:{line} imports {name}; the I/O-free cores take `now` "
                            "as an argument and leave I/O to meshcore.runtime")
        if parts[0] != "meshcore" or len(parts) < 2:
            continue
        target = parts[1]
        if target not in BASE and target != package and target not in ALLOWED[package]:
            problems.append(f"{where}:{line} imports meshcore.{target}, but {package} may "
                            f"only import {sorted(ALLOWED[package] | BASE)}")
    return problems


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_each_module_respects_the_layers(path: Path) -> None:
    assert _violations(path) == []


def test_the_layering_check_sees_a_violation(tmp_path: Path) -> None:
    root = tmp_path / "meshcore"
    (root / "swim").mkdir(parents=True)
    bad = root / "swim" / "_core.py"
    bad.write_text("import trio\nfrom ..runtime import driver\nfrom ..wire import encode\n")
    problems = _violations(bad, root)
    assert len(problems) == 2
    assert "imports trio" in problems[0] and "meshcore.runtime" in problems[1]
