"""The client's layout (design §5, review §5.1): typed repositories own every SQL
statement, parts are composed rather than inherited, and no import cycle is dodged."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import backchannel.client
from backchannel.client.engine import Principal

CLIENT = Path(backchannel.client.__file__).parent
# The only places allowed to speak SQL: the keystore and the repositories over it.
SQL_HOMES = (CLIENT / "keystore.py", CLIENT / "state")


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(CLIENT.rglob("*.py")):
        parts = path.relative_to(CLIENT.parent.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found.append((name, path))
    return found


def _is_sql_home(path: Path) -> bool:
    return any(path == home or home in path.parents for home in SQL_HOMES)


def test_sql_is_spoken_only_by_the_keystore_and_the_repositories() -> None:
    offenders = []
    for _, path in _modules():
        if _is_sql_home(path):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("execute", "executemany", "executescript")
            ):
                offenders.append(f"{path.relative_to(CLIENT)}:{node.lineno}")
    assert offenders == []


def _client_imports(node: ast.AST) -> list[str]:
    names = []
    for inner in ast.walk(node):
        if isinstance(inner, ast.ImportFrom) and inner.module:
            names.append(inner.module)
        elif isinstance(inner, ast.Import):
            names += [alias.name for alias in inner.names]
    return [n for n in names if n == "backchannel.client" or n.startswith("backchannel.client.")]


def test_no_client_module_imports_another_lazily_or_only_for_type_checking() -> None:
    """A function-level import, or one under `if TYPE_CHECKING`, of another client
    module is how a cycle hides (inbox -> strategic -> engine -> inbox used to)."""
    offenders = []
    for _, path in _modules():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            hidden = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or (
                isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            )
            if hidden:
                offenders += [
                    f"{path.relative_to(CLIENT)}:{node.lineno} {name}"
                    for name in _client_imports(node)
                ]
    assert offenders == []


def test_every_client_module_imports_on_its_own() -> None:
    """Each module in a fresh interpreter: an import cycle fails one of these."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", f"import {name}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, _ in _modules()
    }
    failures = {}
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            failures[name] = err.strip().splitlines()[-1:]
    assert failures == {}


def test_principal_is_composed_not_a_chain_of_base_classes() -> None:
    assert Principal.__mro__ == (Principal, object)
