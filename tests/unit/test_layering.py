"""Imports go downward: storage imports no transform nor stage, no stage imports another stage.

The batch API and the CLI load no scheduler code.
"""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "chillflow"


def _module(path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(path): path for path in PACKAGE.rglob("*.py")}


def _imports(path) -> set[str]:
    """The modules ``path`` imports anywhere in it (``from a import b`` is ``a.b`` if a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = {f"{node.module}.{alias.name}" for alias in node.names}
            found |= (names & MODULES.keys()) or {node.module}
    return found


def test_storage_imports_no_transforms_and_no_stage():
    upward = {
        f"{path.name} imports {name}"
        for path in (PACKAGE / "storage").glob("*.py")
        for name in _imports(path)
        if name.startswith(("chillflow.transforms", "chillflow.stages", "chillflow.api"))
    }
    assert upward == set()


def test_a_stage_imports_no_other_stage():
    stages = {name for name in MODULES if name.startswith("chillflow.stages.")}
    helpers = {"chillflow.stages.rule_outcomes"}  # a part of curate, not a stage
    sideways = {
        f"{name} imports {imported}"
        for name in stages - helpers
        for imported in _imports(MODULES[name]) & stages - helpers - {name}
    }
    assert sideways == set()


def test_no_import_circle():
    graph = {name: _imports(path) & MODULES.keys() - {name} for name, path in MODULES.items()}
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the circle


def test_the_batch_api_and_the_cli_load_no_scheduler_code():
    code = (
        "import sys, chillflow.batch, chillflow.cli\n"
        "print(sorted(m for m in sys.modules if m.startswith(('chillflow.scheduler', 'croniter'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"
