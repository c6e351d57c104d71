"""The relay cannot decrypt by construction: it never imports the end-to-end layer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import backchannel.client.transport
import backchannel.relay

RELAY = Path(backchannel.relay.__file__).parent
FORBIDDEN = "backchannel.protocol.e2e"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_relay_module_imports_the_e2e_layer() -> None:
    files = sorted(RELAY.rglob("*.py"))
    assert len(files) >= 8
    for path in files:
        bad = {n for n in _imports(path) if n == FORBIDDEN or n.startswith(FORBIDDEN + ".")}
        assert not bad, f"{path.name} imports {bad}"


def test_importing_the_relay_loads_no_e2e_module() -> None:
    code = ("import sys, backchannel.relay, backchannel.relay.server, "
            "backchannel.relay.store.sqlite, backchannel.relay.store.postgres, "
            "backchannel.cli.relay; "
            "bad = [m for m in sys.modules if m.startswith('backchannel.protocol.e2e')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_client_transport_imports_only_the_protocol() -> None:
    path = Path(backchannel.client.transport.__file__)
    ours = {n for n in _imports(path) if n.startswith("backchannel")}
    assert ours and all(n.startswith("backchannel.protocol") for n in ours)
    assert not any(n.startswith(FORBIDDEN) for n in ours)
