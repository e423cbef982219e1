"""The layout's rules, checked on the source: who may import whom, and how long a module or function gets.

- The product never imports its test rig: nothing in ``agent/`` or ``kernels/`` imports
  ``hil``, and ``kernels/`` imports nothing from ``agent``: every import statement counts,
  at the top or inside a function (a lazy import is still a dependency).
- A module over ~400 lines says at its top why it is long; so does a function over ~60
  lines in ``agent/`` (in its docstring), with the words "long because".
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
REASON = "long because"


def sources(package: str) -> list[Path]:
    files = sorted((REPO / package).rglob("*.py"))
    assert files, package
    return files


def imported(path: Path) -> set[str]:
    """Every module named by an import statement anywhere in the file (top-level packages)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_product_never_imports_its_test_rig():
    for package, forbidden in (("agent", {"hil"}), ("kernels", {"hil", "agent"})):
        for path in sources(package):
            wrong = imported(path) & forbidden
            assert not wrong, f"{path.relative_to(REPO)} imports {wrong}"


def test_the_import_check_sees_lazy_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from hil.demo import run_demo\n    import agent.cli\n")
    assert imported(probe) == {"hil", "agent"}


def test_long_modules_and_functions_say_why():
    for package in ("agent", "kernels", "hil"):
        for path in sources(package):
            text = path.read_text()
            tree = ast.parse(text, filename=str(path))
            name = path.relative_to(REPO)
            if text.count("\n") > MAX_MODULE_LINES:
                why = (ast.get_docstring(tree) or "").lower()
                assert REASON in why, f"{name}: over {MAX_MODULE_LINES} lines"
            if package != "agent":
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = (node.end_lineno or node.lineno) - node.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        why = (ast.get_docstring(node) or "").lower()
                        assert REASON in why, f"{name}: {node.name} is {length} lines"
