"""Every distribution alp's code imports is declared in pyproject.toml (the `stack` extra for the
stack's servers), and the package data the wheel needs exists."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("al_core", "flows", "tasks")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(spec: str) -> str:
    return _norm(re.split(r"[\s<>=!~\[;]", spec, maxsplit=1)[0])


def imported_modules() -> dict[str, set[str]]:
    """Top-level module name → the files importing it, over al_core, flows and tasks."""
    out: dict[str, set[str]] = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for n in names:
                    out.setdefault(n.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return out


def test_every_imported_distribution_is_declared():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_requirement_name(s) for s in meta["dependencies"]}
    stack = {_requirement_name(s) for s in meta["optional-dependencies"]["stack"]}
    dists = packages_distributions()
    missing = {}
    for module, files in imported_modules().items():
        if module in sys.stdlib_module_names or module in PACKAGES or module == "__future__":
            continue
        names = {_norm(d) for d in dists.get(module, [module])}
        allowed = declared | (stack if files <= {"flows/stack.py"} else set())
        if not names & allowed:
            missing[module] = sorted(files)
    assert missing == {}, f"imported but not declared in pyproject.toml: {missing}"


def test_the_wheel_carries_the_workspace_templates():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "templates/*.yaml" in meta["tool"]["setuptools"]["package-data"]["flows"]
    for name in ("params.yaml", "dvc.yaml"):
        template = ROOT / "flows" / "templates" / name
        assert template.read_text() == (ROOT / name).read_text()
