"""The protocol core is sans-I/O: no module in `backchannel.protocol` imports anything that
reads a socket, a file or the clock, nor calls `open`."""

from __future__ import annotations

import ast
from pathlib import Path

import backchannel.protocol

FORBIDDEN = {
    "socket",
    "asyncio",
    "time",
    "datetime",
    "os",
    "sqlite3",
    "websockets",
    "pathlib",
    "io",
    "importlib",
    "subprocess",
    "random",
}
ROOT = Path(backchannel.protocol.__file__).parent


def _modules() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def test_no_protocol_module_imports_io_or_the_clock() -> None:
    offenders = []
    for path in _modules():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "open":
                offenders.append(f"{path.name}: open()")
    assert offenders == []
    assert len(_modules()) > 10  # the scan really saw the package
